"""The ingest worker on a real bus and both stores: projections, dead letters, idempotency."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from sqlalchemy import Engine, func, select, text

from broker.ingest.pipeline import IngestWorker
from broker.store.projections.currency import CurrencyTransaction
from broker.store.projections.health import HealthPoints
from broker.store.projections.transport import Trip, VehiclePosition
from broker.store.projections.vacant_house import Listing
from consent.vault import SubjectVault
from contract.bus import Bus, OutRecord, Record
from contract.deadletter import H_ORIGIN, H_PATH, H_REASON, H_SCHEMA, H_SOURCE
from tests.events import encode, make_event, registry
from tests.ingest.conftest import TOPICS


def _publish(bus: Bus, docs: list[dict[str, Any]]) -> None:
    for doc in docs:
        topic = doc["type"].split(".")[0]
        bus.publish(topic, [OutRecord(doc["subject"].encode(), encode(doc))])


def _drain(
    bus: Bus, engine: Engine, vault: SubjectVault, expected_offsets: int, group: str = "ingest"
) -> None:
    """Run a worker until the group has committed everything published."""
    worker = IngestWorker(
        bus, engine, registry(), vault, group=group, topics=TOPICS, batch_size=100
    )
    stop = threading.Event()
    thread = threading.Thread(target=worker.run, args=(stop, 0.1))
    thread.start()
    deadline = time.monotonic() + 30
    try:
        while time.monotonic() < deadline:
            done = sum(sum(bus.committed(group, t).values()) for t in TOPICS)
            if done >= expected_offsets:
                return
            time.sleep(0.05)
        pytest.fail(f"worker committed {done} of {expected_offsets} offsets in 30 s")
    finally:
        stop.set()
        thread.join(10)


def _count(engine: Engine, model: Any) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(model.__table__)).scalar_one())


def test_every_type_is_projected_with_its_content(
    bus: Bus, engine: Engine, vault: SubjectVault
) -> None:
    docs = [make_event(t) for t in registry().types()]
    _publish(bus, docs)
    _drain(bus, engine, vault, len(docs))
    trip_doc = next(d for d in docs if d["type"] == "transport.trip.completed")
    with engine.connect() as conn:
        trip = conn.execute(select(Trip.__table__)).one()  # type: ignore[attr-defined]
        assert trip.event_id == trip_doc["id"]
        assert trip.fare_jpy == trip_doc["data"]["fare_jpy"]
        resident = trip_doc["data"]["resident_id"]
        assert trip.subject_ref == vault.ref(resident)
        assert vault.open(resident, trip.sealed)["vehicle_id"] == trip_doc["data"]["vehicle_id"]
        listing = conn.execute(select(Listing.__table__)).one()  # type: ignore[attr-defined]
        reg = next(d for d in docs if d["type"] == "vacant_house.listing.registered")
        details = vault.open(listing.owner_id, listing.owner_details_sealed)
        upd = next(d for d in docs if d["type"] == "vacant_house.listing.updated")
        # v2 (the standard model): the update's owner fields merge over the registration's
        assert details == reg["data"]["owner_details"] | upd["data"]["owner_details"]
        assert listing.publication == upd["data"]["public"]["vacantHouseListing"]
        assert listing.standard["identifier"] == reg["data"]["public"]["identifier"]
        assert conn.execute(text("SELECT count(*) FROM ingested_events")).scalar() == len(docs)
    assert _count(engine, HealthPoints) == 2  # awarded and redeemed
    assert _count(engine, CurrencyTransaction) == 3
    assert _count(engine, VehiclePosition) == 1


def test_redelivered_events_change_nothing(bus: Bus, engine: Engine, vault: SubjectVault) -> None:
    docs = [make_event() for _ in range(5)]
    _publish(bus, docs)
    _publish(bus, docs)  # the same ids again, as a connector retrying would send them
    _drain(bus, engine, vault, 10)
    assert _count(engine, Trip) == 5
    # And a second group replaying the whole topic from the start changes nothing either.
    _drain(bus, engine, vault, 10, group="replay")
    assert _count(engine, Trip) == 5


def test_redelivered_batch_is_skipped_by_the_ledger(
    bus: Bus, engine: Engine, vault: SubjectVault
) -> None:
    worker = IngestWorker(bus, engine, registry(), vault, topics=TOPICS)
    _publish(bus, [make_event() for _ in range(3)])
    consumer = bus.consumer("direct", TOPICS)
    records: list[Record] = []
    deadline = time.monotonic() + 10
    while len(records) < 3 and time.monotonic() < deadline:
        records += consumer.poll(10, 0.2)
    consumer.close()
    first = worker.process(records)
    again = worker.process(records)
    assert (first.projected, first.duplicates) == (3, 0)
    assert (again.projected, again.duplicates) == (0, 3)
    assert _count(engine, Trip) == 3


def _bad_kinds() -> dict[str, bytes]:
    not_typed = make_event()
    del not_typed["type"]
    unknown = make_event()
    unknown["type"] = "transport.teleport.completed"
    violating = make_event()
    violating["data"]["passengers"] = 0
    huge = make_event()
    huge["data"]["operator_name"] = "あ" * 400_000  # over 1 MiB in UTF-8
    return {
        "not_json": b"{not json",
        "invalid_envelope": encode(not_typed),
        "unknown_type": encode(unknown),
        "schema_violation": encode(violating),
        "too_large": encode(huge),
    }


@pytest.mark.parametrize("reason", list(_bad_kinds()))
def test_bad_event_goes_to_dlq_with_reason_and_does_not_block_its_partition(
    bus: Bus, engine: Engine, vault: SubjectVault, reason: str
) -> None:
    bad = _bad_kinds()[reason]
    good = make_event()
    key = good["subject"].encode()  # same key: same partition, bad one first
    bus.publish("transport", [OutRecord(key, bad, [("traceparent", b"00-abc")])])
    bus.publish("transport", [OutRecord(key, encode(good))])
    _drain(bus, engine, vault, 2)
    assert _count(engine, Trip) == 1
    dlq = bus.consumer("dlq-reader", ["transport.dlq"])
    got: list[Record] = []
    deadline = time.monotonic() + 10
    while not got and time.monotonic() < deadline:
        got = dlq.poll(10, 0.2)
    dlq.close()
    assert len(got) == 1
    record = got[0]
    headers = dict(record.headers)
    assert record.value == bad  # the original bytes, untouched
    assert record.key == key
    assert headers[H_REASON].decode() == reason
    assert headers["traceparent"] == b"00-abc"  # original headers kept
    assert headers[H_ORIGIN].decode().startswith("transport/")
    if reason == "schema_violation":
        assert headers[H_PATH] == b"/data/passengers"
        assert headers[H_SCHEMA] == b"urn:tsunagu:schema:transport.trip.completed:v1"
        assert headers[H_SOURCE] == b"urn:tsunagu:connector:test"


def test_dead_letters_are_counted_by_reason(bus: Bus, engine: Engine, vault: SubjectVault) -> None:
    from prometheus_client import REGISTRY

    def value() -> float:
        v = REGISTRY.get_sample_value(
            "tsunagu_dead_letters_total", {"topic": "transport", "reason": "not_json"}
        )
        return v or 0.0

    before = value()
    bus.publish("transport", [OutRecord(b"k", b"nope"), OutRecord(b"k", b"nope again")])
    _drain(bus, engine, vault, 2)
    assert value() - before == 2
