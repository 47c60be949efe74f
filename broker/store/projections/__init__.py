"""Projections: the tables the views read, written from accepted events.

Rows about a person carry their blind row reference (``subject_ref``), never their id, and
seal their precise fields under the person's key (``consent.vault``, which the store knows
only as ``sealing.SubjectVault``); erasure destroys the key and deletes the rows in
``SUBJECT_TABLES`` and the listings the person owns.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from sqlalchemy import Connection, Table

from broker.store.projections.currency import CurrencyTransaction, project_currency
from broker.store.projections.health import HealthPoints, project_health
from broker.store.projections.sealing import BatchKeys, SubjectVault, key_subject
from broker.store.projections.transport import RideRequest, Trip, project_transport
from broker.store.projections.vacant_house import Inquiry, Listing, project_vacant_house
from contract.cloudevents import CloudEvent

Projector = Callable[[Connection, Sequence[CloudEvent], BatchKeys], None]

#: One projector per domain; each receives that domain's events in bus order.
PROJECTORS: dict[str, Projector] = {
    "transport": project_transport,
    "health": project_health,
    "currency": project_currency,
    "vacant_house": project_vacant_house,
}

#: Tables whose rows are about one person, named by ``subject_ref``.
SUBJECT_TABLES: tuple[Table, ...] = (
    Trip.__table__,  # type: ignore[attr-defined]
    RideRequest.__table__,  # type: ignore[attr-defined]
    HealthPoints.__table__,  # type: ignore[attr-defined]
    CurrencyTransaction.__table__,  # type: ignore[attr-defined]
    Inquiry.__table__,  # type: ignore[attr-defined]
)
#: Listings, whose owner is named by ``owner_id`` (the property rule needs it in clear).
LISTINGS: Table = Listing.__table__  # type: ignore[attr-defined]


def project(
    conn: Connection, events: Sequence[CloudEvent], vault: SubjectVault
) -> list[CloudEvent]:
    """Write ``events`` (already validated and new) to the projections, inside ``conn``'s tx.

    Returns the events about erased subjects: they are projected nowhere.
    """
    subjects = {s for e in events if (s := key_subject(e)) is not None}
    keys = BatchKeys(vault, subjects)
    gone = {s for s in subjects if s not in keys}
    erased: list[CloudEvent] = []
    kept = events
    if gone:  # rare: events of someone erased, taken in but projected nowhere
        erased = [e for e in events if key_subject(e) in gone]
        kept = [e for e in events if key_subject(e) not in gone]
    by_domain: dict[str, list[CloudEvent]] = {}
    for e in kept:
        by_domain.setdefault(e.domain, []).append(e)
    for domain, domain_events in by_domain.items():
        PROJECTORS[domain](conn, domain_events, keys)
    return erased
