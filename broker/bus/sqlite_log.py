"""The embedded bus: a durable, partitioned append-only log in one SQLite file.

Semantics, chosen to match the Kafka backend so one contract suite covers both:

* **Topics** are created by ``create_topics``; publishing to (or subscribing to) a topic that
  does not exist creates it with ``default_partitions`` (4) partitions, like a Kafka broker with
  ``auto.create.topics.enable``. Partition counts never change afterwards.
* **Partitioning** of keyed records is Kafka's default partitioner
  (``murmur2(key) & 0x7fffffff % partitions``), so a key lands on the same partition number on
  both backends; records without a key go round-robin.
* **Durability:** WAL journal with ``synchronous=NORMAL`` by default. A committed publish
  survives a crash of any process; a power loss or OS crash may lose the last transactions
  (never corrupt the file). That is the same promise as a single Kafka broker, which does not
  fsync per request either. Pass ``synchronous="FULL"`` to fsync the WAL on every publish.
* **Consumer groups:** members register in ``members`` and heartbeat (on ``poll``/``commit``,
  at most every third of the session timeout). Each member computes the same deterministic
  assignment from the live members (sorted ids, round-robin over sorted partitions). A member
  silent for longer than the session timeout is dropped and its partitions move to the others
  (so do not spend longer than the session timeout between polls). During a membership change
  two members may briefly read the same partition: records can be delivered twice, never skipped.
* **Commits** write the given offset as is (last write wins, as in Kafka), also for a partition
  the member no longer owns: every commit only claims "everything below was processed", so a
  stale commit can cause redelivery but never loss.
* **Retention** (``retention_s``, None for ever): ``enforce_retention()`` deletes records
  older than it that every consumer group which ever committed on their partition has
  committed past (so nothing unread is dropped); topics nobody commits on (dead letters,
  ``consent.changes``) expire by age alone, as on Kafka. ``compact()`` also removes
  superseded records on compacted topics. ``forget(needle)`` deletes every record holding
  some bytes (an erased subject's id), whatever its age. Deleted records are zeroed in the
  file (``secure_delete``) and the WAL is truncated after, so no copy lingers in ``-wal``.
"""

from __future__ import annotations

import base64
import itertools
import json
import logging
import os
import random
import re
import socket
import sqlite3
import struct
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Literal

import orjson

from contract.bus import BusError, Headers, OutRecord, Record, TopicPartition, TopicSpec
from contract.private_files import private_file
from contract.sqlite_tx import immediate

log = logging.getLogger(__name__)

_SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS topics (
    name TEXT PRIMARY KEY,
    partitions INTEGER NOT NULL CHECK (partitions > 0),
    compacted INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;
-- The next offset of each partition, apart from `records` so that compaction never lowers it
-- and an append finds it without scanning.
CREATE TABLE IF NOT EXISTS partitions (
    topic TEXT NOT NULL,
    partition INTEGER NOT NULL,
    next_offset INTEGER NOT NULL,
    PRIMARY KEY (topic, partition)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS records (
    topic TEXT NOT NULL,
    partition INTEGER NOT NULL,
    offset INTEGER NOT NULL,
    key BLOB,
    value BLOB NOT NULL,
    headers BLOB,
    timestamp_ms INTEGER NOT NULL,
    PRIMARY KEY (topic, partition, offset)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS offsets (
    group_id TEXT NOT NULL,
    topic TEXT NOT NULL,
    partition INTEGER NOT NULL,
    next_offset INTEGER NOT NULL,
    PRIMARY KEY (group_id, topic, partition)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS members (
    group_id TEXT NOT NULL,
    member_id TEXT NOT NULL,
    topics TEXT NOT NULL,
    heartbeat_ms INTEGER NOT NULL,
    PRIMARY KEY (group_id, member_id)
) WITHOUT ROWID;
"""

_INSERT_RECORD = (
    "INSERT INTO records (topic, partition, offset, key, value, headers, timestamp_ms)"
    " VALUES (?, ?, ?, ?, ?, ?, ?)"
)
_SELECT_RECORDS = (
    "SELECT offset, key, value, headers, timestamp_ms FROM records"
    " WHERE topic = ? AND partition = ? AND offset >= ? ORDER BY offset LIMIT ?"
)

# Kafka's rule for topic names, so a name valid here is valid on the Kafka backend.
_TOPIC_NAME = re.compile(r"[A-Za-z0-9._-]{1,249}")

_M = 0x5BD1E995
_MASK32 = 0xFFFFFFFF


def murmur2(data: bytes) -> int:
    """Kafka's murmur2 hash of ``data`` as an unsigned 32-bit integer."""
    length = len(data)
    h = 0x9747B28C ^ length
    nblocks = length >> 2
    # Unpacking all little-endian words at once is several times faster than per-byte maths.
    for k in struct.unpack_from(f"<{nblocks}I", data):
        k = (k * _M) & _MASK32
        k ^= k >> 24
        k = (k * _M) & _MASK32
        h = ((h * _M) & _MASK32) ^ k
    tail = length & 3
    if tail:
        base = nblocks << 2
        if tail == 3:
            h ^= data[base + 2] << 16
        if tail >= 2:
            h ^= data[base + 1] << 8
        h ^= data[base]
        h = (h * _M) & _MASK32
    h ^= h >> 13
    h = (h * _M) & _MASK32
    h ^= h >> 15
    return h


@lru_cache(maxsize=1 << 16)
def partition_for_key(key: bytes, partitions: int) -> int:
    """The partition Kafka's default partitioner picks for ``key`` among ``partitions``."""
    # Cached: keys are subjects (residents, properties), which repeat a lot.
    return (murmur2(key) & 0x7FFFFFFF) % partitions


def check_topic_name(name: str) -> None:
    """Refuse a topic name Kafka would refuse, so both backends accept the same names."""
    if not _TOPIC_NAME.fullmatch(name) or name in (".", ".."):
        raise BusError(f"invalid topic name {name!r}: use 1-249 of [A-Za-z0-9._-]")


def _encode_headers(headers: Headers) -> bytes:
    # JSON of [name, base64(value)] pairs: readable in the sqlite3 shell, order and duplicate
    # names preserved. orjson (a project dependency) is ~4x faster than json here.
    return orjson.dumps(
        [[name, base64.b64encode(value).decode("ascii")] for name, value in headers]
    )


@lru_cache(maxsize=4096)
def _decode_stored_headers(raw: bytes) -> Headers:
    # Cached: most records carry one of a few header sets (event type, schema version).
    return tuple((name, base64.b64decode(value)) for name, value in orjson.loads(raw))


def _decode_headers(raw: bytes | None) -> Headers:
    return () if raw is None else _decode_stored_headers(raw)


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


class SqliteLog:
    """The embedded bus: topics, partitions and consumer groups in one SQLite file."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        default_partitions: int = 4,
        session_timeout_s: float = 6.0,
        busy_timeout_s: float = 30.0,
        synchronous: Literal["NORMAL", "FULL"] = "NORMAL",
        retention_s: float | None = None,
    ) -> None:
        if default_partitions < 1:
            raise BusError("default_partitions must be at least 1")
        if synchronous not in ("NORMAL", "FULL"):
            raise BusError(f"synchronous must be NORMAL or FULL, not {synchronous!r}")
        if str(path) in ("", ":memory:"):
            # Each thread has its own connection, and each would get its own empty database.
            raise BusError("SqliteLog needs a file path, not an in-memory database")
        self.path = Path(path)
        self.default_partitions = default_partitions
        self.session_timeout_s = session_timeout_s
        if retention_s is not None and retention_s <= 0:
            raise BusError("retention_s must be positive (or None: keep for ever)")
        self.retention_s = retention_s
        self._busy_timeout_s = busy_timeout_s
        self._synchronous = synchronous
        self._local = threading.local()
        self._conns: list[tuple[int, sqlite3.Connection]] = []
        self._conns_lock = threading.Lock()
        self._partition_counts: dict[str, int] = {}
        self._round_robin: dict[str, Iterator[int]] = {}
        self._closed = False
        private_file(self.path)  # the events themselves: 0600, its WAL too
        with self._errors("opening the log"):
            conn = self._conn()
            # Larger pages measured ~20% faster appends and reads of ~500-byte records; the
            # setting only takes effect on a new, empty file.
            conn.execute("PRAGMA page_size=16384")
            # WAL lets consumers read while a publisher appends; the mode is stored in the file.
            conn.execute("PRAGMA journal_mode=WAL")
            with self._write() as c:
                if c.execute("PRAGMA user_version").fetchone()[0] < _SCHEMA_VERSION:
                    self._create_schema(c)

    @staticmethod
    def _create_schema(conn: sqlite3.Connection) -> None:
        # executescript() would COMMIT our BEGIN IMMEDIATE; run the statements one by one.
        for statement in _SCHEMA.split(";"):
            if statement.strip():
                conn.execute(statement)
        conn.execute(f"PRAGMA user_version = {_SCHEMA_VERSION}")

    # -- connections and transactions -------------------------------------------------------

    def _conn(self) -> sqlite3.Connection:
        """This thread's connection (sqlite3 connections must not be shared between threads)."""
        if self._closed:
            raise BusError(f"the SQLite log {self.path} is closed")
        pid, conn = getattr(self._local, "conn", (None, None))
        # A forked child must not reuse its parent's connection.
        if conn is None or pid != os.getpid():
            conn = sqlite3.connect(
                self.path,
                timeout=self._busy_timeout_s,
                isolation_level=None,  # we issue BEGIN/COMMIT ourselves
                check_same_thread=False,  # only so close() can close every thread's connection
            )
            conn.execute(f"PRAGMA synchronous={self._synchronous}")
            # Deleted records' bytes are zeroed where that costs no extra I/O (within a page);
            # ``forget`` and retention turn it fully on while they delete.
            conn.execute("PRAGMA secure_delete=FAST")
            self._local.conn = (os.getpid(), conn)
            with self._conns_lock:
                self._conns.append((os.getpid(), conn))
        return conn

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """A write transaction; IMMEDIATE takes the write lock up front so offsets never race."""
        with immediate(self._conn()) as conn:
            yield conn

    @contextmanager
    def _errors(self, doing: str) -> Iterator[None]:
        try:
            yield
        except sqlite3.Error as exc:
            raise BusError(f"SQLite log {self.path}: {doing} failed: {exc}") from exc

    # -- topics -------------------------------------------------------------------------------

    def create_topics(self, specs: Sequence[TopicSpec]) -> None:
        """Create topics that do not exist yet (idempotent; existing ones are left as they are)."""
        for spec in specs:
            check_topic_name(spec.name)
            if spec.partitions < 1:
                raise BusError(f"topic {spec.name!r}: partitions must be at least 1")
        with self._errors("creating topics"), self._write() as conn:
            for spec in specs:
                self._create_topic(conn, spec)

    def _create_topic(self, conn: sqlite3.Connection, spec: TopicSpec) -> int:
        created = conn.execute(
            "INSERT OR IGNORE INTO topics (name, partitions, compacted) VALUES (?, ?, ?)",
            (spec.name, spec.partitions, int(spec.compacted)),
        ).rowcount
        if created:
            conn.executemany(
                "INSERT INTO partitions (topic, partition, next_offset) VALUES (?, ?, 0)",
                [(spec.name, p) for p in range(spec.partitions)],
            )
            log.info("created topic %s with %d partitions", spec.name, spec.partitions)
            return spec.partitions
        existing: int = conn.execute(
            "SELECT partitions FROM topics WHERE name = ?", (spec.name,)
        ).fetchone()[0]
        if existing != spec.partitions:
            log.warning(
                "topic %s exists with %d partitions, not %d; keeping it",
                spec.name,
                existing,
                spec.partitions,
            )
        return existing

    def _partitions(self, topic: str, *, create: bool) -> int:
        """Partition count of ``topic``; creates it with the default count when ``create``."""
        count = self._partition_counts.get(topic)
        if count is not None:
            return count
        row = (
            self._conn()
            .execute("SELECT partitions FROM topics WHERE name = ?", (topic,))
            .fetchone()
        )
        if row is not None:
            count = int(row[0])
        elif create:
            check_topic_name(topic)
            with self._write() as conn:
                count = self._create_topic(conn, TopicSpec(topic, self.default_partitions))
        else:
            raise BusError(f"unknown topic {topic!r}")
        self._partition_counts[topic] = count
        return count

    # -- publish ------------------------------------------------------------------------------

    def publish(self, topic: str, records: Sequence[OutRecord]) -> None:
        """Append records in one transaction; returns once they are committed to the file."""
        if not records:
            return
        with self._errors(f"publishing to {topic!r}"):
            count = self._partitions(topic, create=True)
            # Partitioning and encoding happen before taking the write lock, to keep it short.
            rr = self._round_robin.get(topic)
            if rr is None:
                # A random start spreads key-less records of several processes.
                start = random.randrange(count)
                rr = self._round_robin.setdefault(
                    topic, itertools.cycle([*range(start, count), *range(start)])
                )
            parts = [
                partition_for_key(r.key, count) if r.key is not None else next(rr) for r in records
            ]
            encode = _encode_headers
            payload = [(r.key, r.value, encode(r.headers) if r.headers else None) for r in records]
            added = Counter(parts)
            ts = _now_ms()
            with self._write() as conn:
                ends: dict[int, int] = dict(
                    conn.execute(
                        "SELECT partition, next_offset FROM partitions WHERE topic = ?", (topic,)
                    ).fetchall()
                )
                counters = {p: itertools.count(ends[p]) for p in added}
                conn.executemany(
                    _INSERT_RECORD,
                    [
                        (topic, p, next(counters[p]), key, value, h, ts)
                        for p, (key, value, h) in zip(parts, payload, strict=True)
                    ],
                )
                conn.executemany(
                    "UPDATE partitions SET next_offset = ? WHERE topic = ? AND partition = ?",
                    [(ends[p] + n, topic, p) for p, n in added.items()],
                )

    # -- offsets ------------------------------------------------------------------------------

    def end_offsets(self, topic: str) -> dict[int, int]:
        """Per partition, the offset the next published record will get."""
        with self._errors(f"reading end offsets of {topic!r}"):
            rows = (
                self._conn()
                .execute("SELECT partition, next_offset FROM partitions WHERE topic = ?", (topic,))
                .fetchall()
            )
        if not rows:
            raise BusError(f"unknown topic {topic!r}")
        return {int(p): int(off) for p, off in rows}

    def committed(self, group: str, topic: str) -> dict[int, int]:
        """Per partition, the group's committed offset (0 when none)."""
        with self._errors(f"reading committed offsets of {group!r} on {topic!r}"):
            count = self._partitions(topic, create=False)
            out = dict.fromkeys(range(count), 0)
            for p, off in self._conn().execute(
                "SELECT partition, next_offset FROM offsets WHERE group_id = ? AND topic = ?",
                (group, topic),
            ):
                out[int(p)] = int(off)
        return out

    # -- consumers ----------------------------------------------------------------------------

    def consumer(self, group: str, topics: Sequence[str]) -> SqliteConsumer:
        """Join ``group`` consuming ``topics`` (created if missing) from the committed offsets."""
        if not topics:
            raise BusError("a consumer needs at least one topic")
        if not group:
            raise BusError("a consumer needs a group id")
        with self._errors(f"joining group {group!r}"):
            for topic in topics:
                self._partitions(topic, create=True)
            return SqliteConsumer(self, group, sorted(set(topics)))

    # -- maintenance --------------------------------------------------------------------------

    def compact(self, topic: str | None = None) -> int:
        """Keep only the last record per key on compacted topics; returns how many were removed."""
        with self._errors("compacting"):
            if topic is None:
                names = [
                    str(n)
                    for (n,) in self._conn().execute("SELECT name FROM topics WHERE compacted = 1")
                ]
            else:
                self._partitions(topic, create=False)
                names = [topic]
            removed = 0
            for name in names:
                with self._write() as conn:
                    removed += conn.execute(
                        "DELETE FROM records WHERE topic = :t AND key IS NOT NULL"
                        " AND (partition, offset) NOT IN ("
                        "  SELECT partition, MAX(offset) FROM records"
                        "  WHERE topic = :t AND key IS NOT NULL GROUP BY partition, key)",
                        {"t": name},
                    ).rowcount
        return removed

    def enforce_retention(self, now_ms: int | None = None) -> int:
        """Delete records older than ``retention_s`` that every group which committed on
        their partition has committed past; returns how many were deleted."""
        if self.retention_s is None:
            return 0
        cutoff = (now_ms if now_ms is not None else _now_ms()) - int(self.retention_s * 1000)
        with self._errors("enforcing retention"), self._purging() as conn:
            return int(
                conn.execute(
                    "DELETE FROM records WHERE timestamp_ms < :cutoff AND offset < COALESCE("
                    "  (SELECT MIN(o.next_offset) FROM offsets o"
                    "   WHERE o.topic = records.topic AND o.partition = records.partition),"
                    "  offset + 1)",
                    {"cutoff": cutoff},
                ).rowcount
            )

    def forget(self, needle: bytes) -> int:
        """Delete every record whose key or value contains ``needle`` (an erased subject's
        id as it appears in JSON), on every topic and whatever its age; how many."""
        if not needle:
            raise BusError("forget needs a non-empty needle")
        with self._errors("forgetting records"), self._purging() as conn:
            return int(
                conn.execute(
                    "DELETE FROM records WHERE instr(value, :n) > 0 OR instr(key, :n) > 0",
                    {"n": needle},
                ).rowcount
            )

    @contextmanager
    def _purging(self) -> Iterator[sqlite3.Connection]:
        """A write transaction deleting with ``secure_delete`` on; then the WAL truncated, so
        the deleted bytes survive neither in the file's free space nor in ``-wal``."""
        conn = self._conn()
        conn.execute("PRAGMA secure_delete=ON")
        try:
            with self._write() as c:
                yield c
        finally:
            conn.execute("PRAGMA secure_delete=FAST")
        # TRUNCATE waits (busy timeout) for readers of older snapshots; one still reading
        # leaves the WAL as it is, and a later purge or checkpoint truncates it.
        busy = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]
        if busy:
            log.warning("%s: the WAL could not be truncated yet (a reader is active)", self.path)

    def close(self) -> None:
        """Close every connection this object opened."""
        if self._closed:
            return
        self._closed = True
        with self._conns_lock:
            conns, self._conns = self._conns, []
        for pid, conn in conns:
            if pid != os.getpid():
                continue  # a parent's connection, inherited through fork: not ours to close
            try:
                conn.close()
            except sqlite3.Error as exc:  # closing must not hide the caller's own error
                log.warning("closing a connection to %s failed: %s", self.path, exc)

    def __enter__(self) -> SqliteLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _assign(
    members: Sequence[tuple[str, frozenset[str]]], partitions: Iterable[TopicPartition]
) -> dict[str, list[TopicPartition]]:
    """Round-robin of sorted partitions over sorted members subscribed to each topic."""
    ordered = sorted(members)
    out: dict[str, list[TopicPartition]] = {m: [] for m, _ in ordered}
    turn = 0
    for tp in sorted(partitions, key=lambda t: (t.topic, t.partition)):
        eligible = [m for m, topics in ordered if tp.topic in topics]
        if eligible:
            out[eligible[turn % len(eligible)]].append(tp)
            turn += 1
    return out


class SqliteConsumer:
    """A member of a consumer group on the SQLite log; use it from one thread at a time."""

    def __init__(self, log_: SqliteLog, group: str, topics: Sequence[str]) -> None:
        self._log = log_
        self.group = group
        self.topics = tuple(topics)
        self.member_id = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:12]}"
        self._session_ms = int(log_.session_timeout_s * 1000)
        self._heartbeat_every_s = log_.session_timeout_s / 3
        self._last_heartbeat = 0.0
        self._view: tuple[object, ...] | None = None
        self._positions: dict[TopicPartition, int] = {}
        self._assignment: list[TopicPartition] = []
        self._turn = 0
        self._closed = False
        self._lock = threading.Lock()  # misuse from two threads then serialises, not corrupts
        with self._log._errors(f"joining group {group!r}"):
            self._heartbeat()

    @property
    def assignment(self) -> list[TopicPartition]:
        """The partitions this member read at its last poll."""
        return list(self._assignment)

    def _heartbeat(self) -> None:
        """Refresh our heartbeat (re-registering if we were dropped) and purge dead members."""
        now = _now_ms()
        with self._log._write() as conn:
            conn.execute("DELETE FROM members WHERE heartbeat_ms < ?", (now - self._session_ms,))
            updated = conn.execute(
                "UPDATE members SET heartbeat_ms = ? WHERE group_id = ? AND member_id = ?",
                (now, self.group, self.member_id),
            ).rowcount
            if not updated:
                conn.execute(
                    "INSERT INTO members (group_id, member_id, topics, heartbeat_ms)"
                    " VALUES (?, ?, ?, ?)",
                    (self.group, self.member_id, json.dumps(self.topics), now),
                )
                if self._view is not None:
                    log.warning(
                        "member %s of group %s was dropped (no poll for over %.1f s); rejoined",
                        self.member_id,
                        self.group,
                        self._log.session_timeout_s,
                    )
                # Others may have moved our partitions on: restart from the committed offsets.
                self._positions.clear()
                self._view = None
        self._last_heartbeat = time.monotonic()

    def _refresh(self, conn: sqlite3.Connection) -> dict[TopicPartition, int]:
        """Recompute the assignment if membership or partitions changed; returns end offsets."""
        marks = ",".join("?" * len(self.topics))
        ends = {
            TopicPartition(t, p): off
            for t, p, off in conn.execute(
                f"SELECT topic, partition, next_offset FROM partitions WHERE topic IN ({marks})",
                self.topics,
            )
        }
        members = tuple(
            (m, frozenset(json.loads(t)))
            for m, t in conn.execute(
                "SELECT member_id, topics FROM members"
                " WHERE group_id = ? AND heartbeat_ms >= ? ORDER BY member_id",
                (self.group, _now_ms() - self._session_ms),
            )
        )
        view = (members, tuple(sorted(ends, key=lambda t: (t.topic, t.partition))))
        if view != self._view:
            if all(m != self.member_id for m, _ in members):
                # The others think we are gone: heartbeat (rejoin) and look again.
                self._heartbeat()
                return self._refresh(conn)
            mine = _assign(members, ends).get(self.member_id, [])
            gained = [tp for tp in mine if tp not in self._positions]
            committed: dict[TopicPartition, int] = {}
            if gained:
                committed = {
                    TopicPartition(t, p): off
                    for t, p, off in conn.execute(
                        "SELECT topic, partition, next_offset FROM offsets"
                        f" WHERE group_id = ? AND topic IN ({marks})",
                        (self.group, *self.topics),
                    )
                }
            self._positions = {tp: self._positions.get(tp, committed.get(tp, 0)) for tp in mine}
            if mine != self._assignment:
                log.info(
                    "group %s member %s now reads %s",
                    self.group,
                    self.member_id,
                    ", ".join(f"{tp.topic}[{tp.partition}]" for tp in mine) or "nothing",
                )
            self._assignment = mine
            self._view = view
        return ends

    def _fetch(
        self, conn: sqlite3.Connection, ends: Mapping[TopicPartition, int], limit: int
    ) -> list[Record]:
        out: list[Record] = []
        n = len(self._assignment)
        if not n:
            return out
        # Start at a different partition each poll so a busy one cannot starve the others.
        self._turn = (self._turn + 1) % n
        for i in range(n):
            tp = self._assignment[(self._turn + i) % n]
            pos = self._positions[tp]
            if pos >= ends.get(tp, 0):
                continue
            rows = conn.execute(
                _SELECT_RECORDS, (tp.topic, tp.partition, pos, limit - len(out))
            ).fetchall()
            if not rows:
                continue
            topic, partition = tp.topic, tp.partition
            out.extend(
                Record(topic, partition, off, key, value, _decode_headers(h), ts, appended=True)
                for off, key, value, h, ts in rows
            )
            self._positions[tp] = rows[-1][0] + 1
            if len(out) >= limit:
                break
        return out

    def poll(self, max_records: int = 500, timeout_s: float = 1.0) -> list[Record]:
        """Next records of the assigned partitions, in offset order per partition."""
        if max_records < 1:
            raise BusError("max_records must be at least 1")
        deadline = time.monotonic() + timeout_s
        pause = 0.002
        with self._lock, self._log._errors(f"polling group {self.group!r}"):
            while True:
                if self._closed:
                    raise BusError(f"consumer of group {self.group!r} is closed")
                if time.monotonic() - self._last_heartbeat >= self._heartbeat_every_s:
                    self._heartbeat()
                conn = self._log._conn()
                ends = self._refresh(conn)
                records = self._fetch(conn, ends, max_records)
                remaining = deadline - time.monotonic()
                if records or remaining <= 0:
                    return records
                # Nothing new: back off in small steps so fresh records are seen within ~50 ms.
                time.sleep(min(pause, remaining))
                pause = min(pause * 2, 0.05)

    def commit(self, offsets: Mapping[TopicPartition, int]) -> None:
        """Commit, per partition, the offset of the next record to read (also if not assigned)."""
        if not offsets:
            return
        for tp, off in offsets.items():
            if off < 0:
                raise BusError(f"cannot commit negative offset {off} for {tp}")
        with self._lock, self._log._errors(f"committing offsets of group {self.group!r}"):
            if self._closed:
                raise BusError(f"consumer of group {self.group!r} is closed")
            now = _now_ms()
            with self._log._write() as conn:
                conn.executemany(
                    "INSERT INTO offsets (group_id, topic, partition, next_offset)"
                    " VALUES (?, ?, ?, ?) ON CONFLICT (group_id, topic, partition)"
                    " DO UPDATE SET next_offset = excluded.next_offset",
                    [(self.group, tp.topic, tp.partition, off) for tp, off in offsets.items()],
                )
                # A commit is proof of life: count it as a heartbeat.
                conn.execute(
                    "UPDATE members SET heartbeat_ms = ? WHERE group_id = ? AND member_id = ?",
                    (now, self.group, self.member_id),
                )

    def close(self) -> None:
        """Leave the group; uncommitted records will be delivered again."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            try:
                with self._log._write() as conn:
                    conn.execute(
                        "DELETE FROM members WHERE group_id = ? AND member_id = ?",
                        (self.group, self.member_id),
                    )
            except (sqlite3.Error, BusError) as exc:
                # The others will drop us after the session timeout anyway.
                log.warning(
                    "member %s could not leave group %s: %s", self.member_id, self.group, exc
                )
