"""Dead letters read back and replayed: what ``tsunagu deadletters`` does, on either bus.

Dead letters are read through the bus interface (``contract.bus``) by a consumer of a group of
its own that never commits, so reading them moves nobody's offsets and works the same on the
SQLite log and on Kafka. A dead letter is named by where it is: ``<topic>/<partition>/<offset>``.

A replay is a new publication by the connector, not a release from quarantine: dead letters
keep neither token nor MAC (``contract.deadletter``), so the replayed record is signed with the
connector's own credentials and judged by ingest like any other record. ``replay_plan`` is the
one place that says which dead letters may go back and why the others may not.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

from broker.auth.principals import Principal
from broker.ingest.provenance import entitlement
from broker.progress import Steps
from contract import cloudevents
from contract.bus import Bus, BusError, Headers, OutRecord, Record, dlq_topic
from contract.cloudevents import STRUCTURED_HEADERS, CloudEvent
from contract.deadletter import (
    H_DETAIL,
    H_EVENT_ID,
    H_ORIGIN,
    H_PATH,
    H_REASON,
    H_SCHEMA,
    H_SOURCE,
    UNROUTED_DLQ,
    DeadLetterReason,
    Rejection,
)
from contract.origin import H_CONNECTOR_MAC, H_CONNECTOR_TOKEN, OriginSigner
from contract.validation import EventValidator

#: Headers the dead-letter record adds to the original's (never replayed, shown apart).
_DLQ_HEADERS = frozenset({H_REASON, H_DETAIL, H_PATH, H_SCHEMA, H_SOURCE, H_EVENT_ID, H_ORIGIN})
#: Never shown nor replayed, even if a foreign producer put them on a dead letter.
_SECRET_HEADERS = frozenset({H_CONNECTOR_TOKEN, H_CONNECTOR_MAC})
#: Reasons whose dead letters cannot go back, whoever replays them: nothing proves who sent
#: them, or their sender claimed a source its token does not name (replaying that one with
#: the named connector's credentials would vouch for an impersonation).
UNREPLAYABLE = {
    DeadLetterReason.UNAUTHENTICATED: "nothing proves who sent it",
    DeadLetterReason.SOURCE_NOT_ALLOWED: "its sender's token does not name the source it claims",
}

_REASONS = frozenset(r.value for r in DeadLetterReason)


class DeadLetterError(Exception):
    """Root of the dead-letter command's refusals; the message says what to change."""


class UnknownDeadLetterError(DeadLetterError):
    """No dead letter is where the reference points."""


class ReplayRefusedError(DeadLetterError):
    """The dead letter may not be published again (its reason, its source or the token)."""


class StillInvalidError(DeadLetterError):
    """The event to replay would be dead-lettered again; the rejection says why."""

    def __init__(self, rejection: Rejection) -> None:
        where = f" at {rejection.path}" if rejection.path else ""
        super().__init__(f"still {rejection.reason.value}{where}: {rejection.detail}")
        self.rejection = rejection


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """One record of a ``<topic>.dlq``, with what its headers say about it."""

    topic: str
    partition: int
    offset: int
    at: datetime
    key: bytes | None
    value: bytes
    #: The original record's headers (no token, no MAC, none of the dead-letter headers).
    headers: Headers
    reason: str
    detail: str
    path: str
    schema: str
    source: str
    event_id: str
    origin: str

    @property
    def ref(self) -> str:
        """Where it is: ``topic/partition/offset``, what ``show`` and ``replay`` take."""
        return f"{self.topic}/{self.partition}/{self.offset}"

    @property
    def event_type(self) -> str:
        """The event's ``type`` as far as the bytes tell it, else ``""``."""
        doc = self.document()
        if isinstance(doc, dict) and isinstance(doc.get("type"), str):
            return str(doc["type"])
        return _header(self.headers, "ce_type")

    def document(self) -> Any:
        """The original event as JSON, or None when its bytes are not JSON."""
        try:
            return orjson.loads(self.value)
        except orjson.JSONDecodeError:
            return None

    def summary(self) -> dict[str, Any]:
        """One line's worth: when, where, who, what and why."""
        return {
            "ref": self.ref,
            "at": self.at.isoformat(),
            "topic": self.topic,
            "partition": self.partition,
            "offset": self.offset,
            "event_id": self.event_id,
            "source": self.source,
            "type": self.event_type,
            "reason": self.reason,
            "path": self.path,
        }

    def details(self) -> dict[str, Any]:
        """Everything the dead letter keeps: the summary, the detail, schema and origin, and
        the original event (its JSON, or its bytes as text) with its headers."""
        doc = self.document()
        return {
            **self.summary(),
            "detail": self.detail,
            "schema": self.schema,
            "origin": self.origin,
            "key": None if self.key is None else self.key.decode("utf-8", "replace"),
            "headers": {name: value.decode("utf-8", "replace") for name, value in self.headers},
            "event": doc if doc is not None else self.value.decode("utf-8", "replace"),
        }

    @classmethod
    def of(cls, record: Record) -> DeadLetter:
        """The dead letter a DLQ record holds."""
        original = [
            (name, value)
            for name, value in record.headers
            if name not in _DLQ_HEADERS and name not in _SECRET_HEADERS
        ]
        source = _header(record.headers, H_SOURCE)
        return cls(
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            at=datetime.fromtimestamp(record.timestamp_ms / 1000, UTC),
            key=record.key,
            value=record.value,
            headers=tuple(original),
            reason=_header(record.headers, H_REASON),
            detail=_header(record.headers, H_DETAIL),
            path=_header(record.headers, H_PATH),
            schema=_header(record.headers, H_SCHEMA),
            source=source,
            event_id=_header(record.headers, H_EVENT_ID),
            origin=_header(record.headers, H_ORIGIN),
        )


