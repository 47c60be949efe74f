"""Several processes starting at once on an empty PostgreSQL store all come up: the ones that
lose the race to create the tables find them made."""

from __future__ import annotations

import subprocess
import sys

from sqlalchemy import inspect

from broker.store.database import make_engine
from tests.fixtures.databases import fresh_postgres_database

OPEN = (
    "import sys; from broker.store.database import make_engine; make_engine(sys.argv[1]).dispose()"
)


def test_four_processes_creating_the_store_at_once_all_start(postgres_url: str) -> None:
    url = fresh_postgres_database(postgres_url)
    processes = [
        subprocess.Popen([sys.executable, "-c", OPEN, url], stderr=subprocess.PIPE)
        for _ in range(4)
    ]
    failures = [p.stderr.read().decode()[-500:] for p in processes if p.wait(60) != 0 and p.stderr]
    assert failures == []
    engine = make_engine(url)
    try:
        tables = set(inspect(engine).get_table_names())
    finally:
        engine.dispose()
    assert "ingested_events" in tables
