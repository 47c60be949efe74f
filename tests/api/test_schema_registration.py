"""Registering a new schema version over HTTP: operator only, compatible only, seen everywhere."""

from __future__ import annotations

import copy
import time
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, text

from broker.bus import open_bus
from contract.bus import OutRecord
from tests.events import connector_signer, encode, make_event, registry
from tests.fixtures.platform import RunningPlatform, start_platform, stop_platform

#: A type with one shipped version, about no person (its events are projected as they come).
TRIP = "transport.vehicle.position"
URL = f"/v1/schemas/{TRIP}/versions"


def _token(platform: RunningPlatform) -> dict[str, str]:
    return platform.auth("admin", "ops-test")


def _v2(required: bool = False) -> dict[str, Any]:
    schema = copy.deepcopy(dict(registry().get(TRIP).schema))
    schema["$id"] = f"urn:tsunagu:schema:{TRIP}:v2"
    schema["properties"]["co2_g"] = {"type": "integer", "minimum": 0}
    if required:
        schema["required"] = [*schema["required"], "co2_g"]
    return schema


def test_registration_without_an_admin_token_is_refused(platform: RunningPlatform) -> None:
    with platform.client() as http:
        missing = http.post(URL, json=_v2())
        wrong = http.post(URL, json=_v2(), headers={"Authorization": "Bearer guess"})
        partner = http.post(URL, json=_v2(), headers=platform.auth("partner", "ptn-x"))
        versions = http.get(f"/v1/schemas/{TRIP}").json()["versions"]
    assert missing.status_code == 401
    assert missing.headers["content-type"] == "application/problem+json"
    assert missing.headers["www-authenticate"] == "Bearer"
    assert "bearer token" in missing.json()["detail"]
    assert wrong.status_code == 401
    assert "not a JWT" in wrong.json()["detail"]
    assert partner.status_code == 403
    assert "admin role" in partner.json()["detail"]
    assert versions == [1]


def test_incompatible_version_is_refused_with_each_change_named(
    platform: RunningPlatform,
) -> None:
    with platform.client() as http:
        r = http.post(URL, json=_v2(required=True), headers=_token(platform))
    assert r.status_code == 409
    body = r.json()
    assert "field `co2_g` became required" in body["detail"]
    assert body["errors"][0]["kind"] == "REQUIRED_ADDED"
    assert body["errors"][0]["location"] == "/properties/co2_g"


def test_invalid_schema_is_refused_as_unprocessable(platform: RunningPlatform) -> None:
    with platform.client() as http:
        r = http.post(URL, json={"type": "objekt"}, headers=_token(platform))
    assert r.status_code == 422
    assert "not a valid JSON Schema" in r.json()["detail"]


def test_type_outside_the_domains_is_refused(platform: RunningPlatform) -> None:
    with platform.client() as http:
        r = http.post(
            "/v1/schemas/weather.rain.fell/versions", json=_v2(), headers=_token(platform)
        )
    assert r.status_code == 404
    assert "weather.rain.fell" in r.json()["detail"]


def test_compatible_version_is_registered_and_events_under_it_are_ingested(
    platform: RunningPlatform,
) -> None:
    with platform.client() as http:
        r = http.post(URL, json=_v2(), headers=_token(platform))
        again = http.post(URL, json=_v2(), headers=_token(platform))
        described = http.get(f"/v1/schemas/{TRIP}").json()
    assert r.status_code == 201
    assert r.json() == {
        "type": TRIP,
        "version": 2,
        "id": f"urn:tsunagu:schema:{TRIP}:v2",
    }
    assert again.json()["version"] == 2  # the same schema twice is one version
    assert described["versions"] == [1, 2]

    # The platform's worker learns of v2 from the store and accepts an event pinned to it.
    doc = make_event(TRIP, dataschema=f"urn:tsunagu:schema:{TRIP}:v2")
    doc["data"]["co2_g"] = 1200
    bus = open_bus(f"sqlite:///{platform.data_dir / 'bus.db'}")
    signer = connector_signer(platform.data_dir)
    bus.publish("transport", [signer.sign(OutRecord(doc["subject"].encode(), encode(doc)))])
    bus.close()
    engine = create_engine(f"sqlite:///{platform.data_dir / 'store.db'}")
    deadline = time.monotonic() + 15
    found = 0
    while time.monotonic() < deadline and not found:
        with engine.connect() as conn:
            found = conn.execute(
                text("SELECT count(*) FROM ingested_events WHERE id = :id"), {"id": doc["id"]}
            ).scalar_one()
        time.sleep(0.1)
    engine.dispose()
    assert found == 1


def test_registered_versions_survive_a_restart(tmp_path: Path) -> None:
    first = start_platform(tmp_path)
    try:
        with first.client() as http:
            assert http.post(URL, json=_v2(), headers=_token(first)).status_code == 201
    finally:
        stop_platform(first)
    second = start_platform(tmp_path)
    try:
        with second.client() as http:
            assert http.get(f"/v1/schemas/{TRIP}").json()["versions"] == [1, 2]
            schema = http.get(f"{URL}/2").json()
        assert "co2_g" in schema["properties"]
    finally:
        stop_platform(second)
