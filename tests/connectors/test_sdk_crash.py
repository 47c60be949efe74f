"""A connector killed with SIGKILL mid-drain and restarted delivers every event exactly once.

The connector runs in a child process (this module, run with ``python -m``): it publishes N
trips, then drains them slowly in small batches. The test kills it while the outbox is partly
drained, runs it again on the same outbox, then runs the real ingest worker over the bus.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import pytest

from broker.bus import open_bus
from broker.settings import REPO_SCHEMAS
from broker.store.database import make_engine
from connectors.sdk import (
    BusSink,
    Connector,
    LocalSchemas,
    OutboxRow,
    SendResult,
    stable_event_id,
)
from tests.connectors.test_sdk_publish import (
    TRIP,
    ingest_all,
    ingested_ids,
    trip_count,
    trip_drafts,
)
from tests.fixtures.kafka import unique_topic

EVENTS = 2000
SOURCE = "urn:tsunagu:connector:crash-test"


class _SlowSink(BusSink):
    """Publishes, then dawdles before the outbox forgets the batch: the window a crash hits."""

    def __init__(self, bus_url: str, delay_s: float) -> None:
        super().__init__(open_bus(bus_url))
        self.delay_s = delay_s

    def send(self, records: Sequence[OutboxRow]) -> SendResult | None:
        result = super().send(records)
        print(json.dumps({"published": len(records)}), flush=True)
        time.sleep(self.delay_s)
        return result


def _child(argv: list[str]) -> None:
    """The connector process: publish every trip, then drain."""
    args = argparse.ArgumentParser()
    args.add_argument("--bus", required=True)
    args.add_argument("--outbox", required=True)
    args.add_argument("--prefix", required=True)
    args.add_argument("--batch", type=int, default=500)
    args.add_argument("--delay", type=float, default=0.0)
    opts = args.parse_args(argv)
    sink = _SlowSink(opts.bus, opts.delay)
    connector = Connector(
        SOURCE,
        [TRIP],
        LocalSchemas(REPO_SCHEMAS),
        opts.outbox,
        sink,
        topic_prefix=opts.prefix,
        batch_size=opts.batch,
    )
    report = connector.publish_all(trip_drafts(EVENTS))
    print(json.dumps({"accepted": report.accepted, "duplicates": report.duplicates}), flush=True)
    drained = connector.drain()
    print(json.dumps({"sent": drained.sent, "remaining": drained.remaining}), flush=True)
    connector.close()
    sink.close()


def _depth(outbox: Path) -> int:
    with sqlite3.connect(f"file:{outbox}?mode=ro", uri=True, timeout=5) as conn:
        (delivered,) = conn.execute("SELECT seq FROM cursor").fetchone()
        query = "SELECT count(*) FROM events WHERE seq > ?"
        return int(conn.execute(query, (delivered,)).fetchone()[0])


def _run(args: list[str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.connectors.test_sdk_crash", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.mark.parametrize("backend", ["sqlite", "kafka"])
def test_connector_killed_mid_drain_and_restarted_delivers_every_event_exactly_once(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    if backend == "kafka":
        kafka_broker = request.getfixturevalue("kafka_broker")
        kafka_broker.start()
        bus_url: str = kafka_broker.url
    else:
        bus_url = f"sqlite:///{tmp_path / 'bus.db'}"
    prefix = unique_topic("crash") + "."
    outbox = tmp_path / "outbox.db"
    common = ["--bus", bus_url, "--outbox", str(outbox), "--prefix", prefix]

    first = _run([*common, "--batch", "50", "--delay", "0.2"])
    assert first.stdout is not None
    queued = first.stdout.readline()  # printed once everything is in the outbox
    if not queued:
        pytest.fail(f"the connector died: {first.communicate()[1][-2000:]}")
    assert json.loads(queued) == {"accepted": EVENTS, "duplicates": 0}
    # Kill it right after its 10th batch reached the bus, before the outbox forgot that batch.
    for _ in range(10):
        assert json.loads(first.stdout.readline()) == {"published": 50}
    os.kill(first.pid, signal.SIGKILL)
    first.wait(10)
    left = _depth(outbox)
    assert left == EVENTS - 9 * 50, "the 10th batch was on the bus but still in the outbox"

    second = _run(common)
    out, err = second.communicate(timeout=120)
    assert second.returncode == 0, err[-3000:]
    lines = [json.loads(line) for line in out.splitlines()]
    published, drained = lines[0], lines[-1]
    # Re-running the export after the crash queues nothing new: every id is queued or sent.
    assert published == {"accepted": 0, "duplicates": EVENTS}
    assert drained == {"sent": left, "remaining": 0}

    bus = open_bus(bus_url)
    engine = make_engine(f"sqlite:///{tmp_path / 'store.db'}")
    try:
        # The batch in flight at the kill went to the bus twice; the platform keeps it once.
        assert sum(bus.end_offsets(prefix + "transport").values()) == EVENTS + 50
        ingest_all(bus, engine, topic_prefix=prefix, group=unique_topic("ingest"))
        expected = [stable_event_id(SOURCE, TRIP, d.natural_key) for d in trip_drafts(EVENTS)]
        assert sorted(ingested_ids(engine)) == sorted(expected)
        assert trip_count(engine) == EVENTS
    finally:
        bus.close()
        engine.dispose()


if __name__ == "__main__":
    _child(sys.argv[1:])
