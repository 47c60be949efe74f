"""Engines for the store: SQLite tuned for one writer and many readers, or PostgreSQL."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, MetaData, Table, create_engine, event
from sqlalchemy.exc import IntegrityError, OperationalError, ProgrammingError

from broker.store.migrate import open_schema
from contract.private_files import private_file


def make_engine(url: str, *, upgrade: bool = True) -> Engine:
    """An engine for ``url``, its store's schema at this code's revision: an empty store is
    created; an older one upgraded if ``upgrade``, refused otherwise; a newer one refused
    (``StoreSchemaError``, saying what to run; see ``broker.store.migrate``)."""
    engine = connect(url)
    try:
        open_schema(engine, may_upgrade=upgrade)
    except BaseException:
        engine.dispose()
        raise
    return engine


def connect(url: str) -> Engine:
    """An engine for ``url`` as the store uses it, its schema left as it is."""
    if url.startswith("sqlite"):
        path = url.split("///", 1)[1] if "///" in url else ""
        if path and path != ":memory:":
            private_file(Path(path))  # personal data: 0600, its WAL too
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})
        event.listen(engine, "connect", _sqlite_pragmas)
    else:
        engine = create_engine(url, pool_pre_ping=True)
    return engine


def sqlite_nowait_engine(engine: Engine) -> Engine:
    """A second engine on ``engine``'s SQLite file for a writer that must never block: its
    connections fail at once on a lock (busy timeout 0) and leave WAL checkpoints, which
    copy pages and sync the file inside a commit, to ``checkpoint_wal`` in another thread."""
    twin = create_engine(
        engine.url, connect_args={"check_same_thread": False, "timeout": 0}, pool_size=2
    )
    event.listen(twin, "connect", _sqlite_pragmas)
    event.listen(twin, "connect", _no_autocheckpoint)
    return twin


def checkpoint_wal(engine: Engine) -> None:
    """Copy what SQLite's write-ahead log holds into the database file, without waiting for
    readers or writers (PASSIVE): for processes whose writers skip it (see above)."""
    with engine.connect() as conn:
        conn.exec_driver_sql("PRAGMA wal_checkpoint(PASSIVE)")


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


def _no_autocheckpoint(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA wal_autocheckpoint=0")
    cursor.close()


def create_all_racing(engine: Engine, metadata: MetaData, tables: Sequence[Table]) -> None:
    """Create those of ``tables`` the store lacks, safely when several processes start at once.

    Only for what no migration makes: a plug-in domain's projection tables (the platform's own
    schema is Alembic's, ``broker.store.migrate``)."""
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
