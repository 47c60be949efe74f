"""What a connector's reader yields: events to publish, or rows it could not read."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

#: Namespace of stable event ids: the same source row always gives the same event id, so a
#: re-run of an export (or a connector restarted mid-file) is deduplicated by the platform.
EVENT_ID_NAMESPACE = uuid.UUID("6f1c3a52-8e0b-5d7e-9a41-2b7c0d9e4f11")


def stable_event_id(source: str, event_type: str, natural_key: str) -> str:
    """A deterministic event id from the source, the type and the row's own key."""
    return str(uuid.uuid5(EVENT_ID_NAMESPACE, f"{source}|{event_type}|{natural_key}"))


@dataclass(frozen=True, slots=True)
class EventDraft:
    """One event a reader wants published; the SDK adds the CloudEvents envelope."""

    event_type: str
    subject: str
    data: dict[str, Any]
    natural_key: str  # the row's own id (trip id, award id, ...): makes the event id stable
    time: datetime
    line: int = 0  # the file line it came from, for reports (0: not given)
    #: The schema version the reader wrote ``data`` in (0: the connector's version of the type).
    #: A reader that speaks one major of a type (e.g. v1 of vacant-house listings) names it.
    schema_version: int = 0


@dataclass(frozen=True, slots=True)
class RowError:
    """A row a reader could not turn into an event, with where and why.

    ``line`` 0 is the input as a whole (a file that is not CSV, an unknown encoding) or, for a
    draft given without its line, ``item`` says which of the items given it was.
    """

    line: int
    reason: str
    file: str = ""  # the input it came from, when the publisher names it
    item: int = 0  # its place (1-based) among the items published, when it has no line

    def place(self) -> str:
        """Where the row is, for people: ``trips.csv line 7``, ``trips.csv``, ``item 3``."""
        if self.line:
            return f"{self.file} line {self.line}" if self.file else f"line {self.line}"
        if self.item:
            where = f"{self.file} item {self.item}" if self.file else f"item {self.item}"
            return where + " (give EventDraft its line= to name the line)"
        return self.file or "the input as a whole"
