"""Fixtures of the audit tests: a real store (SQLite and PostgreSQL), keys, and a filled log."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine

from broker.audit import AuditLog, EntryKind, NewEntry
from broker.store.database import make_engine
from consent.keys import KeyRing

REPO = Path(__file__).resolve().parents[2]

#: A resident id; it must never appear in the stored log.
RESIDENT = "res-yamada-hanako-0042"


@pytest.fixture
def engine(store_url: str) -> Iterator[Engine]:
    """The store."""
    engine = make_engine(store_url)
    yield engine
    engine.dispose()


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    """The platform's data directory (keys under ``keys/``)."""
    return tmp_path / "data"


@pytest.fixture
def keys(data_dir: Path) -> KeyRing:
    """The platform's signing keys."""
    return KeyRing.in_data_dir(data_dir)


@pytest.fixture
def jwks_file(tmp_path: Path, keys: KeyRing) -> Path:
    """The platform's JWKS, as an auditor downloads it from /.well-known/jwks.json."""
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps(keys.jwks()), encoding="utf-8")
    return path


@pytest.fixture
def audit(engine: Engine, keys: KeyRing) -> Iterator[AuditLog]:
    """An audit log checkpointed every 10 entries; no flusher thread (tests flush)."""
    log = AuditLog(engine, keys, checkpoint_every=10, checkpoint_interval_s=3600, background=False)
    yield log
    log.close()


def sample_entries(n: int, *, start: int = 0) -> list[NewEntry]:
    """``n`` entries of every kind in turn, as the platform would append them."""
    made: list[NewEntry] = []
    for i in range(start, start + n):
        match i % 4:
            case 0:
                made.append(
                    NewEntry(
                        EntryKind.PUBLISH_BATCH,
                        "ingest",
                        {"topic": "transport", "events": 100 + i, "offsets": [f"0:{i}-{i + 99}"]},
                    )
                )
            case 1:
                made.append(
                    NewEntry(
                        EntryKind.PARTNER_READ,
                        "ptn-mitoyobus01",
                        {
                            "partner": "ptn-mitoyobus01",
                            "purpose": "transport.planning",
                            "categories": ["transport.trips"],
                            "pseudonym": f"psn-{i:08d}",
                            "consent_ids": [f"cns-{i:06d}"],
                        },
                        subject=RESIDENT,
                    )
                )
            case 2:
                made.append(
                    NewEntry(
                        EntryKind.DEAD_LETTER,
                        "conn-mitoyo-bus",
                        {
                            "topic": "transport.dlq",
                            "reason": "schema_violation",
                            "event_id": f"e{i}",
                        },
                    )
                )
            case _:
                made.append(
                    NewEntry(
                        EntryKind.ADMIN_CHANGE,
                        "ops",
                        {"action": "partner_registered", "target": f"ptn-{i:06d}"},
                    )
                )
    return made


def run_cli(*args: str, data_dir: Path) -> subprocess.CompletedProcess[str]:
    """``python -m broker.audit.cli ARGS`` in a subprocess, as an auditor runs it."""
    env = {**os.environ, "TSUNAGU_DATA_DIR": str(data_dir)}
    return subprocess.run(
        [sys.executable, "-m", "broker.audit.cli", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
