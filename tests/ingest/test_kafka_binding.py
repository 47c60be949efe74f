"""Records as Kafka users expect them: the CloudEvents Kafka protocol binding, checked with the
official CloudEvents SDK against Apache Kafka: ours are structured mode with their content-type
(from a connector's outbox and from HTTP ingest alike), and the ingest takes the SDK's records
in both modes, published with kafka-python alone."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from cloudevents.core.base import BaseCloudEvent
from cloudevents.core.bindings import kafka as ce_kafka
from cloudevents.core.formats.json import JSONFormat
from kafka import KafkaConsumer, KafkaProducer
from sqlalchemy import Engine, select

from broker.auth.principals import Principal, Role
from broker.bus.kafka import KafkaBus
from broker.ingest.gateway import IngestGateway, Outcome
from broker.ingest.pipeline import IngestWorker
from broker.store.projections.transport import Trip
from connectors.sdk import BusSink
from connectors.sdk.outbox import OutboxRow
from consent.vault import SubjectVault
from contract import cloudevents
from contract.bus import Bus, OutRecord, TopicSpec
from contract.deadletter import H_REASON
from tests.cloudevents_sdk import sdk_event
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


def _by_subject(event: BaseCloudEvent) -> bytes:
    """Our key for a record: the event's subject (the SDK's default key is ``partitionkey``)."""
    return str(event.get_subject()).encode()


def _produce(broker: KafkaBroker, topic: str, message: ce_kafka.KafkaMessage) -> None:
    """Publish the SDK's Kafka message with kafka-python alone, as any producer would."""
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap)
    try:
        key = message.key.encode() if isinstance(message.key, str) else message.key
        producer.send(topic, value=message.value, key=key, headers=list(message.headers.items()))
        producer.flush(30)
    finally:
        producer.close()


def _projected_trip_ids(engine: Engine) -> list[str]:
    with engine.connect() as conn:
        return [t.event_id for t in conn.execute(select(Trip.__table__))]  # type: ignore[attr-defined]


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


def test_records_from_http_ingest_are_structured_cloudevents_any_sdk_reads(
    kafka_broker: KafkaBroker, kafka_bus: KafkaBus, engine: Engine, prefix: str
) -> None:
    doc = make_event("transport.trip.completed")
    gateway = IngestGateway(
        kafka_bus, engine, registry(), domains=["transport"], topic_prefix=prefix
    )
    caller = Principal(
        "test-connector",
        Role.CONNECTOR,
        "urn:tsunagu:issuer:embedded",
        datetime.now(UTC),
        sources=frozenset({doc["source"]}),
        event_types=frozenset({"transport.*"}),
    )
    [result] = gateway.submit([doc], "t", caller)
    assert result.status is Outcome.ACCEPTED

    (record,) = _raw_records(kafka_broker, prefix + "transport", 1)
    headers = {k: v for k, v in record.headers}
    assert headers["content-type"] == b"application/cloudevents+json; charset=UTF-8"
    event = ce_kafka.from_kafka_event(
        ce_kafka.KafkaMessage(headers=headers, key=record.key, value=record.value)
    )
    assert (event.get_id(), event.get_data()) == (doc["id"], doc["data"])


def test_a_binary_mode_event_from_the_sdk_is_ingested(
    kafka_broker: KafkaBroker, kafka_bus: KafkaBus, engine: Engine, vault: SubjectVault, prefix: str
) -> None:
    doc = make_event("transport.trip.completed")
    message = ce_kafka.to_binary(sdk_event(doc), JSONFormat(), _by_subject)
    assert message.headers["ce_specversion"] == b"1.0"
    _produce(kafka_broker, prefix + "transport", message)
    _ingest(kafka_bus, engine, vault, prefix, 1)
    assert _projected_trip_ids(engine) == [doc["id"]]


def test_a_structured_mode_event_from_the_sdk_is_ingested(
    kafka_broker: KafkaBroker, kafka_bus: KafkaBus, engine: Engine, vault: SubjectVault, prefix: str
) -> None:
    doc = make_event("transport.trip.completed")
    message = ce_kafka.to_structured(sdk_event(doc), JSONFormat(), _by_subject)
    assert message.headers["content-type"] == b"application/cloudevents+json"
    assert not any(k.startswith("ce_") for k in message.headers)
    _produce(kafka_broker, prefix + "transport", message)
    _ingest(kafka_bus, engine, vault, prefix, 1)
    assert _projected_trip_ids(engine) == [doc["id"]]


def test_an_sdk_binary_mode_event_without_ce_specversion_is_dead_lettered(
    kafka_broker: KafkaBroker, kafka_bus: KafkaBus, engine: Engine, vault: SubjectVault, prefix: str
) -> None:
    doc = make_event("transport.trip.completed")
    message = ce_kafka.to_binary(sdk_event(doc), JSONFormat(), _by_subject)
    headers = {k: v for k, v in message.headers.items() if k != "ce_specversion"}
    _produce(
        kafka_broker,
        prefix + "transport",
        ce_kafka.KafkaMessage(headers, message.key, message.value),
    )
    _ingest(kafka_bus, engine, vault, prefix, 1)
    (dead,) = _raw_records(kafka_broker, prefix + "transport.dlq", 1)
    assert dict(dead.headers)[H_REASON] == b"invalid_envelope"
    assert _projected_trip_ids(engine) == []


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
