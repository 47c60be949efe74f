"""Vacant-house projections: listings (public part and owner details apart) and inquiries.

A listing keeps its public part and its ``owner_id`` in clear (the property rule decides on
the owner), and its owner-identifying details sealed under the owner's key, so erasing the
owner shreds them. Both majors land in the same table: a v1 listing in v1's columns, a v2
listing (the Digital Agency's standard model 空き家バンク) with its public standard fields in
``standard`` and its publication status (``vacantHouseListing``) in ``publication``; its
owner-identifying standard fields are sealed as v1's are. So that the views filter both majors
alike, a v2 listing's ``town`` and ``status`` are derived from its standard fields
(``standard_town_and_status``). A change of owner drops the
previous owner's details: they are never opened for, nor sealed under, the new owner.
An inquiry names the inquiring resident by their row reference and seals what they wrote.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Column, Connection, Index, LargeBinary, String, select
from sqlmodel import Field, SQLModel

from broker.store.bulk import insert_many
from broker.store.projections.projection import Projection
from broker.store.projections.sealing import REF_LENGTH, BatchKeys, UnreadableSealError
from broker.store.projections.timestamps import UtcDateTime, parse_time
from contract.catalogue import parse_urn
from contract.cloudevents import CloudEvent
from contract.towns import town_of_address

log = logging.getLogger(__name__)

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
#: The standard fields that v1 columns also hold (same unit), so views filter both majors alike.
STANDARD_COLUMNS = {"totalFloorArea_MTK": "floor_area_m2", "landArea_MTK": "land_area_m2"}
#: 空き家バンクへの掲載 (the standard model's ``vacantHouseListing``): the two values.
LISTED_FOR_PUBLIC = "一般へ公開"
LISTED_FOR_ADMINS_ONLY = "管理者のみ閲覧"
#: v1's listing statuses the views ask for: on offer (募集中), and off the bank (掲載取下げ).
AVAILABLE = "available"
WITHDRAWN = "withdrawn"


def standard_town_and_status(standard: Mapping[str, Any]) -> dict[str, str | None]:
    """v1's ``town`` and ``status`` of a standard (v2) listing, from its public fields.

    The town is its address's (全国地方公共団体コード and 所在地_町字; None outside the region).
    The standard has no contract status of its own: a listing its bank shows to the public
    (一般へ公開) is on offer, ``available``; one it keeps to its administrators (管理者のみ閲覧),
    as banks do with one under contract or sold, is off the bank, ``withdrawn``.
    """
    listed = standard.get("vacantHouseListing") == LISTED_FOR_PUBLIC
    return {
        "town": town_of_address(standard.get("localGovernmentCode"), standard.get("streetAddress")),
        "status": AVAILABLE if listed else WITHDRAWN,
    }


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
    # v2: the standard's publication status (一般へ公開 / 管理者のみ閲覧; None for v1 listings,
    # which were all public) and its public fields under the standard's names.
    publication: str | None = Field(default=None, max_length=32)
    standard: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    # Owner-identifying (property.details), sealed under the owner's key: leaves only under
    # the property rule, and is shredded with the owner's key.
    owner_details_sealed: bytes | None = Field(default=None, sa_type=LargeBinary)
    registered_at: datetime | None = Field(default=None, sa_type=UtcDateTime)
    updated_at: datetime = Field(sa_type=UtcDateTime)


class Inquiry(SQLModel, table=True):
    """A prospective resident's inquiry about a listing.

    Sealed: message, preferred_move_in, household_size.
    """

    __tablename__ = "vacant_house_inquiries"
    __table_args__ = (Index("ix_inquiries_subject_received", "subject_ref", "received_at"),)

    event_id: str = Field(primary_key=True, max_length=128)
    inquiry_id: str = Field(index=True, max_length=64)
    listing_id: str = Field(index=True, max_length=64)
    subject_ref: str = Field(sa_type=String(REF_LENGTH))
    kind: str = Field(max_length=32)
    received_at: datetime = Field(sa_type=UtcDateTime)
    sealed: bytes = Field(sa_type=LargeBinary)


_listings = Listing.__table__  # type: ignore[attr-defined]
_inquiries = Inquiry.__table__  # type: ignore[attr-defined]


def _standard(e: CloudEvent) -> bool:
    """Whether a listing event is of the standard model (v2 on): as its ``dataschema`` says,
    else (the latest applied) by its fields: v1's public fields never hold text for parking."""
    parsed = parse_urn(e.dataschema) if e.dataschema else None
    if parsed is not None:
        return parsed[1] >= 2
    public = e.data.get("public", {})
    v1_only = set(public) <= set(PUBLIC_FIELDS) and not isinstance(public.get("parking"), str)
    return not (v1_only and "fullAddress" not in e.data.get("owner_details", {}))


