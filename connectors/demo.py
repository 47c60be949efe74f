"""The live demo of `make run`: the synthetic region streaming through the four connectors.

The region lives in the present. On the first start its history begins ``HISTORY_DAYS`` before
today, so the views' and statistics' default periods (the last 90 days, the last 12 whole
months) hold data; each start replays at once the days since the region last published (its
calendar, ``$DATA_DIR/demo/calendar.json``, says how far it got), then streams in real time.
A restart resumes where the last run stopped: nothing is sent twice, no day goes missing.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from pathlib import Path

import orjson

from connectors.readers import JST
from connectors.region import Batch, Region
from connectors.sdk import Connector, PublishReport, Schemas, Sink
from connectors.services import SERVICES

log = logging.getLogger(__name__)

#: Days of history the region has when first started.
HISTORY_DAYS = 35
#: Batches published between two saves of the calendar while catching up.
SAVE_EVERY = 200


@dataclass
class DemoCalendar:
    """When the demo region began, and the moment up to which it has published."""

    path: Path
    start: date
    reached: datetime | None = None

    @classmethod
    def open(cls, path: Path, *, today: date, history_days: int = HISTORY_DAYS) -> DemoCalendar:
        """The calendar kept at ``path``, or a new one beginning ``history_days`` ago."""
        try:
            kept = orjson.loads(path.read_bytes())
            reached = kept.get("reached")
            return cls(
                path,
                date.fromisoformat(kept["start"]),
                datetime.fromisoformat(reached) if reached else None,
            )
        except FileNotFoundError:
            calendar = cls(path, today - timedelta(days=history_days))
            calendar.save()
            return calendar

    @property
    def resume_at(self) -> datetime:
        """Where streaming goes on: after the last published moment, or the first morning
        (07:00, when the first buses and walkers are out)."""
        return self.reached or datetime.combine(self.start, time(7), JST)

    def save(self) -> None:
        """Write the calendar (atomically: a crash leaves the old or the new one)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        body = {"start": self.start.isoformat()}
        if self.reached is not None:
            body["reached"] = self.reached.isoformat()
        part = self.path.with_suffix(".part")
        part.write_bytes(orjson.dumps(body))
        part.replace(self.path)


def open_connectors(
    schemas: Schemas,
    sink: Sink | Callable[[str], Sink],
    outbox_dir: Path,
    topic_prefix: str = "",
) -> dict[str, Connector]:
    """The four service connectors, each with its own outbox file in ``outbox_dir``; ``sink``
    is shared, or made per connector from its source (each with its own token)."""
    outbox_dir.mkdir(parents=True, exist_ok=True)
    opened: dict[str, Connector] = {}
    try:
        for name, service in SERVICES.items():
            opened[name] = Connector(
                service.source,
                service.event_types,
                schemas,
                outbox_dir / f"{name}.db",
                sink(service.source) if callable(sink) else sink,
                topic_prefix=topic_prefix,
            )
    except BaseException:
        # e.g. OutboxInUseError: a `connector run` owns one; give back the ones taken.
        for connector in opened.values():
            connector.close()
        raise
    return opened


def stream_region(
    region: Region,
    connectors: dict[str, Connector],
    stop: threading.Event,
    speed: float,
    calendar: DemoCalendar,
    *,
    now: Callable[[], datetime] = lambda: datetime.now(JST),
) -> None:
    """Publish the region through the connectors until ``stop`` is set: first, at once, what
    happened since ``calendar`` last reached; then live at ``speed`` (1: real time)."""
    for connector in connectors.values():
        connector.start()  # background senders drain each outbox as it fills

    def pause(seconds: float) -> None:
        stop.wait(seconds)  # wakes at once when the platform stops

    try:
        caught_up = now()
        catch_up(region, connectors, calendar, caught_up, stop)
        live = region.stream(max(caught_up, calendar.resume_at), speed, sleep=pause)
        _publish(region, connectors, calendar, live, stop, save_every=1)
    finally:
        for connector in connectors.values():
            connector.stop()
            connector.close()


def catch_up(
    region: Region,
    connectors: dict[str, Connector],
    calendar: DemoCalendar,
    until: datetime,
    stop: threading.Event,
) -> PublishReport:
    """Publish at once everything the region did after ``calendar`` reached, up to ``until``:
    what the connectors made of it (a resumed run meets no duplicates)."""
    if until <= calendar.resume_at:
        return PublishReport()
    log.info("demo: publishing the region from %s to %s", calendar.resume_at, until)
    batches = region.stream(calendar.resume_at, math.inf, until=until)
    return _publish(region, connectors, calendar, batches, stop, save_every=SAVE_EVERY)


def _publish(
    region: Region,
    connectors: dict[str, Connector],
    calendar: DemoCalendar,
    batches: Iterator[Batch],
    stop: threading.Event,
    *,
    save_every: int,
) -> PublishReport:
    total = PublishReport()
    for n, batch in enumerate(batches, 1):
        if stop.is_set():
            break
        report = connectors[batch.connector].publish_all(region.drafts(batch))
        if not report.ok:
            log.warning("%s/%s: %s", batch.connector, batch.feed, report.summary())
        total.accepted += report.accepted
        total.duplicates += report.duplicates
        total.errors += report.errors
        # In the outbox now (durable): a restart goes on after it.
        calendar.reached = batch.at
        if n % save_every == 0:
            calendar.save()
    calendar.save()
    return total
