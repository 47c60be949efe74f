"""Bulk inserts on the ingest hot path: one compiled statement, driver-level executemany."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Table


@dataclass(frozen=True, slots=True)
class _Plan:
    sql: str
    names: tuple[str, ...]
    processors: tuple[Callable[[Any], Any] | None, ...]
    positional: bool


_plans: dict[tuple[str, str], _Plan] = {}


def _plan(conn: Connection, table: Table) -> _Plan:
    key = (table.name, conn.dialect.name)
    plan = _plans.get(key)
    if plan is None:
        compiled = table.insert().compile(dialect=conn.dialect)
        names = tuple(compiled.positiontup or [c.key for c in table.columns])
        columns = {c.key: c for c in table.columns}
        processors = tuple(columns[n].type.bind_processor(conn.dialect) for n in names)
        plan = _Plan(str(compiled), names, processors, compiled.positional)
        _plans[key] = plan
    return plan


def insert_many(conn: Connection, table: Table, rows: Sequence[Mapping[str, Any]]) -> None:
    """Insert ``rows`` (each naming every column) as SQLAlchemy would, without its per-row cost."""
    if not rows:
        return
    plan = _plan(conn, table)
    pairs = tuple(zip(plan.names, plan.processors, strict=True))
    values = [
        tuple(p(row[n]) if p else row[n] for n, p in pairs)
        if plan.positional
        else {n: (p(row[n]) if p else row[n]) for n, p in pairs}
        for row in rows
    ]
    conn.exec_driver_sql(plan.sql, values)
