"""k-anonymous statistics for planning: trips by town and month, points by age band, spending
by merchant category, flows between towns.

Statistics need no consent because no published cell is about fewer than ``k`` subjects: a
cell whose distinct subjects (``COUNT(DISTINCT subject_ref)``: one ref per subject) number
fewer than ``k`` is listed as suppressed with no measures at all, not even its subject count.
Totals are sums over the published cells only, so that no suppressed cell can be found by
subtracting the published ones from a total. (Two statistics over the same trips, trips by
town and month and flows between towns, are suppressed each on its own: no secondary
suppression links them yet.)

Months are the region's calendar months (Asia/Tokyo, UTC+9 without daylight saving): a trip
at 2025-05-31T15:30Z is a June trip. Their boundaries are computed here, in Python, and the
store buckets rows with a CASE over those instants, so SQLite and PostgreSQL agree exactly.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, JsonValue
from pydantic.config import JsonDict
from sqlalchemy import ColumnElement, Engine, Row, Select, case, distinct, func, select

from broker.store.projections.currency import CurrencyTransaction
from broker.store.projections.health import HealthPoints
from broker.store.projections.timestamps import JST
from broker.store.projections.transport import Trip

_trips = Trip.__table__  # type: ignore[attr-defined]
_points = HealthPoints.__table__  # type: ignore[attr-defined]
_currency = CurrencyTransaction.__table__  # type: ignore[attr-defined]

#: How a missing dimension value (an event without a town, an age band, a category) is shown.
UNKNOWN = "unknown"

TOTALS_COVER: Literal["published cells only"] = "published cells only"

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


def _month_label(month_start: datetime) -> str:
    local = month_start.astimezone(JST)
    return f"{local.year:04d}-{local.month:02d}"


def _jst_month_of(at: ColumnElement[Any], start: datetime, end: datetime) -> ColumnElement[Any]:
    """A CASE giving the "YYYY-MM" JST month of ``at`` for rows in [start, end).

    Rows are filtered to the period, so the first "earlier than the next month's start" that
    holds is the row's month; the bounds are bound parameters typed like the column.
    """
    whens = []
    month = jst_month_start(start)
    while month < end:
        following = add_months(month, 1)
        whens.append((at < following, _month_label(month)))
        month = following
    return case(*whens)


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
    """Health points of residents in one age band."""

    age_band: str = Field(description='Age band ("unknown" when not given)', examples=["65-74"])
    suppressed: bool = _suppressed()
    measures: PointsMeasures | None


class MerchantCategoryCell(Cell):
    """Payments at merchants of one category."""

    merchant_category: str = Field(
        description='Merchant category ("unknown" when not given)', examples=["grocery"]
    )
    suppressed: bool = _suppressed()
    measures: SpendingMeasures | None


class TownFlowCell(Cell):
    """Trips from one town to another (or within one town)."""

    origin_town: str = Field(examples=["takuma"])
    destination_town: str = Field(examples=["mino"])
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
                "suppressed": False,
                "measures": {"points_awarded": 184_500, "points_redeemed": 92_000, "subjects": 231},
            },
            {"age_band": "unknown", "suppressed": True, "measures": None},
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
                "suppressed": False,
                "measures": {"amount_jpy": 1_284_300, "payments": 903, "subjects": 188},
            },
            {"merchant_category": "taxi", "suppressed": True, "measures": None},
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
                "suppressed": False,
                "measures": {"trips": 120, "subjects": 31},
            },
            {
                "origin_town": "nio",
                "destination_town": "zentsuji",
                "suppressed": True,
                "measures": None,
            },
        ],
        {"trips": 120},
    )

    statistic: Literal["town-flows"] = "town-flows"
    cells: list[TownFlowCell]
    totals: TripTotals


# -- the queries -----------------------------------------------------------------------------

_C = TypeVar("_C", bound=Cell)


def _check(start: datetime, end: datetime, k: int) -> Period:
    if start.tzinfo is None or end.tzinfo is None:
        raise ValueError("a statistic's period needs aware datetimes")
    if start >= end:
        raise ValueError("a statistic's period must start before it ends")
    if k < 2:
        raise ValueError("k must be at least 2: a cell of one subject is about that subject")
    return Period(from_=start.astimezone(JST), to=end.astimezone(JST))


def _rows(engine: Engine, stmt: Select[Any]) -> Sequence[Row[Any]]:
    with engine.connect() as conn:
        return conn.execute(stmt).all()


def _ordered(values: Iterable[str | None]) -> tuple[tuple[bool, str], ...]:
    # Known values in order, "unknown" after them.
    return tuple((v is None, v or "") for v in values)


def _cells(
    rows: Sequence[Row[Any]],
    dimensions: Sequence[str],
    k: int,
    make: Callable[[dict[str, str], Row[Any] | None], _C],
) -> list[_C]:
    """One cell per row, in dimension order, suppressed below ``k`` distinct subjects."""
    ordered = sorted(rows, key=lambda r: _ordered(getattr(r, d) for d in dimensions))
    cells = []
    for row in ordered:
        dims = {d: getattr(row, d) or UNKNOWN for d in dimensions}
        # A suppressed cell gets no row at all: nothing measured about it can leak.
        cells.append(make(dims, row if row.subjects >= k else None))
    return cells


def trips_by_town_month(
    engine: Engine, start: datetime, end: datetime, *, k: int
) -> TripsByTownMonth:
    """Trips and distinct residents per (origin town, JST month) in [start, end)."""
    period = _check(start, end, k)
    at = _trips.c.pickup_at
    rows = (
        select(
            _trips.c.origin_town.label("town"),
            _jst_month_of(at, start, end).label("month"),
            _trips.c.subject_ref,
        )
        .where(at >= start, at < end)
        .subquery()
    )
    stmt = select(
        rows.c.town,
        rows.c.month,
        func.count().label("trips"),
        func.count(distinct(rows.c.subject_ref)).label("subjects"),
    ).group_by(rows.c.town, rows.c.month)

    def make(dims: dict[str, str], row: Row[Any] | None) -> TownMonthCell:
        if row is None:
            return TownMonthCell(**dims, suppressed=True, measures=None)
        measures = TripMeasures(trips=row.trips, subjects=row.subjects)
        return TownMonthCell(**dims, suppressed=False, measures=measures)

    cells = _cells(_rows(engine, stmt), ("town", "month"), k, make)
    published = [c.measures for c in cells if c.measures is not None]
    return TripsByTownMonth(
        k=k,
        period=period,
        cells=cells,
        suppressed_cells=len(cells) - len(published),
        totals=TripTotals(trips=sum(m.trips for m in published)),
    )


def points_by_age_band(
    engine: Engine, start: datetime, end: datetime, *, k: int
) -> PointsByAgeBand:
    """Health points awarded and redeemed, and distinct residents, per age band in [start, end)."""
    period = _check(start, end, k)
    at, points = _points.c.occurred_at, _points.c.points
    # Points are signed (a redemption is negative): split by sign, both published as positive.
    stmt = (
        select(
            _points.c.age_band,
            func.sum(case((points > 0, points), else_=0)).label("awarded"),
            func.sum(case((points < 0, -points), else_=0)).label("redeemed"),
            func.count(distinct(_points.c.subject_ref)).label("subjects"),
        )
        .where(at >= start, at < end)
        .group_by(_points.c.age_band)
    )

    def make(dims: dict[str, str], row: Row[Any] | None) -> AgeBandCell:
        if row is None:
            return AgeBandCell(**dims, suppressed=True, measures=None)
        measures = PointsMeasures(
            points_awarded=int(row.awarded),
            points_redeemed=int(row.redeemed),
            subjects=row.subjects,
        )
        return AgeBandCell(**dims, suppressed=False, measures=measures)

    cells = _cells(_rows(engine, stmt), ("age_band",), k, make)
    published = [c.measures for c in cells if c.measures is not None]
    return PointsByAgeBand(
        k=k,
        period=period,
        cells=cells,
        suppressed_cells=len(cells) - len(published),
        totals=PointsTotals(
            points_awarded=sum(m.points_awarded for m in published),
            points_redeemed=sum(m.points_redeemed for m in published),
        ),
    )


def spending_by_merchant_category(
    engine: Engine, start: datetime, end: datetime, *, k: int
) -> SpendingByMerchantCategory:
    """Payments (not top-ups or conversions) per merchant category in [start, end)."""
    period = _check(start, end, k)
    at = _currency.c.occurred_at
    stmt = (
        select(
            _currency.c.merchant_category,
            func.sum(_currency.c.amount_jpy).label("amount_jpy"),
            func.count().label("payments"),
            func.count(distinct(_currency.c.subject_ref)).label("subjects"),
        )
        .where(_currency.c.kind == "payment", at >= start, at < end)
        .group_by(_currency.c.merchant_category)
    )

    def make(dims: dict[str, str], row: Row[Any] | None) -> MerchantCategoryCell:
        if row is None:
            return MerchantCategoryCell(**dims, suppressed=True, measures=None)
        measures = SpendingMeasures(
            amount_jpy=int(row.amount_jpy), payments=row.payments, subjects=row.subjects
        )
        return MerchantCategoryCell(**dims, suppressed=False, measures=measures)

    cells = _cells(_rows(engine, stmt), ("merchant_category",), k, make)
    published = [c.measures for c in cells if c.measures is not None]
    return SpendingByMerchantCategory(
        k=k,
        period=period,
        cells=cells,
        suppressed_cells=len(cells) - len(published),
        totals=SpendingTotals(
            amount_jpy=sum(m.amount_jpy for m in published),
            payments=sum(m.payments for m in published),
        ),
    )


def town_flows(engine: Engine, start: datetime, end: datetime, *, k: int) -> TownFlows:
    """Trips and distinct residents per (origin town, destination town) in [start, end)."""
    period = _check(start, end, k)
    at = _trips.c.pickup_at
    stmt = (
        select(
            _trips.c.origin_town,
            _trips.c.destination_town,
            func.count().label("trips"),
            func.count(distinct(_trips.c.subject_ref)).label("subjects"),
        )
        .where(at >= start, at < end)
        .group_by(_trips.c.origin_town, _trips.c.destination_town)
    )

    def make(dims: dict[str, str], row: Row[Any] | None) -> TownFlowCell:
        if row is None:
            return TownFlowCell(**dims, suppressed=True, measures=None)
        measures = TripMeasures(trips=row.trips, subjects=row.subjects)
        return TownFlowCell(**dims, suppressed=False, measures=measures)

    cells = _cells(_rows(engine, stmt), ("origin_town", "destination_town"), k, make)
    published = [c.measures for c in cells if c.measures is not None]
    return TownFlows(
        k=k,
        period=period,
        cells=cells,
        suppressed_cells=len(cells) - len(published),
        totals=TripTotals(trips=sum(m.trips for m in published)),
    )
