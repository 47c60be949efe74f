"""Interop on HTTP with the official CloudEvents Python SDK (``cloudevents`` on PyPI), against
a running platform: the SDK as sender (binary and structured mode, its ``to_binary`` and
``to_structured``) and as receiver of what our connectors post."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest
from cloudevents.core.bindings import http as ce_http
from cloudevents.core.exceptions import CloudEventValidationError
from cloudevents.core.formats.json import JSONFormat
from sqlalchemy import create_engine, text

from connectors.sdk import HttpSink
from connectors.sdk.outbox import OutboxRow
from tests.cloudevents_sdk import sdk_event
from tests.events import encode, make_event
from tests.fixtures.platform import RunningPlatform, start_platform, stop_platform

SOURCE = "urn:tsunagu:connector:test"


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningPlatform]:
    """One platform for the module."""
    running = start_platform(tmp_path_factory.mktemp("ce-sdk"))
    yield running
    stop_platform(running)


def _send(platform: RunningPlatform, message: ce_http.HTTPMessage) -> httpx.Response:
    """POST the SDK's HTTP message as it made it, with a connector's token."""
    auth = platform.auth("connector", "test-connector", sources=(SOURCE,))
    with platform.client() as http:
        return http.post("/v1/events", content=message.body, headers={**message.headers, **auth})


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


def test_an_sdk_binary_mode_event_is_accepted_and_projected(platform: RunningPlatform) -> None:
    doc = make_event()
    message = ce_http.to_binary(sdk_event(doc), JSONFormat())
    assert message.headers["ce-specversion"] == "1.0"  # binary mode, as the SDK writes it
    r = _send(platform, message)
    assert r.status_code == 202, r.text
    assert r.json()["results"][0]["status"] == "accepted"
    assert _projected(platform, {doc["id"]}) == {doc["id"]}


def test_an_sdk_structured_mode_event_is_accepted_and_projected(
    platform: RunningPlatform,
) -> None:
    doc = make_event("health.points.awarded")
    message = ce_http.to_structured(sdk_event(doc), JSONFormat())
    assert message.headers["content-type"].startswith("application/cloudevents+json")
    r = _send(platform, message)
    assert r.status_code == 202, r.text
    assert r.json()["results"][0]["status"] == "accepted"
    assert _projected(platform, {doc["id"]}) == {doc["id"]}


def test_an_sdk_binary_mode_event_without_ce_specversion_is_refused(
    platform: RunningPlatform,
) -> None:
    message = ce_http.to_binary(sdk_event(make_event()), JSONFormat())
    headers = {k: v for k, v in message.headers.items() if k != "ce-specversion"}
    r = _send(platform, ce_http.HTTPMessage(headers, message.body))
    assert r.status_code == 400
    assert r.json()["type"] == "urn:tsunagu:problem:invalid-envelope"
    assert "ce-specversion" in r.json()["detail"]


def test_an_sdk_structured_mode_event_our_schema_refuses_is_rejected(
    platform: RunningPlatform,
) -> None:
    doc = make_event()
    doc["data"]["fare_jpy"] = -5
    r = _send(platform, ce_http.to_structured(sdk_event(doc), JSONFormat()))
    assert r.status_code == 202
    assert r.json()["results"][0]["reason"] == "schema_violation"
    assert r.json()["results"][0]["path"] == "/data/fare_jpy"


class _Recording(httpx.HTTPTransport):
    """The real transport, keeping what our connector's sink sends."""

    def __init__(self) -> None:
        super().__init__()
        self.sent: list[httpx.Request] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.sent.append(request)
        return super().handle_request(request)


def _as_the_sdk_reads(request: httpx.Request) -> list[Any]:
    """Each event of a JSON batch (CloudEvents JSON format, 4), read by the SDK as structured
    mode: the SDK has no reader for the batch format itself."""
    assert request.headers["content-type"] == "application/cloudevents-batch+json"
    return [
        ce_http.from_structured_event(
            ce_http.HTTPMessage({"content-type": "application/cloudevents+json"}, orjson.dumps(e))
        )
        for e in orjson.loads(request.content)
    ]


def test_the_sdk_reads_what_our_connectors_post(platform: RunningPlatform) -> None:
    docs = [make_event(), make_event("currency.payment.settled")]
    recording = _Recording()
    sink = HttpSink(
        platform.base_url,
        platform.token("connector", "test-connector", sources=(SOURCE,)),
        transport=recording,
    )
    rows = [
        OutboxRow(i, d["id"], d["type"].split(".")[0], d["subject"].encode(), encode(d), 0.0)
        for i, d in enumerate(docs, 1)
    ]
    try:
        result = sink.send(rows)
    finally:
        sink.close()
    assert result is not None
    assert (result.rejected, result.duplicates) == ({}, 0)  # the platform took them all
    (request,) = recording.sent
    events = _as_the_sdk_reads(request)
    assert [e.get_id() for e in events] == [d["id"] for d in docs]
    assert [e.get_type() for e in events] == [d["type"] for d in docs]
    assert [e.get_subject() for e in events] == [d["subject"] for d in docs]
    assert [e.get_data() for e in events] == [d["data"] for d in docs]
    assert all(e.get_dataschema() == d["dataschema"] for e, d in zip(events, docs, strict=True))


def test_the_sdk_as_receiver_refuses_an_event_without_source() -> None:
    """The SDK reads strictly enough that its reading ours above proves something."""
    doc = make_event()
    del doc["source"]
    with pytest.raises(CloudEventValidationError, match="source"):
        ce_http.from_structured_event(
            ce_http.HTTPMessage({"content-type": "application/cloudevents+json"}, encode(doc))
        )
