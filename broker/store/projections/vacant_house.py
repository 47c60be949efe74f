"""Vacant-house projections: listings (public part and owner details apart) and inquiries."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Column, Connection, Index, select
from sqlmodel import Field, SQLModel

from broker.cloudevents import CloudEvent
from broker.store.bulk import insert_many
from broker.store.projections.timestamps import UtcDateTime, parse_time

#: The public part of a listing, as columns; everything else about the owner stays apart.
PUBLIC_FIELDS = (
    "town",
    "district",
    "building_type",
    "layout",
    "floor_area_m2",
    "land_area_m2",
    "year_built",
    "offer_type",
    "rent_band",
    "price_band",
    "renovated",
    "parking",
    "nearest_stop_id",
    "walk_minutes_to_stop",
    "status",
)


class Listing(SQLModel, table=True):
    """A vacant house in the bank: the public listing, and the owner's details kept apart."""

    __tablename__ = "vacant_house_listings"
    __table_args__ = (Index("ix_listings_town_status", "town", "status"),)

    listing_id: str = Field(primary_key=True, max_length=64)
    owner_id: str = Field(index=True, max_length=64)
    town: str | None = Field(default=None, max_length=32)
    district: str | None = Field(default=None, max_length=100)
    building_type: str | None = Field(default=None, max_length=32)
    layout: str | None = Field(default=None, max_length=32)
    floor_area_m2: float | None = None
    land_area_m2: float | None = None
    year_built: int | None = None
    offer_type: str | None = Field(default=None, max_length=32)
    rent_band: str | None = Field(default=None, max_length=32)
    price_band: str | None = Field(default=None, max_length=32)
    renovated: bool | None = None
    parking: bool | None = None
    nearest_stop_id: str | None = Field(default=None, max_length=64)
    walk_minutes_to_stop: int | None = None
    status: str | None = Field(default=None, max_length=32)
    # Owner-identifying (property.details): leaves only under the property rule.
    owner_details: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON))
    registered_at: datetime | None = Field(default=None, sa_type=UtcDateTime)
    updated_at: datetime = Field(sa_type=UtcDateTime)


class Inquiry(SQLModel, table=True):
    """A prospective resident's inquiry about a listing."""

    __tablename__ = "vacant_house_inquiries"

    event_id: str = Field(primary_key=True, max_length=128)
    inquiry_id: str = Field(index=True, max_length=64)
    listing_id: str = Field(index=True, max_length=64)
    resident_id: str = Field(index=True, max_length=64)
    kind: str = Field(max_length=32)
    message: str | None = Field(default=None, max_length=4000)
    preferred_move_in: str | None = Field(default=None, max_length=16)
    household_size: int | None = None
    received_at: datetime = Field(sa_type=UtcDateTime)


_listings = Listing.__table__  # type: ignore[attr-defined]
_inquiries = Inquiry.__table__  # type: ignore[attr-defined]


def _apply_listing(conn: Connection, e: CloudEvent) -> None:
    d = e.data
    registered = e.type == "vacant_house.listing.registered"
    changes: dict[str, Any] = {"owner_id": d["owner_id"]}
    changes.update({k: v for k, v in d.get("public", {}).items() if k in PUBLIC_FIELDS})
    stored = conn.execute(
        select(_listings.c.owner_details).where(_listings.c.listing_id == d["listing_id"])
    ).first()
    if "owner_details" in d:
        # An update may carry only the changed owner fields: merge over what is stored.
        base = (stored[0] or {}) if stored and not registered else {}
        changes["owner_details"] = {**base, **d["owner_details"]}
    if registered:
        changes["registered_at"] = parse_time(d["registered_at"])
        changes["updated_at"] = changes["registered_at"]
    else:
        changes["updated_at"] = parse_time(d["updated_at"])
    if stored is None:
        conn.execute(_listings.insert().values(listing_id=d["listing_id"], **changes))
    else:
        conn.execute(
            _listings.update().where(_listings.c.listing_id == d["listing_id"]).values(**changes)
        )


def _inquiry_row(e: CloudEvent) -> dict[str, Any]:
    d = e.data
    return {
        "event_id": e.id,
        "inquiry_id": d["inquiry_id"],
        "listing_id": d["listing_id"],
        "resident_id": d["resident_id"],
        "kind": d["kind"],
        "message": d.get("message"),
        "preferred_move_in": d.get("preferred_move_in"),
        "household_size": d.get("household_size"),
        "received_at": parse_time(d["received_at"]),
    }


def project_vacant_house(conn: Connection, events: Sequence[CloudEvent]) -> None:
    """Apply listing events in order and write inquiries."""
    for e in events:
        if e.type.startswith("vacant_house.listing."):
            _apply_listing(conn, e)
    inquiries = [_inquiry_row(e) for e in events if e.type == "vacant_house.inquiry.received"]
    if inquiries:
        insert_many(conn, _inquiries, inquiries)
