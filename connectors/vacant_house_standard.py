"""A vacant-house bank's export in the Digital Agency's standard data model 空き家バンク (the 43
fields of 「エリアデータ活用のためのデータモデル」, 2026-09-04, PDL1.0), read into
``vacant_house.listing.registered`` v2 events.

The header names the standard's fields by their 項目名 (``所在地_連結表記``) or their 英字名
(``fullAddress``), in any order and mixed; every one of the 43 must be there (the standard makes
every field 項目必須), plus the platform's own ``owner_id`` (所有者ID: the owner's platform id,
whose consent the property rule asks for) and, optionally, ``listing_id`` (物件ID; else made from
``localGovernmentCode`` and ``identifier``). A column of neither kind is refused with the header,
naming it: a misspelt standard name would otherwise be a field silently lost. Only a rejects
file's trailing ``line`` and ``reason`` (``connectors.rejects``) are let through, and ignored.

Each row is the bank's whole record of one listing, so each is a registration (sent again when
the record changes; an unchanged row gives the same event id, so a re-read publishes nothing).
Every cell is checked against the v2 schema's own definition of its field (type, value list,
range, pattern, date format), read from the shipped schema so that the standard's value lists
are written in one place; a bad cell is a ``RowError`` naming the file's own column.

Which fields are public and which may identify the owner is the schema's split (``public`` /
``owner_details``), not decided here.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import date, datetime, time
from functools import cache
from importlib.resources import files
from typing import Any

import orjson

from connectors.readers import (
    JST,
    CsvSource,
    FieldError,
    Fields,
    Seen,
    csv_header,
    iso,
    map_rows,
    read_csv,
)
from connectors.rejects import REJECT_COLUMNS
from connectors.sdk.rows import EventDraft, RowError
from contract.vacant_house_bank import STANDARD_FIELDS

__all__ = [
    "PLATFORM_COLUMNS",
    "is_standard_header",
    "read_standard_listings_csv",
]

LISTING_REGISTERED = "vacant_house.listing.registered"
#: The schema version this reader writes: the first to carry the standard model.
SCHEMA_VERSION = 2

#: The platform's own columns (the standard allows adding fields): name → Japanese name.
PLATFORM_COLUMNS = {"owner_id": "所有者ID", "listing_id": "物件ID"}
_REQUIRED_PLATFORM = ("owner_id",)

#: Every accepted header name → the field (English name) it stands for.
_CANONICAL: dict[str, str] = {
    **{ja: en for ja, en in STANDARD_FIELDS},
    **{en: en for _, en in STANDARD_FIELDS},
    **{ja: en for en, ja in PLATFORM_COLUMNS.items()},
    **{en: en for en in PLATFORM_COLUMNS},
}
_JAPANESE = {en: ja for ja, en in STANDARD_FIELDS} | PLATFORM_COLUMNS
#: Standard names that tell this format from the bank's own (v1) export, which shares "parking".
_V1_COLUMNS = frozenset({"parking", "listing_id", "owner_id"})

#: What a pattern-checked field must look like, in words for the report.
_SHAPES = {
    "localGovernmentCode": "a local government code (6 digits, e.g. 372081)",
    "identifier": "an id of half-width characters (at most 64)",
    "streetAddressId": "a town-block id (町字ID, 7 digits)",
    "contactPointPostalCode": "a postal code (7 digits, no hyphen, e.g. 7691108)",
    "contactPointPhoneNumber": "a phone number (e.g. 0875-00-1234)",
    "propertyDetailUrl": "an http(s) URL",
}
#: Range failures that mean something more than "too big": the standard's coordinates.
_OUTSIDE = {"latitude": "outside Japan", "longitude": "outside Japan"}
_ID_PART = re.compile(r"[^0-9a-z]")


@cache
def _schema() -> Mapping[str, Any]:
    path = files("schemas") / "vacant_house" / "listing.registered" / f"v{SCHEMA_VERSION}.json"
    schema: Mapping[str, Any] = orjson.loads(path.read_bytes())
    return schema


def _parts() -> dict[str, tuple[str, Mapping[str, Any]]]:
    """Field (English name) → (the part of the event it goes to, its schema)."""
    props = _schema()["properties"]
    return {
        name: (part, spec)
        for part in ("public", "owner_details")
        for name, spec in props[part]["properties"].items()
    }


def is_standard_header(header: Sequence[str]) -> bool:
    """Whether a listings export's header is the standard model's (any name that only it has)."""
    return any(_CANONICAL.get(h) not in (None, *_V1_COLUMNS) for h in header)


def _header_problem(header: Sequence[str]) -> str | None:
    """Why a standard export's header is refused (unknown, doubled or missing columns), or None."""
    unknown = [h for h in header if h and h not in _CANONICAL]
    given: dict[str, list[str]] = {}
    for h in header:
        if h in _CANONICAL:
            given.setdefault(_CANONICAL[h], []).append(h)
    japanese = sum(1 for h in header if h in _JAPANESE.values()) >= len(header) / 2
    reasons = []
    if unknown:
        reasons.append(
            f"unknown column(s) {', '.join(unknown)} (neither a field of the standard model "
            "空き家バンク nor owner_id / listing_id)"
        )
    reasons += [f"{en} given twice ({' and '.join(ns)})" for en, ns in given.items() if len(ns) > 1]
    wanted = [en for _, en in STANDARD_FIELDS] + list(_REQUIRED_PLATFORM)
    missing = [(_JAPANESE[en] if japanese else en) for en in wanted if en not in given]
    if missing:
        reasons.append(f"missing column(s) {', '.join(missing)}")
    return "; ".join(reasons) or None


