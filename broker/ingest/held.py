"""Events under a service's pairwise subject (ID link): resolved to the resident at ingest, or
held sealed until the resident links that service.

A connector of a firm linked with the region ID publishes its customers' events under the
subject the region ID gave the firm (``data.subject``, no ``resident_id``). At ingest the
(connector, subject) pair resolves, through the resident's link with the firm, to the
resident, and the event is projected as theirs. An event whose subject is not linked (or no
longer is) is held: encrypted under the platform's held-events key, neither projected nor
readable by any role, counted in its batch's audit entry. A sweep releases held events once
their subject is linked (projected then, as if just arrived) and discards those held longer
than the retention the municipality sets; both are audited.
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import os
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from prometheus_client import Counter
from sqlalchemy import Connection, Engine, LargeBinary, and_, delete, select
from sqlmodel import Field, SQLModel

from broker.audit import AuditLog, EntryKind, NewEntry
from broker.regionid.links import active_links, resolve_many
from broker.store.projections import project
from broker.store.projections.timestamps import UtcDateTime
from consent.keys import load_or_create_key
from consent.vault import SubjectVault
from contract import cloudevents
from contract.cloudevents import CloudEvent

log = logging.getLogger(__name__)

HELD = Counter(
    "tsunagu_ingest_held_events_total",
    "Events held sealed: their service's subject is linked with no resident (yet)",
    ["type"],
)
RELEASED = Counter(
    "tsunagu_ingest_released_events_total", "Held events released: their subject was linked"
)
DISCARDED = Counter(
    "tsunagu_ingest_discarded_events_total", "Held events discarded after the retention period"
)
#: Held events released per sweep transaction (a long backlog goes in several).
RELEASE_BATCH = 500


class HeldEvent(SQLModel, table=True):
    """An event whose service subject no resident is linked with: sealed, never projected."""

    __tablename__ = "held_events"

    event_id: str = Field(primary_key=True, max_length=128)
    connector: str = Field(max_length=128)
    subject: str = Field(index=True, max_length=64)
    type: str = Field(max_length=128)
    held_at: datetime = Field(sa_type=UtcDateTime, index=True)
    sealed: bytes = Field(sa_type=LargeBinary)


HELD_EVENTS = HeldEvent.__table__  # type: ignore[attr-defined]


def service_subject(event: CloudEvent) -> str | None:
    """The service's pairwise subject ``event`` is about, when it names one instead of a
    resident's id."""
    data = event.data
    subject = data.get("subject")
    if isinstance(subject, str) and "resident_id" not in data:
        return subject
    return None


def as_residents(event: CloudEvent, resident_id: str) -> CloudEvent:
    """``event`` as the resident ``resident_id``'s: the service's subject replaced by their id
    (the projections know residents by id, never by a firm's subject)."""
    data = {k: v for k, v in event.data.items() if k != "subject"}
    data["resident_id"] = resident_id
    return dataclasses.replace(event, subject=resident_id, data=data)


@dataclasses.dataclass(frozen=True, slots=True)
class Resolution:
    """One batch's events after resolution: those to project now, and those held."""

    ready: list[CloudEvent]
    held: list[CloudEvent]


