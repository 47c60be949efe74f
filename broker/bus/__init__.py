"""Bus backends behind one interface (``contract.bus``): the embedded SQLite log and Kafka."""

from __future__ import annotations

from contract.bus import Bus, BusError

__all__ = ["open_bus", "redact"]


def open_bus(url: str, *, retention_s: float | None = None) -> Bus:
    """Open the bus named by ``url``: ``sqlite:///path`` or
    ``kafka://[user:password@]host:port[,host:port][?security_protocol=…&sasl_mechanism=…]``.

    ``retention_s`` is the SQLite log's retention; Kafka topics carry their own.
    """
    if url.startswith("sqlite:///"):
        from broker.bus.sqlite_log import SqliteLog

        return SqliteLog(url.removeprefix("sqlite:///"), retention_s=retention_s)
    if url.startswith("kafka://"):
        from broker.bus.kafka import KafkaBus, kafka_url

        servers, security = kafka_url(url)
        return KafkaBus(servers, security=security)
    raise BusError(f"unsupported bus URL {redact(url)!r}: use sqlite:///path or kafka://host:port")


def redact(url: str) -> str:
    """The URL with any password replaced by ``***`` (for logs and banners)."""
    scheme, sep, rest = url.partition("://")
    userinfo, at, hosts = rest.rpartition("@")
    if not sep or not at or ":" not in userinfo:
        return url
    return f"{scheme}://{userinfo.split(':', 1)[0]}:***@{hosts}"
