"""The machinery of the region's day: what the four connectors publish, a day streamed through
them at a pace, paused at the moments the story acts, and who in the region plays which part.

The stream runs in a thread of its own, as the four firms' systems would. The story acts at
moments of the simulated day (Japan time): at some the stream runs on while it acts, at
others it holds before its next batch until the story is done (when what the story checks
depends on no later event arriving meanwhile). Either way the connectors' background senders
keep draining their outboxes to the bus and the platform keeps ingesting, so the story acts
on a platform that is catching up with the day, never on a quiet one.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from datetime import time as clock
from typing import Any

from connectors.readers import JST
from connectors.region import House, Region
from connectors.sdk import Connector, EventDraft, PublishReport, RowError, stable_event_id
from connectors.services import SERVICES

__all__ = ["Cast", "Published", "RegionDay", "choose_cast", "day_bounds", "plan"]


@dataclass(frozen=True, slots=True)
class Published:
    """One event a connector queued: its id, type and subject, and the simulated time its
    batch was released."""

    event_id: str
    connector: str
    source: str
    event_type: str
    subject: str
    released: datetime
    data: Mapping[str, Any]


def day_bounds(region: Region) -> tuple[datetime, datetime]:
    """The streamed day: from 07:00 of the region's first day (as `make run` starts it;
    nothing happens earlier) to midnight."""
    start = datetime.combine(region.start, clock(7), JST)
    return start, datetime.combine(region.start + timedelta(days=1), clock(0), JST)


def _published(connector: str, released: datetime, item: EventDraft | RowError) -> Published:
    if isinstance(item, RowError):
        raise AssertionError(f"the region made a bad {connector} row: {item}")
    source = SERVICES[connector].source
    return Published(
        stable_event_id(source, item.event_type, item.natural_key),
        connector,
        source,
        item.event_type,
        item.subject,
        released,
        item.data,
    )


def plan(seed: int, population: int) -> list[Published]:
    """Every event the day will publish, from a region of its own: the same seed and
    population make the same day, so the story can cast its people before it streams."""
    region = Region(seed=seed, population=population)
    start, end = day_bounds(region)
    return [
        _published(batch.connector, batch.at, item)
        for batch in region.stream(start, math.inf, until=end)
        for item in region.drafts(batch)
    ]


@dataclass(slots=True)
class _Pause:
    reached: threading.Event = field(default_factory=threading.Event)
    resume: threading.Event = field(default_factory=threading.Event)


class RegionDay:
    """Streams the region's day through ``connectors`` at ``speed`` simulated seconds per
    real second; it never passes one of ``moments`` before the story has begun acting on it."""

    def __init__(
        self,
        region: Region,
        connectors: Mapping[str, Connector],
        *,
        speed: float,
        moments: Sequence[datetime],
    ) -> None:
        self.region = region
        self.connectors = dict(connectors)
        self.speed = speed
        self.published: list[Published] = []
        self.reports = {name: PublishReport() for name in self.connectors}
        self._pauses = {moment: _Pause() for moment in sorted(moments)}
        self._stop = threading.Event()
        self._error: BaseException | None = None
        self._done = False
        self._thread = threading.Thread(target=self._run, name="region-day", daemon=True)

    def start(self) -> None:
        """Start streaming."""
        self._thread.start()

    @contextmanager
    def at(
        self, moment: datetime, *, hold: bool, timeout_s: float = 60.0
    ) -> Iterator[list[Published]]:
        """Wait until the day reaches ``moment``; with ``hold``, keep it there (no batch after
        it is published) while the block runs. Yields what has been published so far."""
        pause = self._pauses[moment]
        deadline = time.monotonic() + timeout_s
        while not pause.reached.wait(0.1):
            self._check()
            if time.monotonic() > deadline:
                raise TimeoutError(f"the day did not reach {moment:%H:%M} in {timeout_s} s")
        so_far = list(self.published)
        if not hold:
            pause.resume.set()
        try:
            yield so_far
        finally:
            pause.resume.set()

    def finish(self, timeout_s: float = 120.0) -> None:
        """Wait until the day is over and every outbox has been drained to the bus."""
        self._thread.join(timeout_s)
        self._check()
        if self._thread.is_alive():
            raise TimeoutError(f"the day did not end in {timeout_s} s")

    def close(self) -> None:
        """Stop streaming (if still at it) and close the connectors' outboxes."""
        self._stop.set()
        for pause in self._pauses.values():
            pause.resume.set()
        if self._thread.ident is not None:
            self._thread.join(30)
        for connector in self.connectors.values():
            connector.close()

    def _check(self) -> None:
        if self._error is not None:
            raise RuntimeError(f"the region's day failed: {self._error!r}") from self._error
        if not self._thread.is_alive() and not self._done:
            raise RuntimeError("the region's day stopped before its end")

    def _run(self) -> None:
        try:
            self._stream()
        except BaseException as exc:
            self._error = exc
        finally:
            for connector in self.connectors.values():
                connector.stop()

    def _stream(self) -> None:
        for connector in self.connectors.values():
            connector.start()  # background senders drain each outbox as it fills
        start, end = day_bounds(self.region)
        pending = list(self._pauses)
        sim_anchor, wall_anchor = start, time.monotonic()
        for batch in self.region.stream(start, math.inf, until=end):
            while pending and batch.at > pending[0]:
                moment = pending.pop(0)
                pause = self._pauses[moment]
                pause.reached.set()
                while not pause.resume.wait(0.1):
                    if self._stop.is_set():
                        return
                # The pace starts again from the moment: no burst to make up for the pause.
                sim_anchor, wall_anchor = moment, time.monotonic()
            due = wall_anchor + (batch.at - sim_anchor).total_seconds() / self.speed
            if self._stop.wait(max(0.0, due - time.monotonic())):
                return
            items = list(self.region.drafts(batch))
            report = self.connectors[batch.connector].publish_all(items)
            total = self.reports[batch.connector]
            total.accepted += report.accepted
            total.duplicates += report.duplicates
            total.errors += report.errors
            self.published += [
                _published(batch.connector, batch.at, item)
                for item in items
                if isinstance(item, EventDraft)
            ]
        for connector in self.connectors.values():
            connector.stop()
            drained = connector.drain(timeout_s=60)
            if drained.remaining:
                raise RuntimeError(f"{connector.source}: {drained.remaining} events not delivered")
        self._done = True


