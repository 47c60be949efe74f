"""A resident's cross-service view: trips, health points and local-currency activity side by
side over a period, with per-category totals.

Each category is decided on its own by the consent decision point; a category refused is
left out and reported as withheld with the decision's reason, never silently missing. Items
are merged across services in (time, id) order and paginated by a keyset cursor.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Connection,
    Engine,
    RowMapping,
    Select,
    Table,
    and_,
    bindparam,
    case,
    func,
    or_,
    select,
)

from broker.store.projections.currency import CurrencyTransaction
from broker.store.projections.health import HealthPoints
from broker.store.projections.transport import RideRequest, Trip
from broker.views.cursors import Position
from consent.decisions import Decision, DecisionPoint
from consent.vault import SubjectVault

_trips: Table = Trip.__table__  # type: ignore[attr-defined]
_rides: Table = RideRequest.__table__  # type: ignore[attr-defined]
_points: Table = HealthPoints.__table__  # type: ignore[attr-defined]
_money: Table = CurrencyTransaction.__table__  # type: ignore[attr-defined]

#: The clear columns a partner sees per table (the sealed ones are opened and added).
_SHOWN: dict[str, tuple[str, ...]] = {
    "transport_trips": (
        "trip_id",
        "mode",
        "operator_id",
        "origin_stop_id",
        "origin_town",
        "destination_stop_id",
        "destination_town",
        "pickup_at",
        "dropoff_at",
        "fare_jpy",
        "passengers",
    ),
    "transport_ride_requests": (
        "request_id",
        "mode",
        "operator_id",
        "origin_stop_id",
        "origin_town",
        "destination_stop_id",
        "destination_town",
        "requested_at",
        "passengers",
        "channel",
    ),
    "health_points": ("programme_id", "kind", "points", "reason"),
    "currency_transactions": ("kind", "amount_jpy", "merchant_category", "town", "points"),
}


@dataclass(frozen=True, slots=True)
class _Source:
    """One table feeding a category: its time column and the kind of its items."""

    table: Table
    time: str
    kind: Callable[[RowMapping], str]


def _fixed(kind: str) -> Callable[[RowMapping], str]:
    return lambda _row: kind


#: The categories of the view and the tables behind each, in display order.
CATEGORIES: dict[str, tuple[_Source, ...]] = {
    "transport.trips": (
        _Source(_trips, "pickup_at", _fixed("trip")),
        _Source(_rides, "requested_at", _fixed("ride_request")),
    ),
    "health.points": (_Source(_points, "occurred_at", lambda r: f"points_{r['kind']}"),),
    "currency.transactions": (_Source(_money, "occurred_at", lambda r: str(r["kind"])),),
}


@dataclass(frozen=True, slots=True)
class Item:
    """One event of the resident in one service."""

    category: str
    kind: str
    id: str
    at: datetime
    data: dict[str, Any]


@dataclass(frozen=True, slots=True)
class CategoryResult:
    """A category's part of the view: included with totals, or withheld with the reason."""

    category: str
    decision: Decision
    totals: dict[str, int] = field(default_factory=dict)
    #: The period actually read: the request's, narrowed to the consent's data range.
    data_from: datetime | None = None
    data_to: datetime | None = None


@dataclass(frozen=True, slots=True)
class ActivityPage:
    """One page of the view."""

    categories: list[CategoryResult]
    items: list[Item]
    next: Position | None


def _window(decision: Decision, start: datetime, end: datetime) -> tuple[datetime, datetime] | None:
    lo = max(start, decision.data_from) if decision.data_from else start
    hi = min(end, decision.data_to) if decision.data_to else end
    return (lo, hi) if lo < hi else None


# The statements are built once, with bind parameters: rebuilding SQLAlchemy expressions on
# every request cost more than running them.
_TIME = _trips.c.pickup_at.type


def _in_window(table: Table, time: str) -> Any:
    t = table.c[time]
    return and_(
        table.c.subject_ref == bindparam("ref"),
        t >= bindparam("lo", type_=_TIME),
        t < bindparam("hi", type_=_TIME),
    )


_TOTALS: dict[str, tuple[Select[Any], ...]] = {
    "transport.trips": (
        select(
            func.count(),
            func.coalesce(func.sum(_trips.c.fare_jpy), 0),
            func.coalesce(func.sum(_trips.c.passengers), 0),
        ).where(_in_window(_trips, "pickup_at")),
        select(func.count()).select_from(_rides).where(_in_window(_rides, "requested_at")),
    ),
    "health.points": (
        select(
            func.coalesce(func.sum(case((_points.c.points > 0, _points.c.points), else_=0)), 0),
            func.coalesce(func.sum(case((_points.c.points < 0, -_points.c.points), else_=0)), 0),
        ).where(_in_window(_points, "occurred_at")),
    ),
    "currency.transactions": (
        select(_money.c.kind, func.count(), func.coalesce(func.sum(_money.c.amount_jpy), 0))
        .where(_in_window(_money, "occurred_at"))
        .group_by(_money.c.kind),
    ),
}


