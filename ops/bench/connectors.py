"""Connector SDK throughput: drafts → validate → outbox → drain → bus, against direct publishing.

Prints, per backend, in one run (events/s, the same N events each time):
  - direct publish:        already-built CloudEvents, ``bus.publish`` in batches (the baseline)
  - build + publish:       drafts made into CloudEvents, published straight to the bus
  - SDK, outbox only:      build + outbox + drain (schema check switched off)
  - SDK, with validation:  the real thing: validate + build + outbox + drain
and what the outbox costs as a share of direct throughput. Target: the outbox costs at most
30 %, i.e. SDK throughput ≥ 0.7 × direct publishing.

    python -m ops.bench.connectors [--events 50000] [--backends sqlite,kafka] [--batch 500]
                                   [--repeat 3]
"""

from __future__ import annotations

import argparse
import copy
import functools
import gc
import random
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from broker.bus import open_bus
from broker.settings import REPO_SCHEMAS
from connectors.sdk import BusSink, Connector, EventDraft, LocalSchemas, stable_event_id
from contract.bus import Bus, OutRecord, TopicSpec
from contract.cloudevents import CloudEvent
from contract.deadletter import Rejection
from contract.domains import DOMAINS
from ops.bench.events import MIX
from ops.kafka.broker import KafkaBroker

SOURCE = "urn:tsunagu:connector:bench"


class _UncheckedSchemas(LocalSchemas):
    """The shipped schemas with the data check switched off: isolates the outbox's cost."""

    def check(self, event: CloudEvent) -> Rejection | None:
        """Accept every event."""
        return None


def make_drafts(schemas: LocalSchemas, n: int, seed: int = 11) -> list[EventDraft]:
    """``n`` valid drafts of the region's event mix, with distinct natural keys."""
    rng = random.Random(seed)
    types = list(MIX)
    examples = {t: schemas.registry.get(t).schema["examples"][0] for t in types}
    start = datetime(2025, 6, 12, 9, 0, tzinfo=UTC)
    drafts = []
    for i, event_type in enumerate(rng.choices(types, [MIX[t] for t in types], k=n)):
        data: dict[str, Any] = copy.deepcopy(examples[event_type])
        if "resident_id" in data:
            data["resident_id"] = subject = f"res-{rng.randrange(2000):05d}"
        elif "vehicle_id" in data:
            data["vehicle_id"] = subject = f"veh-{rng.randrange(40):03d}"
        else:
            subject = f"res-{rng.randrange(2000):05d}"
        when = start + timedelta(seconds=i)
        drafts.append(EventDraft(event_type, subject, data, f"row-{i:08d}", when, i + 2))
    return drafts


def _build(schemas: LocalSchemas, draft: EventDraft) -> tuple[str, OutRecord]:
    """The CloudEvent a connector would send for ``draft``, without the SDK."""
    event = CloudEvent(
        id=stable_event_id(SOURCE, draft.event_type, draft.natural_key),
        source=SOURCE,
        type=draft.event_type,
        subject=draft.subject,
        time=draft.time,
        data=draft.data,
        dataschema=schemas.registry.get(draft.event_type).urn,
    )
    return event.domain, OutRecord(event.subject.encode(), event.to_json())


def _publish_batches(bus: Bus, prefix: str, items: list[tuple[str, OutRecord]], batch: int) -> None:
    # Like the sender: one publish per topic per batch of `batch` events in publish order.
    for i in range(0, len(items), batch):
        by_topic: dict[str, list[OutRecord]] = {}
        for domain, record in items[i : i + batch]:
            by_topic.setdefault(prefix + domain, []).append(record)
        for topic, records in by_topic.items():
            bus.publish(topic, records)


def _build_and_publish(
    bus: Bus, prefix: str, schemas: LocalSchemas, drafts: list[EventDraft], batch: int
) -> None:
    _publish_batches(bus, prefix, [_build(schemas, d) for d in drafts], batch)


def _prefixes(bus: Bus, n: int) -> Iterator[str]:
    """``n`` fresh topic prefixes, their topics all created now.

    Up front, because kafka-python 3.0.12's producer thread busy-loops (100 % CPU, starving
    the publishing thread of the GIL) once it publishes to a topic created after it started.
    """
    prefixes = [f"bc{uuid.uuid4().hex[:6]}." for _ in range(n)]
    bus.create_topics([TopicSpec(p + d, 4) for p in prefixes for d in DOMAINS.topics()])
    return iter(prefixes)


def _timed(fn: Callable[[], None]) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


@dataclass
class Figures:
    """Seconds for each way of getting N events onto the bus."""

    n: int
    direct: float
    build_publish: float
    outbox_publish: float
    outbox_drain: float
    sdk_publish: float
    sdk_drain: float
    validation: float

    def rate(self, seconds: float) -> float:
        """Events per second."""
        return self.n / seconds


