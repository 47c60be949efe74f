"""k-anonymous statistics for planning: trips by town, flows between towns, points by age
band, spending by merchant category, and the trips near each transport stop.

What is published, and what it guarantees:

- **Fixed, aligned periods.** Every statistic is published per calendar month of the region
  (Asia/Tokyo, UTC+9 without daylight saving: a trip at 2025-05-31T15:30Z is a June trip); a
  request for several months gets each month's cells, never a sum over an arbitrary window,
  so no two answers differ by a few days' (or one month's) events.
- **Closed, settled, then frozen.** A month is published only once it has ended and its
  settling delay (``settle_days``, ``TSUNAGU_STATISTICS_SETTLE_DAYS``) has passed, so that
  late events (connectors' daily or weekly exports) are counted in it; its figures are stored
  at first publication (``broker.store.publications``) and every later read answers from
  them. An event arriving after that is never published: re-reading a month cannot isolate it.
- **Primary suppression.** A cell whose distinct subjects (``COUNT(DISTINCT subject_ref)``)
  number fewer than ``k`` is listed as suppressed with no measures at all.
- **Complementary suppression.** Trips by town are the margins of the flows out of each town
  (``_MARGINS``): where a town's total is published, the flows suppressed in its row must
  together count at least ``k`` residents, or more flows are suppressed (the smallest first),
  so no suppressed flow is the town total minus the published ones. People flow by mesh is
  likewise the margin of ridership by the mesh's stops (same day and hour band). Totals add
  up published cells only.
- **Purposes.** Each statistic serves the purposes in ``SERVES``, and no other.

This is k-anonymity of published cells, not differential privacy: a suppressed group of
flows is known as a sum, a published cell's exact count is shown, and what a reader already
knows about a resident outside the platform is not accounted for.

Month boundaries are computed here, in Python, and the store filters rows by those instants,
so SQLite and PostgreSQL agree exactly.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from types import MappingProxyType
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, JsonValue
from pydantic.config import JsonDict
from sqlalchemy import Engine, Table, and_, case, func, insert, literal, or_, select, union_all
from sqlalchemy.exc import IntegrityError

from broker.store.projections.currency import CurrencyTransaction
from broker.store.projections.health import HealthPoints
from broker.store.projections.timestamps import JST
from broker.store.projections.transport import TransportStop, Trip
from broker.store.publications import PublishedStatistics
from broker.views.mesh import MeshCodeError, mesh3

_trips: Table = Trip.__table__  # type: ignore[attr-defined]
_stops: Table = TransportStop.__table__  # type: ignore[attr-defined]
_points: Table = HealthPoints.__table__  # type: ignore[attr-defined]
_currency: Table = CurrencyTransaction.__table__  # type: ignore[attr-defined]
_published: Table = PublishedStatistics.__table__  # type: ignore[attr-defined]

#: How a missing dimension value (an event without a town, an age band, a category) is shown.
UNKNOWN = "unknown"

TOTALS_COVER: Literal["published cells only"] = "published cells only"

# -- which statistic serves which purpose ------------------------------------------------------

#: The purpose a municipal reader (auditor, admin) reads statistics under.
MUNICIPAL_PURPOSE = "statistics.municipal"

#: The purposes each statistic serves; a read for any other purpose is refused.
SERVES: Mapping[str, frozenset[str]] = MappingProxyType(
    {
        "trips-by-town-month": frozenset(
            {
                "transport.planning",
                "transport.operation",
                "housing.dual_residence_support",
                MUNICIPAL_PURPOSE,
            }
        ),
        "town-flows": frozenset(
            {
                "transport.planning",
                "transport.operation",
                "housing.dual_residence_support",
                MUNICIPAL_PURPOSE,
            }
        ),
        "points-by-age-band": frozenset({"health.incentive", MUNICIPAL_PURPOSE}),
        "spending-by-merchant-category": frozenset({"currency.promotion", MUNICIPAL_PURPOSE}),
        # Shown on vacant houses as their access to transport.
        "trips-nearby": frozenset(
            {"housing.dual_residence_support", "transport.planning", MUNICIPAL_PURPOSE}
        ),
        # The Digital Agency's 人流データ and the 乗降実績 of stops (``broker.views.flows``).
        "people-flow": frozenset({"transport.planning", "transport.operation", MUNICIPAL_PURPOSE}),
        "ridership": frozenset({"transport.planning", "transport.operation", MUNICIPAL_PURPOSE}),
    }
)


class StatisticsRuleError(ValueError):
    """A statistics request the rules refuse; the message says what to ask instead."""


class PurposeNotServedError(StatisticsRuleError):
    """A statistic read for a purpose it does not serve."""


class KBelowMinimumError(StatisticsRuleError):
    """A k below the platform's minimum: it would publish cells about fewer residents."""


