"""Make the previous release's store fixtures (run once, by hand; the test never runs this).

The release before migrations is commit 2b55de9. Its code builds the stores: ``tsunagu up
--demo`` runs for a while on SQLite, then on PostgreSQL, so every table the release made is
filled the way it filled it (events ingested, consents, partner reads and their decisions in
the audit chain, checkpoints). This script keeps, beside itself:

* ``store-2b55de9.sqlite.sql.gz``    the SQLite store as SQL (``sqlite3`` ``iterdump``)
* ``store-2b55de9.postgresql.sql.gz`` the PostgreSQL store (``pg_dump --inserts``)
* ``jwks-2b55de9.json``               the platform's public keys, to verify the audit chain
                                       (each run's keys: the SQLite run's, the PG run's)

How it was made::

    rm -rf /tmp/tsunagu-2b55de9 && mkdir /tmp/tsunagu-2b55de9
    git archive 2b55de9 | tar -x -C /tmp/tsunagu-2b55de9
    .venv/bin/python tests/store/legacy/make_fixture.py /tmp/tsunagu-2b55de9

(``.venv`` gives the dependencies; the old tree goes first on ``PYTHONPATH``, so its
``broker`` is what runs.)
"""

from __future__ import annotations

import gzip
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import psycopg

HERE = Path(__file__).resolve().parent
RELEASE = "2b55de9"
PG_ADMIN_DSN = "host=127.0.0.1 port=5432 dbname=test user=postgres"
RUN_S = 45.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _run_demo(old_tree: Path, data_dir: Path, database_url: str) -> None:
    """``tsunagu up --demo`` of the old tree for ``RUN_S`` seconds, then a clean stop."""
    env = {
        **os.environ,
        "PYTHONPATH": str(old_tree),
        "TSUNAGU_DATA_DIR": str(data_dir),
        "TSUNAGU_DATABASE_URL": database_url,
        "TSUNAGU_PORT": str(_free_port()),
        "TSUNAGU_METRICS_PORT": "0",
        "TSUNAGU_DEMO_READ_INTERVAL_S": "1",
    }
    code = "import sys; from broker.cli import app; sys.argv[0] = 'tsunagu'; app()"
    proc = subprocess.Popen(
        [sys.executable, "-c", code, "up", "--demo", "--demo-speed", "1800", "--population", "300"],
        env=env,
        cwd=old_tree,
    )
    time.sleep(RUN_S)
    proc.send_signal(signal.SIGINT)
    proc.wait(120)
    probe = subprocess.run(
        [sys.executable, "-c", "import broker, sys; print(broker.__file__)"],
        env=env,
        cwd=old_tree,
        capture_output=True,
        text=True,
        check=True,
    )
    assert probe.stdout.startswith(str(old_tree)), probe.stdout  # the old code ran


def _jwks(old_tree: Path, data_dir: Path) -> dict[str, Any]:
    code = (
        "import json, sys; from consent.keys import KeyRing; "
        "print(json.dumps(KeyRing.in_data_dir(sys.argv[1]).jwks()))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(data_dir)],
        env={**os.environ, "PYTHONPATH": str(old_tree)},
        cwd=old_tree,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    jwks: dict[str, Any] = json.loads(out)
    return jwks


def main(old_tree: Path) -> None:
    """Build both stores with the old tree and keep their dumps and keys beside this file."""
    keys: list[Any] = []
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "sqlite"
        _run_demo(old_tree, data, "")
        with sqlite3.connect(data / "store.db") as conn:
            dump = "\n".join(conn.iterdump()) + "\n"
        (HERE / f"store-{RELEASE}.sqlite.sql.gz").write_bytes(gzip.compress(dump.encode(), mtime=0))
        keys += _jwks(old_tree, data)["keys"]

        name = f"tsunagu_legacy_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as admin:
            admin.execute(f'CREATE DATABASE "{name}"')
        try:
            data = Path(tmp) / "postgresql"
            _run_demo(old_tree, data, f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}")
            dump = subprocess.run(
                [
                    "pg_dump",
                    "-h",
                    "127.0.0.1",
                    "-U",
                    "postgres",
                    "--no-owner",
                    "--no-privileges",
                    "--inserts",
                    name,
                ],
                capture_output=True,
                text=True,
                check=True,
            ).stdout
            (HERE / f"store-{RELEASE}.postgresql.sql.gz").write_bytes(
                gzip.compress(dump.encode(), mtime=0)
            )
            keys += _jwks(old_tree, data)["keys"]
        finally:
            with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as admin:
                admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    (HERE / f"jwks-{RELEASE}.json").write_text(json.dumps({"keys": keys}, indent=2) + "\n")


if __name__ == "__main__":
    main(Path(sys.argv[1]).resolve())
