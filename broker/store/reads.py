"""Hot reads: a SELECT compiled once per dialect and run on the driver's cursor, its parameters
and columns converted as SQLAlchemy would convert them.

The partner view runs one statement per request; through a SQLAlchemy ``Connection`` the
execution context, result object and per-row processing cost several times what the driver
itself takes. The rows come back as tuples in the statement's column order.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, exc
from sqlalchemy.engine import Dialect
from sqlalchemy.sql.expression import CompoundSelect, Select

Processor = Callable[[Any], Any]


@dataclass(frozen=True, slots=True)
class Query:
    """A statement compiled for one dialect, with how to bind its parameters and read its rows."""

    sql: str
    #: Positional dialects (SQLite): the parameters' names in order; None for named ones.
    order: tuple[str, ...] | None
    #: Per parameter name: its bind converter (None: sent as is).
    binds: Mapping[str, Processor | None]
    #: Parameters with a value fixed in the statement (literals), already converted.
    fixed: Mapping[str, Any]
    #: The result columns that need converting, as (position, converter).
    results: tuple[tuple[int, Processor], ...]

    @classmethod
    def of(cls, statement: Select[Any] | CompoundSelect[Any], dialect: Dialect) -> Query:
        """``statement`` compiled for ``dialect``."""
        compiled = statement.compile(dialect=dialect)
        sql = str(compiled)
        if "__[POSTCOMPILE" in sql:
            raise ValueError("expanding or literal-execute parameters are not supported here")
        binds: dict[str, Processor | None] = {}
        fixed: dict[str, Any] = {}
        for bind, name in compiled.bind_names.items():
            convert = bind.type.dialect_impl(dialect).bind_processor(dialect)
            binds[name] = convert
            if not bind.required:
                fixed[name] = bind.value if convert is None else convert(bind.value)
        results = []
        for position, column in enumerate(statement.selected_columns):
            convert = column.type.dialect_impl(dialect).result_processor(dialect, None)
            if convert is not None:
                results.append((position, convert))
        positional: bool = compiled.positional
        order = tuple(compiled.positiontup or ()) if positional else None
        return cls(sql, order, binds, fixed, tuple(results))

    def parameters(self, values: Mapping[str, Any]) -> tuple[Any, ...] | dict[str, Any]:
        """What the driver is given for ``values`` (every required parameter by name)."""
        converted = dict(self.fixed)
        for name, value in values.items():
            convert = self.binds.get(name)
            converted[name] = value if convert is None else convert(value)
        if self.order is None:
            return converted
        return tuple(converted[name] for name in self.order)


def fetch_all(engine: Engine, query: Query, values: Mapping[str, Any]) -> list[list[Any]]:
    """Every row of ``query`` run with ``values``, converted; in one pool checkout.

    Driver errors are raised as SQLAlchemy's (``OperationalError``...), as through a
    ``Connection``, and a connection found broken is dropped from the pool.
    """
    parameters = query.parameters(values)
    raw = engine.raw_connection()
    try:
        cursor = raw.cursor()
        try:
            cursor.execute(query.sql, parameters)
            fetched = cursor.fetchall()
        except engine.dialect.loaded_dbapi.Error as error:
            if engine.dialect.is_disconnect(error, raw.dbapi_connection, cursor):
                raw.invalidate(error)
            raise exc.DBAPIError.instance(
                query.sql, parameters, error, engine.dialect.loaded_dbapi.Error
            ) from error
        finally:
            cursor.close()
    finally:
        raw.close()
    rows = [list(row) for row in fetched]
    for position, convert in query.results:
        for row in rows:
            row[position] = convert(row[position])
    return rows
