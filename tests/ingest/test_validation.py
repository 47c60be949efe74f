"""Each kind of bad input is named by its dead-letter reason, with path, schema and source."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from contract import cloudevents
from contract.bus import Record
from contract.cloudevents import CloudEvent
from contract.deadletter import DeadLetterReason, Rejection
from contract.validation import EventValidator
from tests.events import encode, make_event, registry


def _check(value: bytes, topic: str = "transport", limit: int = 1024 * 1024) -> Any:
    record = Record(topic=topic, partition=0, offset=0, key=b"k", value=value)
    return EventValidator(registry(), limit).check_record(record)


@pytest.mark.parametrize("event_type", registry().types())
def test_every_shipped_example_is_accepted(event_type: str) -> None:
    domain = event_type.split(".")[0]
    result = _check(encode(make_event(event_type)), topic=domain)
    assert isinstance(result, CloudEvent), result
    assert result.type == event_type


def test_bytes_that_are_not_json_are_rejected_as_not_json() -> None:
    result = _check(b"\x00\xfftrip,res-1,480")
    assert isinstance(result, Rejection)
    assert result.reason is DeadLetterReason.NOT_JSON


def test_a_json_array_is_rejected_as_not_a_cloudevent() -> None:
    result = _check(b"[1, 2]")
    assert isinstance(result, Rejection)
    assert result.reason is DeadLetterReason.NOT_JSON


@pytest.mark.parametrize("attribute", ["id", "source", "type", "specversion", "subject", "time"])
def test_missing_required_attribute_is_named(attribute: str) -> None:
    doc = make_event()
    del doc[attribute]
    result = _check(encode(doc))
    assert isinstance(result, Rejection)
    assert result.reason is DeadLetterReason.INVALID_ENVELOPE
    assert result.path == f"/{attribute}"
    assert f"`{attribute}`" in result.detail


def test_unknown_type_is_rejected_naming_the_type() -> None:
    doc = make_event()
    doc["type"] = "transport.teleport.completed"
    result = _check(encode(doc))
    assert isinstance(result, Rejection)
    assert result.reason is DeadLetterReason.UNKNOWN_TYPE
    assert "transport.teleport.completed" in result.detail
    assert result.source == doc["source"]


def test_unknown_schema_version_is_rejected() -> None:
    doc = make_event(dataschema="urn:tsunagu:schema:transport.trip.completed:v99")
    result = _check(encode(doc))
    assert isinstance(result, Rejection)
    assert result.reason is DeadLetterReason.UNKNOWN_SCHEMA


def test_event_on_another_domains_topic_is_rejected() -> None:
    result = _check(encode(make_event("health.points.awarded")), topic="transport")
    assert isinstance(result, Rejection)
    assert result.reason is DeadLetterReason.WRONG_TOPIC


def test_schema_violation_names_path_schema_and_source() -> None:
    doc = make_event()
    doc["data"]["fare_jpy"] = -10
    result = _check(encode(doc))
    assert isinstance(result, Rejection)
    assert result.reason is DeadLetterReason.SCHEMA_VIOLATION
    assert result.path == "/data/fare_jpy"
    assert result.schema == "urn:tsunagu:schema:transport.trip.completed:v1"
    assert result.source == "urn:tsunagu:connector:test"
    assert result.event_id == doc["id"]


def test_misspelled_field_is_a_schema_violation() -> None:
    doc = make_event()
    doc["data"]["fare_yen"] = doc["data"].pop("fare_jpy")
    result = _check(encode(doc))
    assert isinstance(result, Rejection)
    assert result.reason is DeadLetterReason.SCHEMA_VIOLATION


def test_event_over_the_size_limit_is_rejected_before_parsing() -> None:
    doc = make_event()
    value = encode(doc) + b" " * 2048
    result = _check(value, limit=1024)
    assert isinstance(result, Rejection)
    assert result.reason is DeadLetterReason.TOO_LARGE
    assert str(len(value)) in result.detail


def test_event_exactly_at_the_limit_is_accepted() -> None:
    value = encode(make_event())
    assert isinstance(_check(value, limit=len(value)), CloudEvent)


def test_time_without_offset_is_rejected() -> None:
    doc = make_event(time="2026-11-25T10:00:00")
    result = _check(orjson.dumps(doc))
    assert isinstance(result, Rejection)
    assert result.reason is DeadLetterReason.INVALID_ENVELOPE
    assert result.path == "/time"


def test_a_phone_number_with_dashes_is_not_taken_for_a_date_out_of_range() -> None:
    # 0875-72-1234 (a Kagawa number) has the dashes of a date; only real dates are bounded.
    doc = make_event("vacant_house.listing.registered", version=1)
    doc["data"]["owner_details"]["owner_contact"]["phone"] = "0875-72-1234"
    assert cloudevents.from_dict(doc).id == doc["id"]
    doc["data"]["owner_details"]["owner_contact"]["phone"] = "0875-12-12T00:00:00Z"
    with pytest.raises(cloudevents.EnvelopeError, match="year 875"):
        cloudevents.from_dict(doc)


@pytest.mark.parametrize(
    ("escaped", "why"),
    [("\\u0000", "NUL"), ("\\u0030001-01-01T00:00:00Z", "year 1")],
)
def test_json_escapes_cannot_smuggle_a_nul_or_a_date_past_the_check(escaped: str, why: str) -> None:
    # The check reads the JSON text first; an escape there must send it to the full walk.
    doc = make_event("vacant_house.listing.registered", version=1)
    raw = encode(doc).replace(
        encode(doc["data"]["owner_details"]["owner_contact"]["phone"]), f'"{escaped}"'.encode()
    )
    with pytest.raises(cloudevents.EnvelopeError, match=why):
        cloudevents.parse(raw)
