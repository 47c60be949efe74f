"""Timestamps in the store: always UTC, so SQLite and PostgreSQL compare them alike."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta, timezone

from sqlalchemy import DateTime
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


def parse_time(text: str) -> datetime:
    """An RFC 3339 timestamp from event data."""
    return datetime.fromisoformat(text)


def day_start_jst(text: str) -> datetime:
    """The start of a calendar day in the region (JST) for a `date` field."""
    return datetime.combine(date.fromisoformat(text), time(0, 0), JST)
