"""/metrics of an API served by several processes (`TSUNAGU_API_PROCESSES=2`): whichever
process answers, every counter adds up all of them, never goes backwards between scrapes, and
counts what clients did in this run only (the metrics directory is emptied at start)."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.fixtures.platform import RunningPlatform, start_platform, stop_platform
from tests.metrics.scrape import Scrape, scrape, scrape_until

CLIENTS = 6
REQUESTS_PER_CLIENT = 40
HEALTHZ = {"route": "/healthz", "method": "GET", "status": "200"}
STALE = 1000
#: Samples that only grow: counters, and a histogram's buckets, count and sum.
GROWING = ("counter", "histogram")


def _leave_stale_counts(metrics_dir: Path) -> None:
    """What an earlier run's API processes would have left: /healthz counted STALE times."""
    metrics_dir.mkdir(parents=True)
    code = (
        "from prometheus_client import Counter\n"
        "Counter('tsunagu_http_requests', 'x', ['route', 'method', 'status'])"
        f".labels('/healthz', 'GET', '200').inc({STALE})\n"
    )
    subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)},
        check=True,
    )
    assert list(metrics_dir.glob("counter_*.db"))


@pytest.fixture(scope="module")
def two_processes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningPlatform]:
    """`tsunagu up` with the API in two processes, over a data dir an earlier run left."""
    data_dir = tmp_path_factory.mktemp("metrics-procs")
    _leave_stale_counts(data_dir / "metrics")
    running = start_platform(data_dir, {"TSUNAGU_API_PROCESSES": "2"})
    yield running
    stop_platform(running)


def _growing(result: Scrape) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample that may only grow, by name and labels."""
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in result.families
        if family.type in GROWING
        for s in family.samples
        if not s.name.endswith("_created")
    }


def _load(base_url: str) -> None:
    """REQUESTS_PER_CLIENT GETs of /healthz, each on a fresh connection (either process)."""
    for _ in range(REQUESTS_PER_CLIENT):
        with httpx.Client(base_url=base_url, timeout=10) as http:
            http.get("/healthz").raise_for_status()


def test_counters_add_up_every_api_process_and_never_go_backwards(
    two_processes: RunningPlatform,
) -> None:
    url = f"{two_processes.base_url}/metrics"
    clients = [
        threading.Thread(target=_load, args=(two_processes.base_url,)) for _ in range(CLIENTS)
    ]
    for client in clients:
        client.start()
    scrapes = []
    while any(client.is_alive() for client in clients):
        scrapes.append(_growing(scrape(url)))
    for client in clients:
        client.join()
    expected = CLIENTS * REQUESTS_PER_CLIENT
    # A request is counted just after its answer is sent: the last few may trail by a moment.
    final = scrape_until(
        url,
        lambda s: (s.value("tsunagu_http_requests_total", **HEALTHZ) or 0) >= expected,
        "every /healthz request counted",
    )
    scrapes.append(_growing(final))
    assert len(scrapes) > 2
    for before, after in itertools.pairwise(scrapes):
        went_back = {k: (v, after.get(k)) for k, v in before.items() if after.get(k, -1) < v}
        assert not went_back
    # Exactly what the clients caused: both processes' counts, and nothing of the earlier run.
    assert final.value("tsunagu_http_requests_total", **HEALTHZ) == expected
    # Scrapes answered by both processes (each scrape counts itself in the one answering it).
    scrapes_counted = final.value(
        "tsunagu_http_requests_total", route="/metrics", method="GET", status="200"
    )
    assert scrapes_counted is not None and scrapes_counted >= len(scrapes) - 1


def test_every_api_process_reports_consent_decisions_from_the_start(
    two_processes: RunningPlatform,
) -> None:
    result = scrape(f"{two_processes.base_url}/metrics")
    decisions = result.series("tsunagu_consent_decisions_total")
    assert {labels["result"] for labels, _ in decisions} == {"allow", "deny", "withhold"}
