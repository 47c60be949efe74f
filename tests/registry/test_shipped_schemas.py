"""The shipped contract: the event schemas, the envelope and the catalogues under ``schemas/``.

These tests read the files exactly as a connector, the registry and the consent decision point
read them, and state what every firm may rely on.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterator
from datetime import date
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema_rs
import pytest
from jsonschema import Draft202012Validator

REPO = Path(__file__).parents[2]
SCHEMAS = REPO / "schemas"
ENVELOPE = SCHEMAS / "cloudevent.json"
CATEGORIES = SCHEMAS / "catalogue" / "categories.json"
PURPOSES = SCHEMAS / "catalogue" / "purposes.json"

REQUIRED_TYPES = {
    "transport.ride.requested",
    "transport.trip.completed",
    "transport.vehicle.position",
    "health.points.awarded",
    "health.points.redeemed",
    "currency.wallet.topped_up",
    "currency.payment.settled",
    "currency.points.converted",
    "vacant_house.listing.registered",
    "vacant_house.listing.updated",
    "vacant_house.inquiry.received",
}

RESIDENT_ID = "^res-[0-9a-z]{4,40}$"
PROPERTY_ID = "^prop-[0-9a-z]{4,40}$"
VEHICLE_ID = "^veh-[0-9a-z]{2,40}$"
MERCHANT_ID = "^mer-[0-9a-z]{2,40}$"
#: Which platform id pattern a field of that name must carry, in every schema.
ID_FIELDS = {
    "resident_id": RESIDENT_ID,
    "owner_id": RESIDENT_ID,
    "listing_id": PROPERTY_ID,
    "vehicle_id": VEHICLE_ID,
    "merchant_id": MERCHANT_ID,
}
TOWNS = ["takase", "yamamoto", "mino", "toyonaka", "takuma", "nio", "saita"]
#: Objects whose fields are split between categories (public listing vs owner details).
SPLIT_OBJECTS = ("public", "owner_details")
COMPATIBILITY_MODES = {
    "BACKWARD",
    "BACKWARD_TRANSITIVE",
    "FORWARD",
    "FORWARD_TRANSITIVE",
    "FULL",
    "FULL_TRANSITIVE",
    "NONE",
}
JAPANESE = re.compile(r"[\u3040-\u30ff\u3400-\u9fff]")

EVENT_FILES = sorted(SCHEMAS.glob("*/*/v*.json"))
ALL_SCHEMA_FILES = [*EVENT_FILES, ENVELOPE]


def load(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def event_type(path: Path) -> str:
    """``schemas/transport/trip.completed/v1.json`` → ``transport.trip.completed``."""
    return f"{path.parent.parent.name}.{path.parent.name}"


def version(path: Path) -> int:
    match = re.fullmatch(r"v([1-9][0-9]*)\.json", path.name)
    assert match, f"{path} is not named v<N>.json"
    return int(match.group(1))


def rel(path: Path) -> str:
    return str(path.relative_to(SCHEMAS))


@cache
def schema_of(path: Path) -> dict[str, Any]:
    loaded: dict[str, Any] = load(path)
    return loaded


@cache
def py_validator(path: Path) -> Draft202012Validator:
    return Draft202012Validator(schema_of(path), format_checker=Draft202012Validator.FORMAT_CHECKER)


@cache
def rs_validator(path: Path) -> Any:
    return jsonschema_rs.validator_for(schema_of(path), validate_formats=True)


def is_valid(path: Path, instance: Any) -> bool:
    """Valid for both engines, which must agree (the hot path uses jsonschema-rs)."""
    py = bool(py_validator(path).is_valid(instance))
    rs = bool(rs_validator(path).is_valid(instance))
    assert py == rs, f"jsonschema ({py}) and jsonschema-rs ({rs}) disagree on {instance!r}"
    return py


def latest(type_: str) -> Path:
    domain, rest = type_.split(".", 1)
    files = sorted((SCHEMAS / domain / rest).glob("v*.json"), key=version)
    assert files, f"no schema for {type_}"
    return files[-1]


def version_file(type_: str, number: int) -> Path:
    domain, rest = type_.split(".", 1)
    return SCHEMAS / domain / rest / f"v{number}.json"


def example(type_: str, index: int = 0, number: int | None = None) -> dict[str, Any]:
    path = latest(type_) if number is None else version_file(type_, number)
    result: dict[str, Any] = copy.deepcopy(schema_of(path)["examples"][index])
    return result


def subschemas(node: Any, where: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    """Every schema object inside a schema (properties, items, combinators, conditionals)."""
    if not isinstance(node, dict):
        return
    yield where, node
    for key in ("properties", "patternProperties", "$defs", "dependentSchemas"):
        for name, child in node.get(key, {}).items():
            yield from subschemas(child, f"{where}/{key}/{name}")
    for key in ("items", "additionalProperties", "not", "if", "then", "else", "propertyNames"):
        yield from subschemas(node.get(key), f"{where}/{key}")
    for key in ("allOf", "anyOf", "oneOf", "prefixItems"):
        for i, child in enumerate(node.get(key, [])):
            yield from subschemas(child, f"{where}/{key}/{i}")


def fields_of(schema: dict[str, Any], where: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    """Every field of the data, nested ones included, as (JSON pointer, subschema)."""
    for name, sub in schema.get("properties", {}).items():
        yield f"{where}/{name}", sub
        yield from fields_of(sub, f"{where}/{name}")


def objects_in(instance: Any, where: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    """Every JSON object inside an instance, with its pointer."""
    if isinstance(instance, dict):
        yield where, instance
        for key, value in instance.items():
            yield from objects_in(value, f"{where}/{key}")
    elif isinstance(instance, list):
        for i, value in enumerate(instance):
            yield from objects_in(value, f"{where}/{i}")


def at(document: dict[str, Any], pointer: str) -> dict[str, Any]:
    """The object an instance pointer such as ``/public`` designates (must exist)."""
    node: Any = document
    for token in pointer.split("/")[1:]:
        node = node[token]
    assert isinstance(node, dict)
    return node


def property_at(schema: dict[str, Any], pointer: str) -> dict[str, Any] | None:
    """The subschema of the data field at a JSON pointer such as ``/public/district``."""
    node: Any = schema
    for token in pointer.split("/")[1:]:
        if not isinstance(node, dict) or token not in node.get("properties", {}):
            return None
        node = node["properties"][token]
    return node if isinstance(node, dict) else None


def data_fields(schema: dict[str, Any]) -> list[str]:
    """The fields a category must cover: top-level ones, and those inside split objects."""
    fields: list[str] = []
    for name, sub in schema["properties"].items():
        if name in SPLIT_OBJECTS:
            fields.extend(f"/{name}/{child}" for child in sub["properties"])
        else:
            fields.append(f"/{name}")
    return fields


def categories() -> list[dict[str, Any]]:
    cats: list[dict[str, Any]] = load(CATEGORIES)["categories"]
    return cats


def envelope_for(type_: str, data: dict[str, Any], subject: str) -> dict[str, Any]:
    return {
        "specversion": "1.0",
        "id": "9d1f2a44-0c1e-4f55-8f43-1f3a7b2b9e01",
        "source": "urn:tsunagu:connector:test",
        "type": type_,
        "subject": subject,
        "time": "2025-06-12T09:58:02+09:00",
        "dataschema": f"urn:tsunagu:schema:{type_}:v1",
        "datacontenttype": "application/json",
        "data": data,
    }


ids = [rel(p) for p in EVENT_FILES]
all_ids = [rel(p) for p in ALL_SCHEMA_FILES]


# --------------------------------------------------------------------------- the set of schemas


def test_every_required_event_type_is_shipped() -> None:
    shipped = {event_type(p) for p in EVENT_FILES}
    assert shipped >= REQUIRED_TYPES, f"missing: {sorted(REQUIRED_TYPES - shipped)}"


def test_layout_is_domain_type_version() -> None:
    for path in EVENT_FILES:
        type_ = event_type(path)
        assert re.fullmatch(r"[a-z_]+\.[a-z_]+\.[a-z_]+", type_), path
        version(path)


@pytest.mark.parametrize("path", [*ALL_SCHEMA_FILES, CATEGORIES, PURPOSES], ids=rel)
def test_json_is_pretty_printed_utf8_with_two_spaces(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    assert text == json.dumps(json.loads(text), ensure_ascii=False, indent=2) + "\n"


def test_optional_compatibility_configs_name_a_known_mode() -> None:
    for config in SCHEMAS.glob("*/*/config.json"):
        loaded = load(config)
        assert set(loaded) <= {"compatibility", "breaking", "deprecated"}, config
        assert loaded["compatibility"] in COMPATIBILITY_MODES, config
        # A breaking version (a new major) is recorded with why; v1 cannot break anything.
        for number, why in loaded.get("breaking", {}).items():
            assert re.fullmatch(r"[2-9]|[1-9][0-9]+", number), config
            assert why.strip(), config
        # A deprecated version is one a breaking version superseded, with its last day.
        majors = [int(n) for n in loaded.get("breaking", {})]
        for number, until in loaded.get("deprecated", {}).items():
            assert majors and int(number) < max(majors), config
            date.fromisoformat(until)


# --------------------------------------------------------------------------- each schema file


@pytest.mark.parametrize("path", ALL_SCHEMA_FILES, ids=all_ids)
def test_schema_is_valid_json_schema_2020_12(path: Path) -> None:
    schema = schema_of(path)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    Draft202012Validator.check_schema(schema)
    rs_validator(path)  # jsonschema-rs compiles it too (its regex dialect included)


@pytest.mark.parametrize("path", EVENT_FILES, ids=ids)
def test_id_names_type_and_version_of_its_path(path: Path) -> None:
    assert schema_of(path)["$id"] == f"urn:tsunagu:schema:{event_type(path)}:v{version(path)}"


@pytest.mark.parametrize("path", ALL_SCHEMA_FILES, ids=all_ids)
def test_title_and_description_are_in_japanese_and_english(path: Path) -> None:
    schema = schema_of(path)
    for key in ("title", "description"):
        assert JAPANESE.search(schema[key]), f"{key} has no Japanese"
        assert re.search(r"[A-Za-z]{4,}", schema[key]), f"{key} has no English"


@pytest.mark.parametrize("path", EVENT_FILES, ids=ids)
def test_data_is_a_closed_object_and_every_nested_object_is_closed(path: Path) -> None:
    schema = schema_of(path)
    assert schema["type"] == "object"
    assert schema["required"], "a top-level required list"
    for where, sub in subschemas(schema):
        if sub.get("type") == "object":
            assert sub.get("additionalProperties") is False, f"{where} must be closed"


@pytest.mark.parametrize("path", EVENT_FILES, ids=ids)
def test_every_field_is_typed_and_described(path: Path) -> None:
    for where, sub in fields_of(schema_of(path)):
        assert "type" in sub, f"{where} has no type"
        assert sub.get("description"), f"{where} has no description"
        if sub["type"] == "string" and "enum" not in sub:
            assert {"maxLength", "pattern"} & set(sub), f"{where}: unbounded string"


@pytest.mark.parametrize("path", EVENT_FILES, ids=ids)
def test_platform_ids_use_the_shared_patterns(path: Path) -> None:
    for where, sub in fields_of(schema_of(path)):
        name = where.rsplit("/", 1)[-1]
        if name in ID_FIELDS:
            assert sub["pattern"] == ID_FIELDS[name], where


@pytest.mark.parametrize("path", EVENT_FILES, ids=ids)
def test_money_is_integer_yen_and_towns_are_the_seven_former_towns(path: Path) -> None:
    for where, sub in fields_of(schema_of(path)):
        name = where.rsplit("/", 1)[-1]
        if name.endswith("_jpy"):
            assert sub["type"] == "integer", where
            assert sub["minimum"] >= 0, where
            assert "maximum" in sub, where
        if name == "town":
            assert sub["enum"] == TOWNS, where


@pytest.mark.parametrize("path", EVENT_FILES, ids=ids)
def test_time_fields_carry_format_and_a_pattern_that_asserts_it(path: Path) -> None:
    """``format`` is only an annotation by default in 2020-12; the pattern makes it binding."""
    for where, sub in subschemas(schema_of(path)):
        if sub.get("format") in {"date-time", "date", "email"}:
            assert "pattern" in sub, where


# --------------------------------------------------------------------------- examples


@pytest.mark.parametrize("path", EVENT_FILES, ids=ids)
def test_examples_are_complete_japanese_and_valid(path: Path) -> None:
    schema = schema_of(path)
    examples = schema["examples"]
    assert examples, "at least one example"
    for instance in examples:
        errors = [e.message for e in py_validator(path).iter_errors(instance)]
        assert not errors, errors
        assert is_valid(path, instance)
    covered = set().union(*(set(e) for e in examples))
    assert covered == set(schema["properties"]), "examples together show every field"


def test_examples_carry_japanese_content() -> None:
    for path in EVENT_FILES:
        text = json.dumps(schema_of(path)["examples"], ensure_ascii=False)
        assert JAPANESE.search(text), path


@pytest.mark.parametrize("path", EVENT_FILES, ids=ids)
def test_an_unknown_field_is_rejected_at_every_level(path: Path) -> None:
    for original in schema_of(path)["examples"]:
        for where, _ in objects_in(original):
            instance = copy.deepcopy(original)
            at(instance, where)["unexpected_field"] = "x"
            assert not is_valid(path, instance), f"extra field accepted at {where or '/'}"


@pytest.mark.parametrize("path", EVENT_FILES, ids=ids)
def test_a_misspelled_field_beside_the_right_one_is_rejected(path: Path) -> None:
    for original in schema_of(path)["examples"]:
        for name in original:
            instance = copy.deepcopy(original)
            instance[name.replace("_jpy", "_yen") if name.endswith("_jpy") else name + "s"] = 1
            assert not is_valid(path, instance), name


def test_fare_yen_is_not_fare_jpy() -> None:
    trip = example("transport.trip.completed")
    path = latest("transport.trip.completed")
    trip["fare_yen"] = trip["fare_jpy"]
    assert not is_valid(path, trip)
    del trip["fare_jpy"]
    assert not is_valid(path, trip)


@pytest.mark.parametrize("path", EVENT_FILES, ids=ids)
def test_each_missing_required_field_is_rejected(path: Path) -> None:
    schema = schema_of(path)
    for original in schema["examples"]:
        for name in schema["required"]:
            instance = copy.deepcopy(original)
            del instance[name]
            assert not is_valid(path, instance), f"accepted without {name}"


@pytest.mark.parametrize(
    ("type_", "field", "bad"),
    [
        ("transport.trip.completed", "resident_id", "RES-A1B2C3D4"),
        ("transport.trip.completed", "resident_id", "res-1"),
        ("transport.trip.completed", "vehicle_id", "res-a1b2c3d4"),
        ("transport.trip.completed", "fare_jpy", 300.5),
        ("transport.trip.completed", "fare_jpy", -10),
        ("transport.trip.completed", "fare_jpy", "300"),
        ("transport.trip.completed", "mode", "taxi"),
        ("transport.trip.completed", "pickup_at", "2025-06-12T09:31:40"),
        ("transport.trip.completed", "pickup_at", "2025/06/12 09:31"),
        ("transport.vehicle.position", "lat", 133.7),
        ("transport.vehicle.position", "bearing", 360),
        ("health.points.awarded", "date", "2025-06-11T00:00:00+09:00"),
        ("health.points.awarded", "points", 0),
        ("currency.payment.settled", "town", "mitoyo"),
        ("currency.payment.settled", "merchant_id", "shop-1"),
        ("currency.payment.settled", "amount_jpy", 0),
        ("vacant_house.inquiry.received", "preferred_move_in", "2025-13"),
        ("vacant_house.inquiry.received", "listing_id", "res-z7q1w3e5"),
        ("vacant_house.listing.registered", "owner_id", "prop-tkm0012a"),
    ],
)
def test_out_of_range_or_malformed_values_are_rejected(type_: str, field: str, bad: Any) -> None:
    instance = example(type_)
    instance[field] = bad
    assert not is_valid(latest(type_), instance)


# --------------------------------------------------------------------------- domain rules


def test_a_place_is_a_stop_or_coordinates_or_both() -> None:
    path = latest("transport.trip.completed")
    trip = example("transport.trip.completed")
    trip["origin"] = {"stop_id": "takuma-shisho"}
    assert is_valid(path, trip)
    trip["origin"] = {"lat": 34.23, "lon": 133.63}
    assert is_valid(path, trip)
    trip["origin"] = {"stop_name": "詫間支所前", "town": "takuma"}
    assert not is_valid(path, trip), "a name alone is not a place"
    trip["origin"] = {"stop_id": "takuma-shisho", "lat": 34.23}
    assert not is_valid(path, trip), "latitude without longitude"


def test_an_on_demand_trip_says_when_it_was_requested() -> None:
    trip = example("transport.trip.completed")
    del trip["requested_at"]
    assert not is_valid(latest("transport.trip.completed"), trip)
    bus = example("transport.trip.completed", 1)
    assert bus["mode"] == "fixed_route_bus"
    assert "requested_at" not in bus


def test_a_vehicle_position_carries_nothing_about_people() -> None:
    schema = schema_of(latest("transport.vehicle.position"))
    assert not {"resident_id", "trip_id", "passengers"} & set(schema["properties"])


def test_walking_points_need_steps_and_checkup_points_need_the_checkup_kind() -> None:
    path = latest("health.points.awarded")
    walking = example("health.points.awarded", 0)
    checkup = example("health.points.awarded", 1)
    assert (walking["reason"], checkup["reason"]) == ("walking", "checkup")
    assert not is_valid(path, {k: v for k, v in walking.items() if k != "steps"})
    assert not is_valid(path, {k: v for k, v in checkup.items() if k != "checkup_kind"})
    assert not is_valid(path, {**walking, "checkup_kind": "dental_checkup"})
    assert not is_valid(path, {**checkup, "steps": 4000})
    other = {k: v for k, v in walking.items() if k != "steps"} | {"reason": "health_class"}
    assert is_valid(path, other)


@pytest.mark.parametrize("number", [1, 2])
def test_owner_identifying_fields_cannot_travel_in_the_public_part(number: int) -> None:
    owner_fields = {
        1: ("exact_address", "香川県三豊市詫間町粟島1234番地"),
        2: ("fullAddress", "香川県三豊市詫間町粟島1234番地"),
    }
    for type_ in ("vacant_house.listing.registered", "vacant_house.listing.updated"):
        path = version_file(type_, number)
        schema = schema_of(path)
        public = set(schema["properties"]["public"]["properties"])
        owner = set(schema["properties"]["owner_details"]["properties"])
        assert not public & owner
        assert not {"exact_address", "lot_number", "owner_name", "owner_contact"} & public
        listing = example(type_, number=number)
        name, value = owner_fields[number]
        listing["public"][name] = value
        assert not is_valid(path, listing)


def test_a_registration_carries_both_parts_and_an_update_at_least_one() -> None:
    registered = version_file("vacant_house.listing.registered", 1)
    listing = example("vacant_house.listing.registered", number=1)
    assert not is_valid(registered, {k: v for k, v in listing.items() if k != "owner_details"})
    assert not is_valid(registered, {**listing, "public": {"status": "available"}})

    updated = version_file("vacant_house.listing.updated", 1)
    update = example("vacant_house.listing.updated", number=1)
    assert is_valid(updated, {k: v for k, v in update.items() if k != "owner_details"})
    assert not is_valid(updated, {k: v for k, v in update.items() if k not in SPLIT_OBJECTS})
    assert not is_valid(updated, {**update, "public": {}})


def test_a_rental_listing_states_its_rent_band() -> None:
    path = version_file("vacant_house.listing.registered", 1)
    listing = example("vacant_house.listing.registered", number=1)
    assert listing["public"]["offer_type"] == "rent"
    del listing["public"]["rent_band"]
    assert not is_valid(path, listing)
    listing["public"] |= {"offer_type": "sale", "price_band": "free"}
    assert is_valid(path, listing)


def test_an_owner_contact_has_a_phone_or_an_email() -> None:
    path = version_file("vacant_house.listing.registered", 1)
    listing = example("vacant_house.listing.registered", number=1)
    listing["owner_details"]["owner_contact"] = {}
    assert not is_valid(path, listing)
    listing["owner_details"]["owner_contact"] = {"email": "not-an-address"}
    assert not is_valid(path, listing)
    listing["owner_details"]["owner_contact"] = {"email": "hanako.onishi@example.jp"}
    assert is_valid(path, listing)


# --------------------------------------------------------------------------- envelope


def test_the_envelope_example_and_every_event_example_in_an_envelope_are_valid() -> None:
    for instance in schema_of(ENVELOPE)["examples"]:
        assert is_valid(ENVELOPE, instance)
    for path in EVENT_FILES:
        data = schema_of(path)["examples"][0]
        subject = (
            data.get("resident_id")
            or data.get("subject")
            or data.get("vehicle_id")
            or data.get("listing_id")
        )
        assert isinstance(subject, str)
        assert is_valid(ENVELOPE, envelope_for(event_type(path), data, subject))


@pytest.mark.parametrize(
    ("change", "valid"),
    [
        ({"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}, True),
        ({"partitionkey": "res-a1b2c3d4", "sequence": 42, "replay": True}, True),
        ({"TraceParent": "00-4b"}, False),
        ({"trace_parent": "00-4b"}, False),
        ({"averyveryverylongname": "x"}, False),
        ({"extension": {"nested": "object"}}, False),
        ({"specversion": "0.3"}, False),
        ({"id": ""}, False),
        ({"id": "x" * 129}, False),
        ({"source": ""}, False),
        ({"type": "transport.trip"}, False),
        ({"type": "Transport.Trip.Completed"}, False),
        ({"subject": "a1b2c3d4"}, False),
        ({"time": "2025-06-12 09:58"}, False),
        ({"datacontenttype": "text/plain"}, False),
        ({"dataschema": "https://example.com/trip.json"}, False),
        ({"data": "a string"}, False),
    ],
)
def test_envelope_attributes(change: dict[str, Any], valid: bool) -> None:
    event = envelope_for("transport.trip.completed", example("transport.trip.completed"), "res-a1")
    event["subject"] = "res-a1b2c3d4"
    assert is_valid(ENVELOPE, event)
    assert is_valid(ENVELOPE, event | change) is valid


@pytest.mark.parametrize("name", ["specversion", "id", "source", "type", "subject", "time", "data"])
def test_envelope_requires(name: str) -> None:
    event = envelope_for("transport.trip.completed", example("transport.trip.completed"), "")
    event["subject"] = "res-a1b2c3d4"
    del event[name]
    assert not is_valid(ENVELOPE, event)


def test_an_envelope_without_dataschema_is_valid_and_means_the_latest_version() -> None:
    event = envelope_for("transport.trip.completed", example("transport.trip.completed"), "")
    event["subject"] = "res-a1b2c3d4"
    del event["dataschema"]
    assert is_valid(ENVELOPE, event)


# --------------------------------------------------------------------------- catalogues


def test_category_codes_are_unique_and_described() -> None:
    cats = categories()
    codes = [c["code"] for c in cats]
    assert len(codes) == len(set(codes))
    assert {
        "transport.trips",
        "transport.vehicles",
        "health.points",
        "currency.transactions",
        "property.listing",
        "property.details",
        "property.inquiries",
    } <= set(codes)
    for cat in cats:
        for key in ("name_ja", "description_ja"):
            assert JAPANESE.search(cat[key]), (cat["code"], key)
        for key in ("name_en", "description_en"):
            assert cat[key].strip(), (cat["code"], key)
        assert isinstance(cat["personal"], bool)
        assert cat["subject"] in {"resident", "owner", "none"}
        assert cat["personal"] == (cat["subject"] != "none"), cat["code"]


def test_the_property_categories_split_public_listing_from_owner_details() -> None:
    by_code = {c["code"]: c for c in categories()}
    assert (by_code["property.listing"]["personal"], by_code["property.listing"]["subject"]) == (
        False,
        "none",
    )
    assert (by_code["property.details"]["personal"], by_code["property.details"]["subject"]) == (
        True,
        "owner",
    )
    assert by_code["transport.vehicles"]["personal"] is False
    for type_, pointers in by_code["property.details"]["fields"].items():
        assert all(p == "/owner_id" or p.startswith("/owner_details/") for p in pointers), type_
    for type_, pointers in by_code["property.listing"]["fields"].items():
        assert not [p for p in pointers if p.startswith("/owner")], type_


def test_every_category_pointer_resolves_to_a_field_of_its_schema() -> None:
    """In some version of the type: a category keeps covering the fields of older majors,
    whose events stay readable."""
    for cat in categories():
        for type_, pointers in cat["fields"].items():
            domain, rest = type_.split(".", 1)
            schemas = [schema_of(p) for p in (SCHEMAS / domain / rest).glob("v*.json")]
            for pointer in pointers:
                found = [s for s in schemas if property_at(s, pointer) is not None]
                assert found, (cat["code"], type_, pointer)


def test_each_owner_identifying_standard_field_says_why_it_identifies_the_owner() -> None:
    """The property rule's split of the standard's 43 fields is named, with the reason, in
    the catalogue and in each field's description."""
    details = next(c for c in categories() if c["code"] == "property.details")
    reasons = details["field_reasons"]
    for type_ in ("vacant_house.listing.registered", "vacant_house.listing.updated"):
        schema = schema_of(version_file(type_, 2))
        owner = schema["properties"]["owner_details"]["properties"]
        public = schema["properties"]["public"]["properties"]
        assert len(owner) + len(public) == 43, type_
        assert set(reasons) == {f"/owner_details/{name}" for name in owner}
        for name, sub in owner.items():
            why = reasons[f"/owner_details/{name}"]
            assert JAPANESE.search(why) and " / " in why, name
            assert why in sub["description"], name
        assert {"fullAddress", "cityBlock", "latitude", "longitude"} <= set(owner)


