"""A major version superseded by a breaking one is accepted until the last day its type's
``config.json`` states, and dead-lettered after it, naming the version to publish instead."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from broker.settings import REPO_SCHEMAS
from connectors.sdk.schemas import LocalSchemas
from contract import cloudevents
from contract.catalogue import SchemaCatalogue
from contract.deadletter import DeadLetterReason, Rejection
from contract.validation import EventValidator
from tests.events import encode, make_event

TRIP = "transport.trip.completed"


def _v1_trip() -> cloudevents.CloudEvent:
    return cloudevents.parse(encode(make_event(TRIP, version=1)))


def _validator(last_day: datetime) -> EventValidator:
    catalogue = SchemaCatalogue.from_directory(REPO_SCHEMAS)
    catalogue.deprecations[(TRIP, 1)] = last_day.date()
    return EventValidator(catalogue, 1 << 20)


def test_the_shipped_catalogue_deprecates_v1_of_the_personal_types() -> None:
    catalogue = SchemaCatalogue.from_directory(REPO_SCHEMAS)
    assert catalogue.deprecations[(TRIP, 1)].isoformat() == "2027-09-30"
    assert (TRIP, 2) not in catalogue.deprecations
    assert ("transport.vehicle.position", 1) not in catalogue.deprecations


def test_a_deprecated_version_is_accepted_through_its_last_day() -> None:
    event = _v1_trip()
    assert _validator(datetime.now(UTC)).check_data(event) == event


def test_a_deprecated_version_is_refused_after_its_last_day() -> None:
    refused = _validator(datetime.now(UTC) - timedelta(days=1)).check_data(_v1_trip())
    assert isinstance(refused, Rejection)
    assert refused.reason is DeadLetterReason.UNKNOWN_SCHEMA
    assert "was accepted until" in refused.detail
    assert f"{TRIP}:v2" in refused.detail  # what to publish instead


@pytest.mark.parametrize(("identity", "version"), [("resident_id", 1), ("subject", 2)])
def test_a_connector_publishes_the_latest_version_naming_people_its_way(
    identity: str, version: int
) -> None:
    schemas = LocalSchemas(REPO_SCHEMAS)
    assert schemas.naming(TRIP, identity).version == version  # type: ignore[arg-type]
    # A type about no one: the latest, either way.
    assert schemas.naming("transport.vehicle.position", identity).version == 1  # type: ignore[arg-type]
