"""Ingest on a running platform against ordinary attacks: a connector publishing another
domain's events, and records built to kill the worker, on HTTP and on the bus."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from sqlalchemy import create_engine, text

from broker.bus import open_bus
from contract.bus import OutRecord
from contract.deadletter import H_EVENT_ID, H_REASON
from tests.events import connector_signer, encode, make_event
from tests.fixtures.platform import RunningPlatform, start_platform, stop_platform

BATCH = {"content-type": "application/cloudevents-batch+json"}
PAY = "urn:tsunagu:connector:mitoyo-pay"


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningPlatform]:
    """The embedded platform, for this module alone."""
    running = start_platform(tmp_path_factory.mktemp("attack"))
    yield running
    stop_platform(running)


def _audit(platform: RunningPlatform, kind: str) -> list[dict[str, Any]]:
    engine = create_engine(f"sqlite:///{platform.data_dir / 'store.db'}")
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                text("SELECT fields, actor FROM audit_entries WHERE kind = :k"), {"k": kind}
            ).all()
    finally:
        engine.dispose()
    return [{**orjson.loads(fields), "_actor": actor} for fields, actor in rows]


def _projected(platform: RunningPlatform, ids: set[str], timeout_s: float = 20) -> set[str]:
    """Which of ``ids`` are in the ledger, waiting up to ``timeout_s`` for all of them."""
    engine = create_engine(f"sqlite:///{platform.data_dir / 'store.db'}")
    deadline = time.monotonic() + timeout_s
    found: set[str] = set()
    try:
        while time.monotonic() < deadline and found != ids:
            with engine.connect() as conn:
                found = ids & set(conn.execute(text("SELECT id FROM ingested_events")).scalars())
            time.sleep(0.1)
    finally:
        engine.dispose()
    return found


def _dead_letter_reasons(platform: RunningPlatform, topic: str, ids: set[str]) -> dict[str, str]:
    bus = open_bus(f"sqlite:///{platform.data_dir / 'bus.db'}")
    consumer = bus.consumer(f"reader-{uuid.uuid4().hex}", [f"{topic}.dlq"])
    found: dict[str, str] = {}
    deadline = time.monotonic() + 20
    try:
        while time.monotonic() < deadline and set(found) != ids:
            for record in consumer.poll(500, 0.2):
                headers = dict(record.headers)
                # An envelope refused whole names no event id: its original bytes do.
                named = headers.get(H_EVENT_ID, b"").decode()
                for event_id in ids:
                    if event_id == named or event_id.encode() in record.value:
                        found[event_id] = headers[H_REASON].decode()
    finally:
        consumer.close()
        bus.close()
    return found


def test_the_currency_connector_cannot_rewrite_a_listing_over_http_or_the_bus(
    platform: RunningPlatform,
) -> None:
    over_http = make_event("vacant_house.listing.updated", source=PAY)
    over_bus = make_event("vacant_house.listing.updated", source=PAY)
    own = make_event("currency.payment.settled", source=PAY)
    token = platform.auth("connector", "mitoyo-pay", sources=(PAY,), event_types=("currency.*",))
    with platform.client() as http:
        r = http.post(
            "/v1/events", content=orjson.dumps([over_http, own]), headers={**BATCH, **token}
        )
    assert r.status_code == 202, r.text
    refused, accepted = r.json()["results"]
    assert (refused["status"], refused["reason"], refused["path"]) == (
        "rejected",
        "not_authorized",
        "/type",
    )
    assert "currency.*" in refused["detail"]
    assert accepted["status"] == "accepted"
    bus = open_bus(f"sqlite:///{platform.data_dir / 'bus.db'}")
    signer = connector_signer(platform.data_dir, PAY, ("currency.*",))
    bus.publish("vacant_house", [signer.sign(OutRecord(b"prop-tkm0012a", encode(over_bus)))])
    bus.close()
    assert _dead_letter_reasons(platform, "vacant_house", {over_http["id"], over_bus["id"]}) == {
        over_http["id"]: "not_authorized",
        over_bus["id"]: "not_authorized",
    }
    assert _projected(platform, {own["id"], over_http["id"], over_bus["id"]}, 5) == {own["id"]}
    audited = {
        e["event_id"]: e
        for e in _audit(platform, "dead_letter")
        if e.get("event_id") in {over_http["id"], over_bus["id"]}
    }
    assert {e["reason"] for e in audited.values()} == {"not_authorized"}
    # Who tried: the connector the verified token names, on both roads.
    assert audited[over_http["id"]]["_actor"] == "mitoyo-pay"
    assert audited[over_bus["id"]]["sender"] == "test-connector"


def _nested(depth: int) -> dict[str, Any]:
    doc: dict[str, Any] = {"leaf": 1}
    for _ in range(depth):
        doc = {"a": doc}
    return doc


def test_poison_events_over_http_are_rejected_one_by_one_and_ingest_lives_on(
    platform: RunningPlatform,
) -> None:
    deep = make_event()
    deep["data"]["origin"] = _nested(900)
    nul_text = make_event("currency.payment.settled")
    nul_text["data"]["merchant_name"] = "仁尾\x00うどん"
    nul_id = make_event(event_id=f"nul-\x00-{uuid.uuid4().hex}")
    year_1 = make_event(time="0001-01-01T00:00:00+09:00")
    year_9999 = make_event(time="9999-12-31T23:59:59-05:00")
    data_year_1 = make_event("currency.payment.settled")
    data_year_1["data"]["settled_at"] = "0001-01-01T00:00:00+09:00"
    good = make_event()
    batch = [deep, nul_text, nul_id, year_1, year_9999, data_year_1, good]
    token = platform.auth("connector", "odt", sources=("urn:tsunagu:connector:test",))
    with platform.client() as http:
        # The standard library's encoder: orjson refuses to nest 900 deep.
        r = http.post("/v1/events", content=json.dumps(batch), headers={**BATCH, **token})
        assert r.status_code == 202, r.text
        reasons = [x.get("reason") for x in r.json()["results"]]
        assert reasons == ["too_deep", *["invalid_envelope"] * 5, None]
        assert _projected(platform, {good["id"]}) == {good["id"]}
        ready = http.get("/readyz")
    assert ready.status_code == 200, ready.text
    assert ready.json()["checks"]["ingest"] == "ok"


def test_poison_records_on_the_bus_are_dead_lettered_and_ingest_lives_on(
    platform: RunningPlatform,
) -> None:
    deep = make_event()
    deep["data"]["origin"] = _nested(300)
    nul_id = make_event(event_id=f"nul-\x00-{uuid.uuid4().hex}")
    year_1 = make_event(time="0001-01-01T00:00:00+09:00")
    good = make_event()
    signer = connector_signer(platform.data_dir)
    bus = open_bus(f"sqlite:///{platform.data_dir / 'bus.db'}")
    bus.publish(
        "transport",
        [
            signer.sign(OutRecord(b"k", json.dumps(d).encode()))
            for d in (deep, nul_id, year_1, good)
        ],
    )
    bus.close()
    assert _projected(platform, {good["id"]}) == {good["id"]}
    reasons = _dead_letter_reasons(platform, "transport", {deep["id"], year_1["id"]})
    assert reasons == {deep["id"]: "too_deep", year_1["id"]: "invalid_envelope"}
    with platform.client() as http:
        ready = http.get("/readyz")
    assert ready.status_code == 200, ready.text
