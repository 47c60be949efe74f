"""A connector: validate each draft locally, queue it durably, let the sender deliver it.

    with Connector("urn:tsunagu:connector:mitoyo-ondemand", ["transport.trip.completed"],
                   LocalSchemas("schemas"), "var/outbox.db", BusSink(open_bus(url))) as c:
        report = c.publish_all(read_trips("trips.csv"))
        print(report.summary())
        c.drain()

``publish`` returns once the event is in the outbox file: from then on it survives a bus
outage and a crash of the process, and is delivered by ``drain()`` or the background sender.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import TracebackType
from typing import Literal

from connectors.sdk.metrics import INVALID
from connectors.sdk.outbox import Outbox, OutboxEntry
from connectors.sdk.rows import EventDraft, RowError, stable_event_id
from connectors.sdk.schemas import Identity, Schemas
from connectors.sdk.sender import Backoff, DrainReport, Sender
from connectors.sdk.sinks import Sink
from contract.catalogue import RegistryError, SchemaVersion
from contract.cloudevents import CloudEvent

__all__ = ["Connector", "InvalidEventError", "PublishReport"]

DEFAULT_MAX_EVENT_BYTES = 1024 * 1024  # the platform dead-letters larger events as too_large


class InvalidEventError(ValueError):
    """A draft that cannot become an event; ``error`` names its line and the reason."""

    def __init__(self, error: RowError) -> None:
        super().__init__(f"line {error.line}: {error.reason}" if error.line else error.reason)
        self.error = error

    def at(self, item: int, file: str) -> RowError:
        """The error placed: in ``file`` (when named), and as ``item`` when it has no line."""
        return replace(self.error, file=file, item=0 if self.error.line else item)


@dataclass(slots=True)
class PublishReport:
    """What ``publish_all`` did with each item."""

    accepted: int = 0  # newly queued
    duplicates: int = 0  # already queued, or already sent (a re-run of the same export)
    errors: list[RowError] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Whether every row became an event."""
        return not self.errors

    def add(self, other: PublishReport) -> None:
        """Count ``other`` (another file of the same run) in this report."""
        self.accepted += other.accepted
        self.duplicates += other.duplicates
        self.errors.extend(other.errors)

    def summary(self) -> str:
        """A human summary naming where each refused row is: ``trips.csv line 7: ...``."""
        head = (
            f"{self.accepted} events queued, {self.duplicates} already queued or sent, "
            f"{len(self.errors)} rows refused"
        )
        if not self.errors:
            return head
        lines = [f"  {e.place()}: {e.reason}" for e in self.errors]
        return head + ":\n" + "\n".join(lines)


