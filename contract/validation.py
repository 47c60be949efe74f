"""Turn a bus record into an accepted CloudEvent or a Rejection naming what is wrong."""

from __future__ import annotations

from collections.abc import Callable, Collection
from datetime import UTC, datetime

from contract import cloudevents
from contract.bus import Record
from contract.catalogue import SchemaCatalogue, UnknownSchemaError, UnknownTypeError
from contract.cloudevents import CloudEvent
from contract.deadletter import DeadLetterReason, Rejection


def json_pointer(parts: list[str | int]) -> str:
    """A JSON pointer (RFC 6901) from path parts."""
    return "".join("/" + str(p).replace("~", "~0").replace("/", "~1") for p in parts)


class EventValidator:
    """Checks size, envelope, type, topic and data schema; fast on the valid path."""

    def __init__(
        self,
        registry: SchemaCatalogue,
        max_event_bytes: int,
        topic_prefix: str = "",
        refresh: Callable[[], bool] | None = None,
        domains: Collection[str] | None = None,
    ) -> None:
        self.registry = registry
        #: The domains whose events are accepted (None: any the catalogue has schemas for).
        self.domains = domains
        self.refresh = refresh
        self.max_event_bytes = max_event_bytes
        self.topic_prefix = topic_prefix

    def check_record(self, record: Record) -> CloudEvent | Rejection:
        """The event in ``record`` if it is acceptable on ``record.topic``, else why not."""
        if len(record.value) > self.max_event_bytes:
            return Rejection(
                DeadLetterReason.TOO_LARGE,
                f"event is {len(record.value)} bytes, over the limit of {self.max_event_bytes}",
            )
        try:
            event = cloudevents.from_kafka(record.headers, record.value)
        except cloudevents.NotJsonError as exc:
            return Rejection(DeadLetterReason.NOT_JSON, str(exc))
        except cloudevents.TooDeepError as exc:
            return Rejection(DeadLetterReason.TOO_DEEP, str(exc), path=f"/{exc.attribute}")
        except cloudevents.EnvelopeError as exc:
            return Rejection(DeadLetterReason.INVALID_ENVELOPE, str(exc), path=f"/{exc.attribute}")
        if self.topic_prefix + event.domain != record.topic:
            return Rejection(
                DeadLetterReason.WRONG_TOPIC,
                f"type {event.type} belongs on topic {self.topic_prefix + event.domain!r}, "
                f"not {record.topic!r}",
                path="/type",
                source=event.source,
                event_id=event.id,
            )
        return self.check_data(event)

    def check_data(self, event: CloudEvent) -> CloudEvent | Rejection:
        """``event`` if its domain is known and its data matches its schema, else why not."""
        if self.domains is not None and event.domain not in self.domains:
            return Rejection(
                DeadLetterReason.UNKNOWN_TYPE,
                f"no domain declares event type {event.type!r}; the platform's domains are "
                f"{', '.join(sorted(self.domains))} (a new one is installed as a plug-in)",
                "/type",
                "",
                event.source,
                event.id,
            )
        try:
            try:
                version = self.registry.resolve(event.type, event.dataschema)
            except (UnknownTypeError, UnknownSchemaError):
                # It may have been registered by another process a moment ago.
                if self.refresh is None or not self.refresh():
                    raise
                version = self.registry.resolve(event.type, event.dataschema)
        except UnknownTypeError as exc:
            return Rejection(
                DeadLetterReason.UNKNOWN_TYPE, str(exc), "/type", "", event.source, event.id
            )
        except UnknownSchemaError as exc:
            return Rejection(
                DeadLetterReason.UNKNOWN_SCHEMA,
                str(exc),
                "/dataschema",
                event.dataschema or "",
                event.source,
                event.id,
            )
        until = self.registry.deprecations.get((version.event_type, version.version))
        if until is not None and datetime.now(UTC).date() > until:
            return Rejection(
                DeadLetterReason.UNKNOWN_SCHEMA,
                f"{version.urn} was accepted until {until.isoformat()} (deprecated): publish "
                f"the latest version of {event.type}, {self.registry.get(event.type).urn}",
                "/dataschema",
                version.urn,
                event.source,
                event.id,
            )
        validator = self.registry.validator(version)
        if validator.is_valid(event.data):
            return event
        error = next(iter(validator.iter_errors(event.data)))
        return Rejection(
            DeadLetterReason.SCHEMA_VIOLATION,
            f"data{json_pointer(list(error.instance_path)) or ' (root)'}: {error.message}",
            path="/data" + json_pointer(list(error.instance_path)),
            schema=version.urn,
            source=event.source,
            event_id=event.id,
        )