class HeldEvents:
    """Resolves service subjects at ingest, holds what does not resolve, releases and
    discards held events."""

    def __init__(self, key: bytes, retention_s: float) -> None:
        self._aead = AESGCM(key[:32])
        self.retention_s = retention_s

    @classmethod
    def in_keys_dir(cls, keys_dir: Path, retention_s: float) -> HeldEvents:
        """Held events sealed under ``keys_dir/held-events.key`` (made at first use)."""
        return cls(load_or_create_key(keys_dir / "held-events.key"), retention_s)

    # -- at ingest, inside the batch's transaction ---------------------------------------

    def resolve(
        self, conn: Connection, events: Sequence[CloudEvent], senders: dict[str, str]
    ) -> Resolution:
        """Each event under a service subject as its resident's, or held (sealed, in
        ``conn``'s transaction); ``senders`` maps an event id to its connector."""
        keyed = {
            e.id: (senders.get(e.id, ""), subject)
            for e in events
            if (subject := service_subject(e)) is not None
        }
        if not keyed:
            return Resolution(list(events), [])
        residents = resolve_many(conn, set(keyed.values()))
        ready: list[CloudEvent] = []
        held: list[CloudEvent] = []
        for e in events:
            pair = keyed.get(e.id)
            if pair is None:
                ready.append(e)
            elif (resident := residents.get(pair)) is not None:
                ready.append(as_residents(e, resident))
            else:
                held.append(e)
        if held:
            now = datetime.now(UTC)
            conn.execute(
                HELD_EVENTS.insert(),
                [
                    {
                        "event_id": e.id,
                        "connector": keyed[e.id][0],
                        "subject": keyed[e.id][1],
                        "type": e.type,
                        "held_at": now,
                        "sealed": self._seal(e),
                    }
                    for e in held
                ],
            )
            for event_type, n in collections.Counter(e.type for e in held).items():
                HELD.labels(event_type).inc(n)
        return Resolution(ready, held)

    # -- the sweep -----------------------------------------------------------------------

    def sweep(self, engine: Engine, vault: SubjectVault, audit: AuditLog | None) -> tuple[int, int]:
        """Release held events whose subject is now linked, discard those past retention;
        (released, discarded)."""
        released = 0
        while True:
            n = self._release_some(engine, vault, audit)
            released += n
            if n < RELEASE_BATCH:
                break
        return released, self._discard(engine, audit)

    def _release_some(self, engine: Engine, vault: SubjectVault, audit: AuditLog | None) -> int:
        # Under sealing(), as a batch is: an erasure in this process waits for it.
        with vault.sealing(), engine.begin() as conn:
            # Only the held events whose subject is linked now, however many others wait.
            linked = active_links().subquery()
            rows = conn.execute(
                select(
                    HELD_EVENTS.c.event_id,
                    HELD_EVENTS.c.connector,
                    HELD_EVENTS.c.sealed,
                    linked.c.account_id,
                )
                .join(
                    linked,
                    and_(
                        linked.c.subject == HELD_EVENTS.c.subject,
                        linked.c.connector == HELD_EVENTS.c.connector,
                    ),
                )
                .order_by(HELD_EVENTS.c.held_at)
                .limit(RELEASE_BATCH)
            ).all()
            if not rows:
                return 0
            events = [as_residents(self._open(r.event_id, r.sealed), r.account_id) for r in rows]
            project(conn, events, vault)
            conn.execute(
                delete(HELD_EVENTS).where(HELD_EVENTS.c.event_id.in_([r.event_id for r in rows]))
            )
            if audit is not None:
                per = collections.Counter((r.account_id, r.connector) for r in rows)
                audit.append_in(
                    conn,
                    [
                        NewEntry(
                            EntryKind.ID_LINK,
                            "ingest",
                            {"event": "released", "client": connector, "events": n},
                            subject=resident,
                        )
                        for (resident, connector), n in per.items()
                    ],
                )
        RELEASED.inc(len(rows))
        return len(rows)

    def _discard(self, engine: Engine, audit: AuditLog | None) -> int:
        cutoff = datetime.now(UTC) - timedelta(seconds=self.retention_s)
        with engine.begin() as conn:
            rows = conn.execute(
                select(HELD_EVENTS.c.connector).where(HELD_EVENTS.c.held_at < cutoff)
            ).all()
            if not rows:
                return 0
            conn.execute(delete(HELD_EVENTS).where(HELD_EVENTS.c.held_at < cutoff))
            if audit is not None:
                per = collections.Counter(r.connector for r in rows)
                audit.append_in(
                    conn,
                    [
                        NewEntry(
                            EntryKind.ID_LINK,
                            "ingest",
                            {"event": "discarded", "client": connector, "events": n},
                        )
                        for connector, n in per.items()
                    ],
                )
        DISCARDED.inc(len(rows))
        log.info("%d held event(s) discarded after %.0f s unlinked", len(rows), self.retention_s)
        return len(rows)

    # -- sealing -------------------------------------------------------------------------

    def _seal(self, event: CloudEvent) -> bytes:
        nonce = os.urandom(12)
        # The event id as associated data: a sealed event moved to another row fails to open.
        return nonce + self._aead.encrypt(nonce, event.to_json(), event.id.encode())

    def _open(self, event_id: str, sealed: bytes) -> CloudEvent:
        return cloudevents.parse(self._aead.decrypt(sealed[:12], sealed[12:], event_id.encode()))
