"""Publishing through the SDK: the envelope on the bus, bad rows, duplicates, metrics."""

from __future__ import annotations

import copy
import re
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from pathlib import Path

import orjson
import pytest
from prometheus_client import REGISTRY
from sqlalchemy import Engine, text

from broker.ingest.pipeline import IngestWorker
from broker.settings import REPO_SCHEMAS
from broker.store.database import make_engine
from connectors.sdk import (
    BusSink,
    Connector,
    EventDraft,
    InvalidEventError,
    LocalSchemas,
    OutboxRow,
    RowError,
    SendResult,
    SinkUnavailable,
    stable_event_id,
)
from connectors.sdk.sender import Backoff
from consent.vault import SubjectVault
from contract import cloudevents
from contract.bus import Bus, Record
from contract.catalogue import UnknownTypeError
from tests.events import example_data, registry
from tests.fixtures.kafka import unique_topic

# -- helpers shared by the SDK tests -------------------------------------------------------

JST = timezone(timedelta(hours=9))
TRIP = "transport.trip.completed"
POINTS = "health.points.awarded"


def unique_source() -> str:
    """A connector source no other test uses, so its metrics start at zero."""
    return f"urn:tsunagu:connector:test-{uuid.uuid4().hex[:8]}"


def trip_drafts(n: int, *, start: int = 0, first_line: int = 2) -> list[EventDraft]:
    """``n`` valid trips with distinct natural keys, as a reader of a CSV export yields them."""
    base = example_data(TRIP)
    drafts = []
    for i in range(start, start + n):
        data = copy.deepcopy(base)
        data["trip_id"] = f"trip-{i:06d}"
        data["resident_id"] = f"res-{i % 37:04d}"
        data["fare_jpy"] = 100 + i % 900
        drafts.append(
            EventDraft(
                event_type=TRIP,
                subject=data["resident_id"],
                data=data,
                natural_key=data["trip_id"],
                time=datetime(2025, 6, 12, 9, 58, 2, tzinfo=JST) + timedelta(seconds=i),
                line=first_line + i - start,
            )
        )
    return drafts


def metric(name: str, source: str) -> float:
    """The value of a connector metric for ``source`` (0 when never touched)."""
    return REGISTRY.get_sample_value(name, {"connector": source}) or 0.0


def ingest_all(
    bus: Bus, engine: Engine, *, topic_prefix: str, group: str, timeout_s: float = 40.0
) -> None:
    """Run the real ingest worker until it has committed everything on the transport topic."""
    topic = topic_prefix + "transport"
    end = sum(bus.end_offsets(topic).values())
    with tempfile.TemporaryDirectory() as keys:
        vault = SubjectVault.open_url(f"sqlite:///{Path(keys) / 'vault.db'}")
        try:
            _run_worker(bus, engine, vault, topic, end, topic_prefix, group, timeout_s)
        finally:
            vault.close()


def _run_worker(
    bus: Bus,
    engine: Engine,
    vault: SubjectVault,
    topic: str,
    end: int,
    topic_prefix: str,
    group: str,
    timeout_s: float,
) -> None:
    worker = IngestWorker(
        bus,
        engine,
        registry(),
        vault,
        group=group,
        topics=["transport"],
        topic_prefix=topic_prefix,
    )
    stop = threading.Event()
    thread = threading.Thread(target=worker.run, args=(stop, 0.1))
    thread.start()
    deadline = time.monotonic() + timeout_s
    done = 0
    try:
        while time.monotonic() < deadline:
            done = sum(bus.committed(group, topic).values())
            if done >= end:
                return
            time.sleep(0.05)
        raise AssertionError(f"ingest committed {done} of {end} records in {timeout_s} s")
    finally:
        stop.set()
        thread.join(15)


def ingested_ids(engine: Engine) -> list[str]:
    """Every event id in the ingest ledger (a list, so a double would show)."""
    with engine.connect() as conn:
        return list(conn.execute(text("SELECT id FROM ingested_events")).scalars())


def trip_count(engine: Engine) -> int:
    """Rows in the trips projection."""
    with engine.connect() as conn:
        return int(conn.execute(text("SELECT count(*) FROM transport_trips")).scalar_one())


SCHEMAS = LocalSchemas(REPO_SCHEMAS)


def _read(bus: Bus, topic: str, n: int, timeout_s: float = 20.0) -> list[Record]:
    consumer = bus.consumer(unique_topic("read"), [topic])
    got: list[Record] = []
    deadline = time.monotonic() + timeout_s
    try:
        while len(got) < n and time.monotonic() < deadline:
            got += consumer.poll(500, 0.2)
    finally:
        consumer.close()
    return got


