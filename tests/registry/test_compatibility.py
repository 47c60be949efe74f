"""Specification of the schema registry's JSON Schema compatibility rules (Confluent semantics)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pytest

from broker.registry.compatibility.report import ChangeKind, CompatibilityMode, Incompatibility
from broker.registry.compatibility.walk import check, reader_can_read

Schema = dict[str, Any]


def obj(
    properties: Mapping[str, Any],
    required: Sequence[str] = (),
    *,
    closed: bool = False,
    **extra: Any,
) -> Schema:
    """A small object schema; `closed` sets additionalProperties: false."""
    schema: Schema = {"type": "object", "properties": dict(properties), **extra}
    if required:
        schema["required"] = list(required)
    if closed:
        schema["additionalProperties"] = False
    return schema


def only(found: list[Incompatibility], kind: ChangeKind) -> Incompatibility:
    """The single incompatibility of `kind` in `found`."""
    matching = [inc for inc in found if inc.kind is kind]
    assert len(matching) == 1, found
    return matching[0]


STOP_ID: Schema = {"type": "string"}
FARE: Schema = {"type": "integer", "minimum": 0}


# --------------------------------------------------------------------------- BACKWARD


def test_backward_refuses_new_required_field_naming_it() -> None:
    old = obj({"stop_id": STOP_ID}, ["stop_id"], closed=True)
    new = obj({"stop_id": STOP_ID, "fare_jpy": FARE}, ["stop_id", "fare_jpy"], closed=True)

    found = check(new, [old], CompatibilityMode.BACKWARD)

    assert found == [
        Incompatibility(
            ChangeKind.REQUIRED_ADDED,
            "/properties/fare_jpy",
            "BACKWARD: field `fare_jpy` became required",
        )
    ]


def test_backward_refuses_new_required_field_even_with_a_default() -> None:
    old = obj({"stop_id": STOP_ID}, closed=True)
    new = obj({"stop_id": STOP_ID, "fare_jpy": {**FARE, "default": 0}}, ["fare_jpy"], closed=True)

    inc = only(check(new, [old], CompatibilityMode.BACKWARD), ChangeKind.REQUIRED_ADDED)

    assert "`fare_jpy`" in inc.message


def test_backward_accepts_new_optional_field_in_closed_model() -> None:
    old = obj({"stop_id": STOP_ID}, ["stop_id"], closed=True)
    new = obj({"stop_id": STOP_ID, "fare_jpy": FARE}, ["stop_id"], closed=True)

    assert check(new, [old], CompatibilityMode.BACKWARD) == []


CONDITIONAL: Schema = {
    "if": {"properties": {"reason": {"const": "checkup"}}, "required": ["reason"]},
    "then": {"required": ["checkup_kind"]},
    "else": {"not": {"required": ["checkup_kind"]}},
}


def test_backward_accepts_new_optional_field_beside_an_unchanged_conditional() -> None:
    props = {"reason": STOP_ID, "checkup_kind": STOP_ID}
    old = obj(props, ["reason"], closed=True, allOf=[CONDITIONAL])
    new = obj({**props, "age_band": STOP_ID}, ["reason"], closed=True, allOf=[CONDITIONAL])

    assert check(new, [old], CompatibilityMode.BACKWARD) == []


def test_backward_refuses_a_conditional_added_to_an_existing_one() -> None:
    props = {"reason": STOP_ID, "checkup_kind": STOP_ID, "steps": FARE}
    walking: Schema = {
        "if": {"properties": {"reason": {"const": "walking"}}, "required": ["reason"]},
        "then": {"required": ["steps"]},
    }
    old = obj(props, ["reason"], closed=True, allOf=[CONDITIONAL])
    new = obj(props, ["reason"], closed=True, allOf=[CONDITIONAL, walking])

    assert check(new, [old], CompatibilityMode.BACKWARD) != []


def test_backward_refuses_new_optional_field_in_open_model_naming_it() -> None:
    # Confluent: the old open schema may already have sent `fare_jpy` with any value.
    old = obj({"stop_id": STOP_ID}, ["stop_id"])
    new = obj({"stop_id": STOP_ID, "fare_jpy": FARE}, ["stop_id"])

    inc = only(check(new, [old], CompatibilityMode.BACKWARD), ChangeKind.PROPERTY_ADDED_OPEN_MODEL)

    assert inc.path == "/properties/fare_jpy"
    assert inc.message.startswith("BACKWARD: field `fare_jpy`")


def test_backward_accepts_new_unconstrained_field_in_open_model() -> None:
    old = obj({"stop_id": STOP_ID})
    new = obj({"stop_id": STOP_ID, "note": {"description": "free text"}})

    assert check(new, [old], CompatibilityMode.BACKWARD) == []


def test_backward_accepts_field_removed_from_open_model() -> None:
    old = obj({"stop_id": STOP_ID, "fare_jpy": FARE}, ["stop_id"])
    new = obj({"stop_id": STOP_ID}, ["stop_id"])

    assert check(new, [old], CompatibilityMode.BACKWARD) == []


def test_backward_refuses_field_removed_from_closed_model_naming_it() -> None:
    old = obj({"stop_id": STOP_ID, "fare_jpy": FARE}, closed=True)
    new = obj({"stop_id": STOP_ID}, closed=True)

    found = check(new, [old], CompatibilityMode.BACKWARD)

    inc = only(found, ChangeKind.PROPERTY_REMOVED_CLOSED_MODEL)
    assert inc.path == "/properties/fare_jpy"
    assert "`fare_jpy`" in inc.message


def test_backward_refuses_closing_an_open_model() -> None:
    old = obj({"stop_id": STOP_ID})
    new = obj({"stop_id": STOP_ID}, closed=True)

    inc = only(
        check(new, [old], CompatibilityMode.BACKWARD), ChangeKind.ADDITIONAL_PROPERTIES_NARROWED
    )

    assert inc.path == "/additionalProperties"


# --------------------------------------------------------------------------- BACKWARD_TRANSITIVE

# The fare was an integer, then dropped, then re-added as a string: v3 reads v2 but not v1.
FARE_V1 = obj({"stop_id": STOP_ID, "fare_jpy": {"type": "integer"}}, closed=True)
FARE_V2 = obj({"stop_id": STOP_ID}, closed=True)
FARE_V3 = obj({"stop_id": STOP_ID, "fare_jpy": {"type": "string"}}, closed=True)


def test_backward_transitive_refuses_change_that_breaks_an_older_version() -> None:
    found = check(FARE_V3, [FARE_V1, FARE_V2], CompatibilityMode.BACKWARD_TRANSITIVE)

    inc = only(found, ChangeKind.TYPE_CHANGED)
    assert inc.path == "/properties/fare_jpy/type"
    assert inc.message.startswith("BACKWARD vs version 1: field `fare_jpy`")


def test_backward_accepts_what_breaks_only_an_older_version() -> None:
    assert check(FARE_V3, [FARE_V1, FARE_V2], CompatibilityMode.BACKWARD) == []


def test_backward_transitive_accepts_optional_fields_added_one_by_one_to_closed_model() -> None:
    v1 = obj({"stop_id": STOP_ID}, closed=True)
    v2 = obj({"stop_id": STOP_ID, "fare_jpy": FARE}, closed=True)
    v3 = obj({"stop_id": STOP_ID, "fare_jpy": FARE, "operator": STOP_ID}, closed=True)

    assert check(v3, [v1, v2], CompatibilityMode.BACKWARD_TRANSITIVE) == []


# --------------------------------------------------------------------------- FORWARD


def test_forward_refuses_dropping_a_field_the_previous_schema_requires() -> None:
    old = obj({"stop_id": STOP_ID, "fare_jpy": FARE}, ["fare_jpy"])
    new = obj({"stop_id": STOP_ID})

    found = check(new, [old], CompatibilityMode.FORWARD)

    inc = only(found, ChangeKind.REQUIRED_ADDED)
    assert inc.path == "/properties/fare_jpy"
    assert inc.message == "FORWARD: field `fare_jpy` became required"
    # The new open schema may also send `fare_jpy` with any value, which the old one constrains.
    assert {i.kind for i in found} == {
        ChangeKind.REQUIRED_ADDED,
        ChangeKind.PROPERTY_ADDED_OPEN_MODEL,
    }


def test_forward_accepts_new_optional_field_in_open_model() -> None:
    old = obj({"stop_id": STOP_ID})
    new = obj({"stop_id": STOP_ID, "fare_jpy": FARE})

    assert check(new, [old], CompatibilityMode.FORWARD) == []


def test_forward_refuses_new_field_the_closed_previous_schema_rejects() -> None:
    old = obj({"stop_id": STOP_ID}, closed=True)
    new = obj({"stop_id": STOP_ID, "fare_jpy": FARE}, closed=True)

    found = check(new, [old], CompatibilityMode.FORWARD)

    inc = only(found, ChangeKind.PROPERTY_REMOVED_CLOSED_MODEL)
    assert inc.message.startswith("FORWARD: field `fare_jpy`")


def test_forward_refuses_widening_integer_to_number() -> None:
    old = obj({"fare_jpy": {"type": "integer"}})
    new = obj({"fare_jpy": {"type": "number"}})

    inc = only(check(new, [old], CompatibilityMode.FORWARD), ChangeKind.TYPE_NARROWED)

    assert inc.path == "/properties/fare_jpy/type"
    assert "`fare_jpy`" in inc.message


# --------------------------------------------------------------------------- FORWARD_TRANSITIVE

# Open models: v1 reads fare as an integer, v2 dropped it, v3 sends it as a string.
OPEN_V1 = obj({"stop_id": STOP_ID, "fare_jpy": {"type": "integer"}})
OPEN_V2 = obj({"stop_id": STOP_ID})
OPEN_V3 = obj({"stop_id": STOP_ID, "fare_jpy": {"type": "string"}})


def test_forward_transitive_refuses_data_an_older_reader_cannot_read() -> None:
    found = check(OPEN_V3, [OPEN_V1, OPEN_V2], CompatibilityMode.FORWARD_TRANSITIVE)

    inc = only(found, ChangeKind.TYPE_CHANGED)
    assert inc.path == "/properties/fare_jpy/type"
    assert inc.message.startswith("FORWARD vs version 1: field `fare_jpy`")


def test_forward_accepts_data_only_an_older_reader_cannot_read() -> None:
    assert check(OPEN_V3, [OPEN_V1, OPEN_V2], CompatibilityMode.FORWARD) == []


def test_forward_transitive_accepts_optional_fields_added_to_open_model() -> None:
    v2 = obj({"stop_id": STOP_ID, "fare_jpy": FARE})
    v3 = obj({"stop_id": STOP_ID, "fare_jpy": FARE, "operator": STOP_ID})

    assert check(v3, [OPEN_V2, v2], CompatibilityMode.FORWARD_TRANSITIVE) == []


# --------------------------------------------------------------------------- FULL

ROUTE_DEFS: Schema = {"Stop": obj({"code": STOP_ID}, ["code"])}


def test_full_refuses_new_required_field_in_backward_direction() -> None:
    old = obj({"stop_id": STOP_ID})
    new = obj({"stop_id": STOP_ID}, ["stop_id"])

    found = check(new, [old], CompatibilityMode.FULL)

    inc = only(found, ChangeKind.REQUIRED_ADDED)
    assert inc.message == "BACKWARD: field `stop_id` became required"


def test_full_refuses_enum_change_in_either_direction() -> None:
    old = obj({"mode": {"enum": ["bus", "train"]}})
    extended = obj({"mode": {"enum": ["bus", "train", "ferry"]}})
    narrowed = obj({"mode": {"enum": ["bus"]}})

    forward = only(check(extended, [old], CompatibilityMode.FULL), ChangeKind.ENUM_NARROWED)
    backward = only(check(narrowed, [old], CompatibilityMode.FULL), ChangeKind.ENUM_NARROWED)

    assert forward.message.startswith("FORWARD: field `mode`") and "'ferry'" in forward.message
    assert backward.message.startswith("BACKWARD: field `mode`") and "'train'" in backward.message


def test_full_accepts_documentation_change_and_inline_schema_moved_to_ref() -> None:
    old = obj({"from": obj({"code": STOP_ID}, ["code"])})
    new = {
        **obj({"from": {"$ref": "#/$defs/Stop", "description": "departure stop"}}),
        "$defs": ROUTE_DEFS,
        "title": "Route",
    }

    assert check(new, [old], CompatibilityMode.FULL) == []


# --------------------------------------------------------------------------- FULL_TRANSITIVE

# v1 required the fare, v2 made it optional; v3 only documents it (equivalent to v2).
REQ_V1 = obj({"fare_jpy": FARE}, ["fare_jpy"])
REQ_V2 = obj({"fare_jpy": FARE})
REQ_V3 = obj({"fare_jpy": {**FARE, "description": "fare in yen"}})


def test_full_transitive_refuses_change_that_an_older_version_cannot_read() -> None:
    found = check(REQ_V3, [REQ_V1, REQ_V2], CompatibilityMode.FULL_TRANSITIVE)

    assert found == [
        Incompatibility(
            ChangeKind.REQUIRED_ADDED,
            "/properties/fare_jpy",
            "FORWARD vs version 1: field `fare_jpy` became required",
        )
    ]


def test_full_accepts_change_compatible_with_the_latest_version_only() -> None:
    assert check(REQ_V3, [REQ_V1, REQ_V2], CompatibilityMode.FULL) == []


def test_full_transitive_accepts_equivalent_history() -> None:
    assert check(REQ_V3, [REQ_V2, REQ_V2], CompatibilityMode.FULL_TRANSITIVE) == []


# --------------------------------------------------------------------------- NONE and edge cases


def test_none_accepts_even_a_breaking_type_change() -> None:
    # NONE has no refused change by definition: it is the escape hatch.
    old = obj({"fare_jpy": {"type": "integer"}}, ["fare_jpy"])
    new = obj({"fare_jpy": {"type": "string"}}, ["fare_jpy"])

    assert check(new, [old], CompatibilityMode.NONE) == []
    assert check(new, [old], CompatibilityMode.BACKWARD) != []


@pytest.mark.parametrize("mode", list(CompatibilityMode))
def test_first_version_is_always_accepted(mode: CompatibilityMode) -> None:
    assert check(obj({"stop_id": STOP_ID}), [], mode) == []


SELF_COMPATIBLE: list[Schema] = [
    {},
    obj({"stop_id": STOP_ID, "fare_jpy": FARE}, ["stop_id"], closed=True),
    {"type": ["string", "null"], "maxLength": 8, "pattern": "^[A-Z]+$"},
    {"type": "array", "prefixItems": [STOP_ID], "items": False, "uniqueItems": True},
    {"$defs": ROUTE_DEFS, "type": "array", "items": {"$ref": "#/$defs/Stop"}},
    {"oneOf": [obj({"a": STOP_ID}, ["a"]), obj({"b": STOP_ID}, ["b"])], "description": "union"},
]


@pytest.mark.parametrize("schema", SELF_COMPATIBLE)
def test_every_schema_can_read_itself_in_full_transitive_mode(schema: Schema) -> None:
    assert check(schema, [schema, dict(schema)], CompatibilityMode.FULL_TRANSITIVE) == []


# --------------------------------------------------------------------------- types


def test_reader_number_accepts_integer_writer() -> None:
    assert (
        reader_can_read(obj({"fare": {"type": "number"}}), obj({"fare": {"type": "integer"}})) == []
    )


def test_reader_integer_refuses_number_writer_as_narrowed() -> None:
    found = reader_can_read(obj({"fare": {"type": "integer"}}), obj({"fare": {"type": "number"}}))

    inc = only(found, ChangeKind.TYPE_NARROWED)
    assert inc.path == "/properties/fare/type"
    assert inc.message == "field `fare` no longer accepts number (type is now integer)"


def test_unrelated_type_is_a_type_change() -> None:
    found = reader_can_read(obj({"fare": {"type": "string"}}), obj({"fare": {"type": "integer"}}))

    assert only(found, ChangeKind.TYPE_CHANGED).message == (
        "field `fare` changed type from integer to string"
    )


def test_nullable_reader_accepts_non_null_writer_but_not_the_reverse() -> None:
    nullable = obj({"note": {"type": ["string", "null"]}})
    plain = obj({"note": {"type": "string"}})

    assert reader_can_read(nullable, plain) == []
    assert "null" in only(reader_can_read(plain, nullable), ChangeKind.TYPE_NARROWED).message


def test_typing_an_untyped_field_narrows_it() -> None:
    found = reader_can_read(obj({"note": {"type": "string"}}), obj({"note": {}}))

    assert "`note`" in only(found, ChangeKind.TYPE_NARROWED).message


def test_false_reader_accepts_nothing() -> None:
    found = reader_can_read(obj({"legacy": False}), obj({"legacy": {}}))

    assert only(found, ChangeKind.NOTHING_ACCEPTED).path == "/properties/legacy"


# --------------------------------------------------------------------------- enum and const


def test_enum_extended_is_readable() -> None:
    reader = obj({"mode": {"enum": ["bus", "train", "ferry"]}})

    assert reader_can_read(reader, obj({"mode": {"enum": ["bus", "train"]}})) == []


def test_enum_narrowed_names_field_and_lost_value() -> None:
    found = reader_can_read(
        obj({"mode": {"enum": ["bus"]}}), obj({"mode": {"enum": ["bus", "train"]}})
    )

    inc = only(found, ChangeKind.ENUM_NARROWED)
    assert inc.path == "/properties/mode/enum"
    assert inc.message.startswith("field `mode` no longer accepts 'train'")


def test_enum_added_to_free_string_is_refused() -> None:
    found = reader_can_read(obj({"mode": {"enum": ["bus"]}}), obj({"mode": {"type": "string"}}))

    assert "`mode`" in only(found, ChangeKind.ENUM_ADDED).message


def test_writer_enum_is_checked_value_by_value_against_reader_constraints() -> None:
    reader = obj({"code": {"type": "string", "maxLength": 2}})

    assert reader_can_read(reader, obj({"code": {"enum": ["A", "BC"]}})) == []
    found = reader_can_read(reader, obj({"code": {"enum": ["A", "BCD"]}}))
    assert "'BCD'" in only(found, ChangeKind.MAX_LENGTH_DECREASED).message


def test_enum_covering_a_small_integer_range_is_readable() -> None:
    reader = obj({"grade": {"enum": [1, 2, 3]}})

    writer = obj({"grade": {"type": "integer", "minimum": 1, "maximum": 3}})
    assert reader_can_read(reader, writer) == []


def test_const_changed_names_field() -> None:
    found = reader_can_read(obj({"v": {"const": 2}}), obj({"v": {"const": 1}}))

    inc = only(found, ChangeKind.CONST_CHANGED)
    assert inc.path == "/properties/v/const"
    assert "`v`" in inc.message


def test_const_true_is_not_const_one() -> None:
    found = reader_can_read(obj({"v": {"const": 1}}), obj({"v": {"const": True}}))

    assert only(found, ChangeKind.CONST_CHANGED).path == "/properties/v/const"


# --------------------------------------------------------------------------- numbers


@pytest.mark.parametrize(
    ("reader", "writer", "kind"),
    [
        ({"maximum": 5}, {"maximum": 10}, ChangeKind.MAXIMUM_DECREASED),
        ({"maximum": 5}, {}, ChangeKind.MAXIMUM_ADDED),
        ({"minimum": 1}, {"minimum": 0}, ChangeKind.MINIMUM_INCREASED),
        ({"minimum": 0}, {}, ChangeKind.MINIMUM_ADDED),
        ({"exclusiveMaximum": 10}, {"maximum": 10}, ChangeKind.EXCLUSIVE_MAXIMUM_DECREASED),
        ({"exclusiveMinimum": 0}, {}, ChangeKind.EXCLUSIVE_MINIMUM_ADDED),
        ({"exclusiveMinimum": 0}, {"minimum": 0}, ChangeKind.EXCLUSIVE_MINIMUM_INCREASED),
        ({"multipleOf": 0.5}, {}, ChangeKind.MULTIPLE_OF_ADDED),
        ({"multipleOf": 0.5}, {"multipleOf": 0.25}, ChangeKind.MULTIPLE_OF_CHANGED),
    ],
)
def test_tighter_numeric_range_is_refused(reader: Schema, writer: Schema, kind: ChangeKind) -> None:
    found = reader_can_read(
        obj({"fare": {"type": "number", **reader}}), obj({"fare": {"type": "number", **writer}})
    )

    inc = only(found, kind)
    assert inc.path == f"/properties/fare/{next(iter(reader))}"
    assert "`fare`" in inc.message


@pytest.mark.parametrize(
    ("reader", "writer"),
    [
        ({"maximum": 10}, {"maximum": 5}),
        ({"minimum": 0}, {"minimum": 1}),
        ({"minimum": 0}, {"exclusiveMinimum": 0}),
        ({"maximum": 10}, {"exclusiveMaximum": 10}),
        ({"multipleOf": 0.5}, {"multipleOf": 1.5}),
        ({}, {"minimum": 0, "maximum": 10}),
    ],
)
def test_wider_numeric_range_is_readable(reader: Schema, writer: Schema) -> None:
    found = reader_can_read(
        obj({"fare": {"type": "number", **reader}}), obj({"fare": {"type": "number", **writer}})
    )

    assert found == []


def test_integer_bounds_compare_by_integers() -> None:
    # For integers, "> 0" and ">= 1" are the same range.
    reader = obj({"seats": {"type": "integer", "minimum": 1}})

    assert reader_can_read(reader, obj({"seats": {"type": "integer", "exclusiveMinimum": 0}})) == []


def test_integer_multiple_of_one_needs_no_writer_multiple_of() -> None:
    reader = {"type": "integer", "multipleOf": 1}

    assert reader_can_read(reader, {"type": "integer"}) == []


# --------------------------------------------------------------------------- strings


@pytest.mark.parametrize(
    ("reader", "writer", "kind"),
    [
        ({"maxLength": 8}, {"maxLength": 16}, ChangeKind.MAX_LENGTH_DECREASED),
        ({"maxLength": 8}, {}, ChangeKind.MAX_LENGTH_ADDED),
        ({"minLength": 3}, {"minLength": 1}, ChangeKind.MIN_LENGTH_INCREASED),
        ({"minLength": 3}, {}, ChangeKind.MIN_LENGTH_ADDED),
        ({"pattern": "^[A-Z]+$"}, {"pattern": "^[A-Z0-9]+$"}, ChangeKind.PATTERN_CHANGED),
        ({"pattern": "^[A-Z]+$"}, {}, ChangeKind.PATTERN_ADDED),
        ({"format": "date"}, {}, ChangeKind.FORMAT_ADDED),
        ({"format": "date"}, {"format": "date-time"}, ChangeKind.FORMAT_CHANGED),
    ],
)
def test_tighter_string_constraint_is_refused(
    reader: Schema, writer: Schema, kind: ChangeKind
) -> None:
    found = reader_can_read(
        obj({"code": {"type": "string", **reader}}), obj({"code": {"type": "string", **writer}})
    )

    inc = only(found, kind)
    assert inc.path == f"/properties/code/{next(iter(reader))}"
    assert "`code`" in inc.message


@pytest.mark.parametrize(
    ("reader", "writer"),
    [
        ({"maxLength": 16}, {"maxLength": 8}),
        ({"minLength": 1}, {"minLength": 3}),
        ({}, {"pattern": "^[A-Z]+$", "format": "date"}),
        ({"pattern": "^[A-Z]+$"}, {"pattern": "^[A-Z]+$"}),
    ],
)
def test_looser_string_constraint_is_readable(reader: Schema, writer: Schema) -> None:
    found = reader_can_read(
        obj({"code": {"type": "string", **reader}}), obj({"code": {"type": "string", **writer}})
    )

    assert found == []


def test_string_constraints_do_not_apply_to_non_string_writer() -> None:
    reader = {"type": ["string", "integer"], "maxLength": 3}

    assert reader_can_read(reader, {"type": "integer"}) == []


# --------------------------------------------------------------------------- arrays


def test_item_type_change_points_into_items() -> None:
    found = reader_can_read(
        obj({"stops": {"type": "array", "items": {"type": "integer"}}}),
        obj({"stops": {"type": "array", "items": {"type": "string"}}}),
    )

    inc = only(found, ChangeKind.TYPE_CHANGED)
    assert inc.path == "/properties/stops/items/type"
    assert "`stops[]`" in inc.message


@pytest.mark.parametrize(
    ("reader", "writer", "kind"),
    [
        ({"maxItems": 3}, {"maxItems": 5}, ChangeKind.MAX_ITEMS_DECREASED),
        ({"maxItems": 3}, {}, ChangeKind.MAX_ITEMS_ADDED),
        ({"minItems": 2}, {"minItems": 1}, ChangeKind.MIN_ITEMS_INCREASED),
        ({"minItems": 2}, {}, ChangeKind.MIN_ITEMS_ADDED),
        ({"uniqueItems": True}, {}, ChangeKind.UNIQUE_ITEMS_ADDED),
    ],
)
def test_tighter_array_constraint_is_refused(
    reader: Schema, writer: Schema, kind: ChangeKind
) -> None:
    found = reader_can_read(
        obj({"stops": {"type": "array", **reader}}), obj({"stops": {"type": "array", **writer}})
    )

    inc = only(found, kind)
    assert inc.path == f"/properties/stops/{next(iter(reader))}"
    assert "`stops`" in inc.message


def test_closed_tuple_refuses_writer_with_an_extra_position() -> None:
    reader = {"type": "array", "prefixItems": [STOP_ID], "items": False}
    writer = {"type": "array", "prefixItems": [STOP_ID, FARE], "items": False}

    inc = only(reader_can_read(reader, writer), ChangeKind.ITEM_REMOVED_CLOSED_MODEL)

    assert inc.path == "/items"


def test_closed_tuple_may_grow_an_optional_position() -> None:
    reader = {"type": "array", "prefixItems": [STOP_ID, FARE], "items": False}
    writer = {"type": "array", "prefixItems": [STOP_ID], "items": False}

    assert reader_can_read(reader, writer) == []


def test_open_tuple_cannot_constrain_a_new_position() -> None:
    reader = {"type": "array", "prefixItems": [STOP_ID, FARE]}
    writer = {"type": "array", "prefixItems": [STOP_ID]}

    inc = only(reader_can_read(reader, writer), ChangeKind.ITEM_ADDED_OPEN_MODEL)

    assert inc.path == "/prefixItems/1"


def test_contains_is_satisfied_by_non_empty_array_of_matching_items() -> None:
    reader = {"type": "array", "contains": {"type": "string"}}

    assert reader_can_read(reader, {"type": "array", "items": STOP_ID, "minItems": 1}) == []
    assert only(reader_can_read(reader, {"type": "array"}), ChangeKind.CONTAINS_NARROWED)


# --------------------------------------------------------------------------- objects


def test_nested_change_reports_full_pointer_and_dotted_field() -> None:
    def trip(maximum: int) -> Schema:
        amount = {"type": "integer", "maximum": maximum}
        return obj({"trip": obj({"fare": obj({"amount": amount})})})

    inc = only(reader_can_read(trip(5), trip(10)), ChangeKind.MAXIMUM_DECREASED)

    assert inc.path == "/properties/trip/properties/fare/properties/amount/maximum"
    assert inc.message == "field `trip.fare.amount` upper bound tightened from <= 10 to <= 5"


def test_nested_required_field_is_named_by_its_path() -> None:
    reader = obj({"trip": obj({"fare_jpy": FARE}, ["fare_jpy"])})
    writer = obj({"trip": obj({"fare_jpy": FARE})})

    inc = only(reader_can_read(reader, writer), ChangeKind.REQUIRED_ADDED)

    assert inc.path == "/properties/trip/properties/fare_jpy"
    assert inc.message == "field `trip.fare_jpy` became required"


def test_partially_open_writer_must_be_covered_by_the_added_field() -> None:
    writer = obj({"stop_id": STOP_ID}, additionalProperties={"type": "string"})
    covered = obj({"stop_id": STOP_ID, "note": {"type": "string"}})
    narrower = obj({"stop_id": STOP_ID, "fare_jpy": FARE})

    assert reader_can_read(covered, writer) == []
    inc = only(reader_can_read(narrower, writer), ChangeKind.PROPERTY_ADDED_NOT_COVERED)
    assert "`fare_jpy`" in inc.message


def test_additional_properties_schema_narrowed_is_refused_and_widened_accepted() -> None:
    strings = obj({}, additionalProperties={"type": "string"})
    nullable = obj({}, additionalProperties={"type": ["string", "null"]})

    assert reader_can_read(nullable, strings) == []
    found = reader_can_read(strings, nullable)
    assert only(found, ChangeKind.ADDITIONAL_PROPERTIES_NARROWED).path == "/additionalProperties"


def test_removed_field_must_fit_the_readers_additional_properties() -> None:
    reader = obj({}, additionalProperties={"type": "string"})
    writer = obj({"fare_jpy": FARE})

    inc = only(reader_can_read(reader, writer), ChangeKind.PROPERTY_REMOVED_NOT_COVERED)

    assert "`fare_jpy`" in inc.message


def test_pattern_properties_narrowed_is_refused() -> None:
    def tags(value_type: object) -> Schema:
        return obj({}, patternProperties={"^x_": {"type": value_type}}, additionalProperties=False)

    assert reader_can_read(tags(["string", "integer"]), tags("string")) == []
    found = reader_can_read(tags("string"), tags(["string", "integer"]))
    assert only(found, ChangeKind.PATTERN_PROPERTIES_NARROWED).path == "/patternProperties/^x_"


def test_pattern_properties_cover_a_removed_field() -> None:
    reader = obj({}, patternProperties={"^x_": STOP_ID}, additionalProperties=False)
    writer = obj({"x_note": STOP_ID}, additionalProperties=False)

    assert reader_can_read(reader, writer) == []


def test_dependent_required_added_names_both_fields() -> None:
    props = {"card_no": STOP_ID, "cvv": STOP_ID}
    reader = obj(props, dependentRequired={"card_no": ["cvv"]})

    inc = only(reader_can_read(reader, obj(props)), ChangeKind.DEPENDENT_REQUIRED_ADDED)

    assert inc.path == "/dependentRequired/card_no"
    assert inc.message == "field `cvv` became required when `card_no` is present"


def test_dependent_required_already_guaranteed_by_writer_required() -> None:
    props = {"card_no": STOP_ID, "cvv": STOP_ID}
    reader = obj(props, dependentRequired={"card_no": ["cvv"]})

    assert reader_can_read(reader, obj(props, ["cvv"])) == []


def test_property_names_checked_against_closed_writer_names() -> None:
    reader = obj({}, propertyNames={"pattern": "^[a-z_]+$"})

    assert reader_can_read(reader, obj({"stop_id": STOP_ID}, closed=True)) == []
    found = reader_can_read(reader, obj({"StopId": STOP_ID}, closed=True))
    assert "'StopId'" in only(found, ChangeKind.PROPERTY_NAMES_NARROWED).message


# --------------------------------------------------------------------------- $ref


def route(code_type: str) -> Schema:
    """Two fields sharing one `$defs` entry."""
    stop = obj({"code": {"type": code_type}})
    return {
        **obj({"from": {"$ref": "#/$defs/Stop"}, "to": {"$ref": "#/$defs/Stop"}}),
        "$defs": {"Stop": stop},
    }


def test_change_inside_defs_is_reported_at_the_definition() -> None:
    found = reader_can_read(route("integer"), route("string"))

    assert {inc.path for inc in found} == {"/$defs/Stop/properties/code/type"}
    assert {inc.kind for inc in found} == {ChangeKind.TYPE_CHANGED}
    assert any("`from.code`" in inc.message for inc in found)


def test_ref_and_equivalent_inline_schema_read_each_other() -> None:
    stop = obj({"code": {"type": "string"}})
    inline = obj({"from": stop, "to": stop})

    assert reader_can_read(inline, route("string")) == []
    assert reader_can_read(route("string"), inline) == []


def tree(name_type: str) -> Schema:
    """A recursive schema: a node has children that are nodes."""
    node = obj(
        {
            "name": {"type": name_type},
            "children": {"type": "array", "items": {"$ref": "#/$defs/Node"}},
        }
    )
    return {"$defs": {"Node": node}, "$ref": "#/$defs/Node"}


def test_recursive_schema_terminates_and_reads_itself() -> None:
    assert reader_can_read(tree("string"), tree("string")) == []


def test_recursive_schema_change_is_found() -> None:
    found = reader_can_read(tree("integer"), tree("string"))

    assert {inc.path for inc in found} == {"/$defs/Node/properties/name/type"}
    assert {inc.kind for inc in found} == {ChangeKind.TYPE_CHANGED}


def test_unresolvable_ref_is_reported_conservatively() -> None:
    reader = obj({"stop": {"$ref": "https://example.com/stop.json"}})

    inc = only(reader_can_read(reader, obj({"stop": {}})), ChangeKind.REF_UNRESOLVED)

    assert inc.path == "/properties/stop"


# --------------------------------------------------------------------------- combinators

BUS = obj({"mode": {"const": "bus"}, "line": STOP_ID}, ["mode"])
TRAIN = obj({"mode": {"const": "train"}, "car": FARE}, ["mode"])
FERRY = obj({"mode": {"const": "ferry"}}, ["mode"])


def test_backward_accepts_a_new_one_of_branch() -> None:
    old = obj({"vehicle": {"oneOf": [BUS, TRAIN]}})
    new = obj({"vehicle": {"oneOf": [BUS, TRAIN, FERRY]}})

    assert check(new, [old], CompatibilityMode.BACKWARD) == []


def test_backward_refuses_a_removed_one_of_branch_naming_the_field() -> None:
    old = obj({"vehicle": {"oneOf": [BUS, TRAIN]}})
    new = obj({"vehicle": {"oneOf": [BUS]}})

    inc = only(check(new, [old], CompatibilityMode.BACKWARD), ChangeKind.ONE_OF_NARROWED)

    assert inc.path == "/properties/vehicle/oneOf"
    assert inc.message.startswith("BACKWARD: field `vehicle`")


def test_plain_type_promoted_to_nullable_one_of_is_readable() -> None:
    reader = obj({"note": {"oneOf": [{"type": "string"}, {"type": "null"}]}})

    assert reader_can_read(reader, obj({"note": {"type": "string"}})) == []


def test_overlapping_one_of_branches_are_ambiguous() -> None:
    # An integer matches both branches, so `oneOf` rejects it.
    reader = obj({"fare": {"oneOf": [{"type": "number"}, {"type": "integer"}]}})

    found = reader_can_read(reader, obj({"fare": {"type": "integer"}}))

    assert "`fare`" in only(found, ChangeKind.ONE_OF_AMBIGUOUS).message


def test_undiscriminated_one_of_with_a_widened_closed_branch_is_readable() -> None:
    a = obj({"a": STOP_ID}, ["a"], closed=True)
    b = obj({"b": STOP_ID}, ["b"], closed=True)
    b_wider = obj({"b": STOP_ID, "c": FARE}, ["b"], closed=True)

    assert reader_can_read({"oneOf": [a, b_wider]}, {"oneOf": [a, b]}) == []


def test_any_of_narrowed_names_the_field() -> None:
    old = obj({"ref": {"anyOf": [{"type": "string"}, {"type": "integer"}]}})
    new = obj({"ref": {"anyOf": [{"type": "string"}]}})

    inc = only(reader_can_read(new, old), ChangeKind.ANY_OF_NARROWED)

    assert inc.path == "/properties/ref/anyOf"
    assert "`ref`" in inc.message


def test_type_list_may_be_split_across_any_of_branches() -> None:
    reader = {"anyOf": [{"type": "string"}, {"type": "integer"}]}

    assert reader_can_read(reader, {"type": ["string", "integer"]}) == []


def test_all_of_part_adding_a_bound_is_reported_inside_the_part() -> None:
    writer = obj({"fare": {"type": "integer"}})
    reader = {"allOf": [writer, {"properties": {"fare": {"maximum": 10_000}}}]}

    inc = only(reader_can_read(reader, writer), ChangeKind.MAXIMUM_ADDED)

    assert inc.path == "/allOf/1/properties/fare/maximum"


def test_writer_all_of_parts_are_combined() -> None:
    writer = {
        "allOf": [
            obj({"code": {"type": "string"}}, ["code"]),
            {"properties": {"code": {"maxLength": 3}}},
        ]
    }
    reader = obj({"code": {"type": "string", "maxLength": 3}}, ["code"])

    assert reader_can_read(reader, writer) == []


# --------------------------------------------------------------------------- conservative answers


def test_unprovable_not_is_reported_rather_than_accepted() -> None:
    reader = {"type": "string", "not": {"pattern": "^tmp_"}}

    found = reader_can_read(reader, {"type": "string", "pattern": "^[a-z]+$"})

    assert only(found, ChangeKind.KEYWORD_UNVERIFIABLE).path == "/not"


def test_not_is_proved_when_the_writer_excludes_the_negated_values() -> None:
    reader = {"type": "string", "not": {"const": ""}}

    assert reader_can_read(reader, {"type": "string", "minLength": 1}) == []
    assert only(reader_can_read(reader, {"type": "string"}), ChangeKind.KEYWORD_UNVERIFIABLE)


def test_not_of_a_disjoint_type_is_proved() -> None:
    assert reader_can_read({"not": {"type": "null"}}, {"type": "string"}) == []


def test_not_is_proved_when_the_writer_already_excludes_more() -> None:
    reader = {"type": "string", "not": {"const": ""}}

    assert reader_can_read(reader, {"type": "string", "not": {"enum": ["", "-"]}}) == []


def test_names_under_a_shared_pattern_are_not_unknown_fields_of_the_writer() -> None:
    reader = obj({}, patternProperties={"^x_": {"type": "string"}})
    writer = obj({}, patternProperties={"^x_": {"type": "string", "maxLength": 3}})

    assert reader_can_read(reader, writer) == []


def test_unevaluated_properties_without_applicators_acts_like_additional_properties() -> None:
    reader = {**obj({"stop_id": STOP_ID}), "unevaluatedProperties": False}

    assert reader_can_read(reader, obj({"stop_id": STOP_ID}, closed=True)) == []
    found = reader_can_read(reader, obj({"stop_id": STOP_ID}))
    assert only(found, ChangeKind.ADDITIONAL_PROPERTIES_NARROWED)


def test_malformed_subschemas_are_answered_conservatively_not_crashed_on() -> None:
    malformed = obj({"fare": 1})  # a property whose "schema" is a number

    assert reader_can_read(obj({"fare": FARE}), malformed) != []
    assert only(reader_can_read(malformed, obj({"fare": FARE})), ChangeKind.KEYWORD_UNVERIFIABLE)
