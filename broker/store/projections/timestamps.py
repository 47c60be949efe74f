"""Timestamps in the store: always UTC, so SQLite and PostgreSQL compare them alike."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta, timezone
from typing import Any

from sqlalchemy import DateTime, Dialect
from sqlalchemy.types import TypeDecorator

JST = timezone(timedelta(hours=9), "JST")


class UtcDateTime(TypeDecorator[datetime]):
    """A timestamp stored in UTC and read back timezone-aware on every backend."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: object) -> datetime | None:
        """Normalise to UTC (naive for SQLite, whose driver drops offsets)."""
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the store; attach an offset")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: object) -> datetime | None:
        """Attach UTC to what comes back."""
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)

    # On SQLite the two steps (ours, then the dialect's text conversion) are done in one: every
    # timestamp of every query passes here, and the chain cost several times the conversion.
    # The text is SQLAlchemy's SQLite storage format, "YYYY-MM-DD HH:MM:SS.ffffff".

    def bind_processor(self, dialect: Dialect) -> Any:
        """To UTC storage text in one step on SQLite; the usual chain elsewhere."""
        if dialect.name != "sqlite":
            return super().bind_processor(dialect)
        to_utc = self.process_bind_param

        def process(value: datetime | None) -> str | None:
            utc = to_utc(value, dialect)
            return None if utc is None else utc.isoformat(" ", "microseconds")

        return process

    def result_processor(self, dialect: Dialect, coltype: object) -> Any:
        """From SQLite's storage text to an aware UTC datetime in one step."""
        if dialect.name != "sqlite":
            return super().result_processor(dialect, coltype)

        def process(value: str | None) -> datetime | None:
            if value is None:
                return None
            parsed = datetime.fromisoformat(value)
            return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)

        return process


def parse_time(text: str) -> datetime:
    """An RFC 3339 timestamp from event data."""
    return datetime.fromisoformat(text)


def day_start_jst(text: str) -> datetime:
    """The start of a calendar day in the region (JST) for a `date` field."""
    return datetime.combine(date.fromisoformat(text), time(0, 0), JST)
