"""A three-broker Kafka cluster (replication 3, min.insync.replicas 2, acks all, idempotent
producers) loses nothing and doubles nothing when a broker is SIGKILLed under load."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from broker.bus.kafka import KafkaBus
from contract.bus import BusError, OutRecord, TopicSpec
from ops.kafka.broker import KafkaCluster
from tests.bus.test_contract import drain
from tests.fixtures.kafka import unique_topic

BATCHES = 60
PER_BATCH = 250


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaCluster]:
    """Three brokers, each a controller too, started once for this module."""
    with KafkaCluster(3, workdir=tmp_path_factory.mktemp("cluster")) as running:
        yield running


def _leader(bus: KafkaBus, topic: str) -> int:
    (described,) = bus.admin().describe_topics([topic])
    leaders: Counter[int] = Counter(p["leader_id"] for p in described["partitions"])
    return leaders.most_common(1)[0][0]


def test_a_broker_killed_under_load_loses_and_doubles_no_record(
    cluster: KafkaCluster, tmp_path: Path
) -> None:
    topic = unique_topic("faults")
    bus = KafkaBus(
        cluster.bootstrap.split(","),
        replication_factor=3,
        publish_timeout_s=120.0,
        request_timeout_ms=10000,
    )
    failures: list[str] = []
    sent = threading.Event()
    published = 0

    def publish() -> None:
        nonlocal published
        for b in range(BATCHES):
            batch = [
                OutRecord(f"k{i % 16}".encode(), f"id-{b}-{i}".encode()) for i in range(PER_BATCH)
            ]
            try:
                bus.publish(topic, batch)
            except BusError as exc:  # counted: a refused batch would be a loss
                failures.append(f"batch {b}: {exc}")
            published = b + 1
        sent.set()

    try:
        bus.create_topics([TopicSpec(topic, partitions=6, replication_factor=3)])
        victim = next(b for b in cluster.brokers if b.node_id == _leader(bus, topic))
        publisher = threading.Thread(target=publish, name="publisher")
        publisher.start()
        while published < BATCHES // 4:
            time.sleep(0.01)
        victim.kill()  # SIGKILL: no controlled shutdown, whatever was not replicated is lost
        while published < BATCHES // 2 and not sent.is_set():
            time.sleep(0.05)
        victim.start()  # it catches up from the other replicas
        publisher.join(timeout=300)
        assert sent.is_set() and not failures, failures

        consumer = bus.consumer(unique_topic("g"), [topic])
        try:
            records = drain(consumer, BATCHES * PER_BATCH, timeout_s=120)
        finally:
            consumer.close()
        counts = Counter(r.value.decode() for r in records)
        expected = {f"id-{b}-{i}" for b in range(BATCHES) for i in range(PER_BATCH)}
        lost = sorted(expected - set(counts))
        doubled = sorted(v for v, n in counts.items() if n > 1)
        assert not lost, f"{len(lost)} lost, e.g. {lost[:5]}"
        assert not doubled, f"{len(doubled)} doubled, e.g. {doubled[:5]}"
        assert sum(bus.end_offsets(topic).values()) == BATCHES * PER_BATCH
    finally:
        bus.close()
