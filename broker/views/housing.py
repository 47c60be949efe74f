"""Vacant houses with transport access, for dual-residence support.

Each listing carries its public part (anyone approved for the purpose sees it), its access
to transport (the nearest stop and its distance, whether on-demand transport serves that
stop, and the trips that started or ended there in a closed JST month, as the k-anonymous
statistic ``trips-nearby`` publishes them: null below k residents) and, only where the property
rule allows, the owner-identifying details. The rule is asked for every listing, with the
owner as the store records it; a listing marked 管理者のみ閲覧 is never among them.

A listing in the standard model (v2) shows its public standard fields under the standard's
names; a v1 listing, v1's public fields.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, Table, and_, or_, select

from broker.store.projections.transport import TransportStop
from broker.store.projections.vacant_house import (
    AVAILABLE,
    LISTED_FOR_PUBLIC,
    PUBLIC_FIELDS,
    Listing,
)
from broker.views.statistics import SERVES, trips_nearby
from consent.decisions import Decision, DecisionPoint
from consent.errors import ConsentError
from consent.property_rule import (
    PROPERTY_LISTING,
    listing_shown,
    property_details_allowed,
)
from consent.vault import SubjectVault

_listings: Table = Listing.__table__  # type: ignore[attr-defined]
_stops: Table = TransportStop.__table__  # type: ignore[attr-defined]

#: Japan's real-estate advertising rule (不動産の表示に関する公正競争規約): one minute on foot
#: is 80 m, so a listing's "walk minutes" is a distance of at most that many 80 m.
METRES_PER_WALK_MINUTE = 80


@dataclass(frozen=True, slots=True)
class Access:
    """A listing's access to transport."""

    stop_id: str | None
    walk_minutes: int | None
    distance_m: int | None
    stop_town: str | None
    stop_lat: float | None
    stop_lon: float | None
    on_demand: bool
    bus: bool
    trips_nearby: int | None  # None: fewer than k residents, or not for this purpose


@dataclass(frozen=True, slots=True)
class HouseView:
    """One listing as the partner may see it."""

    listing_id: str
    owner_id: str
    registered_at: datetime | None
    public: dict[str, Any]
    access: Access
    owner_decision: Decision
    owner_details: dict[str, Any] | None


@dataclass(frozen=True, slots=True)
class HousePage:
    """One page of listings, with the decision on the public listing itself."""

    listing_decision: Decision
    houses: list[HouseView]
    next: tuple[datetime, str] | None


def vacant_houses(
    engine: Engine,
    vault: SubjectVault,
    decisions: DecisionPoint,
    *,
    partner: str,
    purpose: str,
    month: datetime,
    k: int,
    settle_days: int,
    town: str | None = None,
    available_only: bool = False,
    registered_from: datetime | None = None,
    registered_to: datetime | None = None,
    after: tuple[datetime, str] | None = None,
    limit: int = 50,
    now: datetime | None = None,
) -> HousePage:
    """One page of listings in (registered_at, listing_id) order, as ``partner`` may see them,
    with the trips near each stop in the JST month starting at ``month``, at ``k``: a month
    published, having ended at least ``settle_days`` days before ``now``."""
    listing_decision = decisions.decide(partner, purpose, PROPERTY_LISTING, "")
    if not listing_decision.allowed:
        return HousePage(listing_decision, [], None)
    # The property rule: only a listing its bank published leaves (``listing_shown``; the
    # others are left out here, so pages stay full).
    query = select(_listings).where(
        _listings.c.registered_at.is_not(None),
        or_(_listings.c.publication.is_(None), _listings.c.publication == LISTED_FOR_PUBLIC),
    )
    if town is not None:
        query = query.where(_listings.c.town == town)
    if available_only:
        query = query.where(_listings.c.status == AVAILABLE)
    if registered_from is not None:
        query = query.where(_listings.c.registered_at >= registered_from)
    if registered_to is not None:
        query = query.where(_listings.c.registered_at < registered_to)
    if after is not None:
        at, listing_id = after
        query = query.where(
            or_(
                _listings.c.registered_at > at,
                and_(_listings.c.registered_at == at, _listings.c.listing_id > listing_id),
            )
        )
    query = query.order_by(_listings.c.registered_at, _listings.c.listing_id).limit(limit + 1)
    with engine.connect() as conn:
        rows = [dict(r) for r in conn.execute(query).mappings()]
        more = len(rows) > limit
        rows = rows[:limit]
        stop_ids = sorted({r["nearest_stop_id"] for r in rows if r["nearest_stop_id"]})
        stops = {
            s["stop_id"]: s
            for s in conn.execute(select(_stops).where(_stops.c.stop_id.in_(stop_ids))).mappings()
        }
    # Trips near a stop are a statistic like the others: k-anonymous, over a closed month,
    # frozen, and only for the purposes it serves; never a count of a few residents' trips.
    nearby = (
        trips_nearby(engine, month, k=k, settle_days=settle_days, now=now)
        if purpose in SERVES["trips-nearby"]
        else None
    )
    houses = [
        _house(r, stops, nearby, vault, decisions, partner, purpose)
        for r in rows
        if listing_shown(r["publication"])
    ]
    last = rows[-1] if rows and more else None
    return HousePage(
        listing_decision,
        houses,
        (last["registered_at"], last["listing_id"]) if last else None,
    )


def _house(
    row: dict[str, Any],
    stops: dict[str, Any],
    nearby: dict[str, int | None] | None,
    vault: SubjectVault,
    decisions: DecisionPoint,
    partner: str,
    purpose: str,
) -> HouseView:
    stop_id = row["nearest_stop_id"]
    stop = stops.get(stop_id) if stop_id else None
    walk = row["walk_minutes_to_stop"]
    access = Access(
        stop_id=stop_id,
        walk_minutes=walk,
        distance_m=walk * METRES_PER_WALK_MINUTE if walk is not None else None,
        stop_town=stop["town"] if stop else None,
        stop_lat=stop["lat"] if stop else None,
        stop_lon=stop["lon"] if stop else None,
        on_demand=bool(stop and stop["on_demand"]),
        bus=bool(stop and stop["bus"]),
        trips_nearby=None if nearby is None else nearby.get(stop_id, 0) if stop_id else 0,
    )
    # The property rule, for this house's owner as the store has it; nothing overrides it.
    decision = property_details_allowed(decisions, partner, purpose, row["owner_id"])
    details: dict[str, Any] | None = None
    if decision.allowed and row["owner_details_sealed"] is not None:
        try:
            details = vault.open(row["owner_id"], row["owner_details_sealed"])
        except ConsentError:
            details = None  # the owner was erased meanwhile: nothing to show
    return HouseView(
        listing_id=row["listing_id"],
        owner_id=row["owner_id"],
        registered_at=row["registered_at"],
        public=dict(row["standard"])
        if row["standard"] is not None
        else {name: row[name] for name in PUBLIC_FIELDS},
        access=access,
        owner_decision=decision,
        owner_details=details,
    )