@pytest.mark.parametrize("path", EVENT_FILES, ids=ids)
def test_every_field_belongs_to_exactly_one_category(path: Path) -> None:
    type_ = event_type(path)
    owners: dict[str, list[str]] = {}
    for cat in categories():
        for pointer in cat["fields"].get(type_, []):
            for field in data_fields(schema_of(path)):
                if field == pointer or field.startswith(pointer + "/"):
                    owners.setdefault(field, []).append(cat["code"])
    for field in data_fields(schema_of(path)):
        assert len(owners.get(field, [])) == 1, f"{type_}{field}: {owners.get(field, [])}"


def test_a_personal_category_names_its_subject_and_a_public_one_names_nobody() -> None:
    subject_field = {"resident": "/resident_id", "owner": "/owner_id"}
    for cat in categories():
        for type_, pointers in cat["fields"].items():
            schema = schema_of(latest(type_))
            patterns = {(property_at(schema, p) or {}).get("pattern") for p in pointers} - {None}
            if cat["personal"]:
                assert subject_field[cat["subject"]] in pointers, (cat["code"], type_)
            else:
                assert RESIDENT_ID not in patterns, (cat["code"], type_)


def test_purposes_are_unique_and_named_in_japanese_and_english() -> None:
    purposes = load(PURPOSES)["purposes"]
    codes = [p["code"] for p in purposes]
    assert len(codes) == len(set(codes))
    assert len(purposes) >= 6
    for purpose in purposes:
        assert re.fullmatch(r"[a-z_]+\.[a-z_]+", purpose["code"]), purpose["code"]
        for key in ("name_ja", "description_ja"):
            assert JAPANESE.search(purpose[key]), (purpose["code"], key)
        for key in ("name_en", "description_en"):
            assert purpose[key].strip(), (purpose["code"], key)
    assert {
        "transport.planning",
        "health.incentive",
        "currency.promotion",
        "housing.dual_residence_support",
        "care.community_watch",
        "statistics.municipal",
    } <= set(codes)


def test_the_readme_explains_layout_ids_and_every_compatibility_mode() -> None:
    readme = (SCHEMAS / "README.md").read_text(encoding="utf-8")
    for needle in [*COMPATIBILITY_MODES, *ID_FIELDS.values(), "categories.json", "purposes.json"]:
        assert needle in readme, needle
