"""The demo region lives in the present and a restart resumes where the last run stopped."""

from __future__ import annotations

import threading
from datetime import date, datetime, time, timedelta
from pathlib import Path

import orjson

from broker.bus.sqlite_log import SqliteLog
from broker.settings import Settings
from connectors.demo import HISTORY_DAYS, DemoCalendar, catch_up, open_connectors
from connectors.readers import JST
from connectors.region import Region
from connectors.sdk import BusSink, LocalSchemas
from contract.bus import BusError
from contract.domains import DOMAINS

POPULATION = 60
TODAY = date(2026, 12, 3)


def _run(data: Path, until: datetime) -> tuple[int, int]:
    """One start of the demo's region on ``data``, published up to ``until``: (accepted,
    duplicates) of this run."""
    calendar = DemoCalendar.open(data / "calendar.json", today=TODAY)
    region = Region(seed=7, population=POPULATION, start=calendar.start)
    with SqliteLog(data / "bus.db") as bus:
        connectors = open_connectors(
            LocalSchemas(Settings().schemas_dir), BusSink(bus), data / "outbox"
        )
        try:
            report = catch_up(region, connectors, calendar, until, threading.Event())
            for connector in connectors.values():
                connector.flush(timeout_s=60)
        finally:
            for connector in connectors.values():
                connector.close()
    assert report.ok, report.summary()
    return report.accepted, report.duplicates


def _events(data: Path) -> list[dict[str, object]]:
    with SqliteLog(data / "bus.db") as bus:
        consumer = bus.consumer("count", [d.topic for d in DOMAINS if _exists(bus, d.topic)])
        events = []
        while records := consumer.poll(max_records=1000, timeout_s=0.2):
            events += [orjson.loads(r.value) for r in records]
        consumer.close()
    return events


def _exists(bus: SqliteLog, topic: str) -> bool:
    try:
        return bool(bus.end_offsets(topic))
    except BusError:  # no connector published to it yet
        return False


def _event_ids(data: Path) -> list[str]:
    return [str(e["id"]) for e in _events(data)]


def test_the_region_begins_weeks_before_its_first_start_and_keeps_that_start(
    tmp_path: Path,
) -> None:
    first = DemoCalendar.open(tmp_path / "calendar.json", today=TODAY)
    assert first.start == TODAY - timedelta(days=HISTORY_DAYS)
    # Inside the views' default 90 days, and a whole month before the statistics' present.
    assert TODAY - first.start <= timedelta(days=90)
    assert first.start < TODAY.replace(day=1) - timedelta(days=28)
    later = DemoCalendar.open(tmp_path / "calendar.json", today=TODAY + timedelta(days=9))
    assert later.start == first.start and later.reached is None


def test_a_restart_resumes_where_the_last_run_stopped_and_sends_nothing_twice(
    tmp_path: Path,
) -> None:
    start = datetime.combine(TODAY - timedelta(days=HISTORY_DAYS), time(7), JST)
    first_stop, second_stop = start + timedelta(days=1, hours=5), start + timedelta(days=2)

    accepted, duplicates = _run(tmp_path / "resumed", first_stop)
    assert accepted > 0 and duplicates == 0
    kept = DemoCalendar.open(tmp_path / "resumed" / "calendar.json", today=TODAY)
    assert kept.reached is not None and start < kept.reached <= first_stop

    more, again = _run(tmp_path / "resumed", second_stop)
    assert more > 0
    assert again == 0  # resumed after the last published moment: nothing replayed

    straight, _ = _run(tmp_path / "straight", second_stop)
    resumed_ids = _event_ids(tmp_path / "resumed")
    assert len(resumed_ids) == len(set(resumed_ids)) == accepted + more
    assert sorted(resumed_ids) == sorted(_event_ids(tmp_path / "straight"))
    assert straight == accepted + more


def test_events_are_dated_in_the_regions_present_not_in_a_fixed_year(tmp_path: Path) -> None:
    start = datetime.combine(TODAY - timedelta(days=HISTORY_DAYS), time(7), JST)
    _run(tmp_path, start + timedelta(hours=12))
    times = [datetime.fromisoformat(str(e["time"])) for e in _events(tmp_path)]
    assert times and all(start <= t <= start + timedelta(hours=12) for t in times)
