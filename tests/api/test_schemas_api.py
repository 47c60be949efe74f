"""The registry over HTTP, against a running `tsunagu up`."""

from __future__ import annotations

import copy

import orjson

from broker.bus import OutRecord, open_bus
from tests.events import connector_headers, encode, make_event, registry
from tests.fixtures.platform import RunningPlatform


def test_every_shipped_type_is_listed_with_its_versions(platform: RunningPlatform) -> None:
    with platform.client() as http:
        listed = http.get("/v1/schemas").json()
    types = {t["type"]: t for t in listed}
    assert set(types) == set(registry().types())
    trip = types["transport.trip.completed"]
    assert trip["versions"] == [1]
    assert trip["compatibility"] == "BACKWARD"
    assert trip["latest"] == "urn:tsunagu:schema:transport.trip.completed:v1"


def test_a_version_is_served_as_schema_json(platform: RunningPlatform) -> None:
    with platform.client() as http:
        r = http.get("/v1/schemas/transport.trip.completed/versions/1")
        latest = http.get("/v1/schemas/transport.trip.completed/versions/latest")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("application/schema+json")
    assert r.json()["$id"] == "urn:tsunagu:schema:transport.trip.completed:v1"
    assert latest.json() == r.json()


def test_unknown_type_is_a_404_problem(platform: RunningPlatform) -> None:
    with platform.client() as http:
        r = http.get("/v1/schemas/transport.teleport.completed")
    assert r.status_code == 404
    assert r.headers["content-type"] == "application/problem+json"
    body = r.json()
    assert body["status"] == 404
    assert "transport.teleport.completed" in body["detail"]


def test_unknown_version_is_a_404_problem(platform: RunningPlatform) -> None:
    with platform.client() as http:
        r = http.get("/v1/schemas/transport.trip.completed/versions/7")
        bad = http.get("/v1/schemas/transport.trip.completed/versions/first")
    assert r.status_code == 404
    assert "no version 7" in r.json()["detail"]
    assert bad.status_code == 404


def test_compatibility_check_names_the_new_required_field(platform: RunningPlatform) -> None:
    schema = copy.deepcopy(dict(registry().get("transport.trip.completed").schema))
    schema["properties"]["co2_g"] = {"type": "integer", "minimum": 0}
    schema["required"] = [*schema["required"], "co2_g"]
    with platform.client() as http:
        r = http.post("/v1/schemas/transport.trip.completed/compatibility", json=schema)
    assert r.status_code == 200
    body = r.json()
    assert body["is_compatible"] is False
    assert any("co2_g" in p["message"] for p in body["problems"])


def test_compatibility_check_accepts_a_new_optional_field(platform: RunningPlatform) -> None:
    schema = copy.deepcopy(dict(registry().get("transport.trip.completed").schema))
    schema["properties"]["co2_g"] = {"type": "integer", "minimum": 0}
    with platform.client() as http:
        r = http.post("/v1/schemas/transport.trip.completed/compatibility", json=schema)
    assert r.json() == {
        "type": "transport.trip.completed",
        "compatibility": "BACKWARD",
        "is_compatible": True,
        "problems": [],
    }


def test_compatibility_check_refuses_an_invalid_schema(platform: RunningPlatform) -> None:
    with platform.client() as http:
        r = http.post("/v1/schemas/transport.trip.completed/compatibility", json={"type": "objekt"})
    body = r.json()
    assert body["is_compatible"] is False
    assert body["problems"][0]["kind"] == "invalid_schema"


def test_platform_serves_health_openapi_and_metrics(platform: RunningPlatform) -> None:
    with platform.client() as http:
        assert http.get("/healthz").json()["status"] == "ok"
        ready = http.get("/readyz").json()
        openapi = http.get("/openapi.json").json()
        metrics = http.get("/metrics").text
    assert ready["checks"] == {"store": "ok", "bus": "ok", "ingest": "ok"}
    assert "/v1/schemas/{event_type}/compatibility" in openapi["paths"]
    assert "tsunagu_ingest_events_total" in metrics


def test_published_events_reach_the_store_of_a_running_platform(
    platform: RunningPlatform,
) -> None:
    import time

    from sqlalchemy import create_engine, text

    bus = open_bus(f"sqlite:///{platform.data_dir / 'bus.db'}")
    docs = [make_event() for _ in range(20)]
    headers = connector_headers(platform.data_dir)
    bus.publish("transport", [OutRecord(d["subject"].encode(), encode(d), headers) for d in docs])
    bus.publish("transport", [OutRecord(b"x", orjson.dumps({"not": "an event"}), headers)])
    bus.close()
    engine = create_engine(f"sqlite:///{platform.data_dir / 'store.db'}")
    ids = {d["id"] for d in docs}
    deadline = time.monotonic() + 20
    found: set[str] = set()
    while time.monotonic() < deadline and found != ids:
        with engine.connect() as conn:
            found = set(conn.execute(text("SELECT event_id FROM transport_trips")).scalars())
        time.sleep(0.1)
    engine.dispose()
    assert found == ids
    with platform.client() as http:
        metrics = http.get("/metrics").text
    assert 'tsunagu_dead_letters_total{reason="invalid_envelope",topic="transport"}' in metrics
