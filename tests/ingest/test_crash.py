"""A worker killed with SIGKILL mid-batch and restarted projects every event exactly once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, text

from broker.bus import open_bus
from broker.runtime import topic_specs
from broker.settings import Settings
from broker.store.database import make_engine
from consent.vault import SubjectVault
from contract.bus import OutRecord
from tests.events import connector_signer, encode, make_event

EVENTS = 12_000


def _count(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(text("SELECT count(*) FROM ingested_events")).scalar_one())


def _start_worker(env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "broker.cli", "worker"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def _wait_for(engine: Engine, at_least: int, proc: subprocess.Popen[bytes], limit_s: float) -> int:
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        n = _count(engine)
        if n >= at_least:
            return n
        if proc.poll() is not None:
            err = proc.stderr.read().decode() if proc.stderr else ""
            pytest.fail(f"worker exited with {proc.returncode}: {err[-2000:]}")
        time.sleep(0.02)
    pytest.fail(f"only {_count(engine)} of {at_least} events projected in {limit_s} s")


@pytest.mark.parametrize("backend", ["sqlite", "kafka"])
def test_worker_killed_mid_batch_projects_every_event_exactly_once(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    prefix = f"crash{uuid.uuid4().hex[:6]}."
    if backend == "kafka":
        bus_url: str = request.getfixturevalue("kafka_broker").url
    else:
        bus_url = f"sqlite:///{tmp_path / 'bus.db'}"
    store_url = f"sqlite:///{tmp_path / 'store.db'}"
    env = {
        **os.environ,
        "TSUNAGU_BUS": bus_url,
        "TSUNAGU_DATABASE_URL": store_url,
        "TSUNAGU_DATA_DIR": str(tmp_path),
        "TSUNAGU_TOPIC_PREFIX": prefix,
        "TSUNAGU_INGEST_BATCH_SIZE": "500",
    }
    settings = Settings(bus=bus_url, database_url=store_url, topic_prefix=prefix)
    bus = open_bus(bus_url)
    bus.create_topics(topic_specs(settings))
    docs: list[dict[str, Any]] = []
    for i in range(EVENTS):
        doc = make_event(event_id=f"trip-{i:06d}")
        doc["data"]["fare_jpy"] = i % 1500
        doc["data"]["resident_id"] = doc["subject"] = f"res-{i % 97:04d}"
        docs.append(doc)
    signer = connector_signer(tmp_path)
    for start in range(0, EVENTS, 1000):
        chunk = docs[start : start + 1000]
        bus.publish(
            prefix + "transport",
            [signer.sign(OutRecord(d["subject"].encode(), encode(d))) for d in chunk],
        )
    engine = make_engine(store_url)

    # Kill it twice while batches are being projected, then let a third run finish.
    for fraction in (0.2, 0.55):
        proc = _start_worker(env)
        _wait_for(engine, int(EVENTS * fraction), proc, 120)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert _count(engine) < EVENTS, "the worker finished before it could be killed"
    proc = _start_worker(env)
    try:
        _wait_for(engine, EVENTS, proc, 180)
        time.sleep(1.0)  # anything doubled would show up now
    finally:
        proc.terminate()
        proc.wait(30)

    with engine.connect() as conn:
        rows = conn.execute(
            text("SELECT event_id, fare_jpy, subject_ref FROM transport_trips")
        ).all()
    assert _count(engine) == EVENTS
    assert len(rows) == EVENTS
    # Each row names its resident by the blind reference the workers' shared vault gives.
    vault = SubjectVault.open_url(Settings(data_dir=tmp_path).vault_store_url)
    refs = {r: vault.ref(r) for r in {d["data"]["resident_id"] for d in docs}}
    vault.close()
    expected = {(d["id"], d["data"]["fare_jpy"], refs[d["data"]["resident_id"]]) for d in docs}
    assert {tuple(r) for r in rows} == expected
    engine.dispose()
    bus.close()
