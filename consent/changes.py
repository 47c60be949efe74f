"""The ``consent.changes`` records: what changed, so every process can drop what it cached.

The topic is compacted, and never names a subject: a consent change is published keyed by
its consent id (scope ``consent``; a reader finds the subject in the store), an erasure by a
random id (scope ``erasure``: every reader drops what it cached of anyone), and partner
changes by the partner id. An erasure scrubs the subject from their consent rows, so what the
topic keeps for ever then links to no one. It has one partition: consent changes are few, one
total order is simpler to reason about, and a listener can tell it has caught up by seeing
its own marker come back (see ``listener``). In-process, before publishing, a change names
its subject (scope ``subject``), for this process's caches and audit entries.

A record only says *that* something changed and where; the store stays the truth. Readers
must not rebuild consents from this topic: compaction drops all but the last change per key.
"""

from __future__ import annotations

import uuid
from dataclasses import asdict, dataclass, replace
from enum import StrEnum
from typing import Any

import orjson

from contract.bus import OutRecord, Record, TopicSpec

#: The topic name before the platform's topic prefix.
CONSENT_CHANGES_TOPIC = "consent.changes"
#: The key of listeners' catch-up markers; ids of subjects and partners never look like it.
MARKER_KEY = "_listener"


class ChangeScope(StrEnum):
    """Which cached entries a change invalidates."""

    SUBJECT = "subject"  # the subject's consents (key = subject id; in-process only)
    CONSENT = "consent"  # the consents of the subject of one consent (key = consent id)
    ERASURE = "erasure"  # someone was erased: every cached subject (key = a random id)
    PARTNER = "partner"  # the partner and its purpose approvals (key = partner id)
    MARKER = "marker"  # nothing: a listener checking that it has caught up


def changes_topic(topic: str = CONSENT_CHANGES_TOPIC) -> TopicSpec:
    """How the changes topic is created: one partition, compacted."""
    return TopicSpec(topic, partitions=1, compacted=True)


@dataclass(frozen=True, slots=True)
class ConsentChange:
    """One change, as published on ``consent.changes``."""

    scope: ChangeScope
    key: str
    #: granted, amended, paused, resumed, revoked, partner_registered, purpose_approved,
    #: purpose_withdrawn, erased (future), or marker.
    event: str
    at: str
    consent_id: str | None = None
    supersedes: str | None = None
    partner_id: str | None = None
    purpose: str | None = None
    status: str | None = None
    #: The store's consent epoch this change moved it to (none on markers).
    epoch: int | None = None

    def published(self) -> ConsentChange:
        """This change as ``consent.changes`` carries it: never keyed by, nor naming, a
        subject (see the module doc)."""
        if self.scope is not ChangeScope.SUBJECT:
            return self
        if self.consent_id is not None:
            return replace(self, scope=ChangeScope.CONSENT, key=self.consent_id)
        return replace(self, scope=ChangeScope.ERASURE, key=f"ers-{uuid.uuid4().hex}")

    def to_value(self) -> dict[str, str | int | None]:
        """The JSON object published as the record value."""
        return asdict(self)

    def to_record(self) -> OutRecord:
        """The bus record: key = the change's key (see ``published``), value = JSON."""
        return OutRecord(self.key.encode("utf-8"), orjson.dumps(self.to_value()))

    @classmethod
    def from_value(cls, value: dict[str, Any]) -> ConsentChange:
        """Parse a record value; unknown fields (from newer writers) are ignored."""
        scope, key, event, at = value["scope"], value["key"], value["event"], value["at"]
        if scope is None or key is None or event is None or at is None:
            raise ValueError("a consent change needs scope, key, event and at")
        return cls(
            scope=ChangeScope(scope),
            key=key,
            event=event,
            at=at,
            consent_id=value.get("consent_id"),
            supersedes=value.get("supersedes"),
            partner_id=value.get("partner_id"),
            purpose=value.get("purpose"),
            status=value.get("status"),
            epoch=_epoch_of(value.get("epoch")),
        )

    @classmethod
    def from_record(cls, record: Record) -> ConsentChange:
        """Parse a record read from the topic (ValueError when it is not one)."""
        value = orjson.loads(record.value)
        if not isinstance(value, dict):
            raise ValueError("a consent change is a JSON object")
        return cls.from_value(value)


def _epoch_of(value: object) -> int | None:
    # Changes from before epochs existed carry none.
    return value if isinstance(value, int) and not isinstance(value, bool) else None
