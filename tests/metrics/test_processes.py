"""Every process serves /metrics with the series operators alert on: `tsunagu up` (the API),
`tsunagu worker` on the same store and bus, and `tsunagu connector run --metrics-port`."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from broker.bus import open_bus
from broker.ingest.pipeline import DEFAULT_GROUP
from connectors.services import SERVICES
from contract.domains import DOMAINS
from ops.kafka.broker import free_port
from tests.api.test_partner_views import PLANNING, _activity, _grant, _id, _pseudonyms, _trip
from tests.fixtures.platform import RunningPlatform, register_partner, start_platform, stop_platform
from tests.metrics.scrape import Scrape, scrape, scrape_until

ACTIVITY = "/v1/partner/residents/{resident}/activity"
TRIP = "transport.trip.completed"
SAMPLES = Path(__file__).resolve().parents[2] / "connectors" / "samples"
PARTITIONS = {(t, str(p)) for t in DOMAINS.topics() for p in range(4)}  # TSUNAGU_TOPIC_PARTITIONS


@dataclass
class Started:
    """The running platform, and the wall-clock time just before it started."""

    platform: RunningPlatform
    at: float

    @property
    def metrics(self) -> str:
        """The API's /metrics."""
        return f"{self.platform.base_url}/metrics"


@pytest.fixture(scope="module")
def started(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Started]:
    """`tsunagu up` (API and ingest worker), once for the module."""
    at = time.time()
    running = start_platform(tmp_path_factory.mktemp("metrics-platform"))
    yield Started(running, at)
    stop_platform(running)


def _spawn(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "broker.cli", *args],
            env={**os.environ, **env},
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@pytest.fixture(scope="module")
def worker_metrics(started: Started) -> Iterator[str]:
    """`tsunagu worker` on the platform's store and bus; the URL of its /metrics."""
    port = free_port()
    data_dir = started.platform.data_dir
    # The lag is read every second here (30 s by default: an admin request to Kafka each).
    env = {
        "TSUNAGU_DATA_DIR": str(data_dir),
        "TSUNAGU_METRICS_PORT": str(port),
        "TSUNAGU_BUS_PROBE_INTERVAL_S": "1",
    }
    process = _spawn(["worker"], env, data_dir / "worker.log")
    try:
        yield f"http://127.0.0.1:{port}/metrics"
    finally:
        _stop(process)


def _lag(s: Scrape) -> dict[tuple[str, str], float]:
    return {
        (labels["topic"], labels["partition"]): value
        for labels, value in s.series("tsunagu_consumer_lag", group=DEFAULT_GROUP)
    }


def test_the_api_process_reports_requests_decisions_audit_and_ingest(started: Started) -> None:
    platform = started.platform
    resident = _id("res")
    with platform.client() as http:
        partner = register_partner(platform, http, PLANNING)
        _grant(platform, http, resident, partner, PLANNING, ["transport.trips"])
        platform.ingest([_trip(resident, 6)])  # over HTTP with a connector token
        (pseudonym,) = _pseudonyms(platform, http, partner)
        # Trips are read; health points and payments, not in the consent and not named, are
        # withheld (not refused).
        assert _activity(platform, http, partner, pseudonym).status_code == 200
        assert http.get("/no/such/page").status_code == 404

    s = scrape_until(
        started.metrics,
        lambda s: (
            (s.value("tsunagu_audit_entries_total", kind="decision") or 0) >= 3
            and s.value("tsunagu_audit_chain_ok") is not None
        ),
        "the read's decisions in the audit log, and a verification",
    )
    requests = "tsunagu_http_requests_total"
    assert (s.value(requests, route=ACTIVITY, method="GET", status="200") or 0) >= 1
    assert (s.value(requests, route="/v1/events", method="POST", status="202") or 0) >= 1
    assert (s.value(requests, route="other", method="GET", status="404") or 0) >= 1
    timed = s.value("tsunagu_http_request_seconds_count", route=ACTIVITY, method="GET")
    assert (timed or 0) >= 1
    assert pseudonym not in s.text  # the template is the label, never the concrete path

    decisions = "tsunagu_consent_decisions_total"
    assert (s.value(decisions, result="allow", reason="allowed") or 0) >= 1
    assert (s.value(decisions, result="withhold", reason="category_not_covered") or 0) >= 2
    assert (s.value(decisions, result="deny", reason="category_not_covered") or 0) == 0

    def result_of(reason: str) -> set[str]:
        if reason in ("allowed", "not_personal"):
            return {"allow"}
        return {"deny", "withhold"} if reason == "category_not_covered" else {"deny"}

    assert all(labels["result"] in result_of(labels["reason"]) for labels, _ in s.series(decisions))

    for kind in ("decision", "partner_read", "publish_batch", "consent_change", "admin_change"):
        assert (s.value("tsunagu_audit_entries_total", kind=kind) or 0) >= 1, kind
    age = s.value("tsunagu_audit_checkpoint_age_seconds")
    assert age is not None and 0 <= age <= time.time() - started.at
    assert s.value("tsunagu_audit_unsigned_entries") is not None
    assert s.value("tsunagu_audit_chain_ok") == 1
    verified = s.value("tsunagu_audit_last_verified_timestamp_seconds")
    assert verified is not None and started.at <= verified <= time.time()

    projected = s.value("tsunagu_ingest_events_total", topic="transport", type=TRIP)
    assert (projected or 0) >= 1
    assert set(_lag(s)) == PARTITIONS  # `up` runs an ingest worker too


