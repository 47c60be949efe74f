"""The small world the consent tests live in: a partner, residents, an owner and a listing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine

from broker.store.projections.vacant_house import Listing
from consent.catalogue import Catalogue
from consent.service import ConsentService

CATALOGUE = Catalogue.load()

BUS_FIRM = "ptn-mitoyobus01"  # a transport operator
HOUSING = "ptn-akiyashien01"  # a designated housing-support corporation (特定居住支援法人)
STRANGER = "ptn-neverregistered"

PLANNING = "transport.planning"
OPERATION = "transport.operation"
DUAL_RESIDENCE = "housing.dual_residence_support"
HEALTH = "health.incentive"

TRIPS = "transport.trips"
HEALTH_POINTS = "health.points"
VEHICLES = "transport.vehicles"
DETAILS = "property.details"
LISTING = "property.listing"
INQUIRIES = "property.inquiries"

ALICE = "res-alice001"  # a resident
BOB = "res-bob00002"  # another resident, who owns nothing
OWNER = "res-owner0003"  # owns the vacant house prop-house0001

_listings = Listing.__table__  # type: ignore[attr-defined]


def now() -> datetime:
    """The current time, UTC."""
    return datetime.now(UTC)


def days(n: float) -> timedelta:
    """``n`` days."""
    return timedelta(days=n)


def add_listing(engine: Engine, listing_id: str, owner_id: str) -> None:
    """A vacant-house listing in the store, as the ingest pipeline would have projected it."""
    with engine.begin() as conn:
        conn.execute(
            _listings.insert().values(
                listing_id=listing_id,
                owner_id=owner_id,
                town="三豊市",
                district="仁尾町",
                building_type="detached",
                status="available",
                updated_at=now(),  # owner details would be sealed under the owner's key
            )
        )


def register_partners(service: ConsentService) -> None:
    """The bus firm approved for transport planning and operation; the housing corporation for
    dual-residence support."""
    service.register_partner("三豊バス", "Mitoyo Bus", partner_id=BUS_FIRM)
    service.register_partner("空き家支援法人", "Akiya Support", partner_id=HOUSING)
    for purpose in (PLANNING, OPERATION):
        service.approve_purpose(BUS_FIRM, purpose, approved_by="mitoyo-city/kikaku-1")
    service.approve_purpose(HOUSING, DUAL_RESIDENCE, approved_by="mitoyo-city/jutaku-1")
