"""The ingest worker: consume domain topics, validate, project in one transaction per batch."""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import orjson
from prometheus_client import Counter, Gauge, Histogram
from sqlalchemy import Engine
from sqlalchemy.exc import IntegrityError, OperationalError

from broker.audit import AuditLog
from broker.ingest.auditing import batch_entries
from broker.ingest.heartbeat import Heartbeat
from broker.ingest.held import HeldEvents, service_subject
from broker.ingest.provenance import SourceAuthenticator
from broker.registry.catalogue import SchemaRegistry
from broker.store import ledger
from broker.store.projections import project
from consent.vault import SubjectVault
from contract.bus import (
    Bus,
    BusError,
    Consumer,
    OutRecord,
    Record,
    consumer_lag,
    dlq_topic,
    next_offsets,
)
from contract.cloudevents import CloudEvent
from contract.deadletter import DeadLetterReason, Rejection, dead_letter, origin_of
from contract.domains import DOMAINS
from contract.validation import EventValidator

log = logging.getLogger(__name__)

INGESTED = Counter("tsunagu_ingest_events_total", "Events projected", ["topic", "type"])
DUPLICATES = Counter("tsunagu_ingest_duplicates_total", "Redelivered events skipped", ["topic"])
DEAD_LETTERS = Counter(
    "tsunagu_dead_letters_total", "Events sent to the dead-letter topic", ["topic", "reason"]
)
ERASED_SUBJECT_EVENTS = Counter(
    "tsunagu_ingest_erased_subject_events_total",
    "Events about erased subjects: recorded in the ledger, projected nowhere",
    ["topic", "type"],
)
BATCH_SECONDS = Histogram("tsunagu_ingest_batch_seconds", "Time to validate and project a batch")
CONSUMER_LAG = Gauge(
    "tsunagu_consumer_lag",
    "Records of the partition the consumer group has not committed: end minus committed offset",
    ["group", "topic", "partition"],
    # Every member reads the whole group's lag: across processes, the latest reading holds.
    multiprocess_mode="mostrecent",
)
#: Seconds between two readings of the group's lag (TSUNAGU_BUS_PROBE_INTERVAL_S): each
#: is two admin requests per topic on Kafka.
LAG_INTERVAL_S = 30.0
#: How long a stopping worker waits for its lag reporter (within one read of the bus).
LAG_JOIN_TIMEOUT_S = 10.0
#: Seconds between two sweeps of the held events (releasing the linked, discarding the old).
HELD_SWEEP_INTERVAL_S = 5.0

DEFAULT_GROUP = "tsunagu-ingest"
#: Failures of the store or the bus, not of a record: the same batch is retried until they pass.
TRANSIENT = (OperationalError, BusError)
#: Times a batch is retried on a unique-key conflict (two members projecting an overlapping
#: batch during a rebalance) before its records are judged one by one.
CONFLICT_RETRIES = 3


@dataclass(frozen=True, slots=True)
class BatchOutcome:
    """What one batch did."""

    projected: int
    duplicates: int
    rejected: int
    erased: int = 0  # about erased subjects: taken in, projected nowhere
    held: int = 0  # under a service subject no resident is linked with: held sealed


