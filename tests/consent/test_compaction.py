"""``consent.changes`` on Apache Kafka is really compacted, and a process started after the
cleaner ran still follows the latest state (here: a partner's purpose approved and withdrawn
many times, all under the partner's key)."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator

import pytest
from kafka.admin import ConfigResource, ConfigResourceType
from sqlalchemy import Engine

from broker.bus.kafka import KafkaBus
from consent.changes import MARKER_KEY
from consent.decisions import DecisionPoint, DecisionReason
from consent.keys import KeyRing
from consent.listener import ConsentChangeListener
from consent.service import ConsentService
from contract.bus import TopicSpec
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
from tests.fixtures.kafka import unique_topic

CHANGES = 60


@pytest.fixture
def eager_topic(kafka_bus: KafkaBus) -> Iterator[str]:
    """A changes topic whose cleaner runs as soon as a segment rolls (production keeps days)."""
    topic = unique_topic("consent.changes")
    spec = TopicSpec(topic, partitions=1, compacted=True)
    kafka_bus.create_topics([spec])
    admin = kafka_bus.admin()
    admin.alter_configs(
        [
            ConfigResource(
                ConfigResourceType.TOPIC,
                topic,
                configs={
                    "segment.ms": "100",
                    "min.cleanable.dirty.ratio": "0.01",
                    "min.compaction.lag.ms": "0",
                    "delete.retention.ms": "100",
                },
            )
        ]
    )
    yield topic


def _records_per_key(bus: KafkaBus, topic: str) -> tuple[Counter[str], int]:
    """Every record now on the topic, counted by key, and the log's end offset."""
    consumer = bus.consumer(unique_topic("reader"), [topic])
    try:
        end = sum(bus.end_offsets(topic).values())
        seen: Counter[str] = Counter()
        last = -1
        deadline = time.monotonic() + 30
        while last + 1 < end and time.monotonic() < deadline:
            for record in consumer.poll(max_records=1000, timeout_s=0.2):
                seen[(record.key or b"").decode()] += 1
                last = max(last, record.offset)
        return seen, end
    finally:
        consumer.close()


def test_many_changes_of_one_key_compact_and_a_new_process_follows_the_latest(
    engine: Engine, keys: KeyRing, kafka_bus: KafkaBus, eager_topic: str
) -> None:
    service = ConsentService(engine, keys, kafka_bus, catalogue=CATALOGUE, topic=eager_topic)
    register_partners(service)
    service.grant(ALICE, BUS_FIRM, PLANNING, [TRIPS], expires_at=now() + days(9))
    for _ in range(CHANGES):
        service.withdraw_purpose(BUS_FIRM, PLANNING, withdrawn_by="mitoyo-city/kikaku-1")
        service.approve_purpose(BUS_FIRM, PLANNING, approved_by="mitoyo-city/kikaku-1")
    service.withdraw_purpose(BUS_FIRM, PLANNING, withdrawn_by="mitoyo-city/kikaku-1")

    # The cleaner works on closed segments: keep appending (markers) until it has run.
    deadline = time.monotonic() + 120
    while True:
        seen, end = _records_per_key(kafka_bus, eager_topic)
        seen.pop(MARKER_KEY, None)
        most = max(seen.values())
        assert seen[BUS_FIRM] >= 1  # the partner's latest change is still there
        if most <= 2:  # the latest, and at most one in the active segment
            break
        assert time.monotonic() < deadline, f"not compacted: {most} records of one key"
        listener = ConsentChangeListener(
            kafka_bus, DecisionPoint(engine, CATALOGUE), topic=eager_topic
        )
        listener.start()  # its marker rolls a segment
        listener.stop()
        time.sleep(0.5)
    assert end > 2 * CHANGES  # the log's offsets still count every change written

    # A process started now reads the compacted topic and decides from the latest state.
    decision_point = DecisionPoint(engine, CATALOGUE)
    listener = ConsentChangeListener(kafka_bus, decision_point, topic=eager_topic)
    listener.start()
    try:
        assert listener.wait_ready(30)
        assert decision_point.cache.caching
        decision = decision_point.decide(BUS_FIRM, PLANNING, TRIPS, ALICE)
        assert not decision.allowed
        assert decision.reason is DecisionReason.PURPOSE_NOT_APPROVED
    finally:
        listener.stop()
