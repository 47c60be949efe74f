"""A bus outage while a connector publishes: the outbox holds the events until the bus is back.

Batch 1 is ingested before the outage, batch 2 is published while Kafka is down, and after
the restart every event of both batches is in the store once.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from sqlalchemy import Engine

from broker.bus.kafka import KafkaBus
from broker.settings import REPO_SCHEMAS
from broker.store.database import make_engine
from connectors.sdk import Backoff, BusSink, Connector, LocalSchemas, stable_event_id
from ops.kafka.broker import KafkaBroker
from tests.connectors.test_sdk_publish import (
    TRIP,
    ingest_all,
    ingested_ids,
    metric,
    trip_count,
    trip_drafts,
    unique_source,
)
from tests.fixtures.kafka import unique_topic


def _wait(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen within {timeout_s} s")
        time.sleep(0.05)


def _ingest(kafka_broker: KafkaBroker, engine: Engine, prefix: str) -> None:
    # The platform's ingest worker is another process, with its own Kafka clients.
    bus = KafkaBus([kafka_broker.bootstrap])
    try:
        ingest_all(bus, engine, topic_prefix=prefix, group=unique_topic("ingest"))
    finally:
        bus.close()


def test_events_published_while_the_bus_is_down_arrive_once_it_is_back(
    kafka_broker: KafkaBroker, tmp_path: Path
) -> None:
    kafka_broker.start()
    prefix = unique_topic("outage") + "."
    source = unique_source()
    bus = KafkaBus([kafka_broker.bootstrap], publish_timeout_s=2.0, request_timeout_ms=2000)
    engine = make_engine(f"sqlite:///{tmp_path / 'store.db'}")
    connector = Connector(
        source,
        [TRIP],
        LocalSchemas(REPO_SCHEMAS),
        tmp_path / "outbox.db",
        BusSink(bus),
        topic_prefix=prefix,
        backoff=Backoff(base_s=0.1, factor=2.0, cap_s=1.0),
    )
    batch1, batch2 = trip_drafts(30), trip_drafts(30, start=30)
    try:
        connector.start()  # the background sender rides out the outage by itself
        assert connector.publish_all(batch1).accepted == 30
        _wait(lambda: connector.depth() == 0, 30, "delivery of batch 1")
        _ingest(kafka_broker, engine, prefix)
        assert trip_count(engine) == 30

        kafka_broker.stop()
        report = connector.publish_all(batch2)  # publishing needs no bus: the outbox takes it
        assert (report.accepted, report.errors) == (30, [])
        # KafkaBus gives up on a send after publish_timeout_s (2 s); the next attempt, on a
        # fresh producer, waits for the broker to come back.
        _wait(lambda: metric("tsunagu_connector_retries_total", source) >= 1, 20, "a retry")
        assert connector.depth() == 30
        assert metric("tsunagu_connector_outbox_depth", source) == 30
        oldest = connector.outbox.peek(1)[0]
        assert oldest.attempts >= 1 and "timed out" in (oldest.last_error or "")

        kafka_broker.start()
        _wait(lambda: connector.depth() == 0, 30, "delivery of batch 2 after the restart")
        _ingest(kafka_broker, engine, prefix)
    finally:
        connector.close()
        kafka_broker.start()
        bus.close()

    expected = [stable_event_id(source, TRIP, d.natural_key) for d in batch1 + batch2]
    assert sorted(ingested_ids(engine)) == sorted(expected)
    assert trip_count(engine) == 60
    assert metric("tsunagu_connector_sent_total", source) >= 60
    engine.dispose()
