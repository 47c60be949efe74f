"""The bus interface both sides share: keyed records on partitioned topics, consumer groups,
at-least-once. The backends (the embedded SQLite log, Kafka) live in ``broker.bus``; a
connector publishes through any object with this shape. The bus knows no domain names: the
topics come from ``contract.domains``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import NewType, Protocol, runtime_checkable

TopicName = NewType("TopicName", str)
Headers = Sequence[tuple[str, bytes]]


def dlq_topic(topic: str) -> TopicName:
    """Name of the dead-letter topic beside ``topic``."""
    return TopicName(f"{topic}.dlq")


@dataclass(frozen=True, slots=True)
class TopicPartition:
    """One partition of one topic."""

    topic: str
    partition: int


@dataclass(frozen=True, slots=True)
class TopicSpec:
    """What a topic should look like when created."""

    name: str
    partitions: int = 1
    compacted: bool = False
    #: Copies of each partition on Kafka; None leaves it to the bus (the broker's default).
    replication_factor: int | None = None
    #: Kafka topic configs (``retention.ms``, ...); the SQLite log keeps only ``compacted``.
    configs: Mapping[str, str] = field(default_factory=dict, hash=False)

    def kafka_configs(self) -> dict[str, str]:
        """The topic's configs on Kafka: ``configs``, with compaction as ``cleanup.policy``."""
        return ({"cleanup.policy": "compact"} if self.compacted else {}) | dict(self.configs)


@dataclass(frozen=True, slots=True)
class OutRecord:
    """A record to publish."""

    key: bytes | None
    value: bytes
    headers: Headers = ()


@dataclass(frozen=True, slots=True)
class Record:
    """A record read back from the bus."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    headers: Headers = field(default=())
    timestamp_ms: int = 0
    #: Whether ``timestamp_ms`` is the bus's own append time (the SQLite log; a Kafka topic
    #: with ``message.timestamp.type=LogAppendTime``) rather than a time the producer chose.
    appended: bool = False


class BusError(Exception):
    """Root of every bus failure (broker unreachable, unknown topic, ...)."""


class Consumer(Protocol):
    """A member of a consumer group; records come at least once."""

    def poll(self, max_records: int = 500, timeout_s: float = 1.0) -> list[Record]:
        """Next records of the assigned partitions, in offset order per partition."""
        ...

    def commit(self, offsets: Mapping[TopicPartition, int]) -> None:
        """Commit, per partition, the offset of the next record to read."""
        ...

    def close(self) -> None:
        """Leave the group; uncommitted records will be delivered again."""
        ...


class Bus(Protocol):
    """A message bus: the SQLite log (embedded) or Kafka."""

    def create_topics(self, specs: Sequence[TopicSpec]) -> None:
        """Create topics that do not exist yet (idempotent)."""
        ...

    def publish(self, topic: str, records: Sequence[OutRecord]) -> None:
        """Append records durably; returns once the bus has accepted all of them."""
        ...

    def consumer(self, group: str, topics: Sequence[str]) -> Consumer:
        """Join ``group`` consuming ``topics`` from the committed offsets (or the start)."""
        ...

    def end_offsets(self, topic: str) -> dict[int, int]:
        """Per partition, the offset the next published record will get."""
        ...

    def committed(self, group: str, topic: str) -> dict[int, int]:
        """Per partition, the group's committed offset (0 when none)."""
        ...

    def close(self) -> None:
        """Release connections."""
        ...


@runtime_checkable
class Forgetting(Protocol):
    """A bus the platform can reach into for erasure: the embedded SQLite log.

    Kafka is not one: the platform cannot delete a record from a Kafka topic, and its
    copies expire only with the topics' ``retention.ms`` (what the erasure record states).
    """

    #: How long records are kept (None: for ever).
    retention_s: float | None

    def enforce_retention(self) -> int:
        """Delete records older than the retention that every group has committed past."""
        ...

    def forget(self, needle: bytes) -> int:
        """Delete every record whose key or value contains ``needle``, wherever it is."""
        ...


def next_offsets(records: Sequence[Record]) -> dict[TopicPartition, int]:
    """The offsets to commit after ``records`` have been fully processed."""
    out: dict[TopicPartition, int] = {}
    for r in records:
        tp = TopicPartition(r.topic, r.partition)
        if r.offset + 1 > out.get(tp, 0):
            out[tp] = r.offset + 1
    return out


def consumer_lag(bus: Bus, group: str, topics: Sequence[str]) -> dict[TopicPartition, int]:
    """Per partition of ``topics``, records the group has not committed yet (end - committed)."""
    lag: dict[TopicPartition, int] = {}
    for topic in topics:
        # Ends first: a commit landing between the two reads then makes the lag look smaller,
        # not larger. Below zero (that, or a broker restarted empty) reads as zero.
        ends = bus.end_offsets(topic)
        done = bus.committed(group, topic)
        for partition, end in ends.items():
            lag[TopicPartition(topic, partition)] = max(0, end - done.get(partition, 0))
    return lag
