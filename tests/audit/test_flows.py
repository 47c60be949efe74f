"""Refusal buckets follow the wall clock of the auditor's zone: a JST day starts at 00:00 JST."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from broker.audit.flows import MAX_BUCKETS, Bucket, TooManyBucketsError, boundaries

TOKYO = ZoneInfo("Asia/Tokyo")
BERLIN = ZoneInfo("Europe/Berlin")


def test_jst_days_start_at_midnight_in_tokyo_not_in_utc() -> None:
    since = datetime(2026, 11, 24, 20, 0, tzinfo=UTC)  # 05:00 on the 25th in Tokyo
    starts = boundaries(since, since + timedelta(days=2), Bucket.DAY, TOKYO)
    assert [s.isoformat() for s in starts] == [
        "2026-11-25T00:00:00+09:00",
        "2026-11-26T00:00:00+09:00",
        "2026-11-27T00:00:00+09:00",
    ]


def test_hours_cover_the_window_without_gaps() -> None:
    since = datetime(2026, 11, 25, 10, 30, tzinfo=UTC)
    starts = boundaries(since, since + timedelta(hours=3), Bucket.HOUR, TOKYO)
    assert len(starts) == 4
    assert all(
        b.astimezone(UTC) - a.astimezone(UTC) == timedelta(hours=1)
        for a, b in itertools.pairwise(starts)
    )
    assert starts[0] <= since < starts[1]


def test_a_day_across_a_clock_change_is_23_hours_long() -> None:
    since = datetime(2026, 3, 28, 12, tzinfo=BERLIN)
    first, second, third = (
        s.astimezone(UTC) for s in boundaries(since, since + timedelta(days=2), Bucket.DAY, BERLIN)
    )
    assert (second - first, third - second) == (timedelta(hours=24), timedelta(hours=23))
    assert third.astimezone(BERLIN).hour == 0


def test_hours_across_a_clock_change_are_real_hours() -> None:
    since = datetime(2026, 3, 29, 0, 30, tzinfo=BERLIN)
    starts = [
        s.astimezone(UTC)
        for s in boundaries(since, since + timedelta(hours=4), Bucket.HOUR, BERLIN)
    ]
    assert all(b - a == timedelta(hours=1) for a, b in itertools.pairwise(starts))


def test_too_many_buckets_are_refused() -> None:
    since = datetime(2020, 1, 1, tzinfo=UTC)
    with pytest.raises(TooManyBucketsError, match=f"at most {MAX_BUCKETS}"):
        boundaries(since, since + timedelta(hours=MAX_BUCKETS + 1), Bucket.HOUR, UTC)
    assert len(boundaries(since, since + timedelta(hours=MAX_BUCKETS), Bucket.HOUR, UTC)) == 1000
