"""Bus backends behind one interface: the embedded SQLite log and Kafka."""

from __future__ import annotations

from broker.bus.base import (
    DOMAIN_TOPICS,
    Bus,
    BusError,
    Consumer,
    Forgetting,
    OutRecord,
    Record,
    TopicPartition,
    TopicSpec,
    dlq_topic,
    next_offsets,
)

__all__ = [
    "DOMAIN_TOPICS",
    "Bus",
    "BusError",
    "Consumer",
    "Forgetting",
    "OutRecord",
    "Record",
    "TopicPartition",
    "TopicSpec",
    "dlq_topic",
    "next_offsets",
    "open_bus",
]


def open_bus(url: str, *, retention_s: float | None = None) -> Bus:
    """Open the bus named by ``url``: ``sqlite:///path`` or ``kafka://host:port[,host:port]``.

    ``retention_s`` is the SQLite log's retention; Kafka topics carry their own.
    """
    if url.startswith("sqlite:///"):
        from broker.bus.sqlite_log import SqliteLog

        return SqliteLog(url.removeprefix("sqlite:///"), retention_s=retention_s)
    if url.startswith("kafka://"):
        from broker.bus.kafka import KafkaBus

        return KafkaBus(url.removeprefix("kafka://").split(","))
    raise BusError(f"unsupported bus URL {url!r}: use sqlite:///path or kafka://host:port")
