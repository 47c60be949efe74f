"""What only the Kafka backend has to get right: broker outages, restarts and topic settings."""

from __future__ import annotations

import time

import pytest
from kafka import KafkaAdminClient
from kafka.admin import ConfigResource, ConfigResourceType

from broker.bus import open_bus
from broker.bus.kafka import KafkaBus
from contract.bus import BusError, OutRecord, TopicSpec
from tests.bus.test_contract import drain
from tests.fixtures.kafka import KafkaBroker, unique_topic


def test_open_bus_reads_the_bootstrap_servers_from_the_url(kafka_broker: KafkaBroker) -> None:
    kafka_broker.start()
    bus = open_bus(kafka_broker.url)
    try:
        assert isinstance(bus, KafkaBus)
        assert bus.bootstrap_servers == [kafka_broker.bootstrap]
        topic = unique_topic("url")
        bus.publish(topic, [OutRecord(b"k", b"v")])
        assert sum(bus.end_offsets(topic).values()) == 1
    finally:
        bus.close()


def test_end_offsets_count_every_record_of_multi_record_batches(kafka_bus: KafkaBus) -> None:
    topic = unique_topic("batches")
    kafka_bus.create_topics([TopicSpec(topic, partitions=1)])
    for size in (3, 1, 5):
        kafka_bus.publish(topic, [OutRecord(b"k", b"v") for _ in range(size)])
    assert kafka_bus.end_offsets(topic) == {0: 9}


def test_a_compacted_topic_gets_cleanup_policy_compact(kafka_bus: KafkaBus) -> None:
    topic = unique_topic("consent.changes")
    kafka_bus.create_topics([TopicSpec(topic, partitions=1, compacted=True)])
    admin = KafkaAdminClient(bootstrap_servers=kafka_bus.bootstrap_servers)
    try:
        configs = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)])
    finally:
        admin.close()
    assert configs["topic"][topic]["cleanup.policy"]["value"] == "compact"


def test_a_consumer_reads_while_the_application_is_busy(kafka_bus: KafkaBus) -> None:
    # kafka-python 3.0 discards a group join that completes outside poll(); the background
    # polling thread must join even when the application polls rarely and briefly.
    topic = unique_topic("busy")
    kafka_bus.publish(topic, [OutRecord(f"k{i}".encode(), b"v") for i in range(20)])
    consumer = kafka_bus.consumer(unique_topic("g"), [topic])
    try:
        got = []
        for _ in range(100):
            got += consumer.poll(timeout_s=0.01)
            if len(got) >= 20:
                break
            time.sleep(0.2)  # "processing": far longer than each poll
        assert len(got) == 20
    finally:
        consumer.close()


def test_publish_fails_while_the_broker_is_down_and_works_after_restarts(
    kafka_broker: KafkaBroker,
) -> None:
    kafka_broker.start()
    topic = unique_topic("outage")
    bus = KafkaBus([kafka_broker.bootstrap], publish_timeout_s=2.0, request_timeout_ms=2000)
    try:
        bus.publish(topic, [OutRecord(b"k", b"before")])
        kafka_broker.stop()
        with pytest.raises(BusError):
            bus.publish(topic, [OutRecord(b"k", b"during")])
        kafka_broker.start()
        bus.publish(topic, [OutRecord(b"k", b"after")])
        # A restart between two publishes: the producer reconnects with its idempotent id.
        kafka_broker.stop()
        kafka_broker.start()
        bus.publish(topic, [OutRecord(b"k", b"again")])
        consumer = bus.consumer(unique_topic("g"), [topic])
        try:
            values = [r.value for r in drain(consumer, 3)]
        finally:
            consumer.close()
        # The broker keeps its log across restarts: every acknowledged record once, in order,
        # and the refused one never.
        assert values == [b"before", b"after", b"again"]
        assert sum(bus.end_offsets(topic).values()) == 3
    finally:
        kafka_broker.start()
        bus.close()
