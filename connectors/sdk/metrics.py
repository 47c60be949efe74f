"""The connector's Prometheus metrics, labelled by connector (its CloudEvents ``source``)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

__all__ = ["FAILED", "INVALID", "OUTBOX_DEPTH", "RETRIES", "SENT"]

OUTBOX_DEPTH = Gauge(
    "tsunagu_connector_outbox_depth",
    "Events waiting in the outbox",
    ["connector"],
    # One process owns an outbox (its lock): across processes, its latest reading holds.
    multiprocess_mode="mostrecent",
)
SENT = Counter(
    "tsunagu_connector_sent_total",
    "Events delivered to the bus or HTTP ingest (including ones the platform already had)",
    ["connector"],
)
FAILED = Counter(
    "tsunagu_connector_failed_total",
    "Events the platform refused for good; kept in the outbox file's failed table",
    ["connector"],
)
RETRIES = Counter(
    "tsunagu_connector_retries_total",
    "Delivery attempts that failed and will be retried after a backoff",
    ["connector"],
)
INVALID = Counter(
    "tsunagu_connector_invalid_total",
    "Rows refused before the outbox: unreadable, undeclared type or schema violation",
    ["connector"],
)