def _header(headers: Headers, name: str) -> str:
    for key, value in headers:
        if key == name:
            return value.decode("utf-8", "replace")
    return ""


def dead_letter_topics(domains: Iterable[str], topic_prefix: str = "") -> list[str]:
    """Every dead-letter topic: one beside each domain's topic, and ``unrouted.dlq``."""
    return [dlq_topic(topic_prefix + d) for d in domains] + [topic_prefix + UNROUTED_DLQ]


def parse_ref(ref: str) -> tuple[str, int, int]:
    """``topic/partition/offset`` as its parts; UnknownDeadLetterError for anything else."""
    topic, _, rest = ref.partition("/")
    partition, _, offset = rest.partition("/")
    if not topic.endswith(".dlq") or not partition.isdigit() or not offset.isdigit():
        raise UnknownDeadLetterError(
            f"{ref!r} is no dead-letter reference: write it as <topic>/<partition>/<offset>, "
            "e.g. transport.dlq/0/12, as `tsunagu deadletters list` prints it"
        )
    return topic, int(partition), int(offset)


def read_dead_letters(
    bus: Bus,
    topics: Sequence[str],
    *,
    timeout_s: float = 30.0,
    idle_s: float = 5.0,
    wanted: Callable[[Record], bool] | None = None,
    steps: Steps | None = None,
) -> list[DeadLetter]:
    """Every dead letter now on ``topics`` (those that exist), in no particular order;
    ``steps`` hears how many offsets of them were passed.

    Reads from the start to the end offsets taken first, as a group of its own that commits
    nothing. A partition whose first records have expired ends early; so the read also stops
    once ``idle_s`` pass without a record after the first one came. BusError when nothing at
    all came within ``timeout_s`` though the topics hold records.
    """
    ends: dict[tuple[str, int], int] = {}
    for topic in topics:
        try:
            offsets = bus.end_offsets(topic)
        except BusError as exc:
            if "unknown topic" in str(exc):
                continue  # nothing was ever dead-lettered there
            raise
        ends.update({(topic, p): end for p, end in offsets.items() if end > 0})
    if not ends:
        return []
    out: list[DeadLetter] = []
    total = sum(ends.values())
    # Where each partition's read has reached: an expired start counts as passed.
    reached = dict.fromkeys(ends, 0)
    consumer = bus.consumer(f"tsunagu-deadletters-{uuid.uuid4().hex}", sorted({t for t, _ in ends}))
    try:
        start = last = time.monotonic()
        seen_any = False
        while ends:
            now = time.monotonic()
            if seen_any and now - last > idle_s:
                break
            if not seen_any and now - start > timeout_s:
                raise BusError(
                    f"no dead letter arrived within {timeout_s:.0f} s though the topics hold "
                    "some: is the bus reachable from here?"
                )
            for record in consumer.poll(500, 0.5):
                seen_any, last = True, time.monotonic()
                where = (record.topic, record.partition)
                end = ends.get(where)
                if end is None:
                    continue
                if record.offset < end and (wanted is None or wanted(record)):
                    out.append(DeadLetter.of(record))
                if record.offset + 1 >= end:
                    del ends[where]
                if steps is not None:
                    reached[where] = min(record.offset + 1, end)
                    steps(sum(reached.values()), total)
    finally:
        consumer.close()
    return out


