"""Where a bad event goes and why: the one place that names every dead-letter reason."""

from __future__ import annotations

from collections.abc import Container
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from contract.bus import Headers, OutRecord, Record, dlq_topic
from contract.origin import H_CONNECTOR_MAC, H_CONNECTOR_TOKEN

#: Where rejected bytes go when no domain can be told from them (HTTP ingest of non-events).
UNROUTED_DLQ = "unrouted.dlq"


class DeadLetterReason(StrEnum):
    """Why an event was rejected; the value is the `tsunagu-dlq-reason` header."""

    TOO_LARGE = "too_large"
    NOT_JSON = "not_json"
    INVALID_ENVELOPE = "invalid_envelope"
    TOO_DEEP = "too_deep"  # nested deeper than contract.cloudevents.MAX_DEPTH
    UNKNOWN_TYPE = "unknown_type"
    UNKNOWN_SCHEMA = "unknown_schema"
    WRONG_TOPIC = "wrong_topic"
    SCHEMA_VIOLATION = "schema_violation"
    SOURCE_NOT_ALLOWED = "source_not_allowed"
    UNAUTHENTICATED = "unauthenticated"  # no valid connector token on a bus record
    NOT_AUTHORIZED = "not_authorized"  # the connector is not registered for the event's type
    #: Handling the record raised an error nothing foresaw; the detail names the exception's
    #: type only (its message may quote the event).
    INTERNAL_ERROR = "internal_error"


#: Header names on a dead-lettered record (the original record's headers are kept too).
H_REASON = "tsunagu-dlq-reason"
H_DETAIL = "tsunagu-dlq-detail"
H_PATH = "tsunagu-dlq-path"
H_SCHEMA = "tsunagu-dlq-schema"
H_SOURCE = "tsunagu-dlq-source"
H_EVENT_ID = "tsunagu-dlq-event-id"
H_ORIGIN = "tsunagu-dlq-origin"  # topic/partition/offset: lets a DLQ reader drop redeliveries


@dataclass(frozen=True, slots=True)
class Rejection:
    """A rejected event: the reason and what is known of it."""

    reason: DeadLetterReason
    detail: str
    path: str = ""
    schema: str = ""
    source: str = ""
    event_id: str = ""
    #: Who really sent it, when a verified token says so and it is not who the event claims
    #: to be (an impersonation names the impersonator, not its victim).
    sender: str = ""


def dead_letter_topic(doc: Any, domains: Container[str], topic_prefix: str = "") -> str:
    """Where a rejected event goes: beside its domain's topic when its ``type`` names a known
    domain, else ``unrouted.dlq`` (bytes that are no event, or of no domain we know)."""
    if isinstance(doc, dict) and isinstance(doc.get("type"), str):
        domain = doc["type"].split(".", 1)[0]
        if domain in domains:
            return dlq_topic(topic_prefix + domain)
    return topic_prefix + UNROUTED_DLQ


def origin_of(record: Record) -> str:
    """Where a record was on the bus: ``topic/partition/offset``."""
    return f"{record.topic}/{record.partition}/{record.offset}"


def dead_letter(record: Record, rejection: Rejection) -> OutRecord:
    """The DLQ record for ``record``: its original bytes, key and headers, plus the reason."""
    return dead_letter_bytes(record.key, record.value, record.headers, origin_of(record), rejection)


def dead_letter_bytes(
    key: bytes | None, value: bytes, headers: Headers, origin: str, rejection: Rejection
) -> OutRecord:
    """A DLQ record for bytes that never made it onto a domain topic (e.g. HTTP ingest)."""
    extra = [
        (H_REASON, rejection.reason.value.encode()),
        (H_DETAIL, rejection.detail[:2000].encode()),
        (H_PATH, rejection.path.encode()),
        (H_SCHEMA, rejection.schema.encode()),
        (H_SOURCE, rejection.source.encode()),
        (H_EVENT_ID, rejection.event_id.encode()),
        (H_ORIGIN, origin.encode()),
    ]
    kept = [(name, v) for name, v in headers if name not in (H_CONNECTOR_TOKEN, H_CONNECTOR_MAC)]
    return OutRecord(key=key, value=value, headers=[*kept, *extra])
