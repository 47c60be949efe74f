"""Projections: the tables the views read, written from accepted events."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from sqlalchemy import Connection

from broker.cloudevents import CloudEvent
from broker.store.projections.currency import project_currency
from broker.store.projections.health import project_health
from broker.store.projections.transport import project_transport
from broker.store.projections.vacant_house import project_vacant_house

Projector = Callable[[Connection, Sequence[CloudEvent]], None]

#: One projector per domain; each receives that domain's events in bus order.
PROJECTORS: dict[str, Projector] = {
    "transport": project_transport,
    "health": project_health,
    "currency": project_currency,
    "vacant_house": project_vacant_house,
}


def project(conn: Connection, events: Sequence[CloudEvent]) -> None:
    """Write ``events`` (already validated and new) to the projections, inside ``conn``'s tx."""
    by_domain: dict[str, list[CloudEvent]] = {}
    for e in events:
        by_domain.setdefault(e.domain, []).append(e)
    for domain, domain_events in by_domain.items():
        PROJECTORS[domain](conn, domain_events)