def _page_statement(source: _Source, after: bool) -> Select[Any]:
    table, t = source.table, source.table.c[source.time]
    query = select(table).where(_in_window(table, source.time))
    if after:
        # Keyset: strictly after the last item served, so inserts never shift a page.
        at = bindparam("after_at", type_=_TIME)
        query = query.where(or_(t > at, and_(t == at, table.c.event_id > bindparam("after_id"))))
    return query.order_by(t, table.c.event_id).limit(bindparam("n"))


_PAGES = {
    (source.table.name, after): _page_statement(source, after)
    for sources in CATEGORIES.values()
    for source in sources
    for after in (False, True)
}


def _totals(conn: Connection, category: str, params: dict[str, Any]) -> dict[str, int]:
    statements = _TOTALS[category]
    if category == "transport.trips":
        trips, fare, passengers = conn.execute(statements[0], params).one()
        rides = conn.execute(statements[1], params).scalar_one()
        return {"trips": trips, "fare_jpy": fare, "passengers": passengers, "ride_requests": rides}
    if category == "health.points":
        awarded, redeemed = conn.execute(statements[0], params).one()
        return {"awarded": awarded, "redeemed": redeemed, "net": awarded - redeemed}
    by_kind = {kind: (n, amount) for kind, n, amount in conn.execute(statements[0], params)}
    return {
        "payments": by_kind.get("payment", (0, 0))[0],
        "spent_jpy": by_kind.get("payment", (0, 0))[1],
        "topped_up_jpy": by_kind.get("topped_up", (0, 0))[1],
        "converted_jpy": by_kind.get("conversion", (0, 0))[1],
    }


def activity(
    engine: Engine,
    vault: SubjectVault,
    decisions: DecisionPoint,
    *,
    partner: str,
    purpose: str,
    subject: str,
    start: datetime,
    end: datetime,
    categories: Sequence[str] = tuple(CATEGORIES),
    after: Position | None = None,
    limit: int = 100,
) -> ActivityPage:
    """One page of ``subject``'s activity in [start, end) as ``partner`` may see it."""
    key = vault.keys_for((subject,), create=False).get(subject)
    # Decided before a connection is taken: a decision missing its cache reads the store with
    # a connection of its own, and holding one here while waiting for another can exhaust
    # the pool under load.
    decided = [(c, decisions.decide(partner, purpose, c, subject)) for c in categories]
    results: list[CategoryResult] = []
    candidates: list[Item] = []
    more = False
    with engine.connect() as conn:
        for category, decision in decided:
            window = _window(decision, start, end) if decision.allowed else None
            if not decision.allowed or window is None or key is None:
                # Allowed but nothing to read (no overlap with the consent's data range, or
                # the subject has no data at all): included, with zero totals.
                results.append(
                    CategoryResult(category, decision, _zero(category) if decision.allowed else {})
                )
                continue
            lo, hi = window
            params: dict[str, Any] = {"ref": key.ref, "lo": lo, "hi": hi, "n": limit + 1}
            if after is not None:
                params.update(after_at=after.at, after_id=after.id)
            totals = _totals(conn, category, params)
            results.append(CategoryResult(category, decision, totals, lo, hi))
            for source in CATEGORIES[category]:
                shown = _SHOWN[source.table.name]
                fetched = 0
                statement = _PAGES[source.table.name, after is not None]
                for row in conn.execute(statement, params).mappings():
                    fetched += 1
                    candidates.append(
                        Item(
                            category,
                            source.kind(row),
                            row["event_id"],
                            row[source.time],
                            {**{name: row[name] for name in shown}, **key.open(row["sealed"])},
                        )
                    )
                more = more or fetched > limit
    candidates.sort(key=lambda i: (i.at, i.id))
    page = candidates[:limit]
    more = more or len(candidates) > limit
    last = page[-1] if page and more else None
    return ActivityPage(results, page, Position(last.at, last.id) if last else None)


def _zero(category: str) -> dict[str, int]:
    return {
        "transport.trips": {"trips": 0, "fare_jpy": 0, "passengers": 0, "ride_requests": 0},
        "health.points": {"awarded": 0, "redeemed": 0, "net": 0},
        "currency.transactions": {
            "payments": 0,
            "spent_jpy": 0,
            "topped_up_jpy": 0,
            "converted_jpy": 0,
        },
    }[category]
