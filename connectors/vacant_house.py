"""The vacant-house bank (空き家バンク) connector's readers: listings, with the owner-identifying
fields, and inquiries from prospective (dual) residents.

Registered or updated? Each listings row is one of the two:

- the ``action`` column decides when it holds ``register`` (新規/登録) or ``update`` (更新/変更);
- when it is empty or absent, the first row of a listing id is a registration and later rows
  of the same id are updates. Pass a ``ListingBook`` to carry that knowledge across exports
  (a long-running connector keeps one);
- an update sends only what changed: empty cells mean "unchanged" (a field is never removed),
  and cells equal to what the book already knows are left out. An update that changes
  nothing yields no event and no error. Registering an id the book already knows is treated
  as an update;
- the book remembers each row's ``recorded_at``: a row it has taken in before is skipped
  (re-reading an export publishes nothing), and a row older than the listing's last change
  is an error rather than a change that would undo newer ones.

The public listing (town, district, type, size, bands...) goes to ``public``; the exact
address, lot number, owner's name and contact go to ``owner_details``, which the platform
discloses only to partners the owner consented to. ``district`` is public, so a district
holding digits (a street number) is refused.

A bank exporting the Digital Agency's standard model 空き家バンク (its 43 fields, Japanese or
English names) is read by ``connectors.vacant_house_standard`` instead: ``read_listings_csv``
tells the two apart by the header.

Column formats: ``connectors/samples/README.md``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from connectors.readers import (
    CsvSource,
    Fields,
    Row,
    Seen,
    csv_header,
    iso,
    map_rows,
    numbered,
    read_csv,
)
from connectors.sdk.rows import EventDraft, RowError
from connectors.vacant_house_standard import is_standard_header, read_standard_listings_csv

__all__ = [
    "EVENT_TYPES",
    "INQUIRY_RECEIVED",
    "LISTING_REGISTERED",
    "LISTING_UPDATED",
    "SOURCE",
    "ListingBook",
    "inquiry_drafts",
    "listing_drafts",
    "read_inquiries_csv",
    "read_listings_csv",
]

SOURCE = "urn:tsunagu:connector:mitoyo-akiya-bank"
LISTING_REGISTERED = "vacant_house.listing.registered"
LISTING_UPDATED = "vacant_house.listing.updated"
INQUIRY_RECEIVED = "vacant_house.inquiry.received"
EVENT_TYPES: tuple[str, ...] = (LISTING_REGISTERED, LISTING_UPDATED, INQUIRY_RECEIVED)

BUILDING_TYPES = ("detached_house", "kominka", "row_house", "shop_house", "apartment")
OFFER_TYPES = ("rent", "sale", "rent_or_sale")
RENT_BANDS = ("under_20k", "20k_to_40k", "40k_to_60k", "60k_to_80k", "80k_and_over")
PRICE_BANDS = ("free", "under_1m", "1m_to_3m", "3m_to_5m", "5m_to_10m", "10m_and_over")
STATUSES = ("preparing", "available", "under_negotiation", "contracted", "withdrawn")
INQUIRY_KINDS = ("dual_residence", "relocation", "visit", "short_stay", "purchase")

#: Columns every listings export must have (the rest may be absent or empty: see the README).
LISTING_REQUIRED = ("listing_id", "owner_id", "recorded_at")
#: Columns every inquiries export must have.
INQUIRY_REQUIRED = ("inquiry_id", "listing_id", "resident_id", "kind", "received_at")
#: Every column the inquiries reader reads, in the documented order.
INQUIRY_COLUMNS = (
    "inquiry_id",
    "listing_id",
    "resident_id",
    "kind",
    "message",
    "preferred_move_in",
    "household_size",
    "received_at",
)

_LAYOUT = re.compile(r"[1-9][0-9]?(R|K|DK|LDK|SDK|SLDK)")
_KANA = re.compile(r"[ァ-ヶー 　]{1,100}")
_PHONE = re.compile(r"\+?[0-9][0-9-]{8,16}[0-9]")
_EMAIL = re.compile(r"[^@\s]{1,200}@[^@\s]+\.[^@\s]+")
_DIGIT = re.compile(r"[0-9０-９]")

_Cell = Callable[[Fields, str], Any]

PUBLIC_CELLS: dict[str, _Cell] = {
    "town": lambda f, c: f.town(c),
    "district": lambda f, c: _district(f, c),
    "building_type": lambda f, c: f.choice(c, BUILDING_TYPES),
    "layout": lambda f, c: f.matching(c, _LAYOUT, "a layout such as 4DK or 3LDK"),
    "floor_area_m2": lambda f, c: f.number(c, 0, 5000, exclusive_minimum=True),
    "land_area_m2": lambda f, c: f.number(c, 0, 100_000, exclusive_minimum=True),
    "year_built": lambda f, c: f.integer(c, 1868, 2100),
    "offer_type": lambda f, c: f.choice(c, OFFER_TYPES),
    "rent_band": lambda f, c: f.choice(c, RENT_BANDS),
    "price_band": lambda f, c: f.choice(c, PRICE_BANDS),
    "renovated": lambda f, c: f.boolean(c),
    "parking": lambda f, c: f.boolean(c),
    "nearest_stop_id": lambda f, c: f.record_id(c),
    "walk_minutes_to_stop": lambda f, c: f.integer(c, 0, 180),
    "status": lambda f, c: f.choice(c, STATUSES),
}
OWNER_CELLS: dict[str, _Cell] = {
    "exact_address": lambda f, c: f.text(c, min_length=5, max_length=200),
    "lot_number": lambda f, c: f.text(c, max_length=60),
    "owner_name": lambda f, c: f.text(c),
    "owner_name_kana": lambda f, c: f.matching(c, _KANA, "katakana (e.g. オオニシ ハナコ)"),
    "owner_address": lambda f, c: f.text(c, min_length=5, max_length=200),
    "owner_phone": lambda f, c: f.matching(c, _PHONE, "a phone number (e.g. 0875-00-1234)"),
    "owner_email": lambda f, c: f.matching(c, _EMAIL, "an e-mail address"),
}
#: Every column the listings reader reads, in the documented order.
LISTING_COLUMNS = ("listing_id", "action", "owner_id", "recorded_at", *PUBLIC_CELLS, *OWNER_CELLS)
_REGISTER_PUBLIC = ("town", "district", "building_type", "floor_area_m2", "offer_type", "status")
_REGISTER_OWNER = ("exact_address", "lot_number", "owner_name")
_CONTACT = {"owner_phone": "phone", "owner_email": "email"}
_ACTIONS = {
    "register": "register",
    "new": "register",
    "新規": "register",
    "登録": "register",
    "update": "update",
    "更新": "update",
    "変更": "update",
}


def _district(f: Fields, column: str) -> str:
    value = f.text(column, max_length=40)
    if _DIGIT.search(value):
        raise f.fail(column, f"{value!r} holds digits: a street number is never public")
    return value


@dataclass(slots=True)
class KnownListing:
    """What the bank last said about a listing: its owner and every field it has sent."""

    owner_id: str
    public: dict[str, Any] = field(default_factory=dict)
    owner: dict[str, Any] = field(default_factory=dict)  # flat: owner_phone, owner_email
    applied: set[datetime] = field(default_factory=set)  # recorded_at of every row taken in

    @property
    def latest(self) -> datetime:
        """When the bank last changed the listing."""
        return max(self.applied)


class ListingBook:
    """The listings a connector has published, so a repeated id is an update with a diff."""

    __slots__ = ("_known",)

    def __init__(self) -> None:
        self._known: dict[str, KnownListing] = {}

    def __contains__(self, listing_id: object) -> bool:
        return listing_id in self._known

    def __len__(self) -> int:
        return len(self._known)

    def get(self, listing_id: str) -> KnownListing | None:
        """What is known about a listing, if anything."""
        return self._known.get(listing_id)

    def remember(
        self,
        listing_id: str,
        at: datetime,
        owner_id: str,
        public: Mapping[str, Any],
        owner: Mapping[str, Any],
    ) -> None:
        """Merge what a row recorded at ``at`` said into what is known."""
        known = self._known.setdefault(listing_id, KnownListing(owner_id))
        known.owner_id = owner_id
        known.public.update(public)
        known.owner.update(owner)
        known.applied.add(at)


def _cells(f: Fields, cells: Mapping[str, _Cell]) -> dict[str, Any]:
    return {column: parse(f, column) for column, parse in cells.items() if f.has(column)}


def _contact(owner: Mapping[str, Any]) -> dict[str, str]:
    return {key: owner[column] for column, key in _CONTACT.items() if column in owner}


def listing_drafts(
    rows: Iterable[Row], *, book: ListingBook | None = None
) -> Iterator[EventDraft | RowError]:
    """Listing registered/updated drafts from listing rows (first row = line 2)."""
    return _listings(numbered(rows), book if book is not None else ListingBook())


def read_listings_csv(
    source: CsvSource, *, book: ListingBook | None = None, encoding: str = "utf-8-sig"
) -> Iterator[EventDraft | RowError]:
    """Listing drafts from the vacant-house bank's listings CSV: in the standard model's
    columns (``vacant_house_standard``, v2 events) when its header names them, else in the
    bank's own format documented here (v1 events)."""
    header = csv_header(source, encoding)
    if not isinstance(header, RowError) and is_standard_header(header):
        return read_standard_listings_csv(source, encoding=encoding)
    rows = read_csv(source, LISTING_REQUIRED, encoding=encoding)
    return _listings(rows, book if book is not None else ListingBook())


