"""The connector SDK installs on its own: its distribution (``sdk/pyproject.toml``) goes into
a fresh virtual environment without the broker, FastAPI, SQLModel or pydantic-settings, and
from there a firm's program publishes through HTTP ingest to a running platform."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import venv
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from tests.events import example_data
from tests.fixtures.platform import RunningPlatform, start_platform, stop_platform

REPO = Path(__file__).parents[2]
SOURCE = "urn:tsunagu:connector:sdk-alone"
#: A firm's program, run by the fresh environment's Python: what it can import, then one trip
#: published through the SDK to the platform's HTTP ingest.
FIRM = """
import importlib.util, json, sys
from datetime import datetime, timezone
from connectors.sdk import Connector, EventDraft, HttpSink, RemoteSchemas

base_url, token, outbox, source = sys.argv[1:5]
data = json.loads(sys.argv[5])
absent = ["broker", "consent", "fastapi", "sqlmodel", "sqlalchemy", "pydantic_settings"]
found = {name: importlib.util.find_spec(name) is not None for name in absent}
sink, schemas = HttpSink(base_url, token), RemoteSchemas(base_url, token=token)
with Connector(source, ["transport.trip.completed"], schemas, outbox, sink) as connector:
    event_id = connector.publish(
        EventDraft(
            event_type="transport.trip.completed",
            subject=data["resident_id"],
            data=data,
            natural_key=data["trip_id"],
            time=datetime(2025, 6, 12, 9, 58, 2, tzinfo=timezone.utc),
        )
    )
    report = connector.drain(timeout_s=60, give_up_on_credentials=True)
print(json.dumps({"found": found, "event_id": event_id, "sent": report.sent,
                  "failed": report.failed, "remaining": report.remaining}))
"""


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningPlatform]:
    """A running `tsunagu up`."""
    running = start_platform(tmp_path_factory.mktemp("sdk-alone"))
    yield running
    stop_platform(running)


@pytest.fixture(scope="module")
def sdk_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The Python of a fresh environment holding the SDK's wheel and its dependencies only."""
    where = tmp_path_factory.mktemp("sdk-venv")
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run(
        [*pip, "wheel", str(REPO / "sdk"), "--no-deps", "-w", str(where / "dist")],
        check=True,
        timeout=300,
    )
    (wheel,) = (where / "dist").glob("tsunagu_connector_sdk-*.whl")
    venv.create(where / "venv", with_pip=True)
    python = where / "venv" / "bin" / "python"
    subprocess.run(
        [str(python), "-m", "pip", "--disable-pip-version-check", "-q", "install", str(wheel)],
        check=True,
        timeout=300,
        cwd=where,
    )
    return python


def _stored(platform: RunningPlatform, event_id: str, timeout_s: float = 20) -> bool:
    engine = create_engine(f"sqlite:///{platform.data_dir / 'store.db'}")
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            with engine.connect() as conn:
                query = text("SELECT 1 FROM ingested_events WHERE id = :id")
                if conn.execute(query, {"id": event_id}).first() is not None:
                    return True
            time.sleep(0.1)
        return False
    finally:
        engine.dispose()


def test_the_sdk_installed_alone_publishes_through_http_ingest(
    platform: RunningPlatform, sdk_python: Path, tmp_path: Path
) -> None:
    token = platform.token("connector", "sdk-firm", sources=(SOURCE,))
    data = example_data("transport.trip.completed")
    program = tmp_path / "firm.py"
    program.write_text(FIRM)
    result = subprocess.run(
        [
            str(sdk_python),
            str(program),
            platform.base_url,
            token,
            str(tmp_path / "outbox.db"),
            SOURCE,
            json.dumps(data),
        ],
        capture_output=True,
        text=True,
        timeout=180,
        cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
        check=False,
    )
    assert result.returncode == 0, result.stderr
    outcome = json.loads(result.stdout.strip().splitlines()[-1])
    assert outcome["found"] == dict.fromkeys(outcome["found"], False)
    assert (outcome["sent"], outcome["failed"], outcome["remaining"]) == (1, 0, 0)
    assert _stored(platform, outcome["event_id"])


def test_the_sdk_environment_cannot_import_the_broker(sdk_python: Path, tmp_path: Path) -> None:
    for module in ("broker", "fastapi"):
        result = subprocess.run(
            [str(sdk_python), "-c", f"import {module}"],
            capture_output=True,
            text=True,
            cwd=tmp_path,
            check=False,
        )
        assert result.returncode != 0
        assert f"No module named '{module}'" in result.stderr
    ok = subprocess.run(
        [str(sdk_python), "-c", "import connectors.sdk, contract.cloudevents"],
        cwd=tmp_path,
        check=False,
    )
    assert ok.returncode == 0