def test_the_worker_reports_lag_per_partition_back_to_zero_after_a_publish(
    started: Started, worker_metrics: str
) -> None:
    scrape_until(worker_metrics, lambda s: set(_lag(s)) == PARTITIONS, "lag per partition")

    resident = _id("res")
    started.platform.ingest([_trip(resident, d) for d in (3, 4, 5)])
    bus = open_bus(f"sqlite:///{started.platform.data_dir / 'bus.db'}")
    try:
        published = sum(bus.end_offsets("transport").values())
    finally:
        bus.close()
    assert published >= 3
    # Projected and committed by one of the group's two members; both report the whole group.
    s = scrape_until(worker_metrics, lambda s: not any(_lag(s).values()), "lag back to zero")
    assert set(_lag(s)) == PARTITIONS


def test_the_worker_reports_the_audit_chain_and_its_checkpoint(
    started: Started, worker_metrics: str
) -> None:
    s = scrape_until(
        worker_metrics,
        lambda s: s.value("tsunagu_audit_chain_ok") is not None,
        "the worker's first verification",
    )
    assert s.value("tsunagu_audit_chain_ok") == 1
    age = s.value("tsunagu_audit_checkpoint_age_seconds")
    assert age is not None and 0 <= age <= time.time() - started.at


@dataclass
class Backlogged:
    """A `tsunagu connector run` stuck on an unreachable bus, and where it keeps its outbox."""

    metrics: str
    outbox: Path
    source: str


@pytest.fixture(scope="module")
def backlogged(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Backlogged]:
    """A connector run whose bus nobody listens on: it queues every row and keeps retrying,
    so its backlog stays in the outbox while we look."""
    data_dir = tmp_path_factory.mktemp("connector")
    port = free_port()
    env = {"TSUNAGU_DATA_DIR": str(data_dir), "TSUNAGU_BUS": f"kafka://127.0.0.1:{free_port()}"}
    transactions = SAMPLES / "currency" / "transactions.csv"
    args = ["connector", "run", "currency", "--transactions", str(transactions)]
    process = _spawn([*args, "--metrics-port", str(port)], env, data_dir / "connector.log")
    try:
        yield Backlogged(
            f"http://127.0.0.1:{port}/metrics",
            data_dir / "outbox" / "currency.db",
            SERVICES["currency"].source,
        )
    finally:
        _stop(process)


def test_a_connector_run_reports_its_outbox_depth(backlogged: Backlogged) -> None:
    source = backlogged.source
    s = scrape_until(
        backlogged.metrics,
        lambda s: (s.value("tsunagu_connector_outbox_depth", connector=source) or 0) > 0,
        "the outbox's depth",
    )
    with sqlite3.connect(backlogged.outbox) as db:
        (queued,) = db.execute("SELECT count(*) FROM events").fetchone()
    assert queued > 0
    assert s.value("tsunagu_connector_outbox_depth", connector=source) == queued
    assert s.value("tsunagu_connector_sent_total", connector=source) == 0


def test_the_processes_together_export_the_operations_contract(
    started: Started, worker_metrics: str, backlogged: Backlogged
) -> None:
    # What the alert rules and dashboards are written against (ops/metrics_contract.py).
    from ops.metrics_contract import CONTRACT, Kind

    families: dict[str, tuple[str, set[str]]] = {}
    for url in (started.metrics, worker_metrics, backlogged.metrics):
        for family in scrape(url).families:
            kind, labels = families.setdefault(family.name, (family.type, set()))
            assert kind == family.type, family.name
            labels.update(k for sample in family.samples for k in sample.labels)
    for metric in CONTRACT:
        name = metric.name.removesuffix("_total") if metric.kind is Kind.COUNTER else metric.name
        assert name in families, f"{metric.name} is in no process's /metrics"
        kind, labels = families[name]
        assert kind == metric.kind.value, metric.name
        # Counters also carry _created samples; histograms their le.
        assert labels - {"le"} <= set(metric.labels), (metric.name, labels)