@pytest.fixture
def connector(tmp_path: Path, sqlite_bus: Bus) -> Iterator[Connector]:
    c = Connector(
        unique_source(), [TRIP, POINTS], SCHEMAS, tmp_path / "outbox.db", BusSink(sqlite_bus)
    )
    yield c
    c.close()


@pytest.mark.parametrize("backend", ["sqlite", "kafka"])
def test_valid_drafts_reach_the_domain_topic_as_cloudevents_keyed_by_subject(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    bus: Bus = request.getfixturevalue(f"{backend}_bus")
    prefix = unique_topic("pub") + "."
    source = unique_source()
    drafts = trip_drafts(3)
    with Connector(
        source, [TRIP], SCHEMAS, tmp_path / "outbox.db", BusSink(bus), topic_prefix=prefix
    ) as connector:
        report = connector.publish_all(drafts)
        assert (report.accepted, report.duplicates, report.errors) == (3, 0, [])
        drained = connector.drain(timeout_s=30)
        assert (drained.sent, drained.remaining) == (3, 0)

    records = _read(bus, prefix + "transport", 3)
    assert len(records) == 3
    by_id = {cloudevents.parse(r.value).id: r for r in records}
    for draft in drafts:
        event_id = stable_event_id(source, TRIP, draft.natural_key)
        record = by_id[event_id]
        event = cloudevents.parse(record.value)
        assert record.key == draft.subject.encode()
        assert (event.source, event.type, event.subject) == (source, TRIP, draft.subject)
        assert event.time == draft.time and event.time.utcoffset() == draft.time.utcoffset()
        assert event.dataschema == "urn:tsunagu:schema:transport.trip.completed:v1"
        assert event.data == draft.data
        raw = orjson.loads(record.value)
        assert raw["specversion"] == "1.0"
        assert raw["datacontenttype"] == "application/json"
        assert raw["time"] == draft.time.isoformat()  # RFC 3339 with the +09:00 offset
        assert raw["time"].endswith("+09:00")


def test_a_bad_row_is_reported_with_its_line_and_reason_and_good_rows_still_go(
    connector: Connector, sqlite_bus: Bus
) -> None:
    good = trip_drafts(2, first_line=2)
    bad_data = example_data(TRIP)
    bad_data["fare_jpy"] = -10
    bad = EventDraft(TRIP, "res-a1b2c3d4", bad_data, "trip-bad", good[0].time, line=7)
    undeclared_data = example_data("currency.payment.settled")
    undeclared = EventDraft(
        "currency.payment.settled", "res-a1b2c3d4", undeclared_data, "pay-1", good[0].time, 11
    )
    unreadable = RowError(9, "column fare_jpy: 'abc' is not a number")
    naive = EventDraft(
        TRIP,
        "res-a1b2c3d4",
        example_data(TRIP),
        "trip-naive",
        good[0].time.replace(tzinfo=None),
        12,
    )

    report = connector.publish_all([good[0], bad, unreadable, undeclared, naive, good[1]])

    assert (report.accepted, report.duplicates) == (2, 0)
    assert [e.line for e in report.errors] == [7, 9, 11, 12]
    summary = report.summary()
    assert "line 7: data/fare_jpy: -10 is less than the minimum of 0" in summary
    assert "line 9: column fare_jpy: 'abc' is not a number" in summary
    assert "line 11: event type 'currency.payment.settled' is not declared" in summary
    assert "line 12: time 2025-06-12T09:58:02 has no UTC offset" in summary
    # Only the good rows entered the outbox, and only they reach the bus.
    queued = {r.event_id for r in connector.outbox.peek(100)}
    assert queued == {stable_event_id(connector.source, TRIP, d.natural_key) for d in good}
    assert connector.drain().sent == 2
    assert sum(sqlite_bus.end_offsets("transport").values()) == 2
    assert metric("tsunagu_connector_invalid_total", connector.source) == 4


def test_a_draft_given_without_its_line_is_named_by_its_place_never_line_0(
    connector: Connector,
) -> None:
    good = trip_drafts(3, first_line=2)
    bad_data = example_data(TRIP)
    bad_data["fare_jpy"] = -10
    lineless = EventDraft(TRIP, "res-a1b2c3d4", bad_data, "trip-bad", good[0].time)

    report = connector.publish_all([good[0], good[1], lineless, good[2]], file="trips.csv")

    assert report.accepted == 3
    assert report.summary().splitlines()[1:] == [
        "  trips.csv item 3 (give EventDraft its line= to name the line): "
        "data/fare_jpy: -10 is less than the minimum of 0"
    ]
    # Given its line, the same row is named by it, in the file named.
    again = connector.publish_all([replace(lineless, line=4)], file="trips.csv")
    assert again.summary().splitlines()[1:] == [
        "  trips.csv line 4: data/fare_jpy: -10 is less than the minimum of 0"
    ]


def test_publish_raises_for_an_invalid_draft_and_queues_nothing(connector: Connector) -> None:
    data = example_data(POINTS)
    del data["points"]
    draft = EventDraft(POINTS, data["resident_id"], data, "award-1", trip_drafts(1)[0].time, 4)
    expected = 'line 4: data (root): "points" is a required property'
    with pytest.raises(InvalidEventError, match=re.escape(expected)):
        connector.publish(draft)
    assert connector.depth() == 0


def test_an_event_type_the_platform_does_not_know_is_refused_at_start(
    tmp_path: Path, sqlite_bus: Bus
) -> None:
    with pytest.raises(UnknownTypeError, match=r"transport\.teleport\.completed"):
        Connector(
            unique_source(),
            ["transport.teleport.completed"],
            SCHEMAS,
            tmp_path / "outbox.db",
            BusSink(sqlite_bus),
        )


def test_publishing_the_same_drafts_twice_gives_the_same_ids_and_each_event_once(
    tmp_path: Path, sqlite_bus: Bus, store_url: str
) -> None:
    source = unique_source()
    drafts = trip_drafts(20)
    with Connector(source, [TRIP], SCHEMAS, tmp_path / "a.db", BusSink(sqlite_bus)) as connector:
        ids = [connector.publish(d) for d in drafts]
        assert ids == [stable_event_id(source, TRIP, d.natural_key) for d in drafts]
        again = connector.publish_all(drafts)  # still queued: the outbox keeps one of each
        assert (again.accepted, again.duplicates) == (0, 20)
        assert connector.drain().sent == 20
        after_send = connector.publish_all(drafts)  # sent already: remembered, not re-sent
        assert (after_send.accepted, after_send.duplicates) == (0, 20)
        assert connector.drain().sent == 0
    # A second machine (or a lost outbox) re-running the export sends them again: the
    # platform is what keeps each event once.
    with Connector(source, [TRIP], SCHEMAS, tmp_path / "b.db", BusSink(sqlite_bus)) as other:
        assert other.publish_all(drafts).accepted == 20
        assert other.drain().sent == 20
    assert sum(sqlite_bus.end_offsets("transport").values()) == 40

    engine = make_engine(store_url)
    try:
        ingest_all(sqlite_bus, engine, topic_prefix="", group=unique_topic("ingest"))
        assert sorted(ingested_ids(engine)) == sorted(ids)
        assert trip_count(engine) == 20
    finally:
        engine.dispose()


class _FlakySink:
    """A bus sink that fails its first ``failures`` sends and refuses one event for good."""

    def __init__(self, inner: BusSink, failures: int, refuse: str) -> None:
        self.inner = inner
        self.failures = failures
        self.refuse = refuse

    def send(self, records: Sequence[OutboxRow]) -> SendResult | None:
        if self.failures:
            self.failures -= 1
            raise SinkUnavailable("bus is down")
        refused = {r.seq: "schema_violation: refused" for r in records if r.event_id == self.refuse}
        self.inner.send([r for r in records if r.seq not in refused])
        return SendResult(refused)

    def close(self) -> None:
        self.inner.close()


def test_metrics_count_depth_sent_failed_and_retries_per_connector(
    tmp_path: Path, sqlite_bus: Bus
) -> None:
    source = unique_source()
    drafts = trip_drafts(10)
    refuse = stable_event_id(source, TRIP, drafts[3].natural_key)
    sink = _FlakySink(BusSink(sqlite_bus), failures=2, refuse=refuse)
    fast = Backoff(base_s=0.01, cap_s=0.05)
    with Connector(source, [TRIP], SCHEMAS, tmp_path / "o.db", sink, backoff=fast) as connector:
        connector.publish_all(drafts)
        assert metric("tsunagu_connector_outbox_depth", source) == 10
        report = connector.drain()
        assert (report.sent, report.failed, report.retries, report.remaining) == (9, 1, 2, 0)
        assert [f.event_id for f in connector.outbox.failed()] == [refuse]
    assert metric("tsunagu_connector_outbox_depth", source) == 0
    assert metric("tsunagu_connector_sent_total", source) == 9
    assert metric("tsunagu_connector_failed_total", source) == 1
    assert metric("tsunagu_connector_retries_total", source) == 2


def test_the_background_sender_delivers_as_events_are_published(
    connector: Connector, sqlite_bus: Bus
) -> None:
    connector.start()
    for draft in trip_drafts(5):
        connector.publish(draft)
    deadline = time.monotonic() + 10
    while connector.depth() and time.monotonic() < deadline:
        time.sleep(0.02)
    connector.stop()
    assert connector.depth() == 0
    assert sum(sqlite_bus.end_offsets("transport").values()) == 5
