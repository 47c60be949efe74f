"""Store timestamps: UTC in, aware UTC out, and on SQLite the same text SQLAlchemy would store."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import Column, DateTime, Integer, MetaData, Table, create_engine, insert, select
from sqlalchemy.dialects import sqlite

from broker.store.projections.timestamps import JST, UtcDateTime

MOMENTS = [
    datetime(2025, 1, 1, 0, 0, tzinfo=UTC),
    datetime(2025, 6, 30, 23, 59, 59, 999_999, tzinfo=UTC),
    datetime(2025, 4, 1, 9, 0, 0, 5, tzinfo=JST),
    datetime(1999, 12, 31, 12, 0, tzinfo=timezone(timedelta(hours=-5))),
]


@pytest.mark.parametrize("moment", MOMENTS)
def test_sqlite_binds_the_text_sqlalchemy_would_store(moment: datetime) -> None:
    dialect = sqlite.dialect()
    fused = UtcDateTime().bind_processor(dialect)
    stock = DateTime().dialect_impl(dialect).bind_processor(dialect)
    assert stock is not None
    expected = stock(moment.astimezone(UTC).replace(tzinfo=None))
    assert fused(moment) == expected
    assert fused(None) is None


def test_a_naive_datetime_is_refused() -> None:
    bind = UtcDateTime().bind_processor(sqlite.dialect())
    with pytest.raises(ValueError, match="naive"):
        bind(datetime(2025, 1, 1))


@pytest.mark.parametrize("moment", MOMENTS)
def test_sqlite_round_trip_gives_the_same_instant_in_utc(moment: datetime) -> None:
    engine = create_engine("sqlite://")
    table = Table(
        "t", MetaData(), Column("id", Integer, primary_key=True), Column("at", UtcDateTime())
    )
    table.create(engine)
    with engine.begin() as conn:
        conn.execute(insert(table), {"id": 1, "at": moment})
        got = conn.execute(select(table.c.at)).scalar_one()
        # Comparisons in SQL see the same instant, whatever offset the bound value has.
        later = conn.execute(select(table.c.id).where(table.c.at >= moment)).scalar_one()
    assert got == moment
    assert got.tzinfo is UTC
    assert later == 1
