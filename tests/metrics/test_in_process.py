"""Metrics kept in process: consent decisions (counted off the hot path's lock) and the
connector's outbox depth (set on every change of the outbox)."""

from __future__ import annotations

import socket
import threading
import uuid
from collections.abc import Sequence
from pathlib import Path

import pytest
from prometheus_client import REGISTRY
from sqlalchemy import create_engine

from broker.api.metrics import serve_metrics
from connectors.sdk import BusSink, Connector, OutboxRow, SendResult, Sink
from connectors.sdk.rows import stable_event_id
from consent.decisions import DecisionPoint
from contract.bus import Bus
from tests.connectors.test_sdk_publish import SCHEMAS, TRIP, trip_drafts

DECISIONS = "tsunagu_consent_decisions_total"


def _decisions(result: str, reason: str) -> float:
    return REGISTRY.get_sample_value(DECISIONS, {"result": result, "reason": reason}) or 0.0


def test_decisions_from_many_threads_are_each_counted_once_by_result_and_reason() -> None:
    # Refused before the store is read: an unknown purpose, an unknown category.
    point = DecisionPoint(create_engine("sqlite://"))
    before = _decisions("deny", "purpose_unknown"), _decisions("deny", "category_unknown")

    def decide(n: int) -> None:
        for _ in range(n):
            point.decide("ptn-x", "no.such.purpose", "transport.trips", "res-x")
            point.decide("ptn-x", "transport.planning", "no.such.category", "res-x")

    threads = [threading.Thread(target=decide, args=(20_000,)) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    after = _decisions("deny", "purpose_unknown"), _decisions("deny", "category_unknown")
    assert (after[0] - before[0], after[1] - before[1]) == (80_000, 80_000)
    # Every reason is exposed (zeros too), allowed ones as allow, the others as deny.
    assert (
        REGISTRY.get_sample_value(DECISIONS, {"result": "allow", "reason": "allowed"}) is not None
    )
    assert REGISTRY.get_sample_value(DECISIONS, {"result": "deny", "reason": "allowed"}) is None
    assert (
        REGISTRY.get_sample_value(DECISIONS, {"result": "allow", "reason": "not_personal"})
        is not None
    )


class _Refusing:
    """Delivers to the bus, except one event the platform refuses for good."""

    def __init__(self, inner: Sink, refuse: str) -> None:
        self.inner = inner
        self.refuse = refuse

    def send(self, records: Sequence[OutboxRow]) -> SendResult | None:
        refused = {r.seq: "schema_violation: refused" for r in records if r.event_id == self.refuse}
        self.inner.send([r for r in records if r.seq not in refused])
        return SendResult(refused)

    def close(self) -> None:
        self.inner.close()


def test_the_outbox_depth_gauge_follows_every_change_of_the_outbox(
    tmp_path: Path, sqlite_bus: Bus
) -> None:
    source = f"urn:tsunagu:connector:metrics-{uuid.uuid4().hex[:8]}"

    def depth() -> float | None:
        return REGISTRY.get_sample_value("tsunagu_connector_outbox_depth", {"connector": source})

    drafts = trip_drafts(6)
    refuse = stable_event_id(source, TRIP, drafts[2].natural_key)
    sink = _Refusing(BusSink(sqlite_bus), refuse)
    with Connector(source, [TRIP], SCHEMAS, tmp_path / "o.db", sink) as connector:
        assert depth() == 0
        connector.publish(drafts[0])
        assert depth() == 1
        connector.publish_all(drafts[1:])
        assert depth() == 6
        connector.drain()  # five delivered, one refused for good: both leave the queue
        assert depth() == 0
        connector.publish(drafts[2])  # a refused event published again is queued again
        assert depth() == 1
    # Reopened, the outbox reports what is still queued in its file.
    with Connector(source, [TRIP], SCHEMAS, tmp_path / "o.db", sink):
        assert depth() == 1


def test_a_taken_metrics_port_is_reported_and_the_process_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert serve_metrics("127.0.0.1", port, "ingest worker") is False
    assert f"ingest worker: no /metrics: port 127.0.0.1:{port} is not free" in caplog.text
    assert serve_metrics("127.0.0.1", 0, "connector currency") is False  # 0: off
