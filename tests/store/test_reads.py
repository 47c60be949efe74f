"""Hot reads on the driver's cursor give what SQLAlchemy would, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine, Table, bindparam, column, func, literal, select, table
from sqlalchemy.exc import DBAPIError

from broker.store.bulk import insert_many
from broker.store.database import make_engine
from broker.store.projections.health import HealthPoints
from broker.store.reads import Query, fetch_all

_points: Table = HealthPoints.__table__  # type: ignore[attr-defined]
T0 = datetime(2025, 6, 1, 9, tzinfo=UTC)


@pytest.fixture
def engine(store_url: str) -> Iterator[Engine]:
    """The store, with three health-point rows of one subject and one of another."""
    engine = make_engine(store_url)
    rows = [
        {
            "event_id": f"evt-{n}",
            "subject_ref": "ref-a" if n < 3 else "ref-b",
            "programme_id": "p",
            "kind": "awarded",
            "points": 10 * (n + 1),
            "reason": None if n == 1 else "walking",
            "age_band": None,
            "occurred_at": T0 + timedelta(hours=n),
            "sealed": b"\x00\x01sealed",
        }
        for n in range(4)
    ]
    with engine.begin() as conn:
        insert_many(conn, _points, rows)
    yield engine
    engine.dispose()


def test_a_query_gives_the_rows_sqlalchemy_gives(engine: Engine) -> None:
    p = _points.c
    statement = (
        select(p.event_id, p.occurred_at, p.points, p.reason, p.sealed, literal("fixed"))
        .where(
            p.subject_ref == bindparam("ref"),
            p.occurred_at >= bindparam("lo", type_=p.occurred_at.type),
        )
        .order_by(p.occurred_at)
        .limit(bindparam("n"))
    )
    values = {"ref": "ref-a", "lo": T0 + timedelta(minutes=30), "n": 10}
    with engine.connect() as conn:
        expected = [list(r) for r in conn.execute(statement, values)]

    rows = fetch_all(engine, Query.of(statement, engine.dialect), values)

    assert rows == expected
    assert [r[0] for r in rows] == ["evt-1", "evt-2"]  # the window and the subject hold
    assert rows[0][1] == T0 + timedelta(hours=1) and rows[0][1].tzinfo is not None
    assert rows[0][3] is None and rows[0][5] == "fixed"
    assert bytes(rows[0][4]) == b"\x00\x01sealed"


def test_a_driver_error_is_raised_as_sqlalchemys_and_the_pool_still_serves(
    engine: Engine,
) -> None:
    missing = select(func.count()).select_from(table("no_such_table", column("x")))
    with pytest.raises(DBAPIError):
        fetch_all(engine, Query.of(missing, engine.dialect), {})

    count = select(func.count()).select_from(_points)
    assert fetch_all(engine, Query.of(count, engine.dialect), {}) == [[4]]
