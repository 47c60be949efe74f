"""The bus contract: the SQLite log and Apache Kafka must both pass every test here."""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Sequence

import pytest
from kafka.partitioner.default import murmur2 as kafka_murmur2

from contract.bus import (
    Bus,
    BusError,
    Consumer,
    OutRecord,
    Record,
    TopicPartition,
    TopicSpec,
    consumer_lag,
    next_offsets,
)
from tests.fixtures.kafka import unique_topic

# These bound the waits for a Kafka group to join and to rebalance.
JOIN_TIMEOUT_S = 30.0


@pytest.fixture(params=["sqlite", "kafka"])
def bus(request: pytest.FixtureRequest) -> Bus:
    """Each contract test runs on the SQLite log and on Kafka."""
    backend: Bus = request.getfixturevalue(f"{request.param}_bus")
    return backend


def kafka_partition(key: bytes, partitions: int) -> int:
    """Kafka's default partitioner, as implemented by kafka-python (the reference)."""
    return int((kafka_murmur2(key) & 0x7FFFFFFF) % partitions)


def drain(
    consumer: Consumer,
    want: int,
    *,
    timeout_s: float = JOIN_TIMEOUT_S,
    commit: bool = False,
) -> list[Record]:
    """Poll until ``want`` distinct (partition, offset) pairs have come, or fail at timeout."""
    got: list[Record] = []
    seen: set[tuple[str, int, int]] = set()
    deadline = time.monotonic() + timeout_s
    while len(seen) < want:
        if time.monotonic() > deadline:
            pytest.fail(f"only {len(seen)} of {want} records within {timeout_s} s")
        batch = consumer.poll(max_records=500, timeout_s=0.2)
        got.extend(batch)
        seen.update((r.topic, r.partition, r.offset) for r in batch)
        if commit and batch:
            consumer.commit(next_offsets(batch))
    return got


def by_partition(records: Sequence[Record]) -> dict[int, list[Record]]:
    """Records grouped by partition, in the order they came."""
    out: dict[int, list[Record]] = defaultdict(list)
    for r in records:
        out[r.partition].append(r)
    return dict(out)


def keys_per_partition(partitions: int, per_partition: int, prefix: str) -> list[bytes]:
    """Keys chosen so that each partition gets exactly ``per_partition`` of them."""
    counts = dict.fromkeys(range(partitions), 0)
    keys: list[bytes] = []
    i = 0
    while len(keys) < partitions * per_partition:
        key = f"{prefix}-{i}".encode()
        p = kafka_partition(key, partitions)
        if counts[p] < per_partition:
            counts[p] += 1
            keys.append(key)
        i += 1
    return keys


def test_records_come_back_in_offset_order_with_key_value_and_headers(bus: Bus) -> None:
    topic = unique_topic("order")
    bus.create_topics([TopicSpec(topic, partitions=3)])
    sent = [
        OutRecord(
            key=f"subject-{i % 7}".encode(),
            value=f"event-{i}".encode() + bytes([0, 255, i % 256]),
            headers=(("trace", bytes([i % 256, 0])), ("trace", b""), ("ce-type", b"x.y")),
        )
        for i in range(60)
    ]
    sent.append(OutRecord(key=None, value=b"", headers=()))
    bus.publish(topic, sent[:25])
    bus.publish(topic, sent[25:])

    consumer = bus.consumer(unique_topic("g"), [topic])
    try:
        got = drain(consumer, len(sent))
    finally:
        consumer.close()

    assert len(got) == len(sent)  # one consumer, no rebalance: exactly once
    for partition, records in by_partition(got).items():
        assert [r.offset for r in records] == list(range(len(records))), partition
        assert all(r.topic == topic for r in records)
    assert sorted((r.key or b"", r.value, tuple(r.headers)) for r in got) == sorted(
        (s.key or b"", s.value, tuple(s.headers)) for s in sent
    )
    # One key's records stay in publish order.
    for k in range(7):
        key = f"subject-{k}".encode()
        assert [r.value for r in got if r.key == key] == [s.value for s in sent if s.key == key]
    assert all(r.timestamp_ms > 1_600_000_000_000 for r in got)


