"""What a partner firm reads: the residents who consented to it, a resident's cross-service
view, and vacant houses with transport access. Every read names its purpose; the purpose
must be approved for the partner, and each subject and category is decided on its own.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Query, Request, Response
from pydantic import BaseModel, Field

from broker.api.deps import PartnerReadDep
from broker.api.links import PAGED, link_next
from broker.api.moments import Moment
from broker.api.problems import Problem, ProblemError
from broker.views import cursors
from broker.views.activity import CATEGORIES, CategoryResult, activity
from broker.views.housing import HouseView, vacant_houses
from broker.views.residents import consented, subjects_of
from broker.views.statistics import add_months, published_month_start
from consent.decisions import Decision

router = APIRouter(
    prefix="/v1/partner",
    tags=["partner views"],
    responses={
        401: {"model": Problem, "description": "No bearer token, or not a valid one"},
        403: {"model": Problem, "description": "Not a partner, or not approved for the purpose"},
        400: {"model": Problem, "description": "The cursor is not one of this query's pages"},
        422: {"model": Problem, "description": "A parameter is malformed (purpose, dates)"},
        429: {"model": Problem, "description": "Over the partner's rate; see Retry-After"},
    },
)

MAX_PERIOD = timedelta(days=5 * 366)
DEFAULT_PERIOD = timedelta(days=90)

Cursor = Annotated[
    str | None,
    Query(description="`next_cursor` of the previous page; absent for the first page"),
]
From = Annotated[
    Moment | None,
    Query(alias="from", description="Start of the period (inclusive); default: `to` − 90 days"),
]
To = Annotated[
    Moment | None,
    Query(alias="to", description="End of the period (exclusive); default: now"),
]


def _period(start: datetime | None, end: datetime | None) -> tuple[datetime, datetime]:
    end = end or datetime.now(UTC)
    start = start or end - DEFAULT_PERIOD
    if start >= end:
        raise ProblemError(422, "invalid-period", "`from` must be before `to`")
    if end - start > MAX_PERIOD:
        raise ProblemError(
            422, "invalid-period", "the period is longer than 5 years; ask period by period"
        )
    return start, end


def _position(cursor: str | None, scope: str) -> cursors.Position | None:
    if cursor is None:
        return None
    try:
        return cursors.decode(cursor, scope)
    except cursors.InvalidCursorError as exc:
        raise ProblemError(400, "invalid-cursor", str(exc)) from None


class Withheld(BaseModel):
    """Why a part of the view is not there: the consent decision's reason."""

    reason: str = Field(examples=["no_consent"])
    consent_id: str | None = None


# -- residents --------------------------------------------------------------------------------


class ConsentedResident(BaseModel):
    """A resident who consented to you for the purpose, under your pseudonym for them."""

    resident: str = Field(description="Your pairwise pseudonym", examples=["psn-3kq2m4..."])
    consent_id: str
    categories: list[str] = Field(examples=[["transport.trips", "health.points"]])
    granted_at: datetime
    expires_at: datetime
    data_from: datetime | None = None
    data_to: datetime | None = None


class ResidentsPage(BaseModel):
    """One page of consented residents."""

    purpose: str
    residents: list[ConsentedResident]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null at end")


