"""A resident's cross-service view: trips, health points and local-currency activity side by
side over a period, with per-category totals.

Each category is decided on its own by the consent decision point; a category refused is
left out and reported as withheld with the decision's reason, never silently missing. Items
are merged across services in (time, id) order and paginated by a keyset cursor.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Connection,
    Engine,
    Select,
    Table,
    and_,
    bindparam,
    case,
    func,
    literal,
    or_,
    select,
    union_all,
)

from broker.store.projections.currency import CurrencyTransaction
from broker.store.projections.health import HealthPoints
from broker.store.projections.transport import RideRequest, Trip
from broker.views.cursors import Position
from consent.decisions import Decision, DecisionPoint
from consent.vault import SubjectKey, SubjectVault

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
    #: The item's kind: fixed for the table, or the value of the named column.
    kind: str
    kind_column: str | None = None


#: The categories of the view and the tables behind each, in display order.
CATEGORIES: dict[str, tuple[_Source, ...]] = {
    "transport.trips": (
        _Source(_trips, "pickup_at", "trip"),
        _Source(_rides, "requested_at", "ride_request"),
    ),
    "health.points": (_Source(_points, "occurred_at", "points_", "kind"),),
    "currency.transactions": (_Source(_money, "occurred_at", "", "kind"),),
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


def _in_window(table: Table, time: str, suffix: str = "") -> Any:
    t = table.c[time]
    return and_(
        table.c.subject_ref == bindparam("ref"),
        t >= bindparam("lo" + suffix, type_=_TIME),
        t < bindparam("hi" + suffix, type_=_TIME),
    )


def _sum(expression: Any) -> Any:
    return func.coalesce(func.sum(expression), 0)


def _suffix(category: str) -> str:
    """What a category's window parameters are named with (``lo_health_points``, ...)."""
    return "_" + category.replace(".", "_")


#: Per table of a category: the totals it gives, named, in the order its aggregate row has them.
_TOTALS: dict[str, tuple[tuple[_Source, tuple[str, ...]], ...]] = {
    "transport.trips": (
        (CATEGORIES["transport.trips"][0], ("trips", "fare_jpy", "passengers")),
        (CATEGORIES["transport.trips"][1], ("ride_requests",)),
    ),
    "health.points": ((CATEGORIES["health.points"][0], ("awarded", "redeemed")),),
    "currency.transactions": (
        (
            CATEGORIES["currency.transactions"][0],
            ("payments", "spent_jpy", "topped_up_jpy", "converted_jpy"),
        ),
    ),
}
_WIDEST = max(len(names) for sources in _TOTALS.values() for _, names in sources)


def _aggregates(table: Table) -> list[Any]:
    """The aggregate columns of ``table``'s row of totals (see ``_TOTALS``)."""
    if table is _trips:
        return [func.count(), _sum(_trips.c.fare_jpy), _sum(_trips.c.passengers)]
    if table is _rides:
        return [func.count()]
    if table is _points:
        p = _points.c.points
        return [_sum(case((p > 0, p), else_=0)), _sum(case((p < 0, -p), else_=0))]
    kind, amount = _money.c.kind, _money.c.amount_jpy
    return [
        _sum(case((kind == "payment", 1), else_=0)),
        _sum(case((kind == "payment", amount), else_=0)),
        _sum(case((kind == "topped_up", amount), else_=0)),
        _sum(case((kind == "conversion", amount), else_=0)),
    ]


@functools.cache
def _totals_statement(categories: frozenset[str]) -> tuple[Any, list[tuple[str, tuple[str, ...]]]]:
    """One statement for the totals of every included category: a row of aggregates per
    table, each over its category's window (one round trip and one index range per table)."""
    parts = []
    rows: list[tuple[str, tuple[str, ...]]] = []
    for category in CATEGORIES:
        if category not in categories:
            continue
        for source, names in _TOTALS[category]:
            columns = _aggregates(source.table)
            padding = [literal(0) for _ in range(_WIDEST - len(columns))]
            window = _in_window(source.table, source.time, _suffix(category))
            tag = literal(len(rows))  # which row is which: a union's order is not promised
            parts.append(select(tag, *columns, *padding).select_from(source.table).where(window))
            rows.append((category, names))
    return (parts[0] if len(parts) == 1 else union_all(*parts)), rows


