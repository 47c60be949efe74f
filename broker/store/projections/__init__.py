"""Projections: the tables the views read, written from accepted events.

Rows about a person carry their blind row reference (``subject_ref``), never their id, and
seal their precise fields under the person's key (``consent.vault``, which the store knows
only as ``sealing.SubjectVault``); erasure destroys the key and deletes the rows in
``subject_tables()`` and the listings the person owns.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from pkgutil import resolve_name

from sqlalchemy import Connection, Engine, Table
from sqlmodel import SQLModel

from broker.store.database import create_all_racing
from broker.store.projections.projection import Projection, Projector
from broker.store.projections.sealing import BatchKeys, SubjectVault, key_subject
from broker.store.projections.vacant_house import Listing
from contract.cloudevents import CloudEvent
from contract.domains import DOMAINS, Domain, DomainError, DomainRegistry

__all__ = ["LISTINGS", "Projection", "Projector", "project", "projection_of", "subject_tables"]

#: Listings, whose owner is named by ``owner_id`` (the property rule needs it in clear).
LISTINGS: Table = Listing.__table__  # type: ignore[attr-defined]


def projection_of(domain: Domain) -> Projection:
    """The projection ``domain``'s declaration names (DomainError when it names none)."""
    return _resolve(domain.projection, str(domain))


@cache
def _resolve(reference: str, who: str) -> Projection:
    if not reference:
        raise DomainError(f"{who} names no projection; set projection='module:PROJECTION'")
    try:
        found = resolve_name(reference)
    except (ImportError, AttributeError, ValueError) as exc:
        raise DomainError(f"{who}: its projection {reference!r} cannot be imported: {exc}") from exc
    if not isinstance(found, Projection):
        raise DomainError(
            f"{who}: its projection {reference!r} is a {type(found).__name__}, not a "
            "broker.store.projections.Projection"
        )
    return found


def subject_tables(domains: DomainRegistry = DOMAINS) -> tuple[Table, ...]:
    """Tables whose rows are about one person, named by ``subject_ref`` (erasure's list)."""
    return tuple(t for d in domains for t in projection_of(d).subject_tables)


def create_tables(engine: Engine, domains: DomainRegistry = DOMAINS) -> None:
    """Create the tables of every domain's projection that the store lacks (a plug-in's
    first start creates its own)."""
    tables = [t for d in domains for t in projection_of(d).tables]
    create_all_racing(engine, SQLModel.metadata, tables)


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
        projection_of(DOMAINS.get(domain)).project(conn, domain_events, keys)
    return erased
