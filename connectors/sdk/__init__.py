"""The connector SDK: what a service company plugs into Tsunagu.

A connector declares its source and event types, turns its rows into ``EventDraft``s and calls
``publish_all``: each draft is checked against the platform's schema, queued in a durable
SQLite outbox and delivered to the bus (or HTTP ingest) with retries. Event ids are stable, so
re-running an export or restarting after a crash never doubles an event.
"""

from connectors.sdk.connector import Connector, InvalidEventError, PublishReport
from connectors.sdk.outbox import FailedRow, Outbox, OutboxEntry, OutboxInUseError, OutboxRow
from connectors.sdk.rows import EventDraft, RowError, stable_event_id
from connectors.sdk.schemas import LocalSchemas, RemoteSchemas, Schemas, SchemaUnavailableError
from connectors.sdk.sender import Backoff, DrainReport, Sender
from connectors.sdk.sinks import BusSink, HttpSink, SendResult, Sink, SinkUnavailable

__all__ = [
    "Backoff",
    "BusSink",
    "Connector",
    "DrainReport",
    "EventDraft",
    "FailedRow",
    "HttpSink",
    "InvalidEventError",
    "LocalSchemas",
    "Outbox",
    "OutboxEntry",
    "OutboxInUseError",
    "OutboxRow",
    "PublishReport",
    "RemoteSchemas",
    "RowError",
    "SchemaUnavailableError",
    "Schemas",
    "SendResult",
    "Sender",
    "Sink",
    "SinkUnavailable",
    "stable_event_id",
]