def _window_params(category: str, lo: datetime, hi: datetime) -> dict[str, datetime]:
    suffix = _suffix(category)
    return {"lo" + suffix: lo, "hi" + suffix: hi}


def _with_net(category: str, totals: dict[str, int]) -> dict[str, int]:
    """Health points also show their balance."""
    if category == "health.points":
        totals["net"] = totals["awarded"] - totals["redeemed"]
    return totals


def _totals(
    conn: Connection, windows: dict[str, tuple[datetime, datetime]], ref: str
) -> dict[str, dict[str, int]]:
    statement, rows = _totals_statement(frozenset(windows))
    params: dict[str, Any] = {"ref": ref}
    for category, (lo, hi) in windows.items():
        params.update(_window_params(category, lo, hi))
    totals: dict[str, dict[str, int]] = {c: {} for c in windows}
    for tag, *values in conn.execute(statement, params):
        category, names = rows[tag]
        totals[category].update(zip(names, (int(v) for v in values), strict=False))
    return {category: _with_net(category, t) for category, t in totals.items()}


def _page_statement(source: _Source, after: bool) -> Select[Any]:
    table, t = source.table, source.table.c[source.time]
    # Only what the item shows, by position: (event_id, time, sealed, *shown). Whole rows
    # cost a timestamp parse per unused column and a lookup by name per field. (One UNION
    # ALL of the tables was measured slower on SQLite: it sorts each part again.)
    columns = [table.c.event_id, t, table.c.sealed, *(table.c[n] for n in _SHOWN[table.name])]
    query = select(*columns).where(_in_window(table, source.time))
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


def _items(
    conn: Connection, category: str, source: _Source, key: SubjectKey, params: dict[str, Any]
) -> list[Item]:
    """One table's first rows of the page, opened (at most ``params["n"]``)."""
    shown = _SHOWN[source.table.name]
    kind_at = shown.index(source.kind_column) + 3 if source.kind_column else None
    statement = _PAGES[source.table.name, "after_at" in params]
    items = []
    for row in conn.execute(statement, params):
        data = dict(zip(shown, row[3:], strict=True))
        data.update(key.open(row[2]))
        kind = source.kind if kind_at is None else source.kind + str(row[kind_at])
        items.append(Item(category, kind, row[0], row[1], data))
    return items


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
    windows: dict[str, tuple[datetime, datetime]] = {}
    for category, decision in decided:
        window = _window(decision, start, end) if decision.allowed else None
        if window is not None and key is not None:
            windows[category] = window
    candidates: list[Item] = []
    with engine.connect() as conn:
        totals = _totals(conn, windows, key.ref) if windows and key is not None else {}
        for category, decision in decided:
            if category not in windows or key is None:
                # Refused, or allowed with nothing to read (no overlap with the consent's
                # data range, or no data at all): an allowed one is included with zeros.
                results.append(
                    CategoryResult(category, decision, _zero(category) if decision.allowed else {})
                )
                continue
            lo, hi = windows[category]
            results.append(CategoryResult(category, decision, totals[category], lo, hi))
            params: dict[str, Any] = {"ref": key.ref, "lo": lo, "hi": hi, "n": limit + 1}
            if after is not None:
                params.update(after_at=after.at, after_id=after.id)
            for source in CATEGORIES[category]:
                candidates += _items(conn, category, source, key, params)
    # Each table gave at most limit + 1: if more than ``limit`` came in all, there are more.
    candidates.sort(key=lambda i: (i.at, i.id))
    page = candidates[:limit]
    last = page[-1] if len(candidates) > limit else None
    return ActivityPage(results, page, Position(last.at, last.id) if last else None)


def _zero(category: str) -> dict[str, int]:
    return _with_net(category, {n: 0 for _, names in _TOTALS[category] for n in names})