def _apply_listing(conn: Connection, e: CloudEvent, keys: BatchKeys) -> None:
    d = e.data
    registered = e.type == "vacant_house.listing.registered"
    owner = keys[d["owner_id"]]
    changes: dict[str, Any] = {"owner_id": d["owner_id"]}
    stored = conn.execute(
        select(_listings.c.owner_id, _listings.c.owner_details_sealed, _listings.c.standard).where(
            _listings.c.listing_id == d["listing_id"]
        )
    ).first()
    public = d.get("public", {})
    if _standard(e):
        # A registration is the whole record; an update overwrites the fields it names.
        base = {} if registered or stored is None else dict(stored.standard or {})
        changes["standard"] = {**base, **public}
        changes.update(standard_town_and_status(changes["standard"]))
        if "vacantHouseListing" in public:
            changes["publication"] = public["vacantHouseListing"]
        changes.update({column: public[k] for k, column in STANDARD_COLUMNS.items() if k in public})
    else:
        changes.update({k: v for k, v in public.items() if k in PUBLIC_FIELDS})
    # Owner details belong to the owner who gave them. The same owner's update may carry
    # only the changed fields: merge over what they gave before. A new owner starts from
    # nothing: the previous owner's details are dropped, never opened for the new owner
    # (their key would then seal and release them under the new owner's consent).
    new_owner = stored is None or stored.owner_id != d["owner_id"]
    if "owner_details" in d or new_owner:
        base = (
            {}
            if stored is None or new_owner or registered
            else _stored_details(keys, stored.owner_id, stored.owner_details_sealed)
        )
        merged = {**base, **d.get("owner_details", {})}
        changes["owner_details_sealed"] = owner.seal(merged) if merged else None
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


def _stored_details(keys: BatchKeys, owner_id: str, sealed: bytes | None) -> dict[str, Any]:
    """The stored owner details; none when there are none or their owner was erased."""
    if sealed is None:
        return {}
    key = keys.existing(owner_id)
    if key is None:
        return {}
    try:
        return key.open(sealed)
    except UnreadableSealError:
        # Bytes that do not authenticate were tampered with: drop them, never stop ingest.
        log.error("listing owner details do not authenticate; replacing them")
        return {}


def _inquiry_row(e: CloudEvent, keys: BatchKeys) -> dict[str, Any]:
    d = e.data
    key = keys[d["resident_id"]]
    return {
        "event_id": e.id,
        "inquiry_id": d["inquiry_id"],
        "listing_id": d["listing_id"],
        "subject_ref": key.ref,
        "kind": d["kind"],
        "received_at": parse_time(d["received_at"]),
        "sealed": key.seal(
            {
                "message": d.get("message"),
                "preferred_move_in": d.get("preferred_move_in"),
                "household_size": d.get("household_size"),
            }
        ),
    }


def project_vacant_house(conn: Connection, events: Sequence[CloudEvent], keys: BatchKeys) -> None:
    """Apply listing events in order and write inquiries."""
    for e in events:
        if e.type.startswith("vacant_house.listing."):
            _apply_listing(conn, e, keys)
    inquiries = [_inquiry_row(e, keys) for e in events if e.type == "vacant_house.inquiry.received"]
    if inquiries:
        insert_many(conn, _inquiries, inquiries)


#: Named by the domain's declaration (``contract.domains``).
PROJECTION = Projection(
    project_vacant_house, tables=(_listings, _inquiries), subject_tables=(_inquiries,)
)
