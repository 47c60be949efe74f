"""The Kafka bus: kafka-python 3 against Apache Kafka 4.x (tested on the real broker).

Choices worth knowing:

* Topics missing at ``publish`` or ``consumer`` time are created through the admin API with
  ``default_partitions`` partitions, as the SQLite log does, rather than left to the broker's
  auto-creation (whose partition count we do not control).
* Producers are idempotent with ``acks=all``: a retry after a lost acknowledgement or a broker
  failover never writes a record twice. Consumers read ``read_committed`` and join their group
  with the cooperative-sticky assignor (KIP-429), so a member joining or leaving moves only the
  partitions that change owner and the others keep working through the rebalance.
* Each consumer runs its ``KafkaConsumer`` on a background thread that polls continuously and
  buffers records (bounded; partitions are paused when the buffer is full). kafka-python 3.0
  drops a JoinGroup/SyncGroup result that arrives while no ``poll()`` is in progress and joins
  again, so a consumer whose application spends time between polls (or two consumers polled
  from one thread) can miss every rebalance and never get partitions. Polling all the time on
  a thread of its own avoids that, and heartbeats never wait for the application.
* Records of partitions revoked in a rebalance are dropped from the buffer; the new owner reads
  them again from the committed offset (at least once). Should this member get a revoked
  partition back, it seeks it back to its first record not yet committed: otherwise what was
  dropped would be skipped, and lost once a later commit moved past it.
* A commit refused because of a rebalance (CommitFailedError, UNKNOWN_MEMBER_ID,
  ILLEGAL_GENERATION, REBALANCE_IN_PROGRESS) is logged, not raised: the records are delivered
  again to whoever owns the partition. Other commit failures (broker unreachable) raise BusError.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any
from urllib.parse import parse_qsl, unquote

from kafka import (
    ConsumerRebalanceListener,
    KafkaAdminClient,
    KafkaConsumer,
    KafkaProducer,
    OffsetAndMetadata,
)
from kafka import TopicPartition as KafkaTopicPartition
from kafka.admin import OffsetSpec
from kafka.coordinator.assignors.cooperative_sticky import CooperativeStickyAssignor
from kafka.errors import (
    CommitFailedError,
    GroupAuthorizationFailedError,
    IllegalGenerationError,
    KafkaError,
    KafkaTimeoutError,
    RebalanceInProgressError,
    TopicAuthorizationFailedError,
    UnknownMemberIdError,
)

from broker.bus.sqlite_log import check_topic_name
from contract.bus import BusError, OutRecord, Record, TopicPartition, TopicSpec

log = logging.getLogger(__name__)

_TOPIC_ALREADY_EXISTS = 36
_UNKNOWN_TOPIC = 3
_TOPIC_AUTHORIZATION_FAILED = 29


class _StaleProducer(BusError):
    """A producer that had worked before failed; a fresh one may succeed."""


#: Cooperative sticky only: kafka-python cannot mix eager and cooperative assignors in one
#: member. It balances over all topics (range, the default, would give the extra partitions
#: of every topic to the same member) and keeps partitions where they are across rebalances.
_ASSIGNORS = (CooperativeStickyAssignor,)

#: Refusals of the broker's ACLs, which no retry overcomes.
_DENIED = (GroupAuthorizationFailedError, TopicAuthorizationFailedError)

#: Commit failures that only mean "a rebalance happened": the records come again.
_REBALANCE_ERRORS = (
    CommitFailedError,
    IllegalGenerationError,
    RebalanceInProgressError,
    UnknownMemberIdError,
)


class KafkaBus:
    """The bus on a Kafka cluster (or any Kafka-protocol broker)."""

    def __init__(
        self,
        bootstrap_servers: Sequence[str],
        *,
        client_id: str = "tsunagu",
        default_partitions: int = 4,
        replication_factor: int = -1,
        session_timeout_ms: int = 6000,
        heartbeat_interval_ms: int = 2000,
        publish_timeout_s: float = 30.0,
        request_timeout_ms: int = 30000,
        linger_ms: int = 5,
        batch_size: int = 1 << 20,
        compression_type: str | None = None,
        max_poll_records: int = 500,
        buffer_records: int = 5000,
        check_crcs: bool = True,
        reconnect_backoff_max_ms: int = 2000,
        security: Mapping[str, str] | None = None,
    ) -> None:
        if not bootstrap_servers or not all(bootstrap_servers):
            raise BusError("KafkaBus needs at least one bootstrap server host:port")
        self.bootstrap_servers = list(bootstrap_servers)
        self.client_id = client_id
        self.default_partitions = default_partitions
        # -1: the broker's default.replication.factor (Kafka >= 2.4).
        self.replication_factor = replication_factor
        self.session_timeout_ms = session_timeout_ms
        self.heartbeat_interval_ms = heartbeat_interval_ms
        self.publish_timeout_s = publish_timeout_s
        self.request_timeout_ms = request_timeout_ms
        self.linger_ms = linger_ms
        self.batch_size = batch_size
        self.compression_type = compression_type
        self.max_poll_records = max_poll_records
        self.buffer_records = buffer_records
        # kafka-python checks CRCs in pure Python unless the `crc32c` package is installed
        # (about 5x slower fetches); turning checks off is the other way out.
        self.check_crcs = check_crcs
        self.reconnect_backoff_max_ms = reconnect_backoff_max_ms
        #: kafka-python's security settings (SASL mechanism and credentials, TLS files).
        self.security = dict(security or {})
        self._lock = threading.Lock()
        self._admin_client: Any = None
        self._producer_client: Any = None
        self._known_topics: dict[str, int] = {}
        self._closed = False

    # -- clients (created lazily, so a bus can be built while the broker is still down) ------

    def _common(self) -> dict[str, Any]:
        return {
            "bootstrap_servers": self.bootstrap_servers,
            "request_timeout_ms": self.request_timeout_ms,
            # kafka-python backs off up to 30 s between reconnects; after an outage that left
            # consumers idle for ~30 s more. Java clients stop at 1 s.
            "reconnect_backoff_max_ms": self.reconnect_backoff_max_ms,
            **self.security,
        }

    def _admin(self) -> Any:
        with self._lock:
            self._check_open()
            if self._admin_client is None:
                try:
                    self._admin_client = KafkaAdminClient(
                        client_id=f"{self.client_id}-admin", **self._common()
                    )
                except KafkaError as exc:
                    raise BusError(f"Kafka at {self._where()} is unreachable: {exc}") from exc
            return self._admin_client

    def _producer(self) -> tuple[Any, bool]:
        """The shared producer, and whether it was just created."""
        with self._lock:
            self._check_open()
            fresh = self._producer_client is None
            if fresh:
                try:
                    self._producer_client = KafkaProducer(
                        client_id=f"{self.client_id}-producer",
                        acks="all",
                        enable_idempotence=True,
                        linger_ms=self.linger_ms,
                        batch_size=self.batch_size,
                        max_request_size=max(self.batch_size, 1 << 20),
                        compression_type=self.compression_type,
                        # Bound the wait for metadata when the broker is down, and retries.
                        max_block_ms=int(self.publish_timeout_s * 1000),
                        delivery_timeout_ms=max(
                            int(self.publish_timeout_s * 1000),
                            self.request_timeout_ms + self.linger_ms,
                        ),
                        **self._common(),
                    )
                except KafkaError as exc:
                    raise BusError(f"Kafka at {self._where()} is unreachable: {exc}") from exc
            return self._producer_client, fresh

    def _where(self) -> str:
        return ",".join(self.bootstrap_servers)

    def _check_open(self) -> None:
        if self._closed:
            raise BusError("the Kafka bus is closed")

    # -- topics -------------------------------------------------------------------------------

    def create_topics(self, specs: Sequence[TopicSpec]) -> None:
        """Create topics that do not exist yet (idempotent; existing ones are left as they are)."""
        if not specs:
            return
        for spec in specs:
            check_topic_name(spec.name)
            if spec.partitions < 1:
                raise BusError(f"topic {spec.name!r}: partitions must be at least 1")
            if spec.replication_factor is not None and spec.replication_factor < 1:
                raise BusError(f"topic {spec.name!r}: replication factor must be at least 1")
        new = {
            spec.name: {
                "num_partitions": spec.partitions,
                "replication_factor": self.replication_factor
                if spec.replication_factor is None
                else spec.replication_factor,
                "configs": spec.kafka_configs(),
            }
            for spec in specs
        }
        try:
            result = self._admin().create_topics(new, raise_errors=False, wait_for_metadata=True)
        except KafkaError as exc:
            raise BusError(f"creating topics {sorted(new)} failed: {exc}") from exc
        for topic in result["topics"]:
            code = topic["error_code"]
            if code not in (0, _TOPIC_ALREADY_EXISTS):
                raise BusError(
                    f"creating topic {topic['name']!r} failed: error {code}"
                    f" {topic.get('error_message') or ''}".rstrip()
                )

    def admin(self) -> Any:
        """The shared kafka-python admin client (topic administration: ``broker.bus.topics``)."""
        return self._admin()

    def _partitions(self, topic: str, *, create: bool) -> list[int]:
        """Partition ids of ``topic``; creates it with the default count when ``create``."""
        count = self._known_topics.get(topic)
        if count is not None:
            return list(range(count))
        for attempt in range(2):
            try:
                (described,) = self._admin().describe_topics([topic])
            except KafkaError as exc:
                raise BusError(f"describing topic {topic!r} failed: {exc}") from exc
            if described["error_code"] == 0 and described["partitions"]:
                ids = sorted(p["partition_index"] for p in described["partitions"])
                self._known_topics[topic] = len(ids)
                return ids
            if described["error_code"] == _TOPIC_AUTHORIZATION_FAILED:
                raise BusError(
                    f"not authorized for topic {topic!r}: the broker's ACLs do not let these"
                    " credentials use it"
                )
            if described["error_code"] not in (0, _UNKNOWN_TOPIC):
                raise BusError(
                    f"describing topic {topic!r} failed: error {described['error_code']}"
                )
            if not create or attempt:
                break
            self.create_topics([TopicSpec(topic, self.default_partitions)])
        raise BusError(f"unknown topic {topic!r}")

    # -- publish ------------------------------------------------------------------------------

    def publish(self, topic: str, records: Sequence[OutRecord]) -> None:
        """Send records (acks=all) and return once the broker has acknowledged every one."""
        if not records:
            return
        self._partitions(topic, create=True)
        try:
            self._send_all(topic, records)
        except _StaleProducer as exc:
            # Typically the broker forgot our idempotent producer id (expired after
            # producer.id.expiration.ms of silence) and the producer is in a fatal state.
            # One resend on a fresh producer recovers; batches of this call that had
            # succeeded come twice (at least once; ingest drops repeats by event id).
            log.warning("publishing to %s failed (%s); resending with a new producer", topic, exc)
            self._send_all(topic, records)

    def _send_all(self, topic: str, records: Sequence[OutRecord]) -> None:
        producer, fresh = self._producer()
        failure: BaseException | None = None
        pending = False
        try:
            futures = [
                producer.send(topic, key=r.key, value=r.value, headers=list(r.headers) or None)
                for r in records
            ]
            producer.flush(timeout=self.publish_timeout_s)
            pending = any(not f.is_done for f in futures)
            failure = next((f.exception for f in futures if f.is_done and f.failed()), None)
        except KafkaTimeoutError:
            pending = True
        except KafkaError as exc:
            failure = exc
        if failure is None and not pending:
            return
        # A producer that failed may be in a fatal state; the next publish gets a fresh one.
        self._discard_producer(producer)
        if pending or isinstance(failure, KafkaTimeoutError):
            raise BusError(
                f"publishing to {topic!r} timed out after {self.publish_timeout_s} s"
                " (broker unreachable?); some records may still have been written"
            )
        if not fresh:
            raise _StaleProducer(str(failure)) from failure
        raise BusError(f"publishing to {topic!r} failed: {failure}") from failure

    def _discard_producer(self, producer: Any) -> None:
        with self._lock:
            if self._producer_client is producer:
                self._producer_client = None
        try:
            producer.close(timeout=0)
        except Exception as exc:  # it is being thrown away; its own failure was reported
            log.debug("closing a failed producer: %s", exc)

    # -- offsets ------------------------------------------------------------------------------

    def end_offsets(self, topic: str) -> dict[int, int]:
        """Per partition, the offset the next published record will get (the high watermark)."""
        ids = self._partitions(topic, create=False)
        tps = [KafkaTopicPartition(topic, p) for p in ids]
        latest = self._retrying(
            lambda: self._admin().list_partition_offsets({tp: OffsetSpec.LATEST for tp in tps}),
            f"reading end offsets of {topic!r}",
        )
        return {tp.partition: int(latest[tp].offset) for tp in tps}

    def _retrying(self, call: Callable[[], Any], what: str) -> Any:
        """``call()``, again while it fails retriably (a coordinator or leader moving, a
        broker reconnecting) for up to the request timeout; BusError naming ``what`` else."""
        deadline = time.monotonic() + self.request_timeout_ms / 1000
        while True:
            try:
                return call()
            except KafkaError as exc:
                if not getattr(exc, "retriable", False) or time.monotonic() > deadline:
                    raise BusError(f"{what} failed: {exc}") from exc
                time.sleep(0.1)

    def committed(self, group: str, topic: str) -> dict[int, int]:
        """Per partition, the group's committed offset (0 when none)."""
        ids = self._partitions(topic, create=False)
        tps = [KafkaTopicPartition(topic, p) for p in ids]
        # The group coordinator may move or still be loading (a fresh or failed-over broker).
        found = self._retrying(
            lambda: self._admin().list_group_offsets({group: tps}).get(group, {}),
            f"reading committed offsets of {group!r}",
        )
        out = dict.fromkeys(ids, 0)
        for tp, meta in found.items():
            if tp.topic == topic and meta.offset is not None and meta.offset >= 0:
                out[tp.partition] = int(meta.offset)
        return out

    # -- consumers ----------------------------------------------------------------------------

    def consumer(self, group: str, topics: Sequence[str]) -> KafkaGroupConsumer:
        """Join ``group`` consuming ``topics`` (created if missing) from the committed offsets."""
        if not topics:
            raise BusError("a consumer needs at least one topic")
        if not group:
            raise BusError("a consumer needs a group id")
        for topic in topics:
            self._partitions(topic, create=True)
        self._check_open()
        return KafkaGroupConsumer(self, group, sorted(set(topics)))

    def close(self) -> None:
        """Flush and close the producer and the admin client."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            producer, admin = self._producer_client, self._admin_client
            self._producer_client = self._admin_client = None
        try:
            if producer is not None:
                producer.close(timeout=5)
            if admin is not None:
                admin.close()
        except Exception as exc:  # closing must not hide the caller's own error
            log.warning("closing a Kafka client failed: %s", exc)

    def __enter__(self) -> KafkaBus:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


#: URL query parameters passed to kafka-python as they are.
_URL_OPTIONS = frozenset(
    {"security_protocol", "sasl_mechanism", "ssl_cafile", "ssl_certfile", "ssl_keyfile"}
)


def kafka_url(url: str) -> tuple[list[str], dict[str, str]]:
    """Bootstrap servers and security settings of a ``kafka://`` URL.

    ``kafka://user:password@host:port,host:port?sasl_mechanism=SCRAM-SHA-512`` authenticates
    with SASL (PLAIN unless named; over TLS, ``SASL_SSL``, unless ``security_protocol`` says
    otherwise). User and password are percent-decoded.
    """
    rest = url.removeprefix("kafka://")
    rest, _, query = rest.partition("?")
    userinfo, at, hosts = rest.rpartition("@")
    servers = [h for h in hosts.split(",") if h]
    options = dict(parse_qsl(query, keep_blank_values=False))
    unknown = sorted(set(options) - _URL_OPTIONS)
    if unknown:
        allowed = ", ".join(sorted(_URL_OPTIONS))
        raise BusError(f"unknown Kafka URL option(s) {', '.join(unknown)}: use {allowed}")
    security = dict(options)
    if at:
        user, colon, password = userinfo.partition(":")
        if not user or not colon:
            raise BusError("a Kafka URL with credentials needs user:password@")
        security.setdefault("security_protocol", "SASL_SSL")
        security.setdefault("sasl_mechanism", "PLAIN")
        security["sasl_plain_username"] = unquote(user)
        security["sasl_plain_password"] = unquote(password)
    return servers, security


#: kafka-python's ``timestamp_type`` of a record stamped by the broker (LogAppendTime).
_LOG_APPEND_TIME = 1


def _to_record(r: Any) -> Record:
    return Record(
        r.topic,
        r.partition,
        r.offset,
        r.key,
        r.value,
        tuple(r.headers or ()),
        int(r.timestamp),
        r.timestamp_type == _LOG_APPEND_TIME,
    )


class _Revocations(ConsumerRebalanceListener):  # type: ignore[misc]  # kafka-python is untyped
    """Drops buffered records of partitions taken away in a rebalance; logs what is owned."""

    def __init__(self, owner: KafkaGroupConsumer) -> None:
        self._owner = owner

    def on_partitions_revoked(self, revoked: Iterable[Any]) -> None:
        self._owner._drop({TopicPartition(tp.topic, tp.partition) for tp in revoked})
        self._log_owned()

    def on_partitions_assigned(self, assigned: Iterable[Any]) -> None:
        # Cooperative: ``assigned`` holds only the additions; log the whole assignment.
        self._log_owned()

    def _log_owned(self) -> None:
        log.info(
            "group %s member %s now reads %s",
            self._owner.group,
            self._owner.client_id,
            ", ".join(f"{tp.topic}[{tp.partition}]" for tp in self._owner.assignment) or "nothing",
        )


class KafkaGroupConsumer:
    """A member of a Kafka consumer group, fed by a background polling thread."""

    def __init__(self, bus: KafkaBus, group: str, topics: Sequence[str]) -> None:
        self.group = group
        self.topics = tuple(topics)
        self.client_id = f"{bus.client_id}-{group}-{uuid.uuid4().hex[:8]}"
        self._max_poll_records = bus.max_poll_records
        self._buffer_limit = max(bus.buffer_records, bus.max_poll_records)
        self._commit_timeout_ms = bus.request_timeout_ms
        self._buffer: deque[Record] = deque()
        # Per (topic, partition), under _cond: the first offset handed to the application and
        # not committed since, and the offset after the last one handed out.
        self._unsettled: dict[tuple[str, int], int] = {}
        self._handed_end: dict[tuple[str, int], int] = {}
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._error: BaseException | None = None
        self._closed = False
        try:
            self._kc = KafkaConsumer(
                **bus._common(),
                client_id=self.client_id,
                group_id=group,
                enable_auto_commit=False,
                auto_offset_reset="earliest",
                isolation_level="read_committed",
                session_timeout_ms=bus.session_timeout_ms,
                heartbeat_interval_ms=bus.heartbeat_interval_ms,
                max_poll_records=bus.max_poll_records,
                fetch_max_bytes=50 << 20,
                max_partition_fetch_bytes=4 << 20,
                check_crcs=bus.check_crcs,
                allow_auto_create_topics=False,
                partition_assignment_strategy=_ASSIGNORS,
            )
            # Join only once this member's metadata knows every topic: a leader assigning
            # before it does (a topic created a moment ago) hands out nothing, and need not
            # rebalance when the metadata arrives.
            deadline = time.monotonic() + bus.request_timeout_ms / 1000
            for topic in self.topics:
                while not self._kc.partitions_for_topic(topic):
                    if time.monotonic() > deadline:
                        raise BusError(f"topic {topic!r} has no partitions in the metadata yet")
                    time.sleep(0.05)
            self._kc.subscribe(topics=list(self.topics), listener=_Revocations(self))
        except KafkaError as exc:
            raise BusError(f"joining group {group!r} failed: {exc}") from exc
        self._thread = threading.Thread(target=self._run, name=f"bus-consumer-{group}", daemon=True)
        self._thread.start()

    @property
    def assignment(self) -> list[TopicPartition]:
        """The partitions this member owns now (empty while the group is joining)."""
        owned = [TopicPartition(tp.topic, tp.partition) for tp in self._kc.assignment()]
        return sorted(owned, key=lambda tp: (tp.topic, tp.partition))

    # -- background thread --------------------------------------------------------------------

    def _run(self) -> None:
        kc = self._kc
        paused = False
        while not self._stop.is_set():
            try:
                with self._cond:
                    full = len(self._buffer) >= self._buffer_limit
                if full:
                    # Every time: a rebalance may have handed out new, unpaused partitions.
                    kc.pause(*kc.assignment())
                    paused = True
                elif paused:
                    kc.resume(*kc.paused())
                    paused = False
                batch = kc.poll(timeout_ms=100, max_records=self._max_poll_records)
                if not batch:
                    continue
                owned = kc.assignment()
                records = [_to_record(r) for tp, recs in batch.items() if tp in owned for r in recs]
                with self._cond:
                    self._buffer.extend(records)
                    self._cond.notify_all()
            except _DENIED as exc:
                # Retrying cannot help until an operator changes the ACLs: fail the reader.
                log.error("group %s: not authorized: %r", self.group, exc)
                with self._cond:
                    self._error = BusError(f"not authorized: {exc!r} (the broker's ACLs)")
                    self._cond.notify_all()
                return
            except KafkaError as exc:
                # Rebalances and broker outages: kafka-python recovers on the next poll.
                log.warning("group %s: poll failed, retrying: %r", self.group, exc)
                self._stop.wait(0.5)
            except Exception as exc:
                log.exception("group %s: consumer thread stopped", self.group)
                with self._cond:
                    self._error = exc
                    self._cond.notify_all()
                return

    def _drop(self, revoked: set[TopicPartition]) -> None:
        if not revoked:
            return
        keys = {(tp.topic, tp.partition) for tp in revoked}
        with self._cond:
            # Where to read each revoked partition again: its first record handed out and not
            # committed, else its first record dropped here.
            restart = {key: off for key, off in self._unsettled.items() if key in keys}
            kept: deque[Record] = deque()
            for r in self._buffer:
                if (r.topic, r.partition) in keys:
                    restart.setdefault((r.topic, r.partition), r.offset)
                else:
                    kept.append(r)
            self._buffer = kept
            for key in keys:
                self._unsettled.pop(key, None)
                self._handed_end.pop(key, None)
        for (topic, partition), offset in restart.items():
            # Kept by kafka-python if this member gets the partition back; discarded if not
            # (its next owner starts from the committed offset). ValueError: not assigned.
            with contextlib.suppress(ValueError):
                self._kc.seek(KafkaTopicPartition(topic, partition), offset)

    # -- Consumer interface -------------------------------------------------------------------

    def poll(self, max_records: int = 500, timeout_s: float = 1.0) -> list[Record]:
        """Next records of the assigned partitions, in offset order per partition."""
        if max_records < 1:
            raise BusError("max_records must be at least 1")
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while not self._buffer:
                if self._closed:
                    raise BusError(f"consumer of group {self.group!r} is closed")
                if self._error is not None:
                    raise BusError(
                        f"consumer of group {self.group!r} failed: {self._error}"
                    ) from self._error
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return []
                self._cond.wait(remaining)
            n = min(max_records, len(self._buffer))
            out = [self._buffer.popleft() for _ in range(n)]
            unsettled, handed_end = self._unsettled, self._handed_end
            for r in out:
                key = (r.topic, r.partition)
                if key not in unsettled:
                    unsettled[key] = r.offset
                handed_end[key] = r.offset + 1
            return out

    def commit(self, offsets: Mapping[TopicPartition, int]) -> None:
        """Commit, per partition, the offset of the next record to read."""
        if not offsets:
            return
        if self._closed:
            raise BusError(f"consumer of group {self.group!r} is closed")
        for tp, off in offsets.items():
            if off < 0:
                raise BusError(f"cannot commit negative offset {off} for {tp}")
        request = {
            KafkaTopicPartition(tp.topic, tp.partition): OffsetAndMetadata(off, "", -1)
            for tp, off in offsets.items()
        }
        try:
            # Called while the background thread polls: kafka-python 3 runs both on its IO
            # thread and its KafkaConsumer.commit is a blocking hand-off to that thread.
            self._kc.commit(request, timeout_ms=self._commit_timeout_ms)
            with self._cond:
                for tp, off in offsets.items():
                    key = (tp.topic, tp.partition)
                    if self._handed_end.get(key, 0) > off:
                        self._unsettled[key] = off  # handed out beyond what was committed
                    else:
                        self._unsettled.pop(key, None)
                        self._handed_end.pop(key, None)
        except _REBALANCE_ERRORS as exc:
            log.warning(
                "group %s: commit refused during a rebalance (%r); records will come again",
                self.group,
                exc,
            )
        except KafkaError as exc:
            raise BusError(f"committing offsets of group {self.group!r} failed: {exc}") from exc

    def close(self) -> None:
        """Leave the group; uncommitted records will be delivered again."""
        with self._cond:
            if self._closed:
                return
            self._closed = True
            self._buffer.clear()
            self._cond.notify_all()
        self._stop.set()
        self._thread.join(timeout=10)
        try:
            self._kc.close(autocommit=False, timeout_ms=5000)
        except Exception as exc:  # leaving late only delays the rebalance by a session timeout
            log.warning("group %s: closing the consumer failed: %s", self.group, exc)
