"""Upserts on the ingest hot path: INSERT ... ON CONFLICT compiled once, run as executemany.

Building and compiling the statement through SQLAlchemy costs more than running it for a
batch's few dozen rows, so each upsert is compiled once per dialect (SQLite and PostgreSQL
share the syntax) and its rows go to the driver like ``broker.store.bulk.insert_many``'s.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from sqlalchemy import ColumnElement, Connection, Table
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.sql.base import ReadOnlyColumnCollection

from broker.store.bulk import Plan, run_many

Columns = ReadOnlyColumnCollection[str, Any]
#: Given (the proposed row ``excluded``, the stored row's columns): the SET clause and an
#: optional WHERE that must hold for the stored row to be updated.
Merge = Callable[
    [Columns, Columns], tuple[Mapping[str, ColumnElement[Any]], ColumnElement[bool] | None]
]


_plans: dict[tuple[str, str], Plan] = {}


def upsert_many(
    conn: Connection,
    table: Table,
    rows: Sequence[Mapping[str, Any]],
    *,
    key: str,
    merge: Merge,
    name: str,
) -> None:
    """Insert ``rows`` (each naming every column), merging into stored rows of the same ``key``.

    ``name`` identifies the merge (one compiled statement per name and dialect).
    """
    if not rows:
        return
    run_many(conn, _plan(conn, table, key, merge, name), rows)


def _plan(conn: Connection, table: Table, key: str, merge: Merge, name: str) -> Plan:
    dialect = conn.dialect
    plan = _plans.get((name, dialect.name))
    if plan is None:
        if dialect.name == "postgresql":
            pg = pg_insert(table)
            set_, where = merge(pg.excluded, table.c)
            stmt: Any = pg.on_conflict_do_update(index_elements=[key], set_=set_, where=where)
        elif dialect.name == "sqlite":
            lite = sqlite_insert(table)
            set_, where = merge(lite.excluded, table.c)
            stmt = lite.on_conflict_do_update(index_elements=[key], set_=set_, where=where)
        else:
            raise NotImplementedError(f"the store runs on SQLite or PostgreSQL, not {dialect.name}")
        plan = _plans[(name, dialect.name)] = Plan.of(stmt.compile(dialect=dialect), table, dialect)
    return plan