class IngestWorker:
    """One member of the ingest consumer group."""

    def __init__(
        self,
        bus: Bus,
        engine: Engine,
        registry: SchemaRegistry,
        vault: SubjectVault,
        *,
        group: str = DEFAULT_GROUP,
        topics: Sequence[str] | None = None,
        topic_prefix: str = "",
        batch_size: int = 2000,
        max_event_bytes: int = 1024 * 1024,
        linger_s: float = 0.02,
        refresh_registry: Callable[[], bool] | None = None,
        authenticate: SourceAuthenticator | None = None,
        audit: AuditLog | None = None,
        heartbeat: Heartbeat | None = None,
        lag_interval_s: float = LAG_INTERVAL_S,
        held: HeldEvents | None = None,
        held_sweep_interval_s: float = HELD_SWEEP_INTERVAL_S,
    ) -> None:
        self.bus = bus
        #: Resolves events under a service's subject to the resident linked with it, holds
        #: the rest (the platform always sets it; None only where a test or benchmark drives
        #: the pipeline alone with residents' ids).
        self.held = held
        self.held_sweep_interval_s = held_sweep_interval_s
        #: Where the worker shows it is turning, for readiness in every process.
        self.heartbeat = heartbeat
        #: Where each batch and each dead letter is recorded, in the batch's own transaction
        #: (the platform always sets it; None only where a test or benchmark drives the
        #: pipeline alone).
        self.audit = audit
        #: Checks each record's connector token against its event's source (the platform
        #: always sets it; None only where a test drives the pipeline alone).
        self.authenticate = authenticate
        self.engine = engine
        self.vault = vault
        self.validator = EventValidator(registry, max_event_bytes, topic_prefix, refresh_registry)
        self.group = group
        # Every domain's topic by default, read when the worker is made (plug-ins included).
        self.topics = [topic_prefix + t for t in (DOMAINS.topics() if topics is None else topics)]
        self.batch_size = batch_size
        self.linger_s = linger_s
        self.lag_interval_s = lag_interval_s
        #: Records that failed alone with an error nothing foresaw, by origin: the next
        #: ``process`` of them dead-letters them as ``internal_error`` instead.
        self._condemned: dict[str, Rejection] = {}
        #: Origins of records being dead-lettered that way: if that fails too, the last resort.
        self._dead_lettering: set[str] = set()

    def process(self, records: Sequence[Record]) -> BatchOutcome:
        """Dead-letter the bad records, then project the good ones in one transaction."""
        accepted: list[tuple[str, CloudEvent]] = []
        rejected: dict[str, list[OutRecord]] = {}
        rejections: list[tuple[Record, Rejection]] = []
        senders: dict[str, str] = {}  # event id -> connector, for events under a service subject
        for record in records:
            result = self._judge(record)
            if isinstance(result, Rejection):
                rejected.setdefault(record.topic, []).append(dead_letter(record, result))
                rejections.append((record, result))
                DEAD_LETTERS.labels(record.topic, result.reason.value).inc()
            else:
                accepted.append((record.topic, result))
                if self.authenticate is not None and service_subject(result) is not None:
                    senders[result.id] = self.authenticate.connector_of(record)
        # Dead letters are published before the offsets move, so a crash redelivers rather than
        # loses them; their origin header lets a reader drop such a repeat.
        for topic, dlq_records in rejected.items():
            self.bus.publish(dlq_topic(topic), dlq_records)
        events = [e for _, e in accepted]
        # Under sealing(): an erasure in this process waits for this batch, then deletes its rows.
        with self.vault.sealing(), self.engine.begin() as conn:
            fresh = ledger.claim(conn, events)
            ready, held = fresh, []
            if self.held is not None:
                resolution = self.held.resolve(conn, fresh, senders)
                ready, held = resolution.ready, resolution.held
            erased = project(conn, ready, self.vault)
            fresh_ids = {e.id for e in fresh}
            erased_ids = {e.id for e in erased}
            held_ids = {e.id for e in held}
            if self.audit is not None:
                # In the same transaction: the record of a batch exists exactly when its
                # projection does, and a redelivered batch is recorded as duplicates.
                self.audit.append_in(
                    conn,
                    batch_entries(records, accepted, rejections, fresh_ids, erased_ids, held_ids),
                )
        projected = collections.Counter(
            (topic, e.type)
            for topic, e in accepted
            if e.id in fresh_ids and e.id not in erased_ids and e.id not in held_ids
        )
        for (topic, event_type), n in projected.items():
            INGESTED.labels(topic, event_type).inc(n)
        if erased:
            self._count_erased(accepted, erased_ids)
        duplicates = collections.Counter(topic for topic, e in accepted if e.id not in fresh_ids)
        for topic, n in duplicates.items():
            DUPLICATES.labels(topic).inc(n)
        n_rejected = sum(len(v) for v in rejected.values())
        return BatchOutcome(
            len(fresh) - len(erased) - len(held),
            len(accepted) - len(fresh),
            n_rejected,
            len(erased),
            len(held),
        )

    def _judge(self, record: Record) -> CloudEvent | Rejection:
        """The record's event if it may be projected, else why not; never raises."""
        condemned = self._condemned.pop(origin_of(record), None)
        if condemned is not None:
            return condemned
        try:
            result = self.validator.check_record(record)
            if self.authenticate is not None and not isinstance(result, Rejection):
                result = self.authenticate.check(record, result) or result
            return result
        except Exception as exc:  # one record's fault: it goes to the dead letters, not us
            return _internal_error(record, exc)

    @staticmethod
    def _count_erased(accepted: Sequence[tuple[str, CloudEvent]], erased_ids: set[str]) -> None:
        counts = collections.Counter((topic, e.type) for topic, e in accepted if e.id in erased_ids)
        for (topic, event_type), n in counts.items():
            ERASED_SUBJECT_EVENTS.labels(topic, event_type).inc(n)
            # Never the subject: they asked to be forgotten, the log must not remember them.
            log.info("%d %s event(s) about erased subjects taken in, not projected", n, event_type)

    def run(self, stop: threading.Event, poll_timeout_s: float = 0.5) -> None:
        """Consume until ``stop`` is set; offsets are committed only after each transaction."""
        consumer = self.bus.consumer(self.group, self.topics)
        done = threading.Event()
        # On a thread of its own: a worker stuck on a batch (store down) must still show its
        # lag growing, and the bus's offset reads must not slow the batches down.
        lag = threading.Thread(
            target=self._report_lag, args=(stop, done), name="ingest-lag", daemon=True
        )
        lag.start()
        why = "stopped"
        next_sweep = time.monotonic()
        try:
            while not stop.is_set():
                if self.heartbeat is not None:
                    self.heartbeat.beat()
                if self.held is not None and time.monotonic() >= next_sweep:
                    self._sweep_held()
                    next_sweep = time.monotonic() + self.held_sweep_interval_s
                try:
                    records = self._fill(consumer, consumer.poll(self.batch_size, poll_timeout_s))
                except BusError as exc:
                    log.warning("bus unavailable, polling again in 1 s: %s", exc)
                    stop.wait(1.0)
                    continue
                if not records:
                    continue
                started = time.perf_counter()
                self._process_with_retry(records, stop)
                try:
                    consumer.commit(next_offsets(records))
                except BusError as exc:
                    # The batch is projected; uncommitted, it comes again and the ledger skips it.
                    log.warning("offset commit failed, the batch will be redelivered: %s", exc)
                BATCH_SECONDS.observe(time.perf_counter() - started)
        except BaseException as exc:
            why = type(exc).__name__
            raise
        finally:
            if self.heartbeat is not None:
                self.heartbeat.stopped(why)
            done.set()
            # The worker owns its lag reporter: it ends with the worker (one bus read at most).
            lag.join(LAG_JOIN_TIMEOUT_S)
            consumer.close()

    def _sweep_held(self) -> None:
        """Release the held events now linked, discard the expired; a failure (the store
        away, another worker releasing the same events) waits for the next sweep."""
        assert self.held is not None
        try:
            released, _ = self.held.sweep(self.engine, self.vault, self.audit)
        except (OperationalError, IntegrityError) as exc:
            log.warning("held events not swept, trying again later: %s", exc)
            return
        if released:
            log.info("%d held event(s) released: their subjects were linked", released)

    def _report_lag(self, stop: threading.Event, done: threading.Event) -> None:
        """Publish the whole group's lag per partition (every member does: take the max)."""
        failing = False
        while not (stop.is_set() or done.is_set()):
            try:
                lag = consumer_lag(self.bus, self.group, self.topics)
            except BusError as exc:
                if not (failing or done.is_set()):
                    log.warning("consumer lag unavailable, retrying: %s", exc)
                failing = True
            else:
                failing = False
                for tp, n in lag.items():
                    CONSUMER_LAG.labels(self.group, tp.topic, str(tp.partition)).set(n)
            done.wait(self.lag_interval_s)

    def _fill(self, consumer: Consumer, records: list[Record]) -> list[Record]:
        # Like Kafka's fetch.max.wait: a short wait for a fuller batch saves a transaction
        # and an offset commit per handful of records while producers are busy.
        deadline = time.monotonic() + self.linger_s
        while records and len(records) < self.batch_size:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            more = consumer.poll(self.batch_size - len(records), left)
            if not more:
                break
            records += more
        return records

    def _process_with_retry(self, records: Sequence[Record], stop: threading.Event) -> None:
        """Process ``records`` until done: the store or bus failing is waited out; any other
        error is a record's, and the batch is split until that record is dead-lettered alone
        as ``internal_error`` (the worker itself never dies on a record)."""
        delay = 0.1
        conflicts = 0
        while True:
            try:
                self.process(records)
                return
            except Exception as exc:
                if stop.is_set():
                    raise
                if isinstance(exc, IntegrityError):
                    conflicts += 1
                if isinstance(exc, TRANSIENT) or (
                    isinstance(exc, IntegrityError) and conflicts <= CONFLICT_RETRIES
                ):
                    # The store or the dead-letter topic is briefly unavailable, or another
                    # member projected an overlapping batch during a rebalance: retry the same
                    # batch (the consumer has moved past it); the ledger makes it idempotent.
                    log.warning("batch failed, retrying in %.1fs: %s", delay, exc)
                    stop.wait(delay)
                    delay = min(delay * 2, 5.0)
                    continue
                self._isolate(records, exc, stop)
                return

    def _publish_alone(self, record: Record, rejection: Rejection, stop: threading.Event) -> None:
        """The last resort: the dead letter published by itself, retried while the bus fails."""
        while not stop.is_set():
            try:
                self.bus.publish(dlq_topic(record.topic), [dead_letter(record, rejection)])
                DEAD_LETTERS.labels(record.topic, rejection.reason.value).inc()
                return
            except BusError as exc:
                log.warning("dead letter not published, retrying in 1 s: %s", exc)
                stop.wait(1.0)

    def _isolate(self, records: Sequence[Record], exc: Exception, stop: threading.Event) -> None:
        """Find the record(s) behind ``exc`` by halving the batch; each fails alone."""
        if len(records) == 1:
            (record,) = records
            origin = origin_of(record)
            rejection = _internal_error(record, exc)
            if origin in self._dead_lettering:
                # Even its dead letter failed (its audit entry could not be written): keep it
                # in the dead letters unaudited rather than stop the partition.
                log.critical(
                    "record %s: its dead letter failed too (%s); kept without an audit entry",
                    origin,
                    type(exc).__name__,
                )
                self._publish_alone(record, rejection, stop)
                return
            log.error(
                "record %s failed alone (%s): dead-lettered as internal_error",
                origin,
                type(exc).__name__,
                exc_info=exc,
            )
            self._condemned[origin] = rejection
            self._dead_lettering.add(origin)
            try:
                self._process_with_retry(records, stop)
            finally:
                self._condemned.pop(origin, None)
                self._dead_lettering.discard(origin)
            return
        log.warning(
            "a batch of %d failed (%s): retrying it in halves to find the record at fault",
            len(records),
            type(exc).__name__,
        )
        middle = len(records) // 2
        self._process_with_retry(records[:middle], stop)
        self._process_with_retry(records[middle:], stop)


def _internal_error(record: Record, exc: BaseException) -> Rejection:
    """The rejection of a record whose handling raised ``exc``: its type, never its message
    (which may quote the event's personal data), and the event's id and source if legible."""
    source = event_id = ""
    try:
        doc = orjson.loads(record.value)
        if isinstance(doc, dict):
            given_source, given_id = doc.get("source"), doc.get("id")
            source = given_source if isinstance(given_source, str) else ""
            event_id = given_id if isinstance(given_id, str) else ""
    except Exception:  # illegible: the dead letter keeps the bytes
        pass
    return Rejection(
        DeadLetterReason.INTERNAL_ERROR,
        f"the platform failed on this record ({type(exc).__name__}); it is kept here for the "
        "operator, and the partition has moved on",
        source=source.replace("\x00", ""),
        event_id=event_id.replace("\x00", ""),
    )
