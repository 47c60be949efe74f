"""A member's records across a rebalance, on the Kafka bus: what a member had fetched
but not yet handed out is delivered again, whether it keeps the partition or loses it."""

from __future__ import annotations

import time

from broker.bus.kafka import KafkaBus, KafkaGroupConsumer
from contract.bus import OutRecord, TopicPartition, TopicSpec
from tests.fixtures.kafka import KafkaBroker, unique_topic

RECORDS = 20_000
PARTITIONS = 4


def _drain(
    members: list[KafkaGroupConsumer], delivered: set[tuple[int, int]], bus: KafkaBus, topic: str
) -> None:
    """Poll every member and commit what it got, until the group has committed every
    partition's end and nothing more comes."""
    ends = bus.end_offsets(topic)
    deadline = time.monotonic() + 90
    quiet_since = time.monotonic()
    while time.monotonic() < deadline:
        got = 0
        for member in members:
            records = member.poll(1000, 0.1)
            delivered.update((r.partition, r.offset) for r in records)
            member.commit({TopicPartition(r.topic, r.partition): r.offset + 1 for r in records})
            got += len(records)
        if got:
            quiet_since = time.monotonic()
        elif time.monotonic() - quiet_since > 3 and bus.committed(members[0].group, topic) == ends:
            return
    committed = bus.committed(members[0].group, topic)
    seen = {p: sum(1 for q, _ in delivered if q == p) for p in ends}
    owners = [m.assignment for m in members]
    raise AssertionError(
        f"the group did not commit every partition's end: ends {ends}, committed {committed},"
        f" delivered per partition {seen}, assignments {owners}"
    )


def test_records_a_member_had_buffered_are_delivered_after_a_rebalance(
    kafka_broker: KafkaBroker, kafka_bus: KafkaBus
) -> None:
    topic, group = unique_topic("rebalance"), unique_topic("group")
    kafka_bus.create_topics([TopicSpec(topic, PARTITIONS)])
    for start in range(0, RECORDS, 2000):
        kafka_bus.publish(
            topic, [OutRecord(f"k{i}".encode(), b"v") for i in range(start, start + 2000)]
        )
    first = kafka_bus.consumer(group, [topic])
    delivered: set[tuple[int, int]] = set()
    # The first member takes a few records and commits them; its consumer thread meanwhile
    # fetches thousands more into its buffer, not yet handed out.
    deadline = time.monotonic() + 60
    while not delivered and time.monotonic() < deadline:
        records = first.poll(100, 0.5)
        delivered.update((r.partition, r.offset) for r in records)
        first.commit({TopicPartition(r.topic, r.partition): r.offset + 1 for r in records})
    time.sleep(1.0)  # the buffer fills
    # A second member joins: the group rebalances, and the first keeps some partitions.
    other = KafkaBus([kafka_broker.bootstrap], client_id="tsunagu-test-2")
    second = other.consumer(group, [topic])
    try:
        deadline = time.monotonic() + 60
        while not second.assignment and time.monotonic() < deadline:
            time.sleep(0.1)
        assert second.assignment, "the second member got no partition"
        _drain([first, second], delivered, kafka_bus, topic)
    finally:
        second.close()
        other.close()
        first.close()

    every = {(p, o) for p, end in kafka_bus.end_offsets(topic).items() for o in range(end)}
    missing = every - delivered
    assert not missing, f"{len(missing)} records never delivered, e.g. {sorted(missing)[:5]}"