def test_a_key_always_lands_on_kafkas_default_partition(bus: Bus) -> None:
    topic = unique_topic("keys")
    bus.create_topics([TopicSpec(topic, partitions=5)])
    keys = [f"resident-{i:04d}".encode() for i in range(50)] + [b"", "住民".encode()]
    bus.publish(topic, [OutRecord(k, b"first") for k in keys])
    bus.publish(topic, [OutRecord(k, b"second") for k in reversed(keys)])

    consumer = bus.consumer(unique_topic("g"), [topic])
    try:
        got = drain(consumer, 2 * len(keys))
    finally:
        consumer.close()

    for r in got:
        assert r.key is not None
        assert r.partition == kafka_partition(r.key, 5), r.key
    assert len({r.partition for r in got}) == 5


def test_group_resumes_from_committed_offset_and_redelivers_the_rest(bus: Bus) -> None:
    topic = unique_topic("resume")
    group = unique_topic("g")
    bus.create_topics([TopicSpec(topic, partitions=1)])
    bus.publish(topic, [OutRecord(b"k", f"v{i}".encode()) for i in range(10)])

    first = bus.consumer(group, [topic])
    try:
        assert [r.offset for r in drain(first, 10)] == list(range(10))
        first.commit({TopicPartition(topic, 0): 6})  # 6..9 "not processed"
    finally:
        first.close()
    assert bus.committed(group, topic) == {0: 6}

    bus.publish(topic, [OutRecord(b"k", b"v10")])
    second = bus.consumer(group, [topic])
    try:
        again = drain(second, 5)
    finally:
        second.close()
    assert [r.offset for r in again] == [6, 7, 8, 9, 10]
    assert [r.value for r in again] == [b"v6", b"v7", b"v8", b"v9", b"v10"]


def test_two_groups_each_see_every_record(bus: Bus) -> None:
    topic = unique_topic("fanout")
    bus.create_topics([TopicSpec(topic, partitions=2)])
    bus.publish(topic, [OutRecord(f"k{i}".encode(), f"v{i}".encode()) for i in range(40)])

    audit = bus.consumer(unique_topic("audit"), [topic])
    ingest = bus.consumer(unique_topic("ingest"), [topic])
    try:
        # Both groups join at once; draining one after the other then costs one join, not two.
        seen_audit = {r.value for r in drain(audit, 40)}
        seen_ingest = {r.value for r in drain(ingest, 40)}
    finally:
        audit.close()
        ingest.close()
    everything = {f"v{i}".encode() for i in range(40)}
    assert seen_audit == everything
    assert seen_ingest == everything


def test_end_offsets_and_committed_report_progress(bus: Bus) -> None:
    topic = unique_topic("offsets")
    group = unique_topic("g")
    bus.create_topics([TopicSpec(topic, partitions=3)])
    assert bus.end_offsets(topic) == {0: 0, 1: 0, 2: 0}
    assert bus.committed(group, topic) == {0: 0, 1: 0, 2: 0}

    keys = [f"k{i}".encode() for i in range(30)]
    bus.publish(topic, [OutRecord(k, b"x") for k in keys])
    bus.publish(topic, [OutRecord(keys[0], b"y")])
    expected = dict.fromkeys(range(3), 0)
    for k in [*keys, keys[0]]:
        expected[kafka_partition(k, 3)] += 1
    assert bus.end_offsets(topic) == expected

    consumer = bus.consumer(group, [topic])
    try:
        records = drain(consumer, 31)
        consumer.commit(next_offsets(records))
    finally:
        consumer.close()
    assert bus.committed(group, topic) == expected
    assert bus.committed(unique_topic("other"), topic) == {0: 0, 1: 0, 2: 0}


def test_offsets_of_an_unknown_topic_are_an_error(bus: Bus) -> None:
    missing = unique_topic("missing")
    with pytest.raises(BusError, match=missing):
        bus.end_offsets(missing)
    with pytest.raises(BusError, match=missing):
        bus.committed("g", missing)