def read_standard_listings_csv(
    source: CsvSource, *, encoding: str = "utf-8-sig"
) -> Iterator[EventDraft | RowError]:
    """``vacant_house.listing.registered`` v2 drafts from a 空き家バンク export in the standard
    model's columns (Japanese or English names); each bad cell a ``RowError`` naming it."""
    header = csv_header(source, encoding)
    if isinstance(header, RowError):
        yield header
        return
    if tuple(header[-len(REJECT_COLUMNS) :]) == REJECT_COLUMNS:
        header = header[: -len(REJECT_COLUMNS)]  # a fixed rejects file, run again
    problem = _header_problem(header)
    if problem:
        yield RowError(1, f"header: {problem}")
        return
    column = {_CANONICAL[h]: h for h in header if h}
    yield from map_rows(read_csv(source, (), encoding=encoding), _converter(column))


def _converter(column: Mapping[str, str]) -> Callable[[int, Fields], EventDraft]:
    parts = _parts()
    seen = Seen()

    def convert(line: int, f: Fields) -> EventDraft:
        data: dict[str, Any] = {"public": {}, "owner_details": {}}
        wrong: list[str] = []  # every bad cell of the row, not only the first
        for name, (part, spec) in parts.items():
            try:
                data[part][name] = _cell(f, column[name], name, spec)
            except FieldError as e:
                wrong.append(str(e))
        if wrong:
            raise FieldError("; ".join(wrong))
        public = data["public"]
        listing_id = (
            f.property_id(column["listing_id"])
            if "listing_id" in column and f.has(column["listing_id"])
            else _listing_id(f, column, public)
        )
        seen.once(f, column.get("listing_id", column["identifier"]), listing_id, line)
        owner_id = f.resident_id(column["owner_id"])
        # The record is the event's key: a changed record is a new event, the same record (a
        # re-read export, even days later without a publication date) the same event.
        record = {"listing_id": listing_id, "owner_id": owner_id, **data}
        digest = hashlib.sha256(orjson.dumps(record, option=orjson.OPT_SORT_KEYS)).hexdigest()
        at = _registered_at(public["dateOfPublicationOrUpdate"])
        data = {"listing_id": listing_id, "owner_id": owner_id, "registered_at": iso(at), **data}
        return EventDraft(
            LISTING_REGISTERED,
            listing_id,
            data,
            f"{listing_id}@{digest[:24]}",
            at,
            line,
            schema_version=SCHEMA_VERSION,
        )

    return convert


def _listing_id(f: Fields, column: Mapping[str, str], public: Mapping[str, Any]) -> str:
    """The platform id of a listing the export does not name: ``prop-`` with the town's code
    and the bank's own id, folded to lower-case letters and digits (stable across exports)."""
    own = f"{public['localGovernmentCode']}{public['identifier']}".lower()
    made = "prop-" + _ID_PART.sub("", own)
    if len(made) > 45:
        raise f.fail(
            column["identifier"],
            f"too long to make a platform id ({made!r}); give a listing_id column",
        )
    return made


def _registered_at(published: str | None) -> datetime:
    """When the bank published (or last updated) the record: its date at midnight Japan time;
    today's when the bank left 情報公開日、更新日 empty."""
    day = date.fromisoformat(published) if published else datetime.now(JST).date()
    return datetime.combine(day, time(0, 0), JST)


def _cell(f: Fields, column: str, name: str, spec: Mapping[str, Any]) -> Any:
    """One cell as its field's schema defines it; an empty optional cell is null."""
    types = spec["type"] if isinstance(spec["type"], list) else [spec["type"]]
    if not f.has(column):
        if "null" in types:
            return None
        raise f.fail(column, "required but empty (値必須)")
    if "enum" in spec:
        value = f.raw(column)
        allowed = [v for v in spec["enum"] if v is not None]
        if value not in allowed:
            raise f.fail(column, f"{value!r} is not one of {', '.join(allowed)}")
        return value
    if "integer" in types or "number" in types:
        return _quantity(f, column, name, spec, integer="integer" in types)
    if spec.get("format") == "date":
        return _date(f, column)
    if "pattern" in spec:
        shape = _SHAPES.get(name, f"of the form {spec['pattern']}")
        return f.matching(column, re.compile(spec["pattern"].strip("^$")), shape)
    return f.text(
        column, min_length=spec.get("minLength", 1), max_length=spec.get("maxLength", 2000)
    )


def _quantity(f: Fields, column: str, name: str, spec: Mapping[str, Any], *, integer: bool) -> Any:
    low, high = spec.get("minimum", 0), spec.get("maximum", 10**12)
    value: float = (
        f.integer(column, -(10**15), 10**15) if integer else f.number(column, -1e15, 1e15)
    )
    if not low <= value <= high:
        where = _OUTSIDE.get(name, "out of range")
        raise f.fail(column, f"{value:g} is {where} ({low:g} to {high:g})")
    return value


def _date(f: Fields, column: str) -> str:
    value = unicodedata.normalize("NFKC", f.raw(column))
    try:
        if re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", value):
            return date.fromisoformat(value).isoformat()
    except ValueError:
        pass
    raise f.fail(column, f"{f.raw(column)!r} is not a date in YYYY-MM-DD")
