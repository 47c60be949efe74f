"""HTTP ingest for operators without Kafka: check each CloudEvent, then put it on the bus.

The same checks as the worker's, so a bad event is refused at the door with its reason and
still lands in the dead-letter topic; good events go to their domain topic, where the ingest
worker projects them exactly as if a Kafka connector had published them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import orjson
from sqlalchemy import Engine

from broker.audit import AuditLog, NewEntry
from broker.auth.origin import connector_key
from broker.auth.principals import Principal
from broker.ingest.auditing import dead_letter_entry
from broker.ingest.pipeline import DEAD_LETTERS
from broker.ingest.provenance import entitlement
from broker.registry.catalogue import SchemaRegistry
from broker.store import ledger
from contract import cloudevents
from contract.bus import Bus, OutRecord
from contract.cloudevents import STRUCTURED_HEADERS, CloudEvent
from contract.deadletter import (
    UNROUTED_DLQ,
    DeadLetterReason,
    Rejection,
    dead_letter_bytes,
    dead_letter_topic,
)
from contract.origin import OriginSigner
from contract.validation import EventValidator

log = logging.getLogger(__name__)


class Outcome(StrEnum):
    """What became of one event."""

    ACCEPTED = "accepted"
    DUPLICATE = "duplicate"
    REJECTED = "rejected"


@dataclass(frozen=True, slots=True)
class EventResult:
    """The per-event answer of HTTP ingest."""

    index: int
    id: str | None
    status: Outcome
    reason: DeadLetterReason | None = None
    detail: str | None = None
    path: str | None = None


def _record(key: bytes, value: bytes, signer: OriginSigner | None) -> OutRecord:
    """A structured-mode record, signed as its publisher's when there is one."""
    record = OutRecord(key, value, STRUCTURED_HEADERS)
    return signer.sign(record) if signer is not None else record


