"""k-anonymous statistics for planning (`/v1/statistics`), for partners, auditors and admins.

Statistics need no consent: every published cell counts at least k distinct residents, and
smaller cells are listed as suppressed with no measures (see ``broker.views.statistics`` for
what is published and what that guarantees). k is the platform's minimum
(``TSUNAGU_K_ANONYMITY``); a caller may raise it, never lower it. A partner names the purpose
of its read, which must be approved for it and served by the statistic, and is rate-limited
like every partner read.

Periods are whole, published months of the region's calendar (Japan time), each published
on its own: `from` is moved back to the start of its month, `to` forward to the start of the
next one, and the months not published yet are left out: the month under way, and a month
that ended less than ``TSUNAGU_STATISTICS_SETTLE_DAYS`` days ago (still settling: late events
are counted in it until it is published and frozen). The response's `period` says what was
covered; a period of unpublished months only is a 422 saying from when it will be.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from typing import Annotated, TypeVar

from fastapi import APIRouter, Depends, Query

from broker.api.deps import StatisticsReadDep
from broker.api.moments import Moment
from broker.api.problems import Problem
from broker.api.reads import PartnerRead
from broker.views.flows import PeopleFlow, Ridership, people_flow, ridership
from broker.views.statistics import (
    PointsByAgeBand,
    SpendingByMerchantCategory,
    TownFlows,
    TripsByTownMonth,
    check_serves,
    chosen_k,
    complete_months,
    points_by_age_band,
    spending_by_merchant_category,
    town_flows,
    trips_by_town_month,
)

router = APIRouter(
    prefix="/v1/statistics",
    tags=["statistics"],
    responses={
        401: {"model": Problem, "description": "No bearer token, or not a valid one"},
        403: {
            "model": Problem,
            "description": "Not a partner, auditor or admin; a partner not approved for the "
            "purpose; or a purpose the statistic does not serve",
        },
        422: {
            "model": Problem,
            "description": "A malformed period, a k below the platform's minimum, a partner "
            "read without a purpose, or a filter breaking its field's rule (a mesh code not of "
            "8 digits or outside Japan, a date not YYYY-MM-DD, a band not on the hour)",
        },
        429: {"model": Problem, "description": "Over the partner's rate; see Retry-After"},
    },
)

_Figures = TypeVar("_Figures")


@dataclass(frozen=True, slots=True)
class StatisticsRequest:
    """What a statistic is computed over, once the caller and parameters are checked."""

    read: PartnerRead
    start: datetime
    end: datetime
    k: int
    now: datetime

    async def answer(self, view: str, category: str, compute: Callable[..., _Figures]) -> _Figures:
        """``compute(engine, start, end, k=k)`` at the request's time, its audit entry stored
        before the figures leave (cells, never residents)."""
        check_serves(view, self.read.purpose)
        settings = self.read.services.settings

        def work() -> _Figures:
            figures = compute(
                self.read.services.engine,
                self.start,
                self.end,
                k=self.k,
                minimum_k=settings.k_anonymity,
                settle_days=settings.statistics_settle_days,
                now=self.now,
            )
            self.read.record(f"statistics/{view}", [category])
            return figures

        return await self.read.run(work)


async def statistics_request(
    read: StatisticsReadDep,
    from_: Annotated[
        Moment | None,
        Query(
            alias="from",
            description="Start of the period (inclusive), moved back to the start of its month "
            "(Japan time); default: twelve months before `to`",
            examples=["2024-06-01T00:00:00+09:00"],
        ),
    ] = None,
    to: Annotated[
        Moment | None,
        Query(
            description="End of the period (exclusive), moved forward to the next month start "
            "(Japan time) and never past the end of the last published month (one that ended "
            "at least TSUNAGU_STATISTICS_SETTLE_DAYS days ago); default: that end",
            examples=["2025-06-01T00:00:00+09:00"],
        ),
    ] = None,
    k: Annotated[
        int | None,
        Query(
            description="Smallest published cell, in distinct residents; may only raise the "
            "platform's minimum (the default)",
            examples=[20],
        ),
    ] = None,
) -> StatisticsRequest:
    """The checked caller, purpose, k and period of a statistics request."""
    settings = read.services.settings
    now = datetime.now(UTC)
    chosen = chosen_k(k, settings.k_anonymity)
    start, end = complete_months(from_, to, now, settings.statistics_settle_days)
    return StatisticsRequest(read, start, end, chosen, now)


Asked = Annotated[StatisticsRequest, Depends(statistics_request)]


@router.get("/trips-by-town-month")
async def get_trips_by_town_month(asked: Asked) -> TripsByTownMonth:
    """Trips and distinct residents by origin town and month (Japan time)."""
    return await asked.answer("trips-by-town-month", "transport.trips", trips_by_town_month)


@router.get("/points-by-age-band")
async def get_points_by_age_band(asked: Asked) -> PointsByAgeBand:
    """Health points awarded and redeemed, and distinct residents, by age band."""
    return await asked.answer("points-by-age-band", "health.points", points_by_age_band)


@router.get("/spending-by-merchant-category")
async def get_spending_by_merchant_category(asked: Asked) -> SpendingByMerchantCategory:
    """Local-currency payments (amount, count, distinct residents) by merchant category."""
    return await asked.answer(
        "spending-by-merchant-category", "currency.transactions", spending_by_merchant_category
    )


@router.get("/town-flows")
async def get_town_flows(asked: Asked) -> TownFlows:
    """Trips and distinct residents by origin and destination town."""
    return await asked.answer("town-flows", "transport.trips", town_flows)


_BAND = Query(
    alias="startTime",
    description="Only the hourly band starting then (Japan time, 00:00 to 23:00)",
    examples=["10:00"],
)


@router.get("/people-flow")
async def get_people_flow(
    asked: Asked,
    area_code: Annotated[
        str | None,
        Query(
            alias="areaCode",
            description="Only this JIS X 0410 third-level mesh (8 digits)",
            examples=["51332517"],
        ),
    ] = None,
    measurement_date: Annotated[
        str | None,
        Query(
            alias="measurementDate",
            description="Only this day (Japan time), YYYY-MM-DD",
            examples=["2025-05-10"],
        ),
    ] = None,
    start_time: Annotated[str | None, _BAND] = None,
) -> PeopleFlow:
    """人流データ (Digital Agency model): distinct residents boarding or alighting at stops per
    mesh, day and hourly band; cells under k left out."""
    compute = partial(
        people_flow,
        area_code=area_code,
        measurement_date=measurement_date,
        start_time=start_time,
    )
    return await asked.answer("people-flow", "transport.trips", compute)


@router.get("/ridership")
async def get_ridership(
    asked: Asked,
    stop_id: Annotated[str | None, Query(description="Only this stop (GTFS stop_id)")] = None,
    day: Annotated[
        str | None,
        Query(alias="date", description="Only this day (Japan time), YYYY-MM-DD"),
    ] = None,
    start_time: Annotated[str | None, _BAND] = None,
) -> Ridership:
    """乗降実績: boardings and alightings per stop, day and hourly band; cells under k left
    out."""
    compute = partial(ridership, stop_id=stop_id, day=day, start_time=start_time)
    return await asked.answer("ridership", "transport.trips", compute)