def bench_backend(
    bus_url: str, tmp: Path, drafts: list[EventDraft], batch: int, repeat: int
) -> Figures:
    """Every figure on one bus, each the best of ``repeat`` runs (disk timings are noisy)."""
    checked = LocalSchemas(REPO_SCHEMAS)
    unchecked = _UncheckedSchemas(REPO_SCHEMAS)
    n = len(drafts)
    bus = open_bus(bus_url)
    prefixes = _prefixes(bus, 1 + 4 * repeat)

    def sdk(schemas: LocalSchemas, name: str) -> tuple[float, float]:
        connector = Connector(
            SOURCE,
            list(MIX),
            schemas,
            tmp / f"{name}-{uuid.uuid4().hex[:6]}.db",
            BusSink(bus),
            topic_prefix=next(prefixes),
            batch_size=batch,
        )
        try:
            publish = _timed(lambda: _expect_all(connector.publish_all(drafts).accepted, n))
            drain = _timed(lambda: _expect_all(connector.drain().sent, n))
        finally:
            connector.close()
        return publish, drain

    try:
        built = [_build(checked, d) for d in drafts]
        # Warm up connections, topic metadata and caches outside the timings.
        _publish_batches(bus, next(prefixes), built[:batch], batch)
        events = [
            CloudEvent(
                stable_event_id(SOURCE, d.event_type, d.natural_key),
                SOURCE,
                d.event_type,
                d.subject,
                d.time,
                d.data,
                checked.registry.get(d.event_type).urn,
            )
            for d in drafts
        ]
        runs = []
        for _ in range(repeat):
            direct_prefix, build_prefix = next(prefixes), next(prefixes)
            direct = _timed(functools.partial(_publish_batches, bus, direct_prefix, built, batch))
            build_publish = _timed(
                functools.partial(_build_and_publish, bus, build_prefix, checked, drafts, batch)
            )
            outbox = sdk(unchecked, "outbox")
            full = sdk(checked, "sdk")
            validation = _timed(lambda: _check_all(checked, events))
            runs.append((direct, build_publish, outbox, full, validation))
    finally:
        bus.close()
    return Figures(
        n,
        direct=min(r[0] for r in runs),
        build_publish=min(r[1] for r in runs),
        outbox_publish=min(r[2][0] for r in runs),
        outbox_drain=min(r[2][1] for r in runs),
        sdk_publish=min(r[3][0] for r in runs),
        sdk_drain=min(r[3][1] for r in runs),
        validation=min(r[4] for r in runs),
    )


def _check_all(schemas: LocalSchemas, events: list[CloudEvent]) -> None:
    for event in events:
        if schemas.check(event) is not None:
            raise RuntimeError(f"event {event.id} is invalid")


def _expect_all(done: int, n: int) -> None:
    if done != n:
        raise RuntimeError(f"only {done} of {n} events went through")


def report(backend: str, f: Figures, repeat: int) -> None:
    """Print one backend's figures, and where an event's time goes."""
    direct = f.rate(f.direct)
    build = f.rate(f.build_publish)
    outbox = f.rate(f.outbox_publish + f.outbox_drain)
    sdk = f.rate(f.sdk_publish + f.sdk_drain)
    us = 1e6 / f.n
    build_us = (f.build_publish - f.direct) * us
    print(f"\n[{backend}] {f.n:,} events, best of {repeat}")
    print(f"  direct publish (built events)  {direct:>9,.0f} events/s")
    print(f"  build + publish (no SDK)       {build:>9,.0f} events/s")
    print(f"  SDK, outbox only               {outbox:>9,.0f} events/s  (schema check off)")
    print(f"  SDK, with validation           {sdk:>9,.0f} events/s")
    print(f"  schema check alone             {f.rate(f.validation):>9,.0f} events/s")
    print(
        "  per event: build CloudEvent"
        f" {build_us:.1f} µs, schema check {f.validation * us:.1f} µs,"
        f" outbox write {f.outbox_publish * us - build_us:.1f} µs,"
        f" drain {f.outbox_drain * us:.1f} µs (of which bus publish {f.direct * us:.1f} µs)"
    )
    print(
        f"  outbox only:     {outbox / build:.0%} of build + publish"
        f" -> the outbox costs {1 - outbox / build:.0%} of direct throughput (target ≤ 30%)"
    )
    print(
        f"  with validation: {sdk / build:.0%} of build + publish,"
        f" {sdk / direct:.0%} of publishing already-built events"
    )


def main() -> None:
    """Run the benchmark and print its figures."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--backends", default="sqlite")
    parser.add_argument("--batch", type=int, default=500, help="events per send")
    parser.add_argument("--repeat", type=int, default=3, help="runs per figure (best is kept)")
    args = parser.parse_args()
    drafts = make_drafts(LocalSchemas(REPO_SCHEMAS), args.events)
    # The 50,000 drafts in memory are the benchmark's, not the pipeline's: keep the garbage
    # collector from rescanning them in every timing (a reader streams its rows).
    gc.collect()
    gc.freeze()
    with ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        for backend in args.backends.split(","):
            if backend == "kafka":
                bus_url = stack.enter_context(KafkaBroker()).url
            else:
                bus_url = f"sqlite:///{tmp / 'bus.db'}"
            report(
                backend, bench_backend(bus_url, tmp, drafts, args.batch, args.repeat), args.repeat
            )


if __name__ == "__main__":
    main()
