"""The durable local outbox: events wait here (SQLite, WAL) until the bus has them.

It works like a one-consumer log. ``events`` holds every event in publish order (``seq``)
with its id UNIQUE; a cursor, ``delivered_through``, says which are delivered. So:

* queuing an id already there is a no-op, whether it waits or was delivered: re-running an
  export neither doubles an event nor sends it again;
* marking a batch delivered (``ack``) writes one row, not one per event: a queue that deletes
  its rows pays a random-key index update per event (measured: a third of the SDK's cost);
* delivered rows are pruned after ``sent_retention_s`` (default 7 days). A re-run after that
  sends them again, and the platform drops them by event id. Until then a delivered row keeps
  only its id: its key and data (a resident's, often) are emptied in the ``ack`` that marks it
  delivered, their bytes zeroed in the page (``secure_delete=FAST``), and the WAL, which holds
  older page images, is truncated whenever the sender is idle after an ``ack`` and on close.
  So an erasure at the platform is not undone by a copy left at the firm.

``failed`` keeps events the platform refused for good (e.g. HTTP ingest said "rejected"),
with the reason: they leave the queue but are never silently thrown away, and publishing
them again queues them again.

Durability: ``synchronous=NORMAL`` in WAL mode (the default) survives a crash of the process;
a power cut may lose the last transactions. ``synchronous="FULL"`` fsyncs every transaction.
One process owns an outbox at a time: the depth is counted in memory, and two senders
draining one file would each deliver the same events. Opening takes an exclusive ``flock`` on
``<outbox>.lock`` beside the file (SQLite's own locking lets a second process in); a second
opener gets ``OutboxInUseError`` naming the file and the holder's pid. The kernel drops the
lock when its holder exits, however it exits, so a crashed connector never leaves it stuck.
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from contract.private_files import private_file
from contract.sqlite_tx import immediate

__all__ = ["FailedRow", "Outbox", "OutboxEntry", "OutboxInUseError", "OutboxRow"]

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS events (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        event_id TEXT NOT NULL UNIQUE,
        topic TEXT NOT NULL,
        key BLOB,
        value BLOB NOT NULL,
        created_at REAL NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        last_error TEXT,
        origin TEXT
    )""",
    "CREATE TABLE IF NOT EXISTS cursor (name TEXT PRIMARY KEY, seq INTEGER NOT NULL)",
    "INSERT OR IGNORE INTO cursor (name, seq) VALUES ('delivered_through', 0)",
    """CREATE TABLE IF NOT EXISTS failed (
        event_id TEXT PRIMARY KEY,
        topic TEXT NOT NULL,
        key BLOB,
        value BLOB NOT NULL,
        created_at REAL NOT NULL,
        failed_at REAL NOT NULL,
        reason TEXT NOT NULL,
        origin TEXT
    ) WITHOUT ROWID""",
)
#: Columns added since the first release, with the tables that lack them in older files.
_ADDED_COLUMNS = (("events", "origin TEXT"), ("failed", "origin TEXT"))
_ADD = (
    "INSERT OR IGNORE INTO events (event_id, topic, key, value, created_at, origin)"
    " VALUES (?, ?, ?, ?, ?, ?)"
)
_COLUMNS = (
    "seq, event_id, topic, key, value, created_at, attempts, last_error, coalesce(origin, '')"
)
_PRUNE_EVERY_S = 600.0


class OutboxInUseError(RuntimeError):
    """Another process (or another ``Outbox`` of this one) has the outbox open."""

    def __init__(self, path: Path, pid: int | None) -> None:
        self.path = path
        self.pid = pid
        if pid is None:
            holder = "another process"
        elif pid == os.getpid():
            holder = f"this process (pid {pid}), through another Outbox not yet closed"
        else:
            holder = f"process {pid}"
        super().__init__(
            f"outbox {path} is in use by {holder}: one process owns an outbox at a time; "
            "stop that one (e.g. the demo of `tsunagu up`) or give this one its own outbox file"
        )


def _own(path: Path) -> int:
    """Take the exclusive lock of the outbox at ``path``; returns the lock file's descriptor."""
    lock_path = path.with_name(path.name + ".lock")
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        written = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
        os.close(fd)
        raise OutboxInUseError(path, int(written) if written.isdigit() else None) from None
    except BaseException:
        os.close(fd)
        raise
    # Who holds it, for the next opener's message; the lock itself is the flock, not this.
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


@dataclass(frozen=True, slots=True)
class OutboxEntry:
    """An event to queue: its id, where it goes, its encoded CloudEvent, and where it came
    from (``trips.csv line 7``), so that a refusal by the platform can name the row."""

    event_id: str
    topic: str
    key: bytes | None
    value: bytes
    origin: str = ""


