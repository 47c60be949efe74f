"""The ingest worker's heartbeat: running, stalled or stopped, as any process reads it."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from sqlalchemy import Engine

from broker.ingest.heartbeat import Heartbeat
from broker.ingest.pipeline import IngestWorker
from consent.vault import SubjectVault
from contract.bus import Bus
from tests.events import registry
from tests.ingest.conftest import TOPICS


def test_a_worker_that_stops_says_so_and_one_that_goes_silent_is_stalled(
    tmp_path: Path, bus: Bus, engine: Engine, vault: SubjectVault
) -> None:
    now = [1_000.0]
    written = Heartbeat(tmp_path / "beat.json", stall_s=5, clock=lambda: now[0])
    reader = Heartbeat(tmp_path / "beat.json", stall_s=5, clock=lambda: now[0])
    assert "not started" in reader.judge()
    worker = IngestWorker(
        bus, engine, registry(), vault, group="hb", topics=TOPICS, heartbeat=written
    )
    stop = threading.Event()
    thread = threading.Thread(target=worker.run, args=(stop, 0.05))
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while reader.judge() != "ok" and time.monotonic() < deadline:
            time.sleep(0.02)  # until the worker's first turn
        assert reader.judge() == "ok"
        now[0] += 6  # nothing written for longer than stall_s: the worker seems stuck
        assert "stalled" in reader.judge()
    finally:
        stop.set()
        thread.join(10)
    assert "stopped" in reader.judge()
