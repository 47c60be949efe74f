"""HTTP ingest (`POST /v1/events`) against a running platform: structured, batch and binary
content mode, bad, too big."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import httpx
import orjson
import pytest
from sqlalchemy import create_engine, text

from broker.bus import open_bus
from contract.bus import Record
from contract.deadletter import H_ORIGIN, H_PATH, H_REASON
from tests.events import make_event
from tests.fixtures.platform import RunningPlatform, start_platform, stop_platform

STRUCTURED = {"content-type": "application/cloudevents+json"}
BATCH = {"content-type": "application/cloudevents-batch+json"}
LIMIT = 64 * 1024


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningPlatform]:
    """A platform with a small body limit, so the 413 is cheap to provoke."""
    running = start_platform(
        tmp_path_factory.mktemp("ingest"), {"TSUNAGU_HTTP_MAX_BODY_BYTES": str(LIMIT)}
    )
    yield running
    stop_platform(running)


def _connector(platform: RunningPlatform) -> dict[str, str]:
    return platform.auth("connector", "test-connector", sources=("urn:tsunagu:connector:test",))


def _post(platform: RunningPlatform, body: Any, headers: dict[str, str]) -> httpx.Response:
    content = body if isinstance(body, bytes) else orjson.dumps(body)
    with platform.client() as http:
        return http.post("/v1/events", content=content, headers={**_connector(platform), **headers})


def _projected(platform: RunningPlatform, ids: set[str], timeout_s: float = 15) -> set[str]:
    engine = create_engine(f"sqlite:///{platform.data_dir / 'store.db'}")
    found: set[str] = set()
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and found != ids:
        with engine.connect() as conn:
            found = ids & set(conn.execute(text("SELECT id FROM ingested_events")).scalars())
        time.sleep(0.1)
    engine.dispose()
    return found


def _dead_letters(platform: RunningPlatform, topic: str) -> list[Record]:
    bus = open_bus(f"sqlite:///{platform.data_dir / 'bus.db'}")
    consumer = bus.consumer(f"reader-{uuid.uuid4().hex}", [topic])
    got: list[Record] = []
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        batch = consumer.poll(100, 0.2)
        if not batch and got:
            break
        got += batch
    consumer.close()
    bus.close()
    return got


def test_structured_event_is_accepted_and_projected(platform: RunningPlatform) -> None:
    doc = make_event()
    r = _post(platform, doc, STRUCTURED)
    assert r.status_code == 202
    assert r.json() == {
        "accepted": 1,
        "duplicates": 0,
        "rejected": 0,
        "results": [
            {"index": 0, "id": doc["id"], "status": "accepted", "reason": None, "detail": None}
            | {"path": None}
        ],
    }
    assert _projected(platform, {doc["id"]}) == {doc["id"]}


def test_batch_answers_per_event_and_dead_letters_the_bad_ones(platform: RunningPlatform) -> None:
    good = [make_event(), make_event("health.points.awarded")]
    violating = make_event()
    violating["data"]["fare_jpy"] = -5
    untyped = make_event()
    del untyped["type"]
    r = _post(platform, [good[0], violating, untyped, good[1]], BATCH)
    assert r.status_code == 202
    body = r.json()
    assert (body["accepted"], body["rejected"]) == (2, 2)
    statuses = [(x["index"], x["status"], x["reason"]) for x in body["results"]]
    assert statuses == [
        (0, "accepted", None),
        (1, "rejected", "schema_violation"),
        (2, "rejected", "invalid_envelope"),
        (3, "accepted", None),
    ]
    assert body["results"][1]["path"] == "/data/fare_jpy"
    assert "fare_jpy" in body["results"][1]["detail"]
    assert _projected(platform, {g["id"] for g in good}) == {g["id"] for g in good}
    dead = [d for d in _dead_letters(platform, "transport.dlq") if d.key]
    violation = next(d for d in dead if orjson.loads(d.value)["id"] == violating["id"])
    assert dict(violation.headers)[H_REASON] == b"schema_violation"
    assert dict(violation.headers)[H_PATH] == b"/data/fare_jpy"
    assert dict(violation.headers)[H_ORIGIN].startswith(b"http/")
    assert orjson.loads(violation.value) == violating  # the event as it was sent
    # Without a type no domain can be told: it is kept in the unrouted dead letters.
    unrouted = _dead_letters(platform, "unrouted.dlq")
    kept = [d for d in unrouted if d.value.startswith(b"{") and orjson.loads(d.value) == untyped]
    assert [dict(d.headers)[H_REASON] for d in kept] == [b"invalid_envelope"]


def test_an_event_sent_again_after_projection_is_a_duplicate(platform: RunningPlatform) -> None:
    doc = make_event()
    assert _post(platform, doc, STRUCTURED).json()["accepted"] == 1
    assert _projected(platform, {doc["id"]}) == {doc["id"]}
    again = _post(platform, [doc], BATCH).json()
    assert again["duplicates"] == 1
    assert again["results"][0]["status"] == "duplicate"


def test_unknown_domain_goes_to_the_unrouted_dead_letters(platform: RunningPlatform) -> None:
    doc = make_event()
    doc["type"] = "weather.rain.fell"
    body = _post(platform, doc, STRUCTURED).json()
    assert body["results"][0]["reason"] == "unknown_type"
    dead = _dead_letters(platform, "unrouted.dlq")
    assert any(orjson.loads(d.value).get("id") == doc["id"] for d in dead if d.value[:1] == b"{")


def test_body_that_is_not_json_is_a_400_problem_and_is_kept(platform: RunningPlatform) -> None:
    marker = f"trip,{uuid.uuid4().hex},600".encode()
    r = _post(platform, marker, STRUCTURED)
    assert r.status_code == 400
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["type"] == "urn:tsunagu:problem:malformed-json"
    assert "not valid JSON" in r.json()["detail"]
    assert "line 1, column 1" in r.json()["detail"]
    dead = _dead_letters(platform, "unrouted.dlq")
    kept = [d for d in dead if d.value == marker]
    assert len(kept) == 1
    assert dict(kept[0].headers)[H_REASON] == b"not_json"


def test_batch_that_is_not_an_array_is_a_400_problem(platform: RunningPlatform) -> None:
    r = _post(platform, make_event(), BATCH)
    assert r.status_code == 400
    assert "JSON array" in r.json()["detail"]


def test_body_over_the_limit_is_a_413_problem(platform: RunningPlatform) -> None:
    docs = [make_event() for _ in range(200)]  # about 1 KB each: over 64 KiB
    r = _post(platform, docs, BATCH)
    assert r.status_code == 413
    assert str(LIMIT) in r.json()["detail"]


def test_chunked_body_over_the_limit_is_a_413_problem(platform: RunningPlatform) -> None:
    payload = orjson.dumps([make_event() for _ in range(200)])

    def chunks() -> Iterator[bytes]:
        for i in range(0, len(payload), 4096):
            yield payload[i : i + 4096]

    with platform.client() as http:
        r = http.post("/v1/events", content=chunks(), headers={**_connector(platform), **BATCH})
    assert r.status_code == 413


def test_other_content_types_are_a_415_problem(platform: RunningPlatform) -> None:
    r = _post(platform, make_event(), {"content-type": "text/csv"})
    assert r.status_code == 415
    assert "application/cloudevents+json" in r.json()["detail"]
    assert "binary mode (ce-* headers" in r.json()["detail"]


def test_plain_json_without_ce_headers_is_a_415_problem(platform: RunningPlatform) -> None:
    r = _post(platform, make_event()["data"], {"content-type": "application/json"})
    assert r.status_code == 415
    assert r.json()["type"] == "urn:tsunagu:problem:unsupported-media-type"


def _binary(doc: dict[str, Any]) -> tuple[dict[str, str], bytes]:
    """The CloudEvents HTTP binding's binary mode, written by hand: the attributes as ``ce-*``
    headers (percent-encoded), datacontenttype as Content-Type, the data as the body."""
    headers = {
        f"ce-{name}": quote(str(value), safe="")
        for name, value in doc.items()
        if name not in ("data", "datacontenttype")
    }
    headers["content-type"] = doc.get("datacontenttype", "application/json")
    return headers, orjson.dumps(doc["data"])


def _post_binary(platform: RunningPlatform, doc: dict[str, Any], **extra: str) -> httpx.Response:
    headers, body = _binary(doc)
    headers.update(extra)
    return _post(platform, body, {k: v for k, v in headers.items() if v})


def test_binary_mode_event_is_accepted_projected_and_then_a_duplicate(
    platform: RunningPlatform,
) -> None:
    doc = make_event()
    r = _post_binary(platform, doc)
    assert r.status_code == 202, r.text
    assert r.json()["results"] == [
        {"index": 0, "id": doc["id"], "status": "accepted", "reason": None, "detail": None}
        | {"path": None}
    ]
    assert _projected(platform, {doc["id"]}) == {doc["id"]}
    again = _post_binary(platform, doc).json()
    assert (again["accepted"], again["duplicates"]) == (0, 1)
    # The same event in structured mode is the same event: a duplicate too.
    assert _post(platform, doc, STRUCTURED).json()["duplicates"] == 1


def test_binary_mode_headers_are_percent_decoded(platform: RunningPlatform) -> None:
    doc = make_event(note='三豊 "100%"')
    headers, body = _binary(doc)
    # Every ':' of the source percent-encoded: only decoded does it name the registered source.
    assert headers["ce-source"] == "urn%3Atsunagu%3Aconnector%3Atest"
    r = _post(platform, body, headers)
    assert r.json()["accepted"] == 1, r.text


def test_binary_mode_is_authorised_like_structured(platform: RunningPlatform) -> None:
    doc = make_event(source="urn:tsunagu:connector:someone-else")
    r = _post_binary(platform, doc)
    assert r.status_code == 202
    assert r.json()["results"][0]["reason"] == "source_not_allowed"
    headers, body = _binary(make_event())
    with platform.client() as http:
        assert http.post("/v1/events", content=body, headers=headers).status_code == 401


def test_binary_mode_without_ce_specversion_is_a_400_problem_naming_it(
    platform: RunningPlatform,
) -> None:
    doc = make_event()
    r = _post_binary(platform, doc, **{"ce-specversion": ""})
    assert r.status_code == 400
    assert r.headers["content-type"] == "application/problem+json"
    problem = r.json()
    assert problem["type"] == "urn:tsunagu:problem:invalid-envelope"
    assert "ce-specversion" in problem["detail"]
    # Refused like any bad event: dead-lettered with its reason.
    dead = [d for d in _dead_letters(platform, "transport.dlq") if d.value[:1] == b"{"]
    kept = [d for d in dead if orjson.loads(d.value).get("id") == doc["id"]]
    assert [dict(d.headers)[H_REASON] for d in kept] == [b"invalid_envelope"]


def test_binary_mode_with_an_invalid_header_is_a_400_problem_naming_it(
    platform: RunningPlatform,
) -> None:
    r = _post_binary(platform, make_event(), **{"ce-time": "yesterday"})
    assert r.status_code == 400
    assert "ce-time" in r.json()["detail"]
    r = _post_binary(platform, make_event(), **{"ce-Trace_Parent": "00"})
    assert r.status_code == 400
    assert "ce-trace_parent" in r.json()["detail"]


def test_binary_mode_data_other_than_json_is_a_415_problem(platform: RunningPlatform) -> None:
    r = _post_binary(platform, make_event(), **{"content-type": "text/plain"})
    assert r.status_code == 415
    assert "Content-Type: application/json" in r.json()["detail"]
    r = _post(platform, b"{not json", _binary(make_event())[0])
    assert r.status_code == 400
    assert r.json()["type"] == "urn:tsunagu:problem:malformed-json"