@dataclass(frozen=True, slots=True)
class Cast:
    """Who plays which part in the day, chosen from what the day will publish."""

    riders: tuple[str, ...]  # consent to the transport partner before the day
    walkers: tuple[str, ...]  # consent to the health partner before the day
    granter: str  # consents to the transport partner mid-stream, and rides after
    revoker: str  # consents to the transport partner, rides before and after revoking
    eraser: str  # consents to both, pays before erasing, walks (earns points) after
    consenting: House  # its owner consents to the housing partner once it is listed
    refusing: House  # its owner never does


def choose_cast(
    region: Region,
    day: Sequence[Published],
    *,
    grant_at: datetime,
    revoke_at: datetime,
    owners_by: datetime,
    erase_at: datetime,
    extras: int = 6,
) -> Cast:
    """The first residents (in the region's order) who fit each part; the same region always
    casts the same people."""
    owners = {o.owner_id for o in region.owners}
    events: dict[str, list[Published]] = {}
    for p in day:
        events.setdefault(p.subject, []).append(p)

    def has(
        resident: str, event_type: str, after: datetime | None, before: datetime | None
    ) -> bool:
        return any(
            p.event_type == event_type
            and (after is None or p.released > after)
            and (before is None or p.released < before)
            for p in events.get(resident, ())
        )

    taken: set[str] = set(owners)

    def first(fits: Any) -> str:
        for resident in region.residents:
            rid = resident.resident_id
            if rid not in taken and fits(resident):
                taken.add(rid)
                return rid
        raise AssertionError("the region has no one for this part: change the seed or size")

    trip, award = "transport.trip.completed", "health.points.awarded"
    payment = "currency.payment.settled"
    revoker = first(
        lambda r: (
            has(r.resident_id, trip, None, revoke_at) and has(r.resident_id, trip, revoke_at, None)
        )
    )
    granter = first(lambda r: has(r.resident_id, trip, grant_at, None))
    eraser = first(
        lambda r: (
            has(r.resident_id, payment, None, erase_at)
            and has(r.resident_id, award, erase_at, None)
        )
    )
    riders = tuple(first(lambda r: has(r.resident_id, trip, None, None)) for _ in range(extras))
    walkers = tuple(first(lambda r: has(r.resident_id, award, None, None)) for _ in range(extras))
    start, _ = day_bounds(region)
    listed = sorted(
        (h for h in region.houses if start <= h.registered_at < owners_by),
        key=lambda h: h.registered_at,
    )
    if len(listed) < 2 or listed[0].owner.owner_id == listed[1].owner.owner_id:
        raise AssertionError(f"two owners must list a house by {owners_by:%H:%M}: {listed}")
    return Cast(riders, walkers, granter, revoker, eraser, listed[0], listed[1])
