"""The envelope parser and the shipped envelope schema (``schemas/cloudevent.json``) agree:
an envelope the schema accepts is parsed, one it refuses is refused, naming the attribute.

The shape rules (nesting depth, NUL characters, years 1900-2999) are not the envelope's: they
hold for the whole event, data included, and are checked before it (``check_shape``). The
envelopes here are free of them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema_rs
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from contract import cloudevents
from contract.cloudevents import EnvelopeError
from tests.events import make_event

SHIPPED = Path(__file__).parents[2] / "schemas" / "cloudevent.json"
SCHEMA = jsonschema_rs.validator_for(json.loads(SHIPPED.read_text()), validate_formats=True)


def schema_accepts(doc: dict[str, Any]) -> bool:
    return bool(SCHEMA.is_valid(doc))


def parser_accepts(doc: dict[str, Any]) -> bool:
    try:
        cloudevents.from_dict(doc)
    except EnvelopeError:
        return False
    return True


def an_event() -> dict[str, Any]:
    doc = make_event("transport.trip.completed", subject="res-a1b2c3d4")
    doc["time"] = "2025-06-12T09:58:02+09:00"
    return doc


CHANGES: list[tuple[dict[str, Any], bool]] = [
    ({}, True),
    ({"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}, True),
    ({"partitionkey": "res-a1b2c3d4", "sequence": 42, "replay": True}, True),
    ({"datacontenttype": "application/json; charset=utf-8"}, True),
    ({"time": "2025-06-12T00:58:02.123456789Z"}, True),
    ({"TraceParent": "00-4b"}, False),
    ({"trace_parent": "00-4b"}, False),
    ({"averyveryverylongname": "x"}, False),
    ({"extension": {"nested": "object"}}, False),
    ({"sequence": 2**31}, False),
    ({"specversion": "0.3"}, False),
    ({"specversion": 1.0}, False),
    ({"id": ""}, False),
    ({"id": "x" * 129}, False),
    ({"source": ""}, False),
    ({"source": 42}, False),
    ({"type": "transport.trip"}, False),
    ({"type": "Transport.Trip.Completed"}, False),
    ({"subject": "a1b2c3d4"}, False),
    ({"subject": ""}, False),
    ({"time": "2025-06-12 09:58"}, False),
    ({"time": "2025-06-12T09:58:02"}, False),
    ({"time": "2025-02-30T09:58:02Z"}, False),
    ({"time": "2025-06-12T23:59:60Z"}, False),
    ({"datacontenttype": "text/plain"}, False),
    ({"dataschema": "https://example.com/trip.json"}, False),
    ({"dataschema": 1}, False),
    ({"data": "a string"}, False),
    ({"data": [1, 2]}, False),
    ({"data": None}, False),
]


@pytest.mark.parametrize(("change", "valid"), CHANGES)
def test_parser_and_shipped_schema_agree_on_each_attribute(
    change: dict[str, Any], valid: bool
) -> None:
    doc = an_event() | change
    assert schema_accepts(doc) is valid
    assert parser_accepts(doc) is valid


@pytest.mark.parametrize("name", ["specversion", "id", "source", "type", "subject", "time", "data"])
def test_a_missing_required_attribute_is_refused_by_both_and_named(name: str) -> None:
    doc = an_event()
    del doc[name]
    assert not schema_accepts(doc)
    with pytest.raises(EnvelopeError, match=f"required attribute `{name}` is missing") as err:
        cloudevents.from_dict(doc)
    assert err.value.attribute == name


def test_an_event_without_dataschema_is_accepted_by_both() -> None:
    doc = an_event()
    del doc["dataschema"]
    assert schema_accepts(doc)
    assert cloudevents.from_dict(doc).dataschema is None


def test_a_refusal_names_the_attribute_and_the_rule_to_follow() -> None:
    with pytest.raises(EnvelopeError) as err:
        cloudevents.from_dict(an_event() | {"subject": "a1b2c3d4"})
    assert err.value.attribute == "subject"
    assert "urn:tsunagu:schema:cloudevent:v1" in str(err.value)
    assert "pattern" in str(err.value)


def test_the_parser_reads_the_shipped_schema_itself() -> None:
    assert cloudevents.ENVELOPE_SCHEMA_FILE.resolve() == SHIPPED.resolve()
    assert json.loads(SHIPPED.read_text()) == cloudevents.ENVELOPE_SCHEMA


_ATTRIBUTES = ["specversion", "id", "source", "type", "subject", "time", "dataschema"]
_VALUES = st.one_of(
    st.text(max_size=40),
    st.sampled_from(
        [
            "1.0",
            "res-a1b2c3d4",
            "prop-0001",
            "transport.trip.completed",
            "urn:tsunagu:schema:transport.trip.completed:v1",
            "2025-06-12T09:58:02Z",
            "2025-06-12T24:00:00Z",
            "application/json",
            "urn:tsunagu:connector:x",
        ]
    ),
    st.integers(min_value=-(2**40), max_value=2**40),
    st.booleans(),
    st.none(),
    st.dictionaries(st.text(max_size=5), st.integers(), max_size=2),
)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(
    changes=st.dictionaries(
        st.one_of(st.sampled_from(_ATTRIBUTES), st.text(min_size=1, max_size=24)),
        _VALUES,
        max_size=3,
    ),
    removed=st.sets(st.sampled_from(_ATTRIBUTES), max_size=2),
)
def test_parser_and_shipped_schema_agree_on_generated_envelopes(
    changes: dict[str, Any], removed: set[str]
) -> None:
    doc = an_event() | changes
    for name in removed:
        doc.pop(name, None)
    try:
        cloudevents.check_shape(doc)
    except EnvelopeError:
        assume(False)  # a shape problem of the whole event, not the envelope's
    assert parser_accepts(doc) is schema_accepts(doc)