@router.get("/residents", responses={200: PAGED})
async def residents(
    request: Request,
    response: Response,
    read: PartnerReadDep,
    granted_from: Annotated[
        Moment | None,
        Query(alias="from", description="Only consents granted at or after this time"),
    ] = None,
    granted_to: Annotated[
        Moment | None, Query(alias="to", description="Only consents granted before this")
    ] = None,
    cursor: Cursor = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> ResidentsPage:
    """The residents with an active consent to you for the purpose, under your pseudonyms."""
    partner, purpose, services = read.partner, read.purpose, read.services
    scope = f"residents:{partner}:{purpose}:{granted_from}:{granted_to}"
    after = _position(cursor, scope)

    def work() -> ResidentsPage:
        page, last = consented(
            services.engine,
            partner=partner,
            purpose=purpose,
            now=datetime.now(UTC),
            granted_from=granted_from,
            granted_to=granted_to,
            after=after,
            limit=limit,
        )
        read.record("residents", [], rows=len(page))
        return ResidentsPage(
            purpose=purpose,
            residents=[
                ConsentedResident(
                    resident=services.pseudonyms.of(partner, c.subject),
                    consent_id=c.consent_id,
                    categories=c.categories,
                    granted_at=c.granted_at,
                    expires_at=c.expires_at,
                    data_from=c.data_from,
                    data_to=c.data_to,
                )
                for c in page
            ],
            next_cursor=cursors.encode(last, scope) if last else None,
        )

    page = await read.run(work)
    link_next(request, response, page.next_cursor)
    return page


# -- a resident's cross-service view ----------------------------------------------------------


class ActivityItem(BaseModel):
    """One event of the resident in one service."""

    category: str = Field(examples=["transport.trips"])
    kind: str = Field(examples=["trip"])
    id: str
    at: datetime
    data: dict[str, Any]


class CategoryPart(BaseModel):
    """A category of the view: included with its totals over the period, or withheld."""

    category: str
    included: bool
    consent_id: str | None = None
    totals: dict[str, int] | None = Field(
        default=None, examples=[{"trips": 12, "fare_jpy": 3600, "passengers": 13}]
    )
    period_from: datetime | None = Field(
        default=None, description="The period read: the request's, within the consent's range"
    )
    period_to: datetime | None = None
    withheld: Withheld | None = None


class ActivityView(BaseModel):
    """A resident's trips, health points and local-currency activity side by side."""

    resident: str
    purpose: str
    period_from: datetime
    period_to: datetime
    categories: list[CategoryPart]
    items: list[ActivityItem]
    next_cursor: str | None


def _part(result: CategoryResult) -> CategoryPart:
    d = result.decision
    if not d.allowed:
        return CategoryPart(
            category=result.category,
            included=False,
            withheld=Withheld(reason=d.reason.value, consent_id=d.consent_id),
        )
    return CategoryPart(
        category=result.category,
        included=True,
        consent_id=d.consent_id,
        totals=result.totals,
        period_from=result.data_from,
        period_to=result.data_to,
    )


@router.get(
    "/residents/{resident}/activity",
    response_model=ActivityView,
    responses={
        200: PAGED,
        404: {"model": Problem, "description": "Not one of your pseudonyms"},
        503: {"model": Problem, "description": "The audit log cannot be written: no read"},
    },
)
async def resident_activity(
    request: Request,
    read: PartnerReadDep,
    resident: str,
    start: From = None,
    end: To = None,
    category: Annotated[
        list[str] | None,
        Query(
            description="Categories to read (default: the whole view, all three). A category "
            "named here without consent to you is a refusal; unnamed, one your consent does "
            "not cover is withheld",
            examples=["health.points"],
        ),
    ] = None,
    cursor: Cursor = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> Response:
    """The resident's cross-service view over the period, each category as consent allows.

    A category without consent is not silently missing: it is listed as withheld with the
    decision's reason (`no_consent`, `revoked`, `expired`, `paused`, `category_not_covered`...).
    Totals cover the whole period; items come a page at a time in time order.
    """
    partner, purpose, services = read.partner, read.purpose, read.services
    categories = category or list(CATEGORIES)
    unknown = [c for c in categories if c not in CATEGORIES]
    if unknown:
        raise ProblemError(
            422,
            "unknown-category",
            f"unknown categories {unknown}; this view has {', '.join(CATEGORIES)}",
        )
    # The query as asked (not "now"): a page without `to` continues the period its first page
    # read, whose end the cursor pins.
    scope = f"activity:{partner}:{resident}:{purpose}:{start}:{end}:{sorted(categories)}"
    after = _position(cursor, scope)
    if cursor is not None and end is None:
        end = cursors.pinned_end(cursor)
    lo, hi = _period(start, end)

    def work() -> tuple[bytes, str | None]:
        # The store work; the wait for the audit entry is not (see broker.api.recording).
        engine = services.engine
        subject = services.pseudonyms.resolve(
            partner, resident, lambda: subjects_of(engine, partner)
        )
        if subject is None:
            raise ProblemError(
                404,
                "unknown-pseudonym",
                f"{resident} is not a pseudonym of a resident who consented to you",
            )
        page = activity(
            engine,
            services.vault,
            services.decisions,
            partner=partner,
            purpose=purpose,
            subject=subject,
            start=lo,
            end=hi,
            # None: the whole view, no category asked for by name.
            categories=None
            if category is None
            else sorted(set(categories), key=list(CATEGORIES).index),
            after=after,
            limit=limit,
        )
        included = [r for r in page.categories if r.decision.allowed]
        read.record(
            "activity",
            [r.category for r in included],
            subject=subject,
            pseudonym=resident,
            consent_ids=sorted({r.decision.consent_id for r in included if r.decision.consent_id}),
            rows=len(page.items),
        )
        # Serialised straight to JSON: validating a model per item cost more than the
        # queries. The shape is ActivityView's, which the OpenAPI document declares.
        next_cursor = cursors.encode(page.next, scope, hi) if page.next else None
        body = {
            "resident": resident,
            "purpose": purpose,
            "period_from": lo,
            "period_to": hi,
            "categories": [_part(r).model_dump() for r in page.categories],
            # orjson writes a dataclass as its fields in order: ActivityItem's shape.
            "items": page.items,
            "next_cursor": next_cursor,
        }
        return orjson.dumps(body), next_cursor

    body, next_cursor = await read.run(work)
    response = Response(body, media_type="application/json")
    link_next(request, response, next_cursor)
    return response


# -- vacant houses ----------------------------------------------------------------------------


class TransportAccess(BaseModel):
    """How a house reaches transport."""

    nearest_stop_id: str | None
    walk_minutes: int | None
    distance_m: int | None = Field(description="Walk minutes × 80 m (公正競争規約)")
    stop_town: str | None
    stop_lat: float | None
    stop_lon: float | None
    on_demand: bool = Field(description="On-demand transport picks up or drops off there")
    bus: bool = Field(description="A bus serves the stop")
    trips_nearby: int | None = Field(
        description="Trips that started or ended there in the period (`month`, by default "
        "the last published month, Japan time), as the k-anonymous statistic publishes them "
        "(frozen at its first publication): null when fewer than k "
        "residents made them, or when your purpose is not one this statistic serves"
    )


class House(BaseModel):
    """A vacant house: the public listing, transport access, owner details if allowed."""

    listing_id: str
    registered_at: datetime | None
    listing: dict[str, Any]
    transport: TransportAccess
    owner_details: dict[str, Any] | None = Field(
        description="Only with the owner's consent to you for this purpose (property rule)"
    )
    owner_details_withheld: Withheld | None = None


class HousesPage(BaseModel):
    """One page of vacant houses."""

    purpose: str
    period_from: datetime
    period_to: datetime
    houses: list[House]
    next_cursor: str | None


def _house(h: HouseView) -> House:
    d: Decision = h.owner_decision
    return House(
        listing_id=h.listing_id,
        registered_at=h.registered_at,
        listing=h.public,
        transport=TransportAccess(
            nearest_stop_id=h.access.stop_id,
            walk_minutes=h.access.walk_minutes,
            distance_m=h.access.distance_m,
            stop_town=h.access.stop_town,
            stop_lat=h.access.stop_lat,
            stop_lon=h.access.stop_lon,
            on_demand=h.access.on_demand,
            bus=h.access.bus,
            trips_nearby=h.access.trips_nearby,
        ),
        owner_details=h.owner_details,
        owner_details_withheld=None
        if d.allowed and h.owner_details is not None
        else Withheld(reason=d.reason.value if not d.allowed else "no_details", consent_id=None),
    )


@router.get("/vacant-houses", responses={200: PAGED})
async def houses(
    request: Request,
    response: Response,
    read: PartnerReadDep,
    town: Annotated[str | None, Query(max_length=32, examples=["takuma"])] = None,
    available: Annotated[bool, Query(description="Only listings still available")] = False,
    month: Annotated[
        str | None,
        Query(
            description="The published month (Japan time, YYYY-MM) whose trips count as "
            "served nearby: one that ended at least TSUNAGU_STATISTICS_SETTLE_DAYS days ago; "
            "default: the last published month",
            pattern=r"^[1-9][0-9]{3}-(0[1-9]|1[0-2])$",
            examples=["2025-04"],
        ),
    ] = None,
    registered_from: Annotated[
        Moment | None, Query(description="Only listings registered at or after this")
    ] = None,
    registered_to: Annotated[
        Moment | None, Query(description="Only listings registered before this")
    ] = None,
    cursor: Cursor = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> HousesPage:
    """Vacant houses with their transport access; owner details only under the property rule.

    Trips nearby count one published month (Japan time: ended, then settled for late events),
    k-anonymous and frozen like every statistic; `registered_from`/`registered_to` filter the
    listings by when they were registered.

    Without the owner's consent to you for this purpose, a house shows its public listing
    only (district, type, size, rent band), and `owner_details_withheld` says why.
    """
    partner, purpose, services = read.partner, read.purpose, read.services
    settings = services.settings
    now = datetime.now(UTC)
    lo = published_month_start(month, now, settings.statistics_settle_days)
    hi = add_months(lo, 1)
    # Bound to the whole query: another partner, purpose, month or filter cannot reuse it.
    scope = (
        f"houses:{partner}:{purpose}:{town}:{available}:{lo:%Y-%m}:"
        f"{registered_from}:{registered_to}"
    )
    position = _position(cursor, scope)

    def work() -> HousesPage:
        page = vacant_houses(
            services.engine,
            services.vault,
            services.decisions,
            partner=partner,
            purpose=purpose,
            month=lo,
            k=settings.k_anonymity,
            settle_days=settings.statistics_settle_days,
            town=town,
            available_only=available,
            registered_from=registered_from,
            registered_to=registered_to,
            after=(position.at, position.id) if position else None,
            limit=limit,
            now=now,
        )
        if not page.listing_decision.allowed:
            raise ProblemError(
                403,
                "listing-refused",
                f"listings refused ({page.listing_decision.reason.value}): read for a purpose "
                "approved for you",
            )
        read.record("vacant_houses", ["property.listing"], rows=len(page.houses))
        # Owner details are personal data of the owner: each read is theirs to see.
        for house in page.houses:
            if house.owner_details is not None:
                read.record(
                    "vacant_houses",
                    ["property.details"],
                    subject=house.owner_id,
                    consent_ids=[house.owner_decision.consent_id or ""],
                    rows=1,
                )
        return HousesPage(
            purpose=purpose,
            period_from=lo,
            period_to=hi,
            houses=[_house(h) for h in page.houses],
            next_cursor=cursors.encode(cursors.Position(*page.next), scope) if page.next else None,
        )

    page = await read.run(work)
    link_next(request, response, page.next_cursor)
    return page
