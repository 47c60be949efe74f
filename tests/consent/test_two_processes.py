"""A revocation through one process is refused by every other process on its next request:
each process caches decisions and applies ``consent.changes`` from the bus (SQLite log and
Apache Kafka)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from broker.bus import open_bus
from broker.store.database import make_engine
from consent.keys import KeyRing
from consent.service import ConsentService
from ops.bench.consent import RemoteDecider, wait_until_refused
from tests.consent.world import (
    ALICE,
    BUS_FIRM,
    CATALOGUE,
    PLANNING,
    TRIPS,
    days,
    now,
    register_partners,
)
from tests.fixtures.kafka import KafkaBroker, unique_topic


@pytest.mark.parametrize("backend", ["sqlite", "kafka"])
def test_a_consent_revoked_in_one_process_is_refused_by_another_on_its_next_request(
    store_url: str,
    backend: str,
    keys: KeyRing,
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> None:
    if backend == "kafka":
        kafka_broker: KafkaBroker = request.getfixturevalue("kafka_broker")
        kafka_broker.start()
        bus_url = kafka_broker.url
    else:
        bus_url = f"sqlite:///{tmp_path / 'bus.db'}"
    topic = unique_topic("consent.changes")
    engine = make_engine(store_url)
    bus = open_bus(bus_url)
    service = ConsentService(engine, keys, bus, catalogue=CATALOGUE, topic=topic)
    register_partners(service)
    consent = service.grant(ALICE, BUS_FIRM, PLANNING, [TRIPS], expires_at=now() + days(30))
    other = RemoteDecider(store_url, bus_url, topic)  # its own decision point and listener
    try:
        assert other.decide(BUS_FIRM, PLANNING, TRIPS, ALICE) == ("allowed", consent.id)
        loads = other.loads()
        assert other.decide(BUS_FIRM, PLANNING, TRIPS, ALICE)[0] == "allowed"
        assert other.loads() == loads  # the other process answers from its cache

        started = time.perf_counter()
        revoked = service.revoke(ALICE, consent.id)
        returned = time.perf_counter()
        refusal = wait_until_refused(other, BUS_FIRM, PLANNING, TRIPS, ALICE, timeout_s=20)
        refused = time.perf_counter()

        assert refusal == ("revoked", revoked.id)
        assert other.loads() > loads  # refused because the change invalidated its cache
        print(
            f"\n[{backend} bus, {store_url.split(':')[0]} store] revocation refused by the other"
            f" process {1000 * (refused - started):.1f} ms after revoke() was called,"
            f" {1000 * (refused - returned):.1f} ms after it returned"
        )
    finally:
        other.close()
        bus.close()
        engine.dispose()