def find(bus: Bus, ref: str, *, timeout_s: float = 30.0) -> DeadLetter:
    """The dead letter ``ref`` names; UnknownDeadLetterError when there is none."""
    topic, partition, offset = parse_ref(ref)
    found = read_dead_letters(
        bus,
        [topic],
        timeout_s=timeout_s,
        wanted=lambda r: r.partition == partition and r.offset == offset,
    )
    if not found:
        raise UnknownDeadLetterError(
            f"no dead letter {ref}: it never existed or has expired "
            "(`tsunagu deadletters list` shows those there are)"
        )
    return found[0]


def select(
    letters: Iterable[DeadLetter],
    *,
    source: str | None = None,
    reason: str | None = None,
    since: datetime | None = None,
    limit: int | None = None,
) -> list[DeadLetter]:
    """The dead letters matching every filter given, newest first."""
    kept = [
        d
        for d in letters
        if (source is None or d.source == source)
        and (reason is None or d.reason == reason)
        and (since is None or d.at >= since)
    ]
    kept.sort(key=lambda d: (d.at, d.topic, d.partition, d.offset), reverse=True)
    return kept if limit is None else kept[:limit]


@dataclass(frozen=True, slots=True)
class Replay:
    """What a replay publishes: the event, on its domain's topic, as its connector signs it."""

    topic: str
    record: OutRecord
    event: CloudEvent


def replay_event(letter: DeadLetter, fixed: bytes | None) -> CloudEvent:
    """The event a replay would send (the dead letter's own, or ``fixed``), parsed; refuses a
    dead letter no one can vouch for, and a fixed event that changes the event id."""
    why = UNREPLAYABLE.get(DeadLetterReason(letter.reason)) if letter.reason in _REASONS else None
    if why is not None:
        raise ReplayRefusedError(
            f"{letter.ref} was dead-lettered as {letter.reason} ({why}), so it cannot be "
            "replayed; the connector that owns the event publishes it again with its own valid "
            "token (tsunagu connector run)"
        )
    value = letter.value if fixed is None else fixed
    headers = letter.headers if fixed is None else STRUCTURED_HEADERS
    try:
        event = cloudevents.from_kafka(headers, value)
    except cloudevents.NotJsonError as exc:
        raise StillInvalidError(Rejection(DeadLetterReason.NOT_JSON, str(exc))) from None
    except cloudevents.TooDeepError as exc:
        rejection = Rejection(DeadLetterReason.TOO_DEEP, str(exc), f"/{exc.attribute}")
        raise StillInvalidError(rejection) from None
    except cloudevents.EnvelopeError as exc:
        rejection = Rejection(DeadLetterReason.INVALID_ENVELOPE, str(exc), f"/{exc.attribute}")
        raise StillInvalidError(rejection) from None
    if letter.event_id and event.id != letter.event_id:
        # Ingest drops a repeat by its id: a new id would let a second replay in twice.
        raise ReplayRefusedError(
            f"the event's id is {event.id!r}, not the dead letter's {letter.event_id!r}: keep "
            "the id, so that the platform drops the event if it already has it"
        )
    return event


def replay_plan(
    letter: DeadLetter,
    event: CloudEvent,
    principal: Principal,
    sign: OriginSigner,
    validator: EventValidator,
    *,
    fixed: bytes | None = None,
    topic_prefix: str = "",
    domains: Collection[str],
) -> Replay:
    """The record that puts ``event`` (from ``replay_event``) back on its domain's topic under
    ``principal``'s own credentials, or why it may not go: the connector's entitlement (the
    same rule ingest applies), and the event's validity (the same checks)."""
    refused = entitlement(principal, event)
    if refused is not None:
        raise ReplayRefusedError(
            f"{letter.ref} cannot be replayed with this token: {refused.detail}"
        )
    if event.domain not in domains:
        raise StillInvalidError(
            Rejection(
                DeadLetterReason.UNKNOWN_TYPE,
                f"no domain declares event type {event.type!r}",
                "/type",
            )
        )
    topic = topic_prefix + event.domain
    if fixed is None:
        value, headers, key = letter.value, letter.headers, letter.key
    else:
        value, headers, key = fixed, STRUCTURED_HEADERS, event.subject.encode()
    record = OutRecord(key, value, tuple(headers))
    judged = validator.check_record(Record(topic, 0, 0, key, value, record.headers))
    # A schema version registered at run time is in the platform's store, not in the shipped
    # catalogue this command reads: ingest judges those itself.
    if isinstance(judged, Rejection) and judged.reason not in (
        DeadLetterReason.UNKNOWN_SCHEMA,
        DeadLetterReason.UNKNOWN_TYPE,
    ):
        raise StillInvalidError(judged)
    return Replay(topic, sign.sign(record), event)
