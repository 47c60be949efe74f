"""The process that ingests verifies the audit chain every TSUNAGU_AUDIT_VERIFY_INTERVAL_S and
says so in /metrics: an entry edited in the store turns tsunagu_audit_chain_ok to 0."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from sqlalchemy import text

from broker.audit import AuditLog, EntryKind
from broker.settings import Settings
from broker.store.database import make_engine
from consent.keys import KeyRing
from ops.kafka.broker import free_port
from tests.metrics.scrape import scrape_until


def _write_entries(data_dir: Path) -> None:
    """A few signed entries in the store, with the platform's keys of ``data_dir``."""
    engine = make_engine(Settings(data_dir=data_dir).store_url)
    try:
        with AuditLog(engine, KeyRing.in_data_dir(data_dir), background=False) as audit:
            for n in range(5):
                audit.append_now(
                    EntryKind.ADMIN_CHANGE, actor="ops", action="test", target=f"t-{n}"
                )
            audit.checkpoint()
    finally:
        engine.dispose()


def _tamper(data_dir: Path) -> None:
    engine = make_engine(Settings(data_dir=data_dir).store_url)
    try:
        with engine.begin() as conn:
            edited = conn.execute(
                text("UPDATE audit_entries SET actor = 'someone else' WHERE seq = 2")
            ).rowcount
        assert edited == 1
    finally:
        engine.dispose()


def test_the_chain_gauge_drops_to_zero_when_an_entry_is_edited(tmp_path: Path) -> None:
    _write_entries(tmp_path)
    port = free_port()
    env = {
        **os.environ,
        "TSUNAGU_DATA_DIR": str(tmp_path),
        "TSUNAGU_METRICS_PORT": str(port),
        "TSUNAGU_AUDIT_VERIFY_INTERVAL_S": "0.5",
    }
    with (tmp_path / "worker.log").open("wb") as log:
        worker = subprocess.Popen(
            [sys.executable, "-m", "broker.cli", "worker"], env=env, stdout=log, stderr=log
        )
    url = f"http://127.0.0.1:{port}/metrics"
    try:
        intact = scrape_until(
            url, lambda s: s.value("tsunagu_audit_chain_ok") == 1, "a passing verification"
        )
        _tamper(tmp_path)
        broken = scrape_until(
            url, lambda s: s.value("tsunagu_audit_chain_ok") == 0, "a failing verification"
        )
    finally:
        worker.terminate()
        worker.wait(30)
    before = intact.value("tsunagu_audit_last_verified_timestamp_seconds")
    after = broken.value("tsunagu_audit_last_verified_timestamp_seconds")
    assert before is not None and after is not None and after > before
    assert "audit chain verification failed" in (tmp_path / "worker.log").read_text()