class PeriodError(StatisticsRuleError):
    """A period that is empty, or longer than one request may cover."""


class MonthNotClosedError(StatisticsRuleError):
    """A month asked for before it is published: it has not ended, or ended less than the
    settling delay ago. Its figures could still change; the message says from when."""


class FilterError(StatisticsRuleError):
    """A filter of a statistic's cells that breaks its field's rule; names both."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


def check_serves(statistic: str, purpose: str) -> None:
    """Refuse ``statistic`` for a purpose it does not serve (``SERVES``)."""
    served = SERVES[statistic]
    if purpose not in served:
        raise PurposeNotServedError(
            f"statistic {statistic} serves the purposes {', '.join(sorted(served))}, "
            f"not {purpose}: read it for one of those"
        )


# -- months in the region --------------------------------------------------------------------


def jst_month_start(at: datetime) -> datetime:
    """The start (JST) of the region's calendar month holding ``at``."""
    local = at.astimezone(JST)
    return datetime(local.year, local.month, 1, tzinfo=JST)


def add_months(month_start: datetime, months: int) -> datetime:
    """The JST month start ``months`` months after (or before) ``month_start``."""
    local = month_start.astimezone(JST)
    index = local.year * 12 + local.month - 1 + months
    return datetime(index // 12, index % 12 + 1, 1, tzinfo=JST)


def months_between(start: datetime, end: datetime) -> int:
    """How many JST months start in [start, end) when both are month starts."""
    a, b = start.astimezone(JST), end.astimezone(JST)
    return (b.year - a.year) * 12 + b.month - a.month


def month_label(month_start: datetime) -> str:
    """ "YYYY-MM" of the JST month starting at ``month_start``."""
    local = month_start.astimezone(JST)
    return f"{local.year:04d}-{local.month:02d}"


# -- when a month is published -----------------------------------------------------------------


def publishable_from(month: datetime, settle_days: int) -> datetime:
    """When the JST month starting at ``month`` may first be published: ``settle_days`` days
    after it ends (midnight, Japan time)."""
    return add_months(month, 1) + timedelta(days=settle_days)


def publishable_end(now: datetime, settle_days: int) -> datetime:
    """The end of the last month publishable at ``now``: every month ending at or before it
    ended at least ``settle_days`` days ago; the months from it on are not published yet."""
    if settle_days < 0:
        raise ValueError("the settling delay is a number of days, not negative")
    return jst_month_start(now - timedelta(days=settle_days))


def not_published_yet(month: datetime, now: datetime, settle_days: int) -> str:
    """Why the JST month starting at ``month`` is not published at ``now``, and from when it
    will be."""
    end = add_months(month, 1)
    when = publishable_from(month, settle_days).astimezone(JST).isoformat()
    if end > now:
        return (
            f"{month_label(month)} has not ended (Japan time): statistics cover closed months; "
            f"it is published from {when}, {settle_days} days after it ends"
        )
    return (
        f"{month_label(month)} has ended but is published only from {when}, {settle_days} days "
        f"after its end (TSUNAGU_STATISTICS_SETTLE_DAYS), so that late events are counted in "
        "it before its figures are frozen"
    )


# -- what a request may ask for ----------------------------------------------------------------

#: The longest period one request may cover, in months.
MAX_MONTHS = 60
#: The period when neither end is given: the last twelve published months.
DEFAULT_MONTHS = 12


def chosen_k(k: int | None, minimum: int) -> int:
    """The k floor: ``k`` may raise the platform's ``minimum`` (the default), never lower it."""
    if minimum < 2:
        raise ValueError("k must be at least 2: a cell of one subject is about that subject")
    if k is None:
        return minimum
    if k < minimum:
        raise KBelowMinimumError(
            f"k may only raise the platform's minimum of {minimum}, not lower it: "
            f"k={k} would publish cells about fewer than {minimum} residents; "
            f"ask with k={minimum} or more, or without k"
        )
    return k


def complete_months(
    start: datetime | None, end: datetime | None, now: datetime, settle_days: int
) -> tuple[datetime, datetime]:
    """The whole, published JST months covering [start, end): ``start`` moved back to its
    month's start, ``end`` forward to the next, the months not published at ``now`` left out;
    refused when none are left (saying from when), or when over ``MAX_MONTHS``."""
    published = publishable_end(now, settle_days)
    if start is not None and end is not None and start >= end:
        raise PeriodError("`from` must be before `to`")
    if end is None:
        last = published
    else:
        last = jst_month_start(end)
        if last < end:
            last = add_months(last, 1)  # `to` inside a month: the whole month is counted
        last = min(last, published)
    first = add_months(last, -DEFAULT_MONTHS) if start is None else jst_month_start(start)
    if first >= last:
        raise MonthNotClosedError(
            "statistics cover complete months (Japan time), each published once settled; the "
            f"period asked for is not published yet: {not_published_yet(first, now, settle_days)}"
        )
    months = months_between(first, last)
    if months > MAX_MONTHS:
        raise PeriodError(
            f"the period spans {months} months, over the limit of {MAX_MONTHS} (5 years); "
            "ask for it in parts"
        )
    return first, last


def published_month_start(month: str | None, now: datetime, settle_days: int) -> datetime:
    """The start of the published JST month ``month`` ("YYYY-MM"), by default the last one
    published at ``now``; refused for a month not published yet, naming the last one."""
    published = publishable_end(now, settle_days)
    last = add_months(published, -1)
    if month is None:
        return last
    start = datetime(int(month[:4]), int(month[5:7]), 1, tzinfo=JST)
    if start >= published:
        raise MonthNotClosedError(
            f"{not_published_yet(start, now, settle_days)}: name a published month, "
            f"{last:%Y-%m} or earlier"
        )
    return start


# -- the published shape ---------------------------------------------------------------------


class Period(BaseModel):
    """The period a statistic covers: [from, to), shown in Japan time."""

    model_config = ConfigDict(
        validate_by_name=True, validate_by_alias=True, serialize_by_alias=True
    )

    from_: datetime = Field(alias="from", examples=["2024-06-01T00:00:00+09:00"])
    to: datetime = Field(examples=["2025-06-01T00:00:00+09:00"])


class Cell(BaseModel):
    """One cell: its dimension values, then ``suppressed``, then its measures (null when
    suppressed). Each statistic's cell declares all three, so dimensions come first in JSON.
    """


def _suppressed() -> Any:
    return Field(
        description="True when the cell counts fewer than k subjects; its measures are then null"
    )


class TripMeasures(BaseModel):
    """Trips in a cell and the distinct residents who made them."""

    trips: int = Field(examples=[412])
    subjects: int = Field(description="Distinct residents", examples=[57])


class PointsMeasures(BaseModel):
    """Health points awarded and redeemed in a cell, and the distinct residents concerned."""

    points_awarded: int = Field(description="Sum of awards (positive)", examples=[184_500])
    points_redeemed: int = Field(description="Sum of redemptions (positive)", examples=[92_000])
    subjects: int = Field(description="Distinct residents", examples=[231])


class SpendingMeasures(BaseModel):
    """Local-currency payments in a cell and the distinct residents who paid."""

    amount_jpy: int = Field(examples=[1_284_300])
    payments: int = Field(examples=[903])
    subjects: int = Field(description="Distinct residents", examples=[188])


class TownMonthCell(Cell):
    """Trips starting in a town in one JST month."""

    town: str = Field(description='Origin town ("unknown" when not given)', examples=["takuma"])
    month: str = Field(description="JST calendar month, YYYY-MM", examples=["2025-04"])
    suppressed: bool = _suppressed()
    measures: TripMeasures | None


class AgeBandCell(Cell):
    """Health points of residents in one age band in one JST month."""

    age_band: str = Field(description='Age band ("unknown" when not given)', examples=["65-74"])
    month: str = Field(description="JST calendar month, YYYY-MM", examples=["2025-04"])
    suppressed: bool = _suppressed()
    measures: PointsMeasures | None


class MerchantCategoryCell(Cell):
    """Payments at merchants of one category in one JST month."""

    merchant_category: str = Field(
        description='Merchant category ("unknown" when not given)', examples=["grocery"]
    )
    month: str = Field(description="JST calendar month, YYYY-MM", examples=["2025-04"])
    suppressed: bool = _suppressed()
    measures: SpendingMeasures | None


class TownFlowCell(Cell):
    """Trips from one town to another (or within one town) in one JST month."""

    origin_town: str = Field(examples=["takuma"])
    destination_town: str = Field(examples=["mino"])
    month: str = Field(description="JST calendar month, YYYY-MM", examples=["2025-04"])
    suppressed: bool = _suppressed()
    measures: TripMeasures | None


class TripTotals(BaseModel):
    """Trips summed over the published cells."""

    trips: int = Field(examples=[412])


class PointsTotals(BaseModel):
    """Points summed over the published cells."""

    points_awarded: int = Field(examples=[184_500])
    points_redeemed: int = Field(examples=[92_000])


class SpendingTotals(BaseModel):
    """Payments summed over the published cells."""

    amount_jpy: int = Field(examples=[1_284_300])
    payments: int = Field(examples=[903])


class Statistic(BaseModel):
    """What every statistic reports beside its cells and totals."""

    statistic: str
    k: int = Field(description="No published cell counts fewer distinct subjects", examples=[10])
    period: Period
    suppressed_cells: int = Field(description="Cells listed as suppressed", examples=[1])
    totals_cover: Literal["published cells only"] = Field(
        default=TOTALS_COVER,
        description="Totals add up the published cells only; suppressed cells are left out, "
        "and distinct subjects are not totalled (one resident may be in several cells)",
    )


_PERIOD: JsonDict = {"from": "2024-06-01T00:00:00+09:00", "to": "2025-06-01T00:00:00+09:00"}


def _example(statistic: str, cells: list[JsonValue], totals: JsonDict) -> ConfigDict:
    suppressed = sum(1 for c in cells if isinstance(c, dict) and c["suppressed"])
    doc: JsonDict = {
        "statistic": statistic,
        "k": 10,
        "period": _PERIOD,
        "cells": cells,
        "suppressed_cells": suppressed,
        "totals": totals,
        "totals_cover": TOTALS_COVER,
    }
    return ConfigDict(json_schema_extra={"examples": [doc]})


class TripsByTownMonth(Statistic):
    """Trips by origin town and JST month."""

    model_config = _example(
        "trips-by-town-month",
        [
            {
                "town": "takuma",
                "month": "2025-04",
                "suppressed": False,
                "measures": {"trips": 412, "subjects": 57},
            },
            {"town": "nio", "month": "2025-04", "suppressed": True, "measures": None},
        ],
        {"trips": 412},
    )

    statistic: Literal["trips-by-town-month"] = "trips-by-town-month"
    cells: list[TownMonthCell]
    totals: TripTotals


class PointsByAgeBand(Statistic):
    """Health points awarded and redeemed by age band."""

    model_config = _example(
        "points-by-age-band",
        [
            {
                "age_band": "65-74",
                "month": "2025-04",
                "suppressed": False,
                "measures": {"points_awarded": 184_500, "points_redeemed": 92_000, "subjects": 231},
            },
            {"age_band": "unknown", "month": "2025-04", "suppressed": True, "measures": None},
        ],
        {"points_awarded": 184_500, "points_redeemed": 92_000},
    )

    statistic: Literal["points-by-age-band"] = "points-by-age-band"
    cells: list[AgeBandCell]
    totals: PointsTotals


class SpendingByMerchantCategory(Statistic):
    """Local-currency payments by merchant category."""

    model_config = _example(
        "spending-by-merchant-category",
        [
            {
                "merchant_category": "grocery",
                "month": "2025-04",
                "suppressed": False,
                "measures": {"amount_jpy": 1_284_300, "payments": 903, "subjects": 188},
            },
            {"merchant_category": "taxi", "month": "2025-04", "suppressed": True, "measures": None},
        ],
        {"amount_jpy": 1_284_300, "payments": 903},
    )

    statistic: Literal["spending-by-merchant-category"] = "spending-by-merchant-category"
    cells: list[MerchantCategoryCell]
    totals: SpendingTotals


class TownFlows(Statistic):
    """Trips by origin and destination town."""

    model_config = _example(
        "town-flows",
        [
            {
                "origin_town": "takuma",
                "destination_town": "mino",
                "month": "2025-04",
                "suppressed": False,
                "measures": {"trips": 120, "subjects": 31},
            },
            {
                "origin_town": "nio",
                "destination_town": "zentsuji",
                "month": "2025-04",
                "suppressed": True,
                "measures": None,
            },
        ],
        {"trips": 120},
    )

    statistic: Literal["town-flows"] = "town-flows"
    cells: list[TownFlowCell]
    totals: TripTotals


# -- publishing a closed month -----------------------------------------------------------------

#: Statistics published together: the tables of one family share their events and margins.
Family = Literal["trips", "points", "spending", "stops", "touches"]
#: A cell as published: its dimension values, and its measures (None when suppressed).
PublishedCell = tuple[tuple[str, ...], dict[str, int] | None]
Tables = dict[str, list[PublishedCell]]

#: Table -> the table holding its row margins (keyed by its leading dimensions): the trips by
#: town are the sums of the flows out of each town.
_MARGINS: Mapping[str, tuple[str, int]] = MappingProxyType(
    {
        "town-flows": ("trips-by-town-month", 1),
        # A mesh's people flow is the union of its stops' riders: without this, a published
        # mesh minus its published stops would give a suppressed stop's riders.
        "ridership": ("people-flow", 3),
    }
)


@dataclass(slots=True)
class _Raw:
    """A cell before suppression: its summed measures and the residents it counts."""

    measures: dict[str, int]
    subjects: set[str] = field(default_factory=set)


@dataclass(frozen=True, slots=True)
class _Shape:
    """How a family is read: per (dimensions..., subject) rows and the measures summed."""

    query: Callable[[datetime, datetime], Any]
    measures: tuple[str, ...]
    #: Table name -> how many leading dimensions it keeps (the rest are summed over).
    tables: Mapping[str, int]
    #: What each stored row becomes, as (dimensions..., subject, measures...); None leaves it
    #: out. Used where a dimension is computed in Python (a mesh code, a JST hour band).
    derive: Callable[[Sequence[Any]], Sequence[Any] | None] | None = None


def _trips_query(lo: datetime, hi: datetime) -> Any:
    t, at = _trips.c, _trips.c.pickup_at
    return (
        select(t.origin_town, t.destination_town, t.subject_ref, func.count())
        .where(at >= lo, at < hi)
        .group_by(t.origin_town, t.destination_town, t.subject_ref)
    )


def _points_query(lo: datetime, hi: datetime) -> Any:
    p, at = _points.c, _points.c.occurred_at
    # Points are signed (a redemption is negative): split by sign, both published as positive.
    return (
        select(
            p.age_band,
            p.subject_ref,
            func.sum(case((p.points > 0, p.points), else_=0)),
            func.sum(case((p.points < 0, -p.points), else_=0)),
        )
        .where(at >= lo, at < hi)
        .group_by(p.age_band, p.subject_ref)
    )


def _spending_query(lo: datetime, hi: datetime) -> Any:
    c, at = _currency.c, _currency.c.occurred_at
    return (
        select(c.merchant_category, c.subject_ref, func.sum(c.amount_jpy), func.count())
        .where(c.kind == "payment", at >= lo, at < hi)
        .group_by(c.merchant_category, c.subject_ref)
    )


def _stops_query(lo: datetime, hi: datetime) -> Any:
    """Trips per stop, started or ended there (one within a stop counts once)."""
    t = _trips.c
    window = and_(t.pickup_at >= lo, t.pickup_at < hi)
    touching = union_all(
        select(t.event_id, t.subject_ref, t.origin_stop_id.label("stop_id")).where(
            window, t.origin_stop_id.is_not(None)
        ),
        select(t.event_id, t.subject_ref, t.destination_stop_id.label("stop_id")).where(
            window,
            t.destination_stop_id.is_not(None),
            or_(t.origin_stop_id.is_(None), t.origin_stop_id != t.destination_stop_id),
        ),
    ).subquery()
    return select(touching.c.stop_id, touching.c.subject_ref, func.count()).group_by(
        touching.c.stop_id, touching.c.subject_ref
    )


def _touches_query(lo: datetime, hi: datetime) -> Any:
    """Each boarding (trip start at a stop) and alighting (trip end at a stop) in [lo, hi) by
    its own time, so that a day and hour band belong to one month only: (stop id, stop lat,
    stop lon, at, subject, boarding, alighting). A door-to-door trip end has no stop: its place
    is the resident's, sealed, and is in neither statistic."""
    t, s = _trips.c, _stops.c
    return union_all(
        select(t.origin_stop_id, s.lat, s.lon, t.pickup_at, t.subject_ref, literal(1), literal(0))
        .join_from(_trips, _stops, s.stop_id == t.origin_stop_id)
        .where(t.pickup_at >= lo, t.pickup_at < hi),
        select(
            t.destination_stop_id, s.lat, s.lon, t.dropoff_at, t.subject_ref, literal(0), literal(1)
        )
        .join_from(_trips, _stops, s.stop_id == t.destination_stop_id)
        .where(t.dropoff_at >= lo, t.dropoff_at < hi),
    )


def jst_hour_band(at: datetime) -> tuple[str, str]:
    """The JST date (YYYY-MM-DD) and hourly band start (hh:00) of the instant ``at``."""
    local = at.astimezone(JST)
    return f"{local:%Y-%m-%d}", f"{local:%H}:00"


#: The mesh of a stop with no place in Japan (no coordinates, or outside every mesh): its
#: ridership is counted by stop, and no people-flow cell is ever published for it.
NO_MESH = UNKNOWN


def _touch_row(row: Sequence[Any]) -> tuple[Any, ...]:
    """A stop touch as (mesh, date, band, stop, subject, boardings, alightings): people flow
    keeps the first three dimensions, ridership all four, so one is the other's margin."""
    stop, lat, lon, at, subject, boarding, alighting = row
    area = NO_MESH
    if lat is not None and lon is not None:
        with contextlib.suppress(MeshCodeError):  # outside Japan: no mesh
            area = mesh3(lat, lon)
    return (area, *jst_hour_band(at), stop, subject, boarding, alighting)


_SHAPES: Mapping[str, _Shape] = MappingProxyType(
    {
        "trips": _Shape(_trips_query, ("trips",), {"town-flows": 2, "trips-by-town-month": 1}),
        "points": _Shape(
            _points_query, ("points_awarded", "points_redeemed"), {"points-by-age-band": 1}
        ),
        "spending": _Shape(
            _spending_query, ("amount_jpy", "payments"), {"spending-by-merchant-category": 1}
        ),
        "stops": _Shape(_stops_query, ("trips",), {"trips-nearby": 1}),
        # People flow and ridership are published together: one is the other's margin.
        "touches": _Shape(
            _touches_query,
            ("boardings", "alightings"),
            {"people-flow": 3, "ridership": 4},
            _touch_row,
        ),
    }
)


def _gather(
    rows: Iterable[Sequence[Any]], dims: int, measures: tuple[str, ...]
) -> dict[tuple[str, ...], _Raw]:
    """Cells keyed by their first ``dims`` dimension values, from (dimensions..., subject,
    measures...) rows."""
    cells: dict[tuple[str, ...], _Raw] = {}
    for row in rows:
        key = tuple(v or UNKNOWN for v in row[:dims])
        raw = cells.get(key)
        if raw is None:
            raw = cells[key] = _Raw(dict.fromkeys(measures, 0))
        for name, value in zip(measures, row[-len(measures) :], strict=True):
            raw.measures[name] += int(value)
        raw.subjects.add(row[-len(measures) - 1])
    return cells


def _complement(
    cells: dict[tuple[str, ...], _Raw],
    published: dict[tuple[str, ...], bool],
    margins_published: dict[tuple[str, ...], bool],
    k: int,
    margin_dims: int,
) -> None:
    """Secondary suppression: in each row whose margin is published, the suppressed cells must
    together count at least ``k`` residents (else the margin minus the published cells would
    give a small group, or a single cell, exactly). The smallest published cells go first."""
    rows: dict[tuple[str, ...], list[tuple[str, ...]]] = {}
    for key in cells:
        rows.setdefault(key[:margin_dims], []).append(key)
    for margin, members in rows.items():
        if not margins_published.get(margin, False):
            continue
        hidden = [key for key in members if not published[key]]
        if not hidden:
            continue
        covered = set().union(*(cells[key].subjects for key in hidden))
        candidates = sorted(
            (key for key in members if published[key]),
            key=lambda key: (tuple(cells[key].measures.values()), len(cells[key].subjects), key),
        )
        # The whole row counts the margin's residents, at least k: this never runs dry.
        while len(covered) < k:
            key = candidates.pop(0)
            published[key] = False
            covered |= cells[key].subjects


def _compute(engine: Engine, family: str, lo: datetime, hi: datetime, k: int) -> Tables:
    """The family's tables over [lo, hi), suppressed: primary, then complementary."""
    shape = _SHAPES[family]
    with engine.connect() as conn:
        rows: Sequence[Sequence[Any]] = conn.execute(shape.query(lo, hi)).all()
    if shape.derive is not None:
        rows = [d for d in map(shape.derive, rows) if d is not None]
    widest = max(shape.tables.values())
    finest = _gather(rows, widest, shape.measures)
    raw: dict[str, dict[tuple[str, ...], _Raw]] = {}
    for table, dims in shape.tables.items():
        cells: dict[tuple[str, ...], _Raw] = {}
        for key, cell in finest.items():
            into = cells.get(key[:dims])
            if into is None:
                into = cells[key[:dims]] = _Raw(dict.fromkeys(shape.measures, 0))
            for name, value in cell.measures.items():
                into.measures[name] += value
            into.subjects |= cell.subjects
        raw[table] = cells
    published = {
        table: {key: len(cell.subjects) >= k for key, cell in cells.items()}
        for table, cells in raw.items()
    }
    for table, (margin, dims) in _MARGINS.items():
        if table in raw:
            _complement(raw[table], published[table], published[margin], k, dims)
    return {
        table: [
            (
                key,
                {**cell.measures, "subjects": len(cell.subjects)}
                if published[table][key]
                else None,
            )
            for key, cell in sorted(cells.items())
        ]
        for table, cells in raw.items()
    }


def _encode(tables: Tables) -> dict[str, Any]:
    return {
        name: [[list(key), measures] for key, measures in cells] for name, cells in tables.items()
    }


def _decode(stored: dict[str, Any]) -> Tables:
    return {
        name: [(tuple(key), measures) for key, measures in cells] for name, cells in stored.items()
    }


def published_month(
    engine: Engine,
    family: Family,
    month: datetime,
    *,
    k: int,
    settle_days: int,
    now: datetime | None = None,
) -> Tables:
    """The family's tables for the closed JST month starting at ``month``, at least at ``k``:
    computed and stored on the first read once the month has ended and ``settle_days`` more
    days have passed (late events arriving meanwhile are counted), then frozen. A month is
    published once: a read at a higher k than the first suppresses more of the same cells,
    never counts the month again (late events would then be the difference)."""
    at = now or datetime.now(UTC)
    end = add_months(month, 1)
    if end > publishable_end(at, settle_days):
        raise MonthNotClosedError(not_published_yet(month, at, settle_days))
    where = (_published.c.family == family, _published.c.month == month_label(month))
    query = select(_published.c.tables, _published.c.k).where(*where)
    with engine.connect() as conn:
        stored = conn.execute(query).first()
    if stored is None:
        tables = _encode(_compute(engine, family, month, end, k))
        try:
            with engine.begin() as conn:
                conn.execute(
                    insert(_published).values(
                        family=family,
                        month=month_label(month),
                        k=k,
                        published_at=datetime.now(UTC),
                        tables=tables,
                    )
                )
        except IntegrityError:
            pass  # another process published the month first: its figures are the month's
        else:
            return _decode(tables)
        with engine.connect() as conn:
            stored = conn.execute(query).one()
    published = _decode(stored.tables)
    return _raised(published, k) if k > stored.k else published


def _raised(tables: Tables, k: int) -> Tables:
    """The published tables at a higher ``k``: more cells suppressed, none revealed. A row
    margin is published at a raised k only when its whole row is (no group to subtract)."""
    out = {
        name: [(key, m if m is not None and m["subjects"] >= k else None) for key, m in cells]
        for name, cells in tables.items()
    }
    for table, (margin, dims) in _MARGINS.items():
        if table in out:
            partial = {key[:dims] for key, m in out[table] if m is None}
            out[margin] = [(key, None if key in partial else m) for key, m in out[margin]]
    return out


def _check(
    start: datetime, end: datetime, k: int, minimum_k: int, now: datetime, settle_days: int
) -> Period:
    if start.tzinfo is None or end.tzinfo is None:
        raise ValueError("a statistic's period needs aware datetimes")
    if start >= end:
        raise ValueError("a statistic's period must start before it ends")
    chosen_k(k, minimum_k)
    if jst_month_start(start) != start or jst_month_start(end) != end:
        raise ValueError("a statistic's period is whole JST calendar months (aligned periods)")
    last = publishable_end(now, settle_days)
    if end > last:
        raise MonthNotClosedError(
            "the period reaches into a month not published yet: "
            + not_published_yet(max(start, last), now, settle_days)
        )
    return Period(from_=start.astimezone(JST), to=end.astimezone(JST))


def published_months(
    engine: Engine,
    family: Family,
    start: datetime,
    end: datetime,
    *,
    k: int,
    minimum_k: int | None,
    settle_days: int,
    now: datetime | None,
) -> tuple[Period, list[tuple[str, Tables]]]:
    """The period and each month's published tables (at ``k``, from those at the minimum)."""
    base = k if minimum_k is None else minimum_k
    at = now or datetime.now(UTC)
    period = _check(start, end, k, base, at, settle_days)
    months = []
    month = start
    while month < end:
        tables = published_month(engine, family, month, k=base, settle_days=settle_days, now=at)
        months.append((month_label(month), tables if k == base else _raised(tables, k)))
        month = add_months(month, 1)
    return period, months


def _order(key: Iterable[str]) -> tuple[tuple[bool, str], ...]:
    # Known values in order, "unknown" after them.
    return tuple((v == UNKNOWN, v) for v in key)


_C = TypeVar("_C", bound=Cell)


def _cells(
    months: list[tuple[str, Tables]],
    table: str,
    make: Callable[[tuple[str, ...], str, dict[str, int] | None], _C],
) -> list[_C]:
    """One cell per published cell of ``table``, month by month."""
    return [
        make(key, month, measures)
        for month, tables in months
        for key, measures in sorted(tables[table], key=lambda cell: _order(cell[0]))
    ]


def _sum(cells: Iterable[Cell], name: str) -> int:
    """``name`` summed over the published cells only."""
    return sum(getattr(c.measures, name) for c in cells if c.measures is not None)  # type: ignore[attr-defined]


def trips_by_town_month(
    engine: Engine,
    start: datetime,
    end: datetime,
    *,
    k: int,
    settle_days: int,
    minimum_k: int | None = None,
    now: datetime | None = None,
) -> TripsByTownMonth:
    """Trips and distinct residents per (origin town, JST month) in [start, end)."""
    period, months = published_months(
        engine, "trips", start, end, k=k, minimum_k=minimum_k, settle_days=settle_days, now=now
    )

    def make(key: tuple[str, ...], month: str, m: dict[str, int] | None) -> TownMonthCell:
        measures = None if m is None else TripMeasures(**m)
        return TownMonthCell(town=key[0], month=month, suppressed=m is None, measures=measures)

    cells = _cells(months, "trips-by-town-month", make)
    cells.sort(key=lambda c: (_order([c.town]), c.month))
    return TripsByTownMonth(
        k=k,
        period=period,
        cells=cells,
        suppressed_cells=sum(c.suppressed for c in cells),
        totals=TripTotals(trips=_sum(cells, "trips")),
    )


def points_by_age_band(
    engine: Engine,
    start: datetime,
    end: datetime,
    *,
    k: int,
    settle_days: int,
    minimum_k: int | None = None,
    now: datetime | None = None,
) -> PointsByAgeBand:
    """Health points awarded and redeemed, and distinct residents, per age band and JST month."""
    period, months = published_months(
        engine, "points", start, end, k=k, minimum_k=minimum_k, settle_days=settle_days, now=now
    )

    def make(key: tuple[str, ...], month: str, m: dict[str, int] | None) -> AgeBandCell:
        measures = None if m is None else PointsMeasures(**m)
        return AgeBandCell(age_band=key[0], month=month, suppressed=m is None, measures=measures)

    cells = _cells(months, "points-by-age-band", make)
    return PointsByAgeBand(
        k=k,
        period=period,
        cells=cells,
        suppressed_cells=sum(c.suppressed for c in cells),
        totals=PointsTotals(
            points_awarded=_sum(cells, "points_awarded"),
            points_redeemed=_sum(cells, "points_redeemed"),
        ),
    )


def spending_by_merchant_category(
    engine: Engine,
    start: datetime,
    end: datetime,
    *,
    k: int,
    settle_days: int,
    minimum_k: int | None = None,
    now: datetime | None = None,
) -> SpendingByMerchantCategory:
    """Payments (not top-ups or conversions) per merchant category and JST month."""
    period, months = published_months(
        engine, "spending", start, end, k=k, minimum_k=minimum_k, settle_days=settle_days, now=now
    )

    def make(key: tuple[str, ...], month: str, m: dict[str, int] | None) -> MerchantCategoryCell:
        measures = None if m is None else SpendingMeasures(**m)
        return MerchantCategoryCell(
            merchant_category=key[0], month=month, suppressed=m is None, measures=measures
        )

    cells = _cells(months, "spending-by-merchant-category", make)
    return SpendingByMerchantCategory(
        k=k,
        period=period,
        cells=cells,
        suppressed_cells=sum(c.suppressed for c in cells),
        totals=SpendingTotals(
            amount_jpy=_sum(cells, "amount_jpy"), payments=_sum(cells, "payments")
        ),
    )


def town_flows(
    engine: Engine,
    start: datetime,
    end: datetime,
    *,
    k: int,
    settle_days: int,
    minimum_k: int | None = None,
    now: datetime | None = None,
) -> TownFlows:
    """Trips and distinct residents per (origin town, destination town) and JST month."""
    period, months = published_months(
        engine, "trips", start, end, k=k, minimum_k=minimum_k, settle_days=settle_days, now=now
    )

    def make(key: tuple[str, ...], month: str, m: dict[str, int] | None) -> TownFlowCell:
        measures = None if m is None else TripMeasures(**m)
        return TownFlowCell(
            origin_town=key[0],
            destination_town=key[1],
            month=month,
            suppressed=m is None,
            measures=measures,
        )

    cells = _cells(months, "town-flows", make)
    return TownFlows(
        k=k,
        period=period,
        cells=cells,
        suppressed_cells=sum(c.suppressed for c in cells),
        totals=TripTotals(trips=_sum(cells, "trips")),
    )


def trips_nearby(
    engine: Engine, month: datetime, *, k: int, settle_days: int, now: datetime | None = None
) -> dict[str, int | None]:
    """Trips that started or ended at each stop in the closed JST month starting at ``month``,
    as published (None where fewer than ``k`` residents made them; a stop missing had none)."""
    tables = published_month(engine, "stops", month, k=k, settle_days=settle_days, now=now)
    return {key[0]: None if m is None else m["trips"] for key, m in tables["trips-nearby"]}