def _listings(
    rows: Iterable[tuple[int, Row] | RowError], book: ListingBook
) -> Iterator[EventDraft | RowError]:
    def convert(line: int, f: Fields) -> EventDraft | None:
        listing_id = f.property_id("listing_id")
        action = _ACTIONS.get(f.raw("action").lower()) if f.has("action") else None
        if f.has("action") and action is None:
            raise f.fail("action", f"{f.raw('action')!r} is not register or update")
        at = f.timestamp("recorded_at")
        public, owner = _cells(f, PUBLIC_CELLS), _cells(f, OWNER_CELLS)
        known = book.get(listing_id)
        if known is None and action != "update":
            return _register(line, f, listing_id, at, public, owner, book)
        if known and at in known.applied:
            return None  # this very row was taken in before (the export is read again)
        if known and at < known.latest:
            raise f.fail(
                "recorded_at",
                f"{iso(at)} is older than the listing's last change ({iso(known.latest)}): "
                "not applied",
            )
        owner_id = f.resident_id("owner_id") if f.has("owner_id") or not known else known.owner_id
        changed_public = {k: v for k, v in public.items() if not known or known.public.get(k) != v}
        changed_owner = {k: v for k, v in owner.items() if not known or known.owner.get(k) != v}
        if not changed_public and not changed_owner:
            if known and owner_id != known.owner_id:
                raise f.fail("owner_id", "a new owner needs the new owner's name and contact")
            book.remember(listing_id, at, owner_id, public, owner)
            return None  # nothing changed: nothing to tell
        data: dict[str, Any] = {
            "listing_id": listing_id,
            "owner_id": owner_id,
            "updated_at": iso(at),
        }
        if changed_public:
            data["public"] = changed_public
        if changed_owner:
            details = {k: v for k, v in changed_owner.items() if k not in _CONTACT}
            if any(k in _CONTACT for k in changed_owner):
                # owner_contact is one field: send it whole (what was known, plus the change).
                details["owner_contact"] = _contact({**(known.owner if known else {}), **owner})
            data["owner_details"] = details
        book.remember(listing_id, at, owner_id, public, owner)
        return EventDraft(
            LISTING_UPDATED, listing_id, data, f"{listing_id}@{iso(at)}", at, line, schema_version=1
        )

    return map_rows(rows, convert)


