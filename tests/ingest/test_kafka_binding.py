"""Records as Kafka users expect them: the CloudEvents Kafka protocol binding, checked with the
CloudEvents SDK against Apache Kafka, in structured mode (ours) and binary mode (accepted)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest
from cloudevents.core.bindings import kafka as ce_kafka
from cloudevents.core.v1.event import CloudEvent as SdkEvent
from kafka import KafkaConsumer
from sqlalchemy import Engine, select

from broker.bus.kafka import KafkaBus
from broker.ingest.pipeline import IngestWorker
from broker.store.projections.transport import Trip
from connectors.sdk import BusSink
from connectors.sdk.outbox import OutboxRow
from consent.vault import SubjectVault
from contract import cloudevents
from contract.bus import Bus, OutRecord, TopicSpec
from contract.deadletter import H_REASON
from tests.events import encode, make_event, registry
from tests.fixtures.kafka import KafkaBroker, unique_topic


@pytest.fixture
def prefix(kafka_bus: KafkaBus) -> Iterator[str]:
    """Fresh domain topics (one partition) and their dead-letter topics on the session broker."""
    p = unique_topic("ce") + "."
    kafka_bus.create_topics([TopicSpec(p + "transport", 1), TopicSpec(p + "transport.dlq", 1)])
    yield p


def _raw_records(broker: KafkaBroker, topic: str, n: int) -> list[Any]:
    """The records as any Kafka client reads them (no Tsunagu code involved)."""
    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=broker.bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        consumer_timeout_ms=20000,
    )
    try:
        out = []
        for record in consumer:
            out.append(record)
            if len(out) == n:
                break
        return out
    finally:
        consumer.close()


def _ingest(bus: Bus, engine: Engine, vault: SubjectVault, prefix: str, offsets: int) -> None:
    group = unique_topic("ingest")
    worker = IngestWorker(
        bus, engine, registry(), vault, group=group, topics=["transport"], topic_prefix=prefix
    )
    stop = threading.Event()
    thread = threading.Thread(target=worker.run, args=(stop, 0.1))
    thread.start()
    deadline = time.monotonic() + 60
    try:
        while sum(bus.committed(group, prefix + "transport").values()) < offsets:
            assert time.monotonic() < deadline, "the worker did not commit in time"
            time.sleep(0.05)
    finally:
        stop.set()
        thread.join(10)


def test_our_records_are_structured_cloudevents_any_sdk_reads(
    kafka_broker: KafkaBroker, kafka_bus: KafkaBus, prefix: str
) -> None:
    doc = make_event("transport.trip.completed")
    sink = BusSink(kafka_bus)
    row = OutboxRow(1, doc["id"], prefix + "transport", doc["subject"].encode(), encode(doc), 0.0)
    sink.send([row])

    (record,) = _raw_records(kafka_broker, prefix + "transport", 1)
    headers = {k: v for k, v in record.headers}
    assert headers["content-type"] == b"application/cloudevents+json; charset=UTF-8"
    event = ce_kafka.from_kafka_event(
        ce_kafka.KafkaMessage(headers=headers, key=record.key, value=record.value)
    )
    assert event.get_id() == doc["id"]
    assert event.get_type() == "transport.trip.completed"
    assert event.get_subject() == doc["subject"]
    assert event.get_data() == doc["data"]
    assert record.key == doc["subject"].encode()  # keyed by subject, as the binding suggests


def test_a_binary_mode_event_from_the_sdk_is_ingested(
    kafka_bus: KafkaBus, engine: Engine, vault: SubjectVault, prefix: str
) -> None:
    doc = make_event("transport.trip.completed")
    event = SdkEvent(
        attributes={
            "id": doc["id"],
            "source": doc["source"],
            "type": doc["type"],
            "subject": doc["subject"],
            "time": datetime.fromisoformat(doc["time"]),
            "datacontenttype": "application/json",
            "specversion": "1.0",
        },
        data=doc["data"],
    )
    message = ce_kafka.to_binary_event(event)
    assert any(k.startswith("ce_") for k in message.headers)
    kafka_bus.publish(
        prefix + "transport",
        [OutRecord(doc["subject"].encode(), bytes(message.value), list(message.headers.items()))],
    )
    _ingest(kafka_bus, engine, vault, prefix, 1)
    with engine.connect() as conn:
        (trip,) = conn.execute(select(Trip.__table__)).all()  # type: ignore[attr-defined]
    assert trip.event_id == doc["id"]
    assert trip.fare_jpy == doc["data"]["fare_jpy"]


def test_a_binary_mode_event_with_bad_data_is_dead_lettered_with_its_reason(
    kafka_broker: KafkaBroker,
    kafka_bus: KafkaBus,
    engine: Engine,
    vault: SubjectVault,
    prefix: str,
) -> None:
    doc = make_event("transport.trip.completed")
    headers = [
        ("ce_specversion", b"1.0"),
        ("ce_id", doc["id"].encode()),
        ("ce_source", doc["source"].encode()),
        ("ce_type", doc["type"].encode()),
        ("ce_subject", doc["subject"].encode()),
        ("ce_time", doc["time"].encode()),
        ("content-type", b"application/json"),
    ]
    kafka_bus.publish(prefix + "transport", [OutRecord(b"k", b"{not json", headers)])
    _ingest(kafka_bus, engine, vault, prefix, 1)
    (dead,) = _raw_records(kafka_broker, prefix + "transport.dlq", 1)
    assert dict(dead.headers)[H_REASON] == b"not_json"


def test_a_structured_format_other_than_json_is_refused() -> None:
    with pytest.raises(cloudevents.EnvelopeError, match="only JSON"):
        cloudevents.from_kafka([("content-type", b"application/cloudevents+avro")], b"\x00")
