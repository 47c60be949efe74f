"""Readiness tells of a stalled ingest worker in every API process of `tsunagu up`."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator

import httpx
import pytest

from broker.bus import open_bus
from contract.bus import OutRecord
from tests.events import connector_signer, encode, make_event
from tests.fixtures.platform import RunningPlatform, start_platform, stop_platform

#: Fresh connections per look: SO_REUSEPORT spreads them over both API processes, so all of
#: them agreeing means both processes do (one process alone would answer all 20 with
#: probability 2**-19).
LOOKS = 20


@pytest.fixture(scope="module")
def two_processes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningPlatform]:
    """`tsunagu up` with two API processes, calling a worker stalled after 2 s."""
    running = start_platform(
        tmp_path_factory.mktemp("ready"),
        {"TSUNAGU_API_PROCESSES": "2", "TSUNAGU_INGEST_STALL_S": "2"},
    )
    yield running
    stop_platform(running)


def _ingest_checks(platform: RunningPlatform) -> list[tuple[int, str]]:
    answers = []
    for _ in range(LOOKS):
        # A new client each time: a new connection, which may land on either process.
        r = httpx.get(f"{platform.base_url}/readyz", timeout=10)
        answers.append((r.status_code, r.json()["checks"].get("ingest", "absent")))
    return answers


def _wait_for(platform: RunningPlatform, wanted: str) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        r = httpx.get(f"{platform.base_url}/readyz", timeout=10)
        if wanted in r.json()["checks"].get("ingest", ""):
            return
        time.sleep(0.2)
    pytest.fail(f"no process said {wanted!r} in 60 s")


def test_a_stalled_worker_makes_every_api_process_unready_until_it_moves_again(
    two_processes: RunningPlatform,
) -> None:
    assert all(answer == (200, "ok") for answer in _ingest_checks(two_processes))
    # The store held by someone else: the worker's next batch cannot be written.
    lock = sqlite3.connect(two_processes.data_dir / "store.db", isolation_level=None)
    lock.execute("BEGIN IMMEDIATE")
    try:
        bus = open_bus(f"sqlite:///{two_processes.data_dir / 'bus.db'}")
        signer = connector_signer(two_processes.data_dir)
        bus.publish("transport", [signer.sign(OutRecord(b"k", encode(make_event())))])
        bus.close()
        _wait_for(two_processes, "stalled")
        answers = _ingest_checks(two_processes)
        assert all(status == 503 and "stalled" in check for status, check in answers), answers
    finally:
        lock.execute("ROLLBACK")
        lock.close()
    _wait_for(two_processes, "ok")
    assert all(answer == (200, "ok") for answer in _ingest_checks(two_processes))
