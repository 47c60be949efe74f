"""A resident's cross-service view: trips, health points and local-currency activity side by
side over a period, with per-category totals.

Each category is decided on its own by the consent decision point; a category denied is
left out and reported with the decision's reason, never silently missing. A partner reading
the view as a whole (naming no category) asks for none in particular: a category its consent
does not cover is withheld, not refused (``consent.decisions.Outcome``). Items
are merged across services in (time, id) order and paginated by a keyset cursor.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import (
    DateTime,
    Engine,
    Integer,
    String,
    Table,
    and_,
    bindparam,
    case,
    cast,
    func,
    literal_column,
    null,
    or_,
    select,
    union_all,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator

from broker.store.projections.currency import CurrencyTransaction
from broker.store.projections.health import HealthPoints
from broker.store.projections.transport import RideRequest, Trip
from broker.store.reads import Query, fetch_all
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


# The statement is built once per set of categories read, with bind parameters, and compiled
# once per dialect: rebuilding SQLAlchemy expressions on every request cost more than running
# them, and so did SQLAlchemy's execution and row processing (``broker.store.reads``).
_TIME = _trips.c.pickup_at.type


def _in_window(table: Table, time: str, suffix: str) -> Any:
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


# -- one statement for the whole page -------------------------------------------------------
#
# Every table's page of items and every table's row of totals come back from one UNION ALL:
# one round trip, one snapshot (totals and items agree). The parts share one row shape:
# (part, event_id, time, sealed, *slots), where each shown column has a slot of its kind
# (text, integer, time) and a totals row puts its aggregates in the integer slots; what a part
# lacks is a NULL of the slot's type (PostgreSQL wants each column of a union to agree).
# Each table's page keeps its own ORDER BY and LIMIT inside a subquery, so each is read from
# its (subject_ref, time) index; the parts are merged in Python.

_KINDS: tuple[type, ...] = (str, int, datetime)


def _kind_of(column: Any) -> type:
    """The slot kind of a shown column: text, integer or time (SQLModel's types decorate
    SQLAlchemy's, so the decorated type decides)."""
    t = column.type
    if isinstance(t, TypeDecorator):
        t = t.impl_instance
    for kind, base in ((datetime, DateTime), (int, Integer), (str, String)):
        if isinstance(t, base):
            return kind
    raise TypeError(f"{column} is of a type the view's slots do not hold: {column.type}")


def _slotted(source: _Source) -> list[str]:
    """The shown columns of ``source`` that take a slot: all but its time, which the row's
    head has (parsed once, not twice)."""
    return [n for n in _SHOWN[source.table.name] if n != source.time]


_SOURCES = [source for sources in CATEGORIES.values() for source in sources]


def _slot_widths() -> dict[type, int]:
    """How many slots of each kind a row has: the most any part needs."""
    widths = dict.fromkeys(_KINDS, 0)
    for source in _SOURCES:
        for kind in _KINDS:
            here = sum(1 for n in _slotted(source) if _kind_of(source.table.c[n]) is kind)
            widths[kind] = max(widths[kind], here)
    aggregates = (len(_aggregates(source.table)) for source in _SOURCES)
    widths[int] = max(widths[int], *aggregates)
    return widths


_WIDTHS = _slot_widths()
#: Where each kind's slots start in a row (after part, event_id, time, sealed).
_FIRST = {kind: 4 + sum(_WIDTHS[k] for k in _KINDS[: _KINDS.index(kind)]) for kind in _KINDS}
_SLOT_TYPES: dict[type, Any] = {str: String(), int: Integer(), datetime: _TIME}


def _row_shape(part: int, head: list[Any], filled: dict[type, list[Any]]) -> list[Any]:
    """The columns of one part: its number, its head (or typed NULLs), then every slot."""
    columns: list[Any] = [literal_column(str(part), Integer)]
    blanks = [_trips.c.event_id.type, _TIME, _trips.c.sealed.type]
    columns += head or [cast(null(), t) for t in blanks]
    for kind in _KINDS:
        given = filled.get(kind, [])
        columns += given + [
            cast(null(), _SLOT_TYPES[kind]) for _ in range(_WIDTHS[kind] - len(given))
        ]
    return [c.label(f"c{i}") for i, c in enumerate(columns)]


@dataclass(frozen=True, slots=True)
class _Totals:
    """A part giving one table's row of a category's totals."""

    category: str
    names: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class _Items:
    """A part giving one table's first items of the page."""

    category: str
    source: _Source
    #: The row positions of the table's shown columns, in ``_SHOWN`` order.
    positions: tuple[int, ...]


def _page_part(source: _Source, suffix: str, after: bool, part: int) -> tuple[Any, tuple[int, ...]]:
    """One table's page of items as a part of the statement, and where its shown columns are."""
    table, t = source.table, source.table.c[source.time]
    filled: dict[type, list[Any]] = {}
    positions = []
    for name in _SHOWN[table.name]:
        if name == source.time:
            positions.append(2)  # the head's time
            continue
        column = table.c[name]
        given = filled.setdefault(_kind_of(column), [])
        positions.append(_FIRST[_kind_of(column)] + len(given))
        given.append(column)
    head = [table.c.event_id, t, table.c.sealed]
    query = select(*_row_shape(part, head, filled)).where(_in_window(table, source.time, suffix))
    if after:
        # Keyset: strictly after the last item served, so inserts never shift a page.
        at = bindparam("after_at", type_=_TIME)
        query = query.where(or_(t > at, and_(t == at, table.c.event_id > bindparam("after_id"))))
    page = query.order_by(t, table.c.event_id).limit(bindparam("n")).subquery()
    return select(page), tuple(positions)


@functools.cache
def _statement(categories: frozenset[str], after: bool) -> tuple[Any, tuple[_Totals | _Items, ...]]:
    """The page's one statement for the categories read, and what each of its parts is."""
    selects: list[Any] = []
    parts: list[_Totals | _Items] = []
    for category in CATEGORIES:
        if category not in categories:
            continue
        suffix = _suffix(category)
        for source, names in _TOTALS[category]:
            table = source.table
            window = _in_window(table, source.time, suffix)
            shape = _row_shape(len(parts), [], {int: _aggregates(table)})
            selects.append(select(*shape).select_from(table).where(window))
            parts.append(_Totals(category, names))
        for source in CATEGORIES[category]:
            part, positions = _page_part(source, suffix, after, len(parts))
            selects.append(part)
            parts.append(_Items(category, source, positions))
    return union_all(*selects), tuple(parts)


_QUERIES: dict[tuple[str, frozenset[str], bool], Query] = {}


def _query(dialect: Dialect, categories: frozenset[str], after: bool) -> tuple[Query, Any]:
    statement, parts = _statement(categories, after)
    key = (dialect.name, categories, after)
    query = _QUERIES.get(key)
    if query is None:
        query = _QUERIES[key] = Query.of(statement, dialect)
    return query, parts


def _window_params(category: str, lo: datetime, hi: datetime) -> dict[str, datetime]:
    suffix = _suffix(category)
    return {"lo" + suffix: lo, "hi" + suffix: hi}


def _with_net(category: str, totals: dict[str, int]) -> dict[str, int]:
    """Health points also show their balance."""
    if category == "health.points":
        totals["net"] = totals["awarded"] - totals["redeemed"]
    return totals


def _read(
    engine: Engine,
    windows: dict[str, tuple[datetime, datetime]],
    key: SubjectKey,
    after: Position | None,
    n: int,
) -> tuple[dict[str, dict[str, int]], list[Item]]:
    """The totals of each category read and each table's first ``n`` items, opened."""
    query, parts = _query(engine.dialect, frozenset(windows), after is not None)
    params: dict[str, Any] = {"ref": key.ref, "n": n}
    for category, (lo, hi) in windows.items():
        params.update(_window_params(category, lo, hi))
    if after is not None:
        params.update(after_at=after.at, after_id=after.id)
    totals: dict[str, dict[str, int]] = {c: {} for c in windows}
    items: list[Item] = []
    first_int = _FIRST[int]
    for row in fetch_all(engine, query, params):
        part = parts[row[0]]
        if isinstance(part, _Totals):
            values = row[first_int : first_int + len(part.names)]
            totals[part.category].update(zip(part.names, (int(v) for v in values), strict=True))
            continue
        source = part.source
        data = dict(zip(_SHOWN[source.table.name], [row[i] for i in part.positions], strict=True))
        kind = source.kind
        if source.kind_column is not None:
            kind += str(data[source.kind_column])
        data.update(key.open(row[3]))
        items.append(Item(part.category, kind, row[1], row[2], data))
    return {category: _with_net(category, t) for category, t in totals.items()}, items


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
    categories: Sequence[str] | None = None,
    after: Position | None = None,
    limit: int = 100,
) -> ActivityPage:
    """One page of ``subject``'s activity in [start, end) as ``partner`` may see it: the
    ``categories`` it named, or (None) the whole view."""
    key = vault.keys_for((subject,), create=False).get(subject)
    asked = categories is not None
    # Decided before a connection is taken: a decision missing its cache reads the store with
    # a connection of its own, and holding one here while waiting for another can exhaust
    # the pool under load.
    decided = [
        (c, decisions.decide(partner, purpose, c, subject, asked=asked))
        for c in (CATEGORIES if categories is None else categories)
    ]
    results: list[CategoryResult] = []
    windows: dict[str, tuple[datetime, datetime]] = {}
    for category, decision in decided:
        window = _window(decision, start, end) if decision.allowed else None
        if window is not None and key is not None:
            windows[category] = window
    totals: dict[str, dict[str, int]] = {}
    candidates: list[Item] = []
    if windows and key is not None:
        # One statement for the totals and every table's first limit + 1 items.
        totals, candidates = _read(engine, windows, key, after, limit + 1)
    for category, decision in decided:
        if category not in windows:
            # Refused, or allowed with nothing to read (no overlap with the consent's
            # data range, or no data at all): an allowed one is included with zeros.
            results.append(
                CategoryResult(category, decision, _zero(category) if decision.allowed else {})
            )
            continue
        lo, hi = windows[category]
        results.append(CategoryResult(category, decision, totals[category], lo, hi))
    # Each table gave at most limit + 1: if more than ``limit`` came in all, there are more.
    candidates.sort(key=lambda i: (i.at, i.id))
    page = candidates[:limit]
    last = page[-1] if len(candidates) > limit else None
    return ActivityPage(results, page, Position(last.at, last.id) if last else None)


def _zero(category: str) -> dict[str, int]:
    return _with_net(category, {n: 0 for _, names in _TOTALS[category] for n in names})
