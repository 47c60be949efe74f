"""HTTP ingest and the remote schema registry, against a small real HTTP server.

The server speaks the platform's contract: ``GET /v1/schemas/{type}/versions/latest`` serves
``application/schema+json``; ``POST /v1/events`` takes ``application/cloudevents-batch+json``
and answers 202 with one result per event, in request order.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import orjson
import pytest

from broker.settings import REPO_SCHEMAS
from connectors.sdk import (
    Backoff,
    Connector,
    EventDraft,
    HttpSink,
    LocalSchemas,
    RemoteSchemas,
    stable_event_id,
)
from contract import cloudevents
from contract.catalogue import UnknownTypeError
from tests.connectors.test_sdk_publish import POINTS, TRIP, metric, trip_drafts, unique_source
from tests.events import example_data, registry


@dataclass
class _Platform:
    """What the fake platform was asked, and how it should answer."""

    url: str = ""
    posts: list[tuple[dict[str, str], list[dict[str, Any]]]] = field(default_factory=list)
    accepted: dict[str, dict[str, Any]] = field(default_factory=dict)
    reject_ids: set[str] = field(default_factory=set)
    unavailable: int = 0  # answer this many POSTs with 503
    max_body: int = 1 << 30  # answer 413 above this many bytes
    schema_fetches: list[str] = field(default_factory=list)


class _Handler(BaseHTTPRequestHandler):
    platform: _Platform

    def log_message(self, format: str, *args: Any) -> None:  # quiet test output
        pass

    def _answer(self, status: int, body: Any, content_type: str = "application/json") -> None:
        raw = orjson.dumps(body)
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(raw)))
        if status == 503:
            self.send_header("Retry-After", "0")
        self.end_headers()
        self.wfile.write(raw)

    def do_GET(self) -> None:
        parts = self.path.strip("/").split("/")
        if len(parts) == 5 and parts[:2] == ["v1", "schemas"] and parts[3] == "versions":
            self.platform.schema_fetches.append(f"{parts[2]}/{parts[4]}")
            if parts[2] not in registry().types():
                problem = {"status": 404, "detail": f"no schema for event type {parts[2]!r}"}
                self._answer(404, problem, "application/problem+json")
                return
            number = None if parts[4] == "latest" else int(parts[4])
            schema = dict(registry().get(parts[2], number).schema)
            self._answer(200, schema, "application/schema+json")
            return
        self._answer(404, {"detail": "not found"})

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        if self.path != "/v1/events":
            self._answer(404, {"detail": "not found"})
            return
        if len(body) > self.platform.max_body:
            self._answer(413, {"detail": "body too large"}, "application/problem+json")
            return
        docs = orjson.loads(body)
        self.platform.posts.append((dict(self.headers), docs))
        if self.platform.unavailable:
            self.platform.unavailable -= 1
            self._answer(503, {"detail": "bus unavailable"}, "application/problem+json")
            return
        results = []
        for doc in docs:
            event = cloudevents.from_dict(doc)
            if event.id in self.platform.reject_ids:
                results.append(
                    {
                        "id": event.id,
                        "status": "rejected",
                        "reason": "schema_violation",
                        "detail": "data/fare_jpy: 99999999 is greater than the maximum",
                    }
                )
            elif event.id in self.platform.accepted:
                results.append({"id": event.id, "status": "duplicate"})
            else:
                self.platform.accepted[event.id] = doc
                results.append({"id": event.id, "status": "accepted"})
        self._answer(202, {"results": results})


@pytest.fixture
def platform() -> Iterator[_Platform]:
    state = _Platform()
    handler = type("Handler", (_Handler,), {"platform": state})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield state
    server.shutdown()
    server.server_close()


def _connector(platform: _Platform, tmp_path: Path, **kwargs: Any) -> Connector:
    return Connector(
        unique_source(),
        [TRIP],
        LocalSchemas(REPO_SCHEMAS),
        tmp_path / "outbox.db",
        HttpSink(platform.url, token="s3cret"),
        backoff=Backoff(base_s=0.01, cap_s=0.05),
        **kwargs,
    )


def test_batches_are_posted_as_cloudevents_and_rejected_events_leave_the_outbox(
    platform: _Platform, tmp_path: Path
) -> None:
    drafts = trip_drafts(25)
    with _connector(platform, tmp_path, batch_size=10) as connector:
        ids = [stable_event_id(connector.source, TRIP, d.natural_key) for d in drafts]
        platform.reject_ids = {ids[4], ids[17]}
        connector.publish_all(drafts)
        report = connector.drain(timeout_s=10)
        failed = {f.event_id: f.reason for f in connector.outbox.failed()}
        source = connector.source

    assert (report.sent, report.failed, report.remaining) == (23, 2, 0)
    assert [len(docs) for _, docs in platform.posts] == [10, 10, 5]
    for headers, docs in platform.posts:
        assert headers["Content-Type"] == "application/cloudevents-batch+json"
        assert headers["Authorization"] == "Bearer s3cret"
        assert all(cloudevents.from_dict(d).source == source for d in docs)
    assert [d["id"] for _, docs in platform.posts for d in docs] == ids  # in outbox order
    assert set(platform.accepted) == set(ids) - {ids[4], ids[17]}
    assert failed == {
        ids[4]: "schema_violation: data/fare_jpy: 99999999 is greater than the maximum",
        ids[17]: "schema_violation: data/fare_jpy: 99999999 is greater than the maximum",
    }
    assert metric("tsunagu_connector_failed_total", source) == 2
    assert metric("tsunagu_connector_sent_total", source) == 23


def test_a_503_is_retried_with_backoff_until_the_platform_takes_the_batch(
    platform: _Platform, tmp_path: Path
) -> None:
    platform.unavailable = 2
    with _connector(platform, tmp_path) as connector:
        connector.publish_all(trip_drafts(5))
        report = connector.drain(timeout_s=10)
        source = connector.source
    assert (report.sent, report.retries, report.remaining) == (5, 2, 0)
    assert len(platform.posts) == 3  # the same batch, three times
    assert len(platform.accepted) == 5
    assert metric("tsunagu_connector_retries_total", source) == 2


def test_events_the_platform_already_has_count_as_sent_duplicates(
    platform: _Platform, tmp_path: Path
) -> None:
    drafts = trip_drafts(4)
    with _connector(platform, tmp_path) as first:
        first.publish_all(drafts)
        first.drain()
    # A re-installed connector (a new outbox) sends the same export again: same ids.
    again = Connector(
        first.source,
        [TRIP],
        LocalSchemas(REPO_SCHEMAS),
        tmp_path / "new.db",
        HttpSink(platform.url),
    )
    with again:
        again.publish_all(drafts)
        report = again.drain()
    assert (report.sent, report.duplicates, report.failed) == (4, 4, 0)
    assert len(platform.accepted) == 4


def test_a_body_over_the_platform_limit_is_split(platform: _Platform, tmp_path: Path) -> None:
    with _connector(platform, tmp_path, batch_size=20) as connector:
        connector.publish_all(trip_drafts(20))
        one_event = len(connector.outbox.peek(1)[0].value)
        platform.max_body = one_event * 6
        report = connector.drain(timeout_s=10)
    assert (report.sent, report.remaining) == (20, 0)
    assert len(platform.accepted) == 20
    assert max(len(docs) for _, docs in platform.posts) <= 5


def test_remote_schemas_are_fetched_once_per_type_and_validate_like_the_platform(
    platform: _Platform, tmp_path: Path
) -> None:
    schemas = RemoteSchemas(platform.url)
    with Connector(
        unique_source(),
        [TRIP, POINTS],
        schemas,
        tmp_path / "outbox.db",
        HttpSink(platform.url),
    ) as connector:
        assert connector.versions[TRIP].urn == "urn:tsunagu:schema:transport.trip.completed:v1"
        points = example_data(POINTS)
        bad = example_data(TRIP)
        bad["fare_jpy"] = -10
        time = trip_drafts(1)[0].time
        report = connector.publish_all(
            [
                *trip_drafts(5),
                EventDraft(POINTS, points["resident_id"], points, "award-1", time, 8),
                EventDraft(TRIP, "res-a1b2c3d4", bad, "trip-bad", time, 9),
            ]
        )
        assert report.accepted == 6
        assert report.summary().endswith("line 9: data/fare_jpy: -10 is less than the minimum of 0")
        assert connector.drain(timeout_s=10).sent == 6
    # Each version once: the latest, then the latest naming residents by resident_id.
    assert sorted(platform.schema_fetches) == [
        f"{POINTS}/2",
        f"{POINTS}/latest",
        f"{TRIP}/1",
        f"{TRIP}/latest",
    ]
    with pytest.raises(UnknownTypeError, match=r"transport\.teleport\.completed"):
        schemas.version("transport.teleport.completed")
    schemas.close()
