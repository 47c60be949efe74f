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
from typing import Annotated, TypeVar

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from sqlalchemy import Engine

from broker.api.identity import require
from broker.api.limits import within_limit
from broker.api.moments import Moment
from broker.api.problems import Problem
from broker.audit import AuditLog, EntryKind
from broker.auth.principals import Principal, Role
from broker.settings import Settings
from broker.views.statistics import (
    MUNICIPAL_PURPOSE,
    PointsByAgeBand,
    SpendingByMerchantCategory,
    TownFlows,
    TripsByTownMonth,
    add_months,
    check_serves,
    jst_month_start,
    months_between,
    not_published_yet,
    points_by_age_band,
    publishable_end,
    spending_by_merchant_category,
    town_flows,
    trips_by_town_month,
)
from consent.decisions import DecisionPoint

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
            "description": "A malformed period, a k below the platform's minimum, or a partner "
            "read without a purpose",
        },
        429: {"model": Problem, "description": "Over the partner's rate; see Retry-After"},
    },
)

#: The longest period one request may cover.
MAX_MONTHS = 60
#: The period when neither end is given: the last twelve published months.
DEFAULT_MONTHS = 12


async def limited_caller(
    request: Request,
    caller: Annotated[Principal, Depends(require(Role.PARTNER, Role.AUDITOR, Role.ADMIN))],
) -> Principal:
    """The caller; a partner also takes a token from its rate bucket (429 when empty)."""
    if caller.role is Role.PARTNER:
        within_limit(request, caller)
    return caller


_Figures = TypeVar("_Figures")


@dataclass(frozen=True, slots=True)
class StatisticsRequest:
    """What a statistic is computed over, once the caller and parameters are checked."""

    engine: Engine
    start: datetime
    end: datetime
    k: int
    minimum_k: int
    caller: Principal
    purpose: str
    audit: AuditLog
    settle_days: int
    now: datetime

    def answer(self, view: str, category: str, compute: Callable[..., _Figures]) -> _Figures:
        """``compute(engine, start, end, k=k)`` at the request's time, its audit entry stored
        before the figures leave (cells, never residents)."""
        check_serves(view, self.purpose)
        figures = compute(
            self.engine,
            self.start,
            self.end,
            k=self.k,
            minimum_k=self.minimum_k,
            settle_days=self.settle_days,
            now=self.now,
        )
        self.audit.append_now(
            EntryKind.PARTNER_READ,
            actor=self.caller.subject,
            partner=self.caller.subject,
            purpose=self.purpose,
            categories=[category],
            view=f"statistics/{view}",
        )
        return figures


def _purpose_approved(request: Request, caller: Principal, purpose: str | None) -> None:
    if caller.role is not Role.PARTNER:
        return  # auditors and admins read statistics as the municipality, for no partner purpose
    if purpose is None:
        raise HTTPException(
            422, "a partner names the purpose of its read: ?purpose=<a purpose approved for you>"
        )
    decisions: DecisionPoint = request.app.state.decisions
    decisions.check_purpose(caller.subject, purpose)  # the one purpose check (consent.decisions)


def _k(request: Request, k: int | None) -> int:
    settings: Settings = request.app.state.settings
    minimum = settings.k_anonymity
    if k is None:
        return minimum
    if k < minimum:
        raise HTTPException(
            422,
            f"k may only raise the platform's minimum of {minimum}, not lower it: "
            f"k={k} would publish cells about fewer than {minimum} residents",
        )
    return k


def complete_months(
    start: datetime | None, end: datetime | None, now: datetime, settle_days: int
) -> tuple[datetime, datetime]:
    """The whole, published JST months covering [start, end): complete, and ended at least
    ``settle_days`` days before ``now``; 422 when there are none, saying from when."""
    published = publishable_end(now, settle_days)
    if start is not None and end is not None and start >= end:
        raise HTTPException(422, "`from` must be before `to`")
    if end is None:
        last = published
    else:
        last = jst_month_start(end)
        if last < end:
            last = add_months(last, 1)  # `to` inside a month: the whole month is counted
        last = min(last, published)
    first = add_months(last, -DEFAULT_MONTHS) if start is None else jst_month_start(start)
    if first >= last:
        raise HTTPException(
            422,
            "statistics cover complete months (Japan time), each published once settled; the "
            f"period asked for is not published yet: {not_published_yet(first, now, settle_days)}",
        )
    months = months_between(first, last)
    if months > MAX_MONTHS:
        raise HTTPException(
            422,
            f"the period spans {months} months, over the limit of {MAX_MONTHS} (5 years); "
            "ask for it in parts",
        )
    return first, last


def statistics_request(
    request: Request,
    caller: Annotated[Principal, Depends(limited_caller)],
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
    purpose: Annotated[
        str | None,
        Query(
            description="The purpose of the read, approved for you; required for partners",
            examples=["transport.planning"],
            min_length=1,
            max_length=100,
        ),
    ] = None,
) -> StatisticsRequest:
    """The checked caller, purpose, k and period of a statistics request."""
    _purpose_approved(request, caller, purpose)
    chosen_k = _k(request, k)
    settings: Settings = request.app.state.settings
    now = datetime.now(UTC)
    start, end = complete_months(from_, to, now, settings.statistics_settle_days)
    return StatisticsRequest(
        request.app.state.engine,
        start,
        end,
        chosen_k,
        settings.k_anonymity,
        caller,
        purpose or MUNICIPAL_PURPOSE,
        request.app.state.audit,
        settings.statistics_settle_days,
        now,
    )


Asked = Annotated[StatisticsRequest, Depends(statistics_request)]


@router.get("/trips-by-town-month")
def get_trips_by_town_month(asked: Asked) -> TripsByTownMonth:
    """Trips and distinct residents by origin town and month (Japan time)."""
    return asked.answer("trips-by-town-month", "transport.trips", trips_by_town_month)


@router.get("/points-by-age-band")
def get_points_by_age_band(asked: Asked) -> PointsByAgeBand:
    """Health points awarded and redeemed, and distinct residents, by age band."""
    return asked.answer("points-by-age-band", "health.points", points_by_age_band)


@router.get("/spending-by-merchant-category")
def get_spending_by_merchant_category(asked: Asked) -> SpendingByMerchantCategory:
    """Local-currency payments (amount, count, distinct residents) by merchant category."""
    return asked.answer(
        "spending-by-merchant-category", "currency.transactions", spending_by_merchant_category
    )


@router.get("/town-flows")
def get_town_flows(asked: Asked) -> TownFlows:
    """Trips and distinct residents by origin and destination town."""
    return asked.answer("town-flows", "transport.trips", town_flows)
