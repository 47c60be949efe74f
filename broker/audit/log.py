"""The append side of the audit log: ``AuditLog`` chains entries into the store and signs
checkpoints.

Appending is two-speed:

* ``append`` only enqueues (one deque append). A flusher thread writes the queue
  every ``flush_interval_s`` (0.1 s) or as soon as ``flush_at`` (1,000) entries wait, in one
  transaction per batch. ``decision_recorder`` uses this path: the decision point answers
  ~400,000 times a second and must not wait for the disk.
* ``append_now`` and ``append_many`` write before they return, and write everything queued
  before them in the same transaction (order is kept). Use them where an entry must exist
  before the effect it records leaves the platform: a partner read, an erasure, a consent
  change, a token, an admin change. Because a partner read's ``append_now`` also flushes the
  decisions queued before it, data is never served ahead of its audit trail.

A crash (kill -9, power loss) loses at most the queue: at most ``flush_interval_s`` worth of
decisions or ``flush_at`` entries appended with ``append``, never an ``append_now`` entry.
When the store is down, flushing retries and the queue grows to ``max_buffered``; beyond that
``append`` flushes in the caller's thread and raises if that fails: reads are refused rather
than served unaudited.

Linearity across processes: every write transaction locks the single ``audit_head`` row
(PostgreSQL ``SELECT … FOR UPDATE``) or the database (SQLite ``BEGIN IMMEDIATE``), reads the
last seq and hash, inserts its batch after them and moves the head, so two appenders never
chain from the same entry. Hashing and encoding are done before the lock is taken.

Checkpoints are signed inside the same transaction: whenever ``checkpoint_every`` entries
have passed since the last one (exactly at that seq), and at the end of a batch when the
last one is older than ``checkpoint_interval_s``. The flusher also checkpoints an idle head
once it is that old, so every entry is signed within about ``checkpoint_interval_s``.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import Future, InvalidStateError
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, NamedTuple

from sqlalchemy import Connection, Engine, bindparam, insert, select, update
from sqlalchemy.exc import OperationalError

from broker.audit import tables
from broker.audit.checkpoints import Checkpoint, sign_checkpoint
from broker.audit.entries import (
    EntryKind,
    SubjectRefs,
    check_fields,
    encode_fields,
    entry_hash,
    timestamp,
)
from broker.audit.metrics import count_entries
from broker.store.database import checkpoint_wal, sqlite_nowait_engine
from consent.decisions import Decision
from consent.keys import KeyRing, load_or_create_key

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class NewEntry:
    """An entry to append: its kind, who caused it, its fields, and the subject if any."""

    kind: EntryKind
    actor: str
    fields: Mapping[str, Any] = field(default_factory=dict)
    subject: str | None = None  # turned into subject_ref; never stored
    at: datetime | None = None  # when it happened; default: when it was appended


class HeadBusyError(Exception):
    """Another transaction holds the audit head, and the caller chose not to wait."""


# Built once: constructing them per write cost more than the write's own SQL.
_HEAD_FOR_UPDATE = (
    select(tables.head).where(tables.head.c.id == tables.HEAD_ID).with_for_update()
)  # PostgreSQL; on SQLite the FOR UPDATE is dropped, BEGIN IMMEDIATE already locks
_HEAD_NOWAIT = (
    select(tables.head).where(tables.head.c.id == tables.HEAD_ID).with_for_update(nowait=True)
)
_INSERT_ENTRIES = insert(tables.entries)
_MOVE_HEAD = (
    update(tables.head)
    .where(tables.head.c.id == tables.HEAD_ID)
    .values(
        seq=bindparam("seq"),
        hash=bindparam("hash"),
        checkpoint_seq=bindparam("checkpoint_seq"),
        checkpoint_hash=bindparam("checkpoint_hash"),
        checkpoint_time=bindparam("checkpoint_time"),
    )
)


def _is_lock_busy(exc: OperationalError) -> bool:
    """Whether ``exc`` says another transaction holds a lock (SQLite busy, PostgreSQL 55P03)."""
    if getattr(exc.orig, "sqlite_errorcode", None) == sqlite3.SQLITE_BUSY:
        return True
    return getattr(exc.orig, "sqlstate", None) == "55P03"


class _Queued(NamedTuple):
    """An entry as queued: checked and encoded (a bad field fails the caller, not the
    flusher); the subject's HMAC and the chaining are the flusher's work."""

    at: float
    kind: EntryKind
    actor: str
    subject: str | None
    fields: str
    #: Resolved with the entry's seq once written (its appender waits for it).
    ticket: Future[int] | None = None


class _Prepared(NamedTuple):
    at: str
    kind: str
    actor: str
    subject_ref: str | None
    fields: str


class StoredEntry(NamedTuple):
    """An entry as stored."""

    seq: int
    at: str
    kind: str
    actor: str
    subject_ref: str | None
    fields: str
    prev_hash: str
    hash: str


class AuditLog:
    """The tamper-evident audit log in the store: append, flush, checkpoint."""

    def __init__(
        self,
        engine: Engine,
        keys: KeyRing,
        *,
        refs: SubjectRefs | None = None,
        checkpoint_every: int = 1000,
        checkpoint_interval_s: float = 10.0,
        flush_interval_s: float = 0.1,
        flush_at: int = 1000,
        max_buffered: int = 100_000,
        background: bool = True,
    ) -> None:
        if checkpoint_every < 1:
            raise ValueError("checkpoint_every must be at least 1")
        self.engine = engine
        self.keys = keys
        # The audit key lives with the platform's other keys: $DATA_DIR/keys/audit.key.
        self.refs = refs or SubjectRefs(load_or_create_key(keys.directory / "audit.key"))
        self.checkpoint_every = checkpoint_every
        self.checkpoint_interval_s = checkpoint_interval_s
        self.flush_interval_s = flush_interval_s
        self.flush_at = flush_at
        self.max_buffered = max_buffered
        self._sqlite = engine.dialect.name == "sqlite"
        # For ``try_flush``: on SQLite a twin engine that never waits for the write lock.
        self._nowait_engine = sqlite_nowait_engine(engine) if self._sqlite else engine
        self._wal_owed = False  # try_flush wrote since the flusher last checkpointed the WAL
        # A deque needs no lock: append and popleft are atomic, so the hot path (a decision)
        # costs one append, and the flusher drains from the other end meanwhile.
        self._queue: deque[_Queued | Decision] = deque()
        self._at_cache: dict[float, str] = {}
        self._flush_lock = threading.Lock()  # one writer per log instance at a time
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        if background:
            self._thread = threading.Thread(target=self._run, name="audit-flusher", daemon=True)
            self._thread.start()

    # -- appending -----------------------------------------------------------------------------

    def append(
        self, kind: EntryKind, *, actor: str, subject: str | None = None, **fields: Any
    ) -> None:
        """Queue an entry; the flusher writes it within ``flush_interval_s``."""
        check_fields(kind, fields, subject is not None)
        self._enqueue(_Queued(time.time(), kind, actor, subject, encode_fields(fields)))

    def append_now(
        self, kind: EntryKind, *, actor: str, subject: str | None = None, **fields: Any
    ) -> int:
        """Write an entry (and everything queued before it) now; return its seq.

        Group commit: the entry joins the queue, and whichever caller takes the write lock
        first writes every queued entry in one transaction; the others find theirs written
        and return. None returns before its entry is in the store.
        """
        ticket = self.append_durable(kind, actor=actor, subject=subject, **fields)
        with self._flush_lock:
            if not ticket.done():
                self._flush_locked([])
        return ticket.result()

    def append_durable(
        self,
        kind: EntryKind,
        *,
        actor: str,
        subject: str | None = None,
        wake: bool = True,
        **fields: Any,
    ) -> Future[int]:
        """Queue an entry and wake the writer; the future resolves to its seq once written.

        For callers that must not act before their entry is stored (a partner read) but need
        not hold a thread while waiting: ``await asyncio.wrap_future(ticket)``. Entries queued
        meanwhile by other requests share the writer's next transaction.
        """
        check_fields(kind, fields, subject is not None)
        ticket: Future[int] = Future()
        self._queue.append(
            _Queued(time.time(), kind, actor, subject, encode_fields(fields), ticket)
        )
        if wake:
            self._wake.set()
        return ticket

    def wake(self) -> None:
        """Have the flusher write what is queued now, not at its next tick."""
        self._wake.set()

    def append_many(self, new: Iterable[NewEntry]) -> int:
        """Write ``new`` after everything queued, in one transaction; return the last seq."""
        return self._flush(self._checked(new))

    def append_in(self, conn: Connection, new: Iterable[NewEntry]) -> int:
        """Chain ``new`` inside the caller's write transaction on ``conn``; return the last seq.

        The entries commit or roll back with the caller's own writes: an ingest batch and its
        record are one transaction, so a crash leaves both or neither. The head row is locked
        until the caller commits (PostgreSQL ``FOR UPDATE``); on SQLite the caller's transaction
        must already hold the write lock (it has written), or its commit fails and is retried.
        Entries queued with ``append`` are not written here: they follow with the flusher.
        """
        items = self._checked(new)
        if not items:
            return 0
        head = conn.execute(
            select(tables.head).where(tables.head.c.id == tables.HEAD_ID).with_for_update()
        ).one()
        return self._chain(conn, head, [self._prepare(item) for item in items])

    def _checked(self, new: Iterable[NewEntry]) -> list[_Queued | Decision]:
        now = time.time()
        items: list[_Queued | Decision] = []
        for entry in new:
            check_fields(entry.kind, entry.fields, entry.subject is not None)
            at = now if entry.at is None else entry.at.timestamp()
            fields = encode_fields(entry.fields)
            items.append(_Queued(at, entry.kind, entry.actor, entry.subject, fields))
        return items

    def record_decision(self, decision: Decision) -> None:
        """Queue a decision of the decision point (allow or deny)."""
        self._enqueue(decision)

    def _enqueue(self, item: _Queued | Decision) -> None:
        queue = self._queue
        queue.append(item)
        waiting = len(queue)
        if waiting >= self.flush_at:
            self._wake.set()
            if waiting >= self.max_buffered:
                self._flush([])  # back-pressure: the caller waits for the store

    # -- writing -------------------------------------------------------------------------------

    def flush(self) -> int:
        """Write everything queued; return the head seq written (0 when nothing was queued)."""
        return self._flush([])

    def try_flush(self) -> bool:
        """Write everything queued now, unless another writer holds the log (this process's
        flusher, or another process's transaction): then write nothing and return False at
        once rather than wait. For an event loop, which must not block on a lock."""
        if not self._flush_lock.acquire(blocking=False):
            return False
        try:
            if self._flush_locked([], wait=False):
                self._wal_owed = self._sqlite  # its commit skipped the WAL checkpoint
        except HeadBusyError:
            return False
        finally:
            self._flush_lock.release()
        return True

    def _flush(self, extra: list[_Queued | Decision]) -> int:
        with self._flush_lock:
            return self._flush_locked(extra)

    def _flush_locked(self, extra: list[_Queued | Decision], wait: bool = True) -> int:
        queue = self._queue
        batch = [queue.popleft() for _ in range(len(queue))]
        batch.extend(extra)
        if not batch:
            return 0
        try:
            last = self._write([self._prepare(item) for item in batch], wait)
        except BaseException:
            # Put the queued part back in front: nothing is lost, order is kept.
            queue.extendleft(reversed(batch[: len(batch) - len(extra)]))
            raise
        first = last - len(batch) + 1  # one transaction under the head lock: consecutive
        for index, item in enumerate(batch):
            if isinstance(item, _Queued) and item.ticket is not None:
                # A ticket whose appender stopped waiting is cancelled; its entry is stored.
                with suppress(InvalidStateError):
                    item.ticket.set_result(first + index)
        return last

    def _prepare(self, item: _Queued | Decision) -> _Prepared:
        if isinstance(item, Decision):
            fields: dict[str, Any] = {
                "allowed": item.allowed,
                "reason": item.reason,
                "partner": item.partner,
                "purpose": item.purpose,
                "category": item.category,
            }
            if item.consent_id is not None:
                fields["consent_id"] = item.consent_id
            if item.data_from is not None:
                fields["data_from"] = item.data_from
            if item.data_to is not None:
                fields["data_to"] = item.data_to
            if item.withheld:
                # Only when true: an entry without it is a refusal, as every older entry is.
                fields["withheld"] = True
            return _Prepared(
                timestamp(item.decided_at),
                EntryKind.DECISION,
                item.partner,
                self.refs.of(item.subject),
                encode_fields(fields),
            )
        at = self._at_cache.get(item.at)
        if at is None:
            # Entries of one append_many share their moment: format it once.
            at = self._at_cache[item.at] = timestamp(datetime.fromtimestamp(item.at, UTC))
            if len(self._at_cache) > 64:
                self._at_cache.clear()
        return _Prepared(
            at,
            item.kind,
            item.actor,
            None if item.subject is None else self.refs.of(item.subject),
            item.fields,
        )

    @contextmanager
    def _locked_head(self, wait: bool = True) -> Iterator[tuple[Connection, Any]]:
        """A write transaction holding the head row; yields (connection, head row).

        Without ``wait``, HeadBusyError as soon as another transaction holds it."""
        engine = self.engine if wait else self._nowait_engine
        with engine.connect() as conn:
            try:
                if self._sqlite:
                    # The write lock up front: a second appender waits here (busy timeout)
                    # rather than reading the same head and failing at COMMIT.
                    conn.exec_driver_sql("BEGIN IMMEDIATE")
                row = conn.execute(_HEAD_FOR_UPDATE if wait else _HEAD_NOWAIT).one()
            except OperationalError as exc:
                conn.rollback()
                if wait or not _is_lock_busy(exc):
                    raise
                raise HeadBusyError from None
            try:
                yield conn, row
                conn.commit()
            except BaseException:
                conn.rollback()
                raise

    def _write(self, batch: list[_Prepared], wait: bool = True) -> int:
        with self._locked_head(wait) as (conn, head):
            return self._chain(conn, head, batch)

    def _chain(self, conn: Connection, head: Any, batch: list[_Prepared]) -> int:
        """Insert ``batch`` after ``head`` (locked by the caller), sign what is due, move it."""
        key = self.keys.signing_key
        seq, prev = head.seq, head.hash
        cp_seq, cp_hash, cp_time = (
            head.checkpoint_seq,
            head.checkpoint_hash,
            head.checkpoint_time,
        )
        now = time.time()
        now_at = timestamp()
        rows = []
        signed: list[Checkpoint] = []
        for e in batch:
            seq += 1
            digest = entry_hash(seq, e.at, e.kind, e.actor, e.subject_ref, e.fields, prev)
            rows.append(
                {
                    "seq": seq,
                    "at": e.at,
                    "kind": e.kind,
                    "actor": e.actor,
                    "subject_ref": e.subject_ref,
                    "fields": e.fields,
                    "prev_hash": prev,
                    "hash": digest,
                }
            )
            prev = digest
            if seq - cp_seq >= self.checkpoint_every:
                signed.append(sign_checkpoint(key, seq, digest, now_at, cp_seq, cp_hash))
                cp_seq, cp_hash, cp_time = seq, digest, now
        if seq > cp_seq and now - cp_time >= self.checkpoint_interval_s:
            signed.append(sign_checkpoint(key, seq, prev, now_at, cp_seq, cp_hash))
            cp_seq, cp_hash, cp_time = seq, prev, now
        conn.execute(_INSERT_ENTRIES, rows)
        self._store_checkpoints(conn, signed)
        conn.execute(
            _MOVE_HEAD,
            {
                "seq": seq,
                "hash": prev,
                "checkpoint_seq": cp_seq,
                "checkpoint_hash": cp_hash,
                "checkpoint_time": cp_time,
            },
        )
        count_entries(e.kind for e in batch)  # written, unless the transaction then fails
        return int(seq)

    @staticmethod
    def _store_checkpoints(conn: Connection, signed: list[Checkpoint]) -> None:
        if signed:
            conn.execute(
                insert(tables.checkpoints),
                [
                    {"seq": c.seq, "hash": c.hash, "at": c.at, "signature": c.signature}
                    for c in signed
                ],
            )

    def checkpoint(self, *, older_than_s: float = 0.0) -> Checkpoint | None:
        """Flush, then sign the head unless a checkpoint already covers it (or is younger than
        ``older_than_s``); return the new checkpoint, if one was made."""
        self.flush()
        with self._flush_lock:
            with self.engine.connect() as conn:
                # A plain read first: an idle log must not take the write lock every tick.
                head = conn.execute(select(tables.head)).one()
            if head.seq <= head.checkpoint_seq or time.time() - head.checkpoint_time < older_than_s:
                return None
            with self._locked_head() as (conn, head):
                if head.seq <= head.checkpoint_seq:
                    return None  # another process signed it meanwhile
                made = sign_checkpoint(
                    self.keys.signing_key,
                    head.seq,
                    head.hash,
                    timestamp(),
                    head.checkpoint_seq,
                    head.checkpoint_hash,
                )
                self._store_checkpoints(conn, [made])
                conn.execute(
                    update(tables.head)
                    .where(tables.head.c.id == tables.HEAD_ID)
                    .values(
                        checkpoint_seq=made.seq,
                        checkpoint_hash=made.hash,
                        checkpoint_time=time.time(),
                    )
                )
            return made

    # -- the flusher ---------------------------------------------------------------------------

    def _run(self) -> None:
        last_check = time.monotonic()
        while not self._stop.is_set():
            self._wake.wait(self.flush_interval_s)
            self._wake.clear()
            try:
                self.flush()
                # The time-based checkpoint costs a read of the head: once per interval, not
                # on every wake (under load the writer wakes for every few entries).
                if time.monotonic() - last_check >= min(1.0, self.checkpoint_interval_s):
                    last_check = time.monotonic()
                    self.checkpoint(older_than_s=self.checkpoint_interval_s)
                    if self._wal_owed:
                        self._wal_owed = False
                        checkpoint_wal(self.engine)  # what try_flush's commits left to us
            except Exception:
                # Entries stay queued (see _flush); the next tick retries.
                log.exception("audit log: flushing failed; retrying")
                self._stop.wait(min(1.0, 10 * self.flush_interval_s))

    def close(self) -> None:
        """Stop the flusher and write what is queued."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        self.flush()
        if self._nowait_engine is not self.engine:
            self._nowait_engine.dispose()

    def __enter__(self) -> AuditLog:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- reading -------------------------------------------------------------------------------

    def entries_of(self, subject: str, *, limit: int = 1000) -> list[StoredEntry]:
        """The entries naming ``subject`` (by its reference), oldest first: the data tracker."""
        self.flush()
        e = tables.entries
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(e)
                .where(e.c.subject_ref == self.refs.of(subject))
                .order_by(e.c.seq)
                .limit(limit)
            ).all()
        return [StoredEntry(*row) for row in rows]


def decision_recorder(audit: AuditLog) -> Callable[[Decision], None]:
    """An ``on_decision`` for ``DecisionPoint``: queues every decision (see the module doc)."""
    return audit.record_decision