class IngestGateway:
    """Checks CloudEvents arriving over HTTP and publishes them (or their dead letters)."""

    def __init__(
        self,
        bus: Bus,
        engine: Engine,
        registry: SchemaRegistry,
        *,
        domains: Sequence[str],
        topic_prefix: str = "",
        max_event_bytes: int = 1024 * 1024,
        refresh_registry: Callable[[], bool] | None = None,
        audit: AuditLog | None = None,
        master_key: bytes | None = None,
    ) -> None:
        self.bus = bus
        #: The connector master key: records going on carry their MAC (``broker.auth.origin``).
        self.master_key = master_key
        #: Where rejections at the door are recorded (the worker never sees them).
        self.audit = audit
        self.engine = engine
        self.domains = frozenset(domains)
        self.topic_prefix = topic_prefix
        self.max_event_bytes = max_event_bytes
        self.validator = EventValidator(
            registry, max_event_bytes, topic_prefix, refresh_registry, domains=self.domains
        )

    def submit(
        self,
        docs: Sequence[Any],
        origin: str,
        publisher: Principal | None = None,
        token: str | None = None,
    ) -> list[EventResult]:
        """Check and publish ``docs`` (decoded JSON values); one result per document, in order.

        ``publisher``, the verified caller, may publish only what its registration entitles
        it to (``provenance.entitlement``: its sources, its event types); the audit log names
        it for a rejection. ``token``, the caller's, goes on with each event for the ingest
        worker to check again.
        """
        actor = publisher.subject if publisher is not None else "http-ingest"
        # The caller proved itself with its bearer token; on the bus its records carry that
        # token and their MAC under its key, as its own connector would have made them.
        signer = (
            OriginSigner(token, connector_key(self.master_key, publisher.subject))
            if token and publisher is not None and self.master_key is not None
            else None
        )
        results: list[EventResult] = []
        # The event goes on as it was sent (extension attributes included), not re-encoded.
        good: dict[str, list[tuple[int, CloudEvent, bytes]]] = {}
        dead: dict[str, list[OutRecord]] = {}
        refusals: list[NewEntry] = []
        for index, doc in enumerate(docs):
            raw, checked = self._checked(doc, publisher)
            if isinstance(checked, CloudEvent):
                good.setdefault(self.topic_prefix + checked.domain, []).append(
                    (index, checked, raw)
                )
                results.append(EventResult(index, checked.id, Outcome.ACCEPTED))
                continue
            topic = dead_letter_topic(doc, self.domains, self.topic_prefix)
            subject = doc.get("subject") if isinstance(doc, dict) else None
            key = subject.encode("utf-8", "replace") if isinstance(subject, str) else None
            where = f"http/{origin}/{index}"
            dead.setdefault(topic, []).append(
                dead_letter_bytes(key or None, raw, (), where, checked)
            )
            refusals.append(dead_letter_entry(topic.removesuffix(".dlq"), checked, where, actor))
            DEAD_LETTERS.labels(topic.removesuffix(".dlq"), checked.reason.value).inc()
            doc_id = doc.get("id") if isinstance(doc, dict) else None
            results.append(
                EventResult(
                    index,
                    doc_id if isinstance(doc_id, str) else None,
                    Outcome.REJECTED,
                    checked.reason,
                    checked.detail,
                    checked.path or None,
                )
            )
        seen = self._already_ingested([e.id for batch in good.values() for _, e, _ in batch])
        for topic, batch in good.items():
            fresh = [
                _record(e.subject.encode(), raw, signer) for _, e, raw in batch if e.id not in seen
            ]
            self.bus.publish(topic, fresh)
            for i, e, _ in batch:
                if e.id in seen:
                    results[i] = EventResult(i, e.id, Outcome.DUPLICATE)
        for topic, records in dead.items():
            self.bus.publish(topic, records)
        self._record(refusals)
        return results

    def reject_body(
        self,
        body: bytes,
        reason: DeadLetterReason,
        detail: str,
        origin: str,
        actor: str = "http-ingest",
    ) -> None:
        """Keep a body that could not be split into events in the unrouted dead-letter topic."""
        rejection = Rejection(reason, detail)
        topic = self.topic_prefix + UNROUTED_DLQ
        where = f"http/{origin}"
        self.bus.publish(topic, [dead_letter_bytes(None, body, (), where, rejection)])
        DEAD_LETTERS.labels(topic.removesuffix(".dlq"), reason.value).inc()
        self._record([dead_letter_entry(topic.removesuffix(".dlq"), rejection, where, actor)])

    def _record(self, refusals: list[NewEntry]) -> None:
        # Written before the caller is answered: the receipt's rejections are on record.
        if refusals and self.audit is not None:
            self.audit.append_many(refusals)

    def _checked(
        self, doc: Any, publisher: Principal | None
    ) -> tuple[bytes, CloudEvent | Rejection]:
        """The document's bytes and its verdict; whatever goes wrong judging one document
        rejects that document alone (``internal_error`` names the exception's type only)."""
        try:
            raw = orjson.dumps(doc)
        except orjson.JSONEncodeError:
            # Only nesting beyond orjson's own limit (far over MAX_DEPTH) fails to re-encode.
            detail = f"the event nests deeper than {cloudevents.MAX_DEPTH} levels; flatten it"
            return b"", Rejection(DeadLetterReason.TOO_DEEP, detail)
        try:
            checked = self._check(doc, raw)
            if isinstance(checked, CloudEvent) and publisher is not None:
                checked = entitlement(publisher, checked) or checked
        except Exception as exc:  # one document's fault must not fail its batch
            log.exception("HTTP ingest could not judge document %s", type(exc).__name__)
            checked = Rejection(
                DeadLetterReason.INTERNAL_ERROR,
                f"the platform failed on this event ({type(exc).__name__}); it is kept in the "
                "dead letters for the operator",
            )
        return raw, checked

    def _check(self, doc: Any, raw: bytes) -> CloudEvent | Rejection:
        if len(raw) > self.max_event_bytes:
            return Rejection(
                DeadLetterReason.TOO_LARGE,
                f"event is {len(raw)} bytes, over the limit of {self.max_event_bytes}",
            )
        if not isinstance(doc, dict):
            return Rejection(
                DeadLetterReason.NOT_JSON,
                f"a CloudEvent is a JSON object, not {type(doc).__name__}",
            )
        try:
            event = cloudevents.from_dict(doc)
        except cloudevents.TooDeepError as exc:
            return Rejection(DeadLetterReason.TOO_DEEP, str(exc), f"/{exc.attribute}")
        except cloudevents.EnvelopeError as exc:
            given = doc.get("source")
            source = given if isinstance(given, str) else ""
            return Rejection(
                DeadLetterReason.INVALID_ENVELOPE, str(exc), f"/{exc.attribute}", "", source
            )
        return self.validator.check_data(event)

    def _already_ingested(self, ids: list[str]) -> set[str]:
        with self.engine.connect() as conn:
            return ledger.known_ids(conn, ids)
