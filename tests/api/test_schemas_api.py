"""The registry over HTTP, against a running `tsunagu up`."""

from __future__ import annotations

import copy
import threading
from collections.abc import Iterator

import httpx
import orjson
import pytest

from broker.bus import open_bus
from contract.bus import OutRecord
from tests.events import connector_signer, encode, make_event, registry
from tests.fixtures.platform import RunningPlatform, start_platform, stop_platform

CHECK = "/v1/schemas/transport.trip.completed/compatibility"
#: Catastrophic backtracking: Python's `re` takes hours on a field name; one level less took
#: 13.4 s and froze the whole API process.
REDOS = "^(?:(?:(?:(?:.)*)*)*)*$X"


def _connector(platform: RunningPlatform) -> dict[str, str]:
    return platform.auth("connector", "mitoyo-pay", sources=("urn:tsunagu:connector:mitoyo-pay",))


def test_every_shipped_type_is_listed_with_its_versions(platform: RunningPlatform) -> None:
    with platform.client() as http:
        listed = http.get("/v1/schemas").json()
    types = {t["type"]: t for t in listed}
    assert set(types) == set(registry().types())
    trip = types["transport.trip.completed"]
    assert trip["versions"] == [1, 2]
    assert trip["compatibility"] == "BACKWARD"
    assert trip["latest"] == "urn:tsunagu:schema:transport.trip.completed:v2"
    assert set(trip["breaking"]) == {"2"}  # v2 names residents by the service's subject
    assert trip["deprecated"] == {"1": "2027-09-30"}
    assert types["transport.vehicle.position"]["deprecated"] == {}


def test_a_version_is_served_as_schema_json(platform: RunningPlatform) -> None:
    with platform.client() as http:
        r = http.get("/v1/schemas/transport.trip.completed/versions/2")
        latest = http.get("/v1/schemas/transport.trip.completed/versions/latest")
        first = http.get("/v1/schemas/transport.trip.completed/versions/1")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("application/schema+json")
    assert r.json()["$id"] == "urn:tsunagu:schema:transport.trip.completed:v2"
    assert latest.json() == r.json()
    assert first.json()["$id"] == "urn:tsunagu:schema:transport.trip.completed:v1"


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
        r = http.post(CHECK, json=schema, headers=_connector(platform))
    assert r.status_code == 200
    body = r.json()
    assert body["is_compatible"] is False
    assert any("co2_g" in p["message"] for p in body["problems"])


def test_compatibility_check_accepts_a_new_optional_field(platform: RunningPlatform) -> None:
    schema = copy.deepcopy(dict(registry().get("transport.trip.completed").schema))
    schema["properties"]["co2_g"] = {"type": "integer", "minimum": 0}
    with platform.client() as http:
        r = http.post(CHECK, json=schema, headers=_connector(platform))
    assert r.json() == {
        "type": "transport.trip.completed",
        "compatibility": "BACKWARD",
        "is_compatible": True,
        "problems": [],
    }


def test_compatibility_check_refuses_an_invalid_schema(platform: RunningPlatform) -> None:
    with platform.client() as http:
        r = http.post(CHECK, json={"type": "objekt"}, headers=_connector(platform))
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
    signer = connector_signer(platform.data_dir)
    bus.publish(
        "transport", [signer.sign(OutRecord(d["subject"].encode(), encode(d))) for d in docs]
    )
    bus.publish("transport", [signer.sign(OutRecord(b"x", orjson.dumps({"not": "an event"})))])
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


def _with_pattern(pattern: str) -> dict[str, object]:
    """The registered schema, proposed again with a pattern matched against its field names."""
    schema = copy.deepcopy(dict(registry().get("transport.trip.completed").schema))
    schema["patternProperties"] = {pattern: {"type": "string"}}
    return schema


def test_a_redos_pattern_is_answered_and_health_stays_up_meanwhile(
    platform: RunningPlatform,
) -> None:
    answers: list[httpx.Response] = []

    def check() -> None:
        with platform.client() as http:
            answers.append(
                http.post(CHECK, json=_with_pattern(REDOS), headers=_connector(platform))
            )

    # More checks than the API has worker threads, all at once; /healthz is asked meanwhile.
    checkers = [threading.Thread(target=check) for _ in range(4)]
    for t in checkers:
        t.start()
    with platform.client() as http:
        health = [http.get("/healthz").status_code for _ in range(3)]
    for t in checkers:
        t.join()
    assert health == [200, 200, 200]
    # On a backtracking engine these never complete (the test's timeout fails them).
    assert [a.status_code for a in answers] == [200] * 4
    assert all(isinstance(a.json()["is_compatible"], bool) for a in answers)


def test_a_pattern_re2_cannot_express_is_judged_as_possibly_matching(
    platform: RunningPlatform,
) -> None:
    with platform.client() as http:
        r = http.post(CHECK, json=_with_pattern("^(?=f)(.)\\1"), headers=_connector(platform))
    assert r.status_code == 200, r.text


def test_compatibility_check_needs_a_connector_or_admin_token(platform: RunningPlatform) -> None:
    schema = _with_pattern("^x-")
    with platform.client() as http:
        anonymous = http.post(CHECK, json=schema)
        partner = http.post(CHECK, json=schema, headers=platform.auth("partner", "ptn-abcd1234"))
        admin = http.post(CHECK, json=schema, headers=platform.auth("admin", "city-ops"))
    assert anonymous.status_code == 401
    assert anonymous.headers["content-type"] == "application/problem+json"
    assert "bearer token" in anonymous.json()["detail"]
    assert partner.status_code == 403
    assert "admin or connector" in partner.json()["detail"]
    assert admin.status_code == 200


@pytest.fixture(scope="module")
def limited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningPlatform]:
    """A platform allowing each caller a burst of 2 compatibility checks, then one an hour."""
    running = start_platform(
        tmp_path_factory.mktemp("schema-checks"),
        {"TSUNAGU_SCHEMA_CHECK_RATE_PER_S": "0.0003", "TSUNAGU_SCHEMA_CHECK_BURST": "2"},
    )
    yield running
    stop_platform(running)


def test_compatibility_checks_over_the_callers_rate_are_429(limited: RunningPlatform) -> None:
    schema = _with_pattern("^x-")
    greedy = limited.auth("connector", "greedy", sources=("urn:tsunagu:connector:greedy",))
    other = limited.auth("admin", "city-ops")
    with limited.client() as http:
        statuses = [http.post(CHECK, json=schema, headers=greedy).status_code for _ in range(3)]
        refused = http.post(CHECK, json=schema, headers=greedy)
        others = http.post(CHECK, json=schema, headers=other)
    assert statuses == [200, 200, 429]
    assert refused.headers["content-type"] == "application/problem+json"
    assert int(refused.headers["retry-after"]) >= 1
    assert "over its rate" in refused.json()["detail"]
    assert others.status_code == 200
