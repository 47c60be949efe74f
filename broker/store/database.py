"""Engines for the store: SQLite tuned for one writer and many readers, or PostgreSQL."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, MetaData, Table, create_engine, event
from sqlalchemy.exc import IntegrityError, OperationalError, ProgrammingError
from sqlmodel import SQLModel


def make_engine(url: str) -> Engine:
    """An engine for ``url`` with the store's tables created."""
    if url.startswith("sqlite"):
        path = url.split("///", 1)[1] if "///" in url else ""
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})
        event.listen(engine, "connect", _sqlite_pragmas)
    else:
        engine = create_engine(url, pool_pre_ping=True)
    import broker.store.tables  # noqa: F401  (registers the tables on SQLModel.metadata)

    create_all_racing(engine, SQLModel.metadata)
    return engine


def is_sqlite(engine: Engine) -> bool:
    """Whether the store is the embedded SQLite."""
    return engine.dialect.name == "sqlite"


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # WAL lets the API read while the worker writes; NORMAL sync is durable in WAL against
    # process crashes (a power cut may lose the last transactions, which the bus redelivers).
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def create_all_racing(
    engine: Engine, metadata: MetaData, tables: Sequence[Table] | None = None
) -> None:
    """``metadata.create_all``, safe when several processes start at once on one store."""
    for attempt in range(5):
        try:
            metadata.create_all(engine, tables=tables)
            return
        except (IntegrityError, OperationalError, ProgrammingError):
            # The losers' CREATE fails (a duplicate type or table on PostgreSQL, a locked
            # database on SQLite); once the winner has committed, create_all creates nothing.
            if attempt == 4:
                raise
            time.sleep(0.2 * (attempt + 1))