class Connector:
    """One service's connector: its source id, the event types it may publish, its outbox.

    ``identity`` says how its events name the person they are about: by the platform's
    ``resident_id`` (the versions before ID link, accepted until their deprecation date), or
    by the ``subject`` the region ID gave the service when its customer linked it.
    """

    def __init__(
        self,
        source: str,
        event_types: Sequence[str],
        schemas: Schemas,
        outbox_path: str | os.PathLike[str],
        sink: Sink,
        *,
        topic_prefix: str = "",
        schema_versions: Mapping[str, int] | None = None,
        identity: Identity = "resident_id",
        batch_size: int = 500,
        chunk_size: int = 5000,
        backoff: Backoff | None = None,
        max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES,
        synchronous: Literal["NORMAL", "FULL"] = "NORMAL",
    ) -> None:
        if not source:
            raise ValueError("a connector needs a source, e.g. urn:tsunagu:connector:<name>")
        if not event_types:
            raise ValueError("a connector must declare the event types it publishes")
        pins = dict(schema_versions or {})
        if unknown := set(pins) - set(event_types):
            raise ValueError(f"schema_versions names undeclared types {sorted(unknown)}")
        self.source = source
        self.schemas = schemas
        self.topic_prefix = topic_prefix
        self.chunk_size = chunk_size
        self.max_event_bytes = max_event_bytes
        # Looked up now: an unknown type or an unreachable registry fails at start, not mid-file.
        # Unpinned, each type's latest version naming people the way this connector does.
        self.versions: dict[str, SchemaVersion] = {
            t: schemas.version(t, pins[t]) if t in pins else schemas.naming(t, identity)
            for t in event_types
        }
        self.outbox = Outbox(outbox_path, synchronous=synchronous)
        self.sender = Sender(
            self.outbox, sink, connector=source, batch_size=batch_size, backoff=backoff
        )
        self._invalid = INVALID.labels(source)

    @property
    def outbox_path(self) -> Path:
        """The outbox file."""
        return self.outbox.path

    def build(self, draft: EventDraft) -> CloudEvent:
        """The CloudEvent for ``draft``, checked against its schema; raises InvalidEventError."""
        reason = self._envelope_problem(draft)
        if reason:
            raise InvalidEventError(RowError(draft.line, reason))
        version = self.versions[draft.event_type]
        if draft.schema_version and draft.schema_version != version.version:
            try:
                version = self.schemas.version(draft.event_type, draft.schema_version)
            except RegistryError as exc:
                raise InvalidEventError(RowError(draft.line, str(exc))) from None
        event = CloudEvent(
            id=stable_event_id(self.source, draft.event_type, draft.natural_key),
            source=self.source,
            type=draft.event_type,
            subject=draft.subject,
            time=draft.time,
            data=draft.data,
            dataschema=version.urn,
        )
        rejection = self.schemas.check(event)
        if rejection is not None:
            raise InvalidEventError(RowError(draft.line, rejection.detail))
        return event

    def _envelope_problem(self, draft: EventDraft) -> str:
        if draft.event_type not in self.versions:
            return (
                f"event type {draft.event_type!r} is not declared by this connector"
                f" (declared: {', '.join(sorted(self.versions))})"
            )
        if not draft.subject:
            return "subject is empty"
        if not draft.natural_key:
            return "natural_key is empty (the event id is made from it)"
        if draft.time.tzinfo is None or draft.time.utcoffset() is None:
            return f"time {draft.time.isoformat()} has no UTC offset"
        if not isinstance(draft.data, dict):
            return f"data must be an object, not {type(draft.data).__name__}"
        return ""

    def _entry(self, draft: EventDraft, file: str = "") -> OutboxEntry:
        event = self.build(draft)
        value = event.to_json()
        if len(value) > self.max_event_bytes:
            raise InvalidEventError(
                RowError(
                    draft.line,
                    f"event is {len(value)} bytes, over the limit of {self.max_event_bytes}",
                )
            )
        origin = RowError(draft.line, "", file).place() if draft.line else file
        return OutboxEntry(
            event.id, self.topic_prefix + event.domain, event.subject.encode(), value, origin
        )

    def publish(self, draft: EventDraft) -> str:
        """Queue one event durably and return its id; raises InvalidEventError when invalid."""
        try:
            entry = self._entry(draft)
        except InvalidEventError:
            self._invalid.inc()
            raise
        if self.outbox.add(entry):
            self.sender.wake()
        return entry.event_id

    def publish_all(
        self, items: Iterable[EventDraft | RowError], *, file: str = ""
    ) -> PublishReport:
        """Queue every valid draft (``chunk_size`` per transaction); report each bad row, in
        ``file`` when named, by its line (or, for a draft without one, its place in ``items``)."""
        report = PublishReport()
        chunk: list[OutboxEntry] = []
        for number, item in enumerate(items, start=1):
            if isinstance(item, RowError):
                report.errors.append(replace(item, file=file) if file else item)
                self._invalid.inc()
                continue
            try:
                chunk.append(self._entry(item, file))
            except InvalidEventError as exc:
                report.errors.append(exc.at(number, file))
                self._invalid.inc()
                continue
            if len(chunk) >= self.chunk_size:
                self._queue(chunk, report)
                chunk = []
        self._queue(chunk, report)
        return report

    def _queue(self, chunk: list[OutboxEntry], report: PublishReport) -> None:
        if not chunk:
            return
        new = self.outbox.add_many(chunk)
        report.accepted += new
        report.duplicates += len(chunk) - new
        if new:
            self.sender.wake()

    def drain(
        self, timeout_s: float | None = None, *, give_up_on_credentials: bool = False
    ) -> DrainReport:
        """Deliver everything queued, retrying with backoff (at most ``timeout_s`` if given);
        with ``give_up_on_credentials``, stop at a 401/403 instead of retrying."""
        return self.sender.drain(
            until_empty=True, timeout_s=timeout_s, give_up_on_credentials=give_up_on_credentials
        )

    def flush(self, timeout_s: float | None = None) -> DrainReport:
        """Same as ``drain()``."""
        return self.drain(timeout_s)

    def start(self) -> None:
        """Deliver in a background thread as events are published."""
        self.sender.start()

    def stop(self, timeout_s: float = 30.0) -> None:
        """Stop the background sender after its current batch."""
        self.sender.stop(timeout_s)

    def depth(self) -> int:
        """How many events wait in the outbox."""
        return self.outbox.depth()

    def close(self) -> None:
        """Stop the background sender and close the outbox (undelivered events stay in it).

        The sink and the schemas belong to the caller, who closes them.
        """
        self.sender.stop()
        self.outbox.close()

    def __enter__(self) -> Connector:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