def _register(
    line: int,
    f: Fields,
    listing_id: str,
    at: datetime,
    public: dict[str, Any],
    owner: dict[str, Any],
    book: ListingBook,
) -> EventDraft:
    owner_id = f.resident_id("owner_id")
    required = [c for c in _REGISTER_PUBLIC if c not in public]
    if public.get("offer_type") in ("rent", "rent_or_sale") and "rent_band" not in public:
        required.append("rent_band")
    if public.get("offer_type") in ("sale", "rent_or_sale") and "price_band" not in public:
        required.append("price_band")
    required += [c for c in _REGISTER_OWNER if c not in owner]
    if required:
        raise f.fail(required[0], "required to register a listing" + _also(required[1:]))
    contact = _contact(owner)
    if not contact:
        raise f.fail("owner_phone", "required to register a listing (or owner_email)")
    details = {k: v for k, v in owner.items() if k not in _CONTACT}
    details["owner_contact"] = contact
    data = {
        "listing_id": listing_id,
        "owner_id": owner_id,
        "registered_at": iso(at),
        "public": public,
        "owner_details": details,
    }
    book.remember(listing_id, at, owner_id, public, owner)
    return EventDraft(
        LISTING_REGISTERED, listing_id, data, f"{listing_id}@{iso(at)}", at, line, schema_version=1
    )


def _also(columns: list[str]) -> str:
    return f" (so are {', '.join(columns)})" if columns else ""


def inquiry_drafts(rows: Iterable[Row]) -> Iterator[EventDraft | RowError]:
    """``vacant_house.inquiry.received`` drafts from inquiry rows (first row = line 2)."""
    return _inquiries(numbered(rows))


def read_inquiries_csv(
    source: CsvSource, *, encoding: str = "utf-8-sig"
) -> Iterator[EventDraft | RowError]:
    """``vacant_house.inquiry.received`` drafts from the bank's inquiries CSV."""
    return _inquiries(read_csv(source, INQUIRY_REQUIRED, encoding=encoding))


def _inquiries(rows: Iterable[tuple[int, Row] | RowError]) -> Iterator[EventDraft | RowError]:
    seen = Seen()

    def convert(line: int, f: Fields) -> EventDraft:
        inquiry_id = f.record_id("inquiry_id")
        seen.once(f, "inquiry_id", inquiry_id, line)
        resident_id = f.resident_id("resident_id")
        received = f.timestamp("received_at")
        data: dict[str, Any] = {
            "inquiry_id": inquiry_id,
            "listing_id": f.property_id("listing_id"),
            "resident_id": resident_id,
            "kind": f.choice("kind", INQUIRY_KINDS),
        }
        if f.has("message"):
            data["message"] = f.text("message", max_length=2000)
        if f.has("preferred_move_in"):
            data["preferred_move_in"] = f.month("preferred_move_in")
        if f.has("household_size"):
            data["household_size"] = f.integer("household_size", 1, 12)
        data["received_at"] = iso(received)
        return EventDraft(INQUIRY_RECEIVED, resident_id, data, inquiry_id, received, line)

    return map_rows(rows, convert)
