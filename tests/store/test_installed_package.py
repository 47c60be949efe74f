"""The schemas, catalogues and migrations ship inside the package: the wheel of this checkout,
installed outside it, runs `tsunagu up --demo` from another directory (ingesting, serving the
schemas and catalogues) without the checkout."""

from __future__ import annotations

import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from ops.kafka.broker import free_port

REPO = Path(__file__).resolve().parents[2]
#: What the distribution is built from (copied, so that the build leaves nothing in the checkout).
SOURCES = ("pyproject.toml", "README.md", "broker", "connectors", "consent", "schemas")
TSUNAGU = "import sys; from broker.cli import app; sys.argv[0] = 'tsunagu'; app()"


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """This checkout built as a wheel and installed (without dependencies) into a directory."""
    source = tmp_path_factory.mktemp("source")
    for name in SOURCES:
        if (REPO / name).is_dir():
            ignore = shutil.ignore_patterns("__pycache__", "*.egg-info")
            shutil.copytree(REPO / name, source / name, ignore=ignore)
        else:
            shutil.copy2(REPO / name, source / name)
    wheels = tmp_path_factory.mktemp("wheels")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(wheels), str(source)],
        check=True,
        timeout=300,
    )
    target = tmp_path_factory.mktemp("site")
    (wheel,) = wheels.glob("tsunagu-*.whl")
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target), wheel],
        check=True,
        timeout=300,
    )
    return target


def test_the_installed_package_runs_the_demo_from_another_directory(
    installed: Path, tmp_path: Path
) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    # The installed copy first; the venv's site-packages still give the dependencies.
    env = {**os.environ, "PYTHONPATH": str(installed), "TSUNAGU_DATA_DIR": str(elsewhere / "var"),
           "TSUNAGU_PORT": str(free_port()), "TSUNAGU_METRICS_PORT": "0"}  # fmt: skip
    found = subprocess.run(
        [sys.executable, "-c", "import broker, schemas; print(broker.__file__, schemas.__file__)"],
        env=env, cwd=elsewhere, capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert all(Path(p).is_relative_to(installed) for p in found.stdout.split()), found.stdout

    base = f"http://127.0.0.1:{env['TSUNAGU_PORT']}"
    log = (elsewhere / "up.log").open("wb")
    up = subprocess.Popen(
        [sys.executable, "-c", TSUNAGU, "up", "--demo", "--demo-speed", "1800",
         "--population", "100"],
        env=env, cwd=elsewhere, stdout=log, stderr=log,
    )  # fmt: skip
    try:
        schemas = _get(up, f"{base}/v1/schemas", elsewhere)
        purposes = _get(up, f"{base}/v1/catalogue/purposes", elsewhere)
        ingested = _wait_for_events(up, elsewhere / "var" / "store.db", elsewhere)
    finally:
        up.send_signal(signal.SIGINT)
        up.wait(60)
        log.close()
    types = {t["type"] for t in schemas.json()}
    assert {"transport.trip.completed", "vacant_house.listing.registered"} <= types
    assert "transport.planning" in {p["code"] for p in purposes.json()}
    assert ingested > 0
    # Nothing of the checkout is used; the venv beside it lends the dependencies (and the
    # console script the summary names), as this test arranges.
    named = re.findall(re.escape(str(REPO)) + r"[^\s'\"]*", (elsewhere / "up.log").read_text())
    assert [n for n in named if not n.startswith(str(REPO / ".venv"))] == []


def _get(up: subprocess.Popen[bytes], url: str, where: Path) -> httpx.Response:
    """``url``'s answer once the platform serves it (or the platform's log if it stopped)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert up.poll() is None, (where / "up.log").read_text()[-3000:]
        try:
            response = httpx.get(url, timeout=5)
            if response.status_code == 200:
                return response
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"{url} not served: {(where / 'up.log').read_text()[-3000:]}")


def _wait_for_events(up: subprocess.Popen[bytes], store: Path, where: Path) -> int:
    """How many events the demo got ingested, once there are some."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert up.poll() is None, (where / "up.log").read_text()[-3000:]
        with sqlite3.connect(store) as conn:
            (count,) = conn.execute("SELECT count(*) FROM ingested_events").fetchone()
        if count:
            return int(count)
        time.sleep(0.5)
    raise AssertionError(f"nothing ingested: {(where / 'up.log').read_text()[-3000:]}")