def test_publishing_creates_a_missing_topic_with_the_default_partitions(bus: Bus) -> None:
    topic = unique_topic("auto")
    bus.publish(topic, [OutRecord(None, b"x"), OutRecord(b"k", b"y")])
    ends = bus.end_offsets(topic)
    assert sorted(ends) == [0, 1, 2, 3]
    assert sum(ends.values()) == 2


def test_create_topics_is_idempotent_and_checks_names(bus: Bus) -> None:
    topic = unique_topic("idem")
    bus.create_topics([TopicSpec(topic, partitions=2), TopicSpec(f"{topic}.dlq", 1)])
    bus.create_topics([TopicSpec(topic, partitions=2)])
    assert bus.end_offsets(topic) == {0: 0, 1: 0}
    assert bus.end_offsets(f"{topic}.dlq") == {0: 0}
    with pytest.raises(BusError):
        bus.create_topics([TopicSpec("no spaces allowed", 1)])
    with pytest.raises(BusError):
        bus.publish("bad/name", [OutRecord(None, b"x")])


def test_publishing_to_many_partitions(bus: Bus) -> None:
    topic = unique_topic("wide")
    bus.create_topics([TopicSpec(topic, partitions=16)])
    keys = keys_per_partition(16, 25, "subject")
    bus.publish(topic, [OutRecord(k, k + b"|payload") for k in keys])
    assert bus.end_offsets(topic) == dict.fromkeys(range(16), 25)

    consumer = bus.consumer(unique_topic("g"), [topic])
    try:
        got = drain(consumer, len(keys))
    finally:
        consumer.close()
    assert sorted(r.value for r in got) == sorted(k + b"|payload" for k in keys)
    for records in by_partition(got).values():
        assert [r.offset for r in records] == list(range(25))


def test_poll_waits_at_most_its_timeout_when_nothing_comes(bus: Bus) -> None:
    topic = unique_topic("quiet")
    bus.create_topics([TopicSpec(topic, partitions=1)])
    consumer = bus.consumer(unique_topic("g"), [topic])
    try:
        started = time.monotonic()
        assert consumer.poll(timeout_s=0.3) == []
        elapsed = time.monotonic() - started
        assert 0.25 <= elapsed < 2.0
        consumer.close()
        with pytest.raises(BusError):
            consumer.poll(timeout_s=0)
    finally:
        consumer.close()


def test_commit_for_a_partition_not_assigned_is_accepted(bus: Bus) -> None:
    read, other = unique_topic("read"), unique_topic("other")
    group = unique_topic("g")
    bus.create_topics([TopicSpec(read, 1), TopicSpec(other, 2)])
    bus.publish(read, [OutRecord(None, b"x")])
    consumer = bus.consumer(group, [read])
    try:
        drain(consumer, 1)  # joined
        consumer.commit({TopicPartition(other, 1): 5})
    finally:
        consumer.close()
    assert bus.committed(group, other) == {0: 0, 1: 5}


def _wave(bus: Bus, topic: str, wave: int, partitions: int, per_partition: int) -> set[bytes]:
    keys = keys_per_partition(partitions, per_partition, f"w{wave}")
    values = [k + b"|" + str(wave).encode() for k in keys]
    bus.publish(topic, [OutRecord(k, v) for k, v in zip(keys, values, strict=True)])
    return set(values)


def _read_wave(
    consumers: Sequence[Consumer], want: set[bytes], timeout_s: float
) -> list[dict[int, set[bytes]]]:
    """Poll every consumer (committing) until ``want`` is covered; per consumer, what it read."""
    seen: list[dict[int, set[bytes]]] = [defaultdict(set) for _ in consumers]
    deadline = time.monotonic() + timeout_s
    while True:
        covered: set[bytes] = set()
        for s in seen:
            for values in s.values():
                covered |= values
        if want <= covered:
            return seen
        if time.monotonic() > deadline:
            pytest.fail(f"{len(want - covered)} of {len(want)} records never came")
        for consumer, s in zip(consumers, seen, strict=True):
            batch = consumer.poll(timeout_s=0.1)
            for r in batch:
                s[r.partition].add(r.value)
            if batch:
                consumer.commit(next_offsets(batch))


