"""Bulk writes on the ingest hot path: a statement compiled once per dialect, its rows sent to
the driver as one executemany, converted as SQLAlchemy would convert them."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Table
from sqlalchemy.engine import Dialect
from sqlalchemy.sql.compiler import Compiled


@dataclass(frozen=True, slots=True)
class Plan:
    """A compiled statement and how to bind a row (a mapping of column name to value) to it."""

    sql: str
    names: tuple[str, ...]
    processors: tuple[Callable[[Any], Any] | None, ...]
    positional: bool

    @classmethod
    def of(cls, compiled: Compiled, table: Table, dialect: Dialect) -> Plan:
        """The plan of ``compiled``, a statement whose parameters are ``table``'s columns."""
        names = tuple(compiled.positiontup or [c.key for c in table.columns])  # type: ignore[attr-defined]
        processors = tuple(table.c[n].type.bind_processor(dialect) for n in names)
        return cls(str(compiled), names, processors, compiled.positional)  # type: ignore[attr-defined]


def run_many(conn: Connection, plan: Plan, rows: Sequence[Mapping[str, Any]]) -> None:
    """Execute ``plan`` once per row, in one driver call."""
    pairs = tuple(zip(plan.names, plan.processors, strict=True))
    values = [
        tuple(p(row[n]) if p else row[n] for n, p in pairs)
        if plan.positional
        else {n: (p(row[n]) if p else row[n]) for n, p in pairs}
        for row in rows
    ]
    conn.exec_driver_sql(plan.sql, values)


_inserts: dict[tuple[str, str], Plan] = {}


def insert_many(conn: Connection, table: Table, rows: Sequence[Mapping[str, Any]]) -> None:
    """Insert ``rows`` (each naming every column) as SQLAlchemy would, without its per-row cost."""
    if not rows:
        return
    key = (table.name, conn.dialect.name)
    plan = _inserts.get(key)
    if plan is None:
        compiled = table.insert().compile(dialect=conn.dialect)
        plan = _inserts[key] = Plan.of(compiled, table, conn.dialect)
    run_many(conn, plan, rows)