@dataclass(frozen=True, slots=True)
class OutboxRow:
    """A queued event."""

    seq: int
    event_id: str
    topic: str
    key: bytes | None
    value: bytes
    created_at: float
    attempts: int = 0
    last_error: str | None = None
    origin: str = ""  # the row it came from, e.g. "trips.csv line 7" ("" when not named)


@dataclass(frozen=True, slots=True)
class FailedRow:
    """An event the platform refused for good, with its reason and the row it came from."""

    event_id: str
    topic: str
    value: bytes
    reason: str
    failed_at: float
    origin: str = ""


class Outbox:
    """A SQLite outbox file; safe to share between the threads of one process."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        synchronous: Literal["NORMAL", "FULL"] = "NORMAL",
        sent_retention_s: float = 7 * 24 * 3600,
        busy_timeout_s: float = 30.0,
    ) -> None:
        if synchronous not in ("NORMAL", "FULL"):
            raise ValueError(f"synchronous must be NORMAL or FULL, not {synchronous!r}")
        if str(path) in ("", ":memory:"):
            raise ValueError("an outbox must be a file: it has to outlive the process")
        self.path = Path(path)
        private_file(self.path)  # queued events: 0600, its WAL too
        self._owner = _own(self.path)
        try:
            self._open(synchronous, sent_retention_s, busy_timeout_s)
        except BaseException:
            os.close(self._owner)
            raise

    def _open(
        self, synchronous: Literal["NORMAL", "FULL"], sent_retention_s: float, busy_timeout_s: float
    ) -> None:
        self.sent_retention_s = sent_retention_s
        self._depth_listeners: list[Callable[[int], None]] = []
        # One connection behind a lock: statements are short, and a sender thread and the
        # publishing thread never hold it while talking to the network.
        self._lock = threading.RLock()
        self._conn = sqlite3.connect(
            self.path, timeout=busy_timeout_s, isolation_level=None, check_same_thread=False
        )
        # Larger pages suit ~1 KB event rows (a quarter less time per insert, measured); it
        # only takes effect when the file is created, before WAL mode is set.
        self._conn.execute("PRAGMA page_size=16384")
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute(f"PRAGMA synchronous={synchronous}")
        self._conn.execute("PRAGMA secure_delete=FAST")
        self._acked = False  # since the WAL was last truncated
        with self._write() as conn:
            for statement in _SCHEMA:
                conn.execute(statement)
            for table, column in _ADDED_COLUMNS:  # an outbox file of an older SDK
                present = {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}
                if column.split()[0] not in present:
                    conn.execute(f"ALTER TABLE {table} ADD COLUMN {column}")
            self._cursor = int(
                conn.execute("SELECT seq FROM cursor WHERE name = 'delivered_through'").fetchone()[
                    0
                ]
            )
            self._depth = self._count_after(conn, self._cursor)
        self._pruned_at = 0.0
        self.prune()

    def on_depth(self, listener: Callable[[int], None]) -> None:
        """Call ``listener`` with the depth now and after every change (e.g. a gauge's set)."""
        with self._lock:
            self._depth_listeners.append(listener)
            listener(self._depth)

    def _moved(self, by: int) -> None:
        """The depth changed by ``by``; tell the listeners (under the lock: in order)."""
        self._depth += by
        for listener in self._depth_listeners:
            listener(self._depth)

    @staticmethod
    def _count_after(conn: sqlite3.Connection, seq: int) -> int:
        return int(conn.execute("SELECT count(*) FROM events WHERE seq > ?", (seq,)).fetchone()[0])

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction; IMMEDIATE so a second process waits instead of failing."""
        with self._lock, immediate(self._conn) as conn:
            yield conn

    def add_many(self, entries: Iterable[OutboxEntry]) -> int:
        """Queue ``entries`` in one transaction; returns how many were new (not duplicates)."""
        now = time.time()
        params = [(e.event_id, e.topic, e.key, e.value, now, e.origin or None) for e in entries]
        if not params:
            return 0
        with self._write() as conn:
            added: int = conn.executemany(_ADD, params).rowcount
            self._moved(added)
        return added

    def add(self, entry: OutboxEntry) -> bool:
        """Queue one event; False when it was a duplicate."""
        return self.add_many([entry]) == 1

    def peek(self, limit: int) -> list[OutboxRow]:
        """The oldest ``limit`` undelivered events, oldest first (they stay queued)."""
        with self._lock:
            rows = self._conn.execute(
                f"SELECT {_COLUMNS} FROM events WHERE seq > ? ORDER BY seq LIMIT ?",
                (self._cursor, limit),
            ).fetchall()
        return [OutboxRow(*row) for row in rows]

    def ack(self, through_seq: int) -> None:
        """Every queued event up to ``through_seq`` is delivered (failed ones moved first)."""
        if through_seq <= self._cursor:
            return
        with self._write() as conn:
            delivered = conn.execute(
                "SELECT count(*) FROM events WHERE seq > ? AND seq <= ?",
                (self._cursor, through_seq),
            ).fetchone()[0]
            conn.execute(
                "UPDATE cursor SET seq = ? WHERE name = 'delivered_through'", (through_seq,)
            )
            # Delivered: the id stays (re-runs send nothing twice), the data goes.
            conn.execute(
                "UPDATE events SET key = NULL, value = x'' WHERE seq > ? AND seq <= ?",
                (self._cursor, through_seq),
            )
            self._cursor = through_seq
            self._acked = True
            self._moved(-int(delivered))

    def fail(self, reasons: dict[int, str]) -> None:
        """Move events the platform refused for good (seq → reason) to the ``failed`` table."""
        if not reasons:
            return
        now = time.time()
        with self._write() as conn:
            conn.executemany(
                "INSERT OR REPLACE INTO failed"
                " (event_id, topic, key, value, created_at, failed_at, reason, origin)"
                " SELECT event_id, topic, key, value, created_at, ?, ?, origin FROM events"
                " WHERE seq = ? AND seq > ?",
                [(now, reason, seq, self._cursor) for seq, reason in reasons.items()],
            )
            # Deleted, not acked: publishing it again (say, after a schema fix) queues it again.
            removed = conn.executemany(
                "DELETE FROM events WHERE seq = ? AND seq > ?",
                [(s, self._cursor) for s in reasons],
            )
            self._moved(-removed.rowcount)

    def record_attempt(self, seqs: Sequence[int], error: str) -> None:
        """Note a failed delivery attempt of these events (they stay queued)."""
        if not seqs:
            return
        with self._write() as conn:
            conn.executemany(
                "UPDATE events SET attempts = attempts + 1, last_error = ? WHERE seq = ?",
                [(error[:2000], s) for s in seqs],
            )

    def prune(self) -> int:
        """Forget delivered events older than the retention period; how many were dropped."""
        cutoff = time.time() - self.sent_retention_s
        with self._write() as conn:
            # seq order is publish order, so the old delivered rows are a prefix: find its end
            # by walking from the start instead of reading every delivered row.
            young = conn.execute(
                "SELECT seq FROM events WHERE seq <= ? AND created_at >= ? ORDER BY seq LIMIT 1",
                (self._cursor, cutoff),
            ).fetchone()
            end = int(young[0]) - 1 if young else self._cursor
            dropped = conn.execute("DELETE FROM events WHERE seq <= ?", (end,)).rowcount
        self._pruned_at = time.monotonic()
        return int(dropped)

    def maybe_prune(self) -> None:
        """Prune if the last prune was more than ten minutes ago, and truncate the WAL if an
        ``ack`` emptied rows since it last was (called when idle)."""
        if time.monotonic() - self._pruned_at > _PRUNE_EVERY_S:
            self.prune()
        if self._acked:
            self.truncate_wal()

    def truncate_wal(self) -> None:
        """Fold the WAL into the file and empty it: delivered events' data then survives in
        neither (a reader in another process may delay it to the next call)."""
        with self._lock:
            busy = self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]
            self._acked = bool(busy)

    def depth(self) -> int:
        """How many events wait to be delivered."""
        return self._depth

    def was_sent(self, event_id: str) -> bool:
        """Whether this event was delivered (and not yet pruned)."""
        with self._lock:
            row = self._conn.execute(
                "SELECT 1 FROM events WHERE event_id = ? AND seq <= ?", (event_id, self._cursor)
            )
            return row.fetchone() is not None

    def failed(self) -> list[FailedRow]:
        """Events the platform refused for good, oldest first."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT event_id, topic, value, reason, failed_at, coalesce(origin, '')"
                " FROM failed ORDER BY failed_at"
            ).fetchall()
        return [FailedRow(*row) for row in rows]

    def close(self) -> None:
        """Close the file (idempotent), its WAL truncated, and give up owning it."""
        with self._lock:
            try:
                if self._acked:
                    self.truncate_wal()
            except sqlite3.ProgrammingError:
                pass  # closed already
            self._conn.close()
            if self._owner >= 0:
                os.close(self._owner)  # closing the descriptor releases the flock
                self._owner = -1