def _until_split(bus: Bus, topic: str, pair: Sequence[Consumer]) -> tuple[set[int], set[int]]:
    """Publish waves until one is read by both members from disjoint, non-empty partitions.

    Every wave must be covered (nothing lost); during a rebalance a wave may be read twice or
    by one member only, so the split is checked on the first settled wave.
    """
    deadline = time.monotonic() + JOIN_TIMEOUT_S
    wave = 0
    while True:
        wave += 1
        seen = _read_wave(pair, _wave(bus, topic, wave, 4, 5), JOIN_TIMEOUT_S)
        first, second = set(seen[0]), set(seen[1])
        if first and second and not first & second:
            return first, second
        if time.monotonic() > deadline:
            pytest.fail(f"the two members never split the partitions: {first} / {second}")


def test_two_members_of_a_group_split_the_partitions_and_miss_nothing(bus: Bus) -> None:
    topic = unique_topic("split")
    group = unique_topic("g")
    bus.create_topics([TopicSpec(topic, partitions=4)])
    pair = [bus.consumer(group, [topic]), bus.consumer(group, [topic])]
    try:
        first, second = _until_split(bus, topic, pair)
    finally:
        for consumer in pair:
            consumer.close()
    assert first | second == {0, 1, 2, 3}


def test_a_closed_members_partitions_move_to_the_remaining_member(bus: Bus) -> None:
    topic = unique_topic("handover")
    group = unique_topic("g")
    bus.create_topics([TopicSpec(topic, partitions=4)])
    stays, leaves = bus.consumer(group, [topic]), bus.consumer(group, [topic])
    try:
        _, left_behind = _until_split(bus, topic, [stays, leaves])
        leaves.close()
        seen = _read_wave([stays], _wave(bus, topic, 99, 4, 5), JOIN_TIMEOUT_S)
    finally:
        stays.close()
        leaves.close()
    assert left_behind <= set(seen[0])
    assert set(seen[0]) == {0, 1, 2, 3}


def test_consumer_lag_is_end_minus_committed_per_partition(bus: Bus) -> None:
    topic, other = unique_topic("lag"), unique_topic("lag2")
    group = unique_topic("g")
    bus.create_topics([TopicSpec(topic, partitions=3), TopicSpec(other, partitions=1)])
    zero = {TopicPartition(topic, p): 0 for p in range(3)} | {TopicPartition(other, 0): 0}
    assert consumer_lag(bus, group, [topic, other]) == zero

    bus.publish(topic, [OutRecord(k, b"x") for k in keys_per_partition(3, 4, "lag")])
    bus.publish(other, [OutRecord(None, b"y")] * 2)
    assert consumer_lag(bus, group, [topic, other]) == {
        **{TopicPartition(topic, p): 4 for p in range(3)},
        TopicPartition(other, 0): 2,
    }

    consumer = bus.consumer(group, [topic])
    try:
        records = drain(consumer, 12)
        # All of partition 0, half of partition 1, nothing of partition 2.
        consumer.commit({TopicPartition(topic, 0): 4, TopicPartition(topic, 1): 2})
    finally:
        consumer.close()
    assert len(records) == 12
    assert consumer_lag(bus, group, [topic]) == {
        TopicPartition(topic, 0): 0,
        TopicPartition(topic, 1): 2,
        TopicPartition(topic, 2): 4,
    }
    # Publishing grows it; another group's lag is its own.
    bus.publish(topic, [OutRecord(k, b"z") for k in keys_per_partition(3, 1, "more")])
    assert consumer_lag(bus, group, [topic])[TopicPartition(topic, 0)] == 1
    assert consumer_lag(bus, unique_topic("g"), [topic]) == {
        TopicPartition(topic, p): 5 for p in range(3)
    }
