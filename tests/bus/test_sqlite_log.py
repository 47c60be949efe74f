"""What only the SQLite log promises: several processes on one file, reopening, its own groups."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
from kafka.partitioner.default import murmur2 as kafka_murmur2

from broker.bus import open_bus
from broker.bus.sqlite_log import SqliteLog, murmur2, partition_for_key
from contract.bus import Forgetting, OutRecord, TopicPartition, TopicSpec, next_offsets
from tests.bus.test_contract import by_partition, drain

REPO = Path(__file__).resolve().parents[2]

CHILD = textwrap.dedent(
    """
    import sys
    from contract.bus import OutRecord
    from broker.bus.sqlite_log import SqliteLog

    bus = SqliteLog(sys.argv[1])
    for batch in range(int(sys.argv[2])):
        bus.publish("shared", [
            OutRecord(None if i % 5 == 0 else f"child-{i}".encode(), f"child-{batch}-{i}".encode())
            for i in range(int(sys.argv[3]))
        ])
    bus.close()
    """
)


def test_murmur2_matches_kafka_python_for_every_length() -> None:
    for length in range(0, 64):
        for seed in range(20):
            data = bytes((seed * 31 + i * 7 + length) % 256 for i in range(length))
            assert murmur2(data) == kafka_murmur2(data) & 0xFFFFFFFF, data
            assert partition_for_key(data, 7) == (kafka_murmur2(data) & 0x7FFFFFFF) % 7


def test_a_second_process_appending_concurrently_loses_nothing(tmp_path: Path) -> None:
    path = tmp_path / "bus.db"
    bus = SqliteLog(path)
    bus.create_topics([TopicSpec("shared", partitions=3)])
    batches, size = 30, 200
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(path), str(batches), str(size)],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    try:
        for batch in range(batches):
            bus.publish(
                "shared",
                [
                    OutRecord(
                        None if i % 5 == 0 else f"parent-{i}".encode(), f"p-{batch}-{i}".encode()
                    )
                    for i in range(size)
                ],
            )
    finally:
        assert child.wait(timeout=60) == 0

    total = 2 * batches * size
    ends = bus.end_offsets("shared")
    assert sum(ends.values()) == total
    consumer = bus.consumer("check", ["shared"])
    got = drain(consumer, total, timeout_s=30)
    consumer.close()
    assert len(got) == total
    assert len({r.value for r in got}) == total
    for partition, records in by_partition(got).items():
        assert [r.offset for r in records] == list(range(ends[partition]))
    bus.close()


def test_the_log_survives_reopening(tmp_path: Path) -> None:
    path = tmp_path / "bus.db"
    with SqliteLog(path) as bus:
        bus.create_topics([TopicSpec("consent.changes", partitions=2, compacted=True)])
        bus.publish(
            "consent.changes",
            [OutRecord(f"r{i}".encode(), f"v{i}".encode(), (("h", b"\x00"),)) for i in range(20)],
        )
        consumer = bus.consumer("cache", ["consent.changes"])
        first = drain(consumer, 20)
        consumer.commit({TopicPartition(r.topic, r.partition): r.offset for r in first})
        consumer.close()
        ends, committed = (
            bus.end_offsets("consent.changes"),
            bus.committed("cache", "consent.changes"),
        )

    reopened = open_bus(f"sqlite:///{path}")
    assert isinstance(reopened, SqliteLog)
    assert reopened.end_offsets("consent.changes") == ends
    assert reopened.committed("cache", "consent.changes") == committed
    consumer = reopened.consumer("cache", ["consent.changes"])
    # Committing the last record's own offset leaves that record to read again.
    again = drain(consumer, 2)
    consumer.close()
    assert sorted((r.partition, r.offset) for r in again) == sorted(
        (p, end - 1) for p, end in ends.items()
    )
    assert all(r.headers == (("h", b"\x00"),) for r in again)
    reopened.close()


def test_a_member_that_stops_heartbeating_is_dropped(tmp_path: Path) -> None:
    bus = SqliteLog(tmp_path / "bus.db", session_timeout_s=0.5)
    bus.create_topics([TopicSpec("t", partitions=4)])
    stays, hangs = bus.consumer("g", ["t"]), bus.consumer("g", ["t"])
    stays.poll(timeout_s=0)
    hangs.poll(timeout_s=0)
    assert len(stays.assignment) == len(hangs.assignment) == 2
    bus.publish("t", [OutRecord(f"k{i}".encode(), b"x") for i in range(40)])
    # `hangs` never polls again, as if its process were stuck: its partitions move on.
    time.sleep(0.7)
    got = drain(stays, 40)
    assert len(stays.assignment) == 4
    assert {r.partition for r in got} == {0, 1, 2, 3}
    # When it comes back it rejoins and the partitions are split again.
    hangs.poll(timeout_s=0)
    stays.poll(timeout_s=0)
    hangs.poll(timeout_s=0)
    assert len(stays.assignment) == len(hangs.assignment) == 2
    stays.close()
    hangs.close()
    bus.close()


def test_keyless_records_go_round_robin(sqlite_bus: SqliteLog) -> None:
    sqlite_bus.create_topics([TopicSpec("rr", partitions=4)])
    sqlite_bus.publish("rr", [OutRecord(None, b"x") for _ in range(40)])
    sqlite_bus.publish("rr", [OutRecord(None, b"y") for _ in range(3)])
    ends = sqlite_bus.end_offsets("rr")
    assert sum(ends.values()) == 43
    assert max(ends.values()) - min(ends.values()) <= 1


def test_compaction_keeps_the_last_record_per_key(sqlite_bus: SqliteLog) -> None:
    sqlite_bus.create_topics([TopicSpec("consent.changes", partitions=2, compacted=True)])
    sqlite_bus.publish(
        "consent.changes",
        [OutRecord(f"subject-{i % 5}".encode(), f"v{i}".encode()) for i in range(30)],
    )
    sqlite_bus.publish("consent.changes", [OutRecord(None, b"keyless")])
    assert sqlite_bus.compact() == 25
    consumer = sqlite_bus.consumer("g", ["consent.changes"])
    got = drain(consumer, 6)
    consumer.close()
    latest = {r.key: r.value for r in got}
    expected: dict[bytes | None, bytes] = {
        f"subject-{k}".encode(): f"v{25 + k}".encode() for k in range(5)
    }
    expected[None] = b"keyless"
    assert latest == expected
    # Offsets keep growing after compaction; nothing is renumbered.
    assert sum(sqlite_bus.end_offsets("consent.changes").values()) == 31


def test_publish_from_one_thread_while_another_consumes(sqlite_bus: SqliteLog) -> None:
    sqlite_bus.create_topics([TopicSpec("t", partitions=2)])
    consumer = sqlite_bus.consumer("g", ["t"])

    def produce() -> None:
        for batch in range(20):
            sqlite_bus.publish(
                "t", [OutRecord(f"k{i}".encode(), f"{batch}-{i}".encode()) for i in range(50)]
            )
            time.sleep(0.005)

    producer = threading.Thread(target=produce)
    producer.start()
    got = drain(consumer, 1000, commit=True)
    producer.join()
    consumer.close()
    assert len({r.value for r in got}) == 1000
    assert sqlite_bus.committed("g", "t") == sqlite_bus.end_offsets("t")


def test_the_file_is_in_wal_mode(sqlite_bus: SqliteLog) -> None:
    with sqlite3.connect(sqlite_bus.path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_commit_of_a_negative_offset_is_refused(sqlite_bus: SqliteLog) -> None:
    consumer = sqlite_bus.consumer("g", ["t"])
    with pytest.raises(Exception, match="negative"):
        consumer.commit({TopicPartition("t", 0): -1})
    consumer.commit(next_offsets([]))
    consumer.close()


def _offsets(log_: SqliteLog, topic: str) -> list[int]:
    with sqlite3.connect(log_.path) as conn:
        rows = conn.execute("SELECT offset FROM records WHERE topic = ? ORDER BY offset", (topic,))
        return [int(o) for (o,) in rows]


def test_retention_drops_old_records_every_group_has_committed_past(tmp_path: Path) -> None:
    log_ = SqliteLog(tmp_path / "bus.db", retention_s=3600)
    try:
        log_.create_topics([TopicSpec("t", partitions=1), TopicSpec("t.dlq", partitions=1)])
        log_.publish("t", [OutRecord(b"k", f"{i}".encode()) for i in range(10)])
        log_.publish("t.dlq", [OutRecord(b"k", b"dead")])
        ingest = log_.consumer("ingest", ["t"])
        drain(ingest, 10)
        ingest.commit({TopicPartition("t", 0): 6})  # offsets 6..9 not processed yet
        slow = log_.consumer("slow", ["t"])
        slow.commit({TopicPartition("t", 0): 4})  # another group is further behind
        in_an_hour = int(time.time() * 1000) + 3600 * 1000 + 1
        assert log_.enforce_retention(now_ms=int(time.time() * 1000)) == 0  # nothing old yet
        # Old enough: only what every committing group has passed goes; the dead letters,
        # which no group commits on, expire by age alone.
        assert log_.enforce_retention(now_ms=in_an_hour) == 5
        assert _offsets(log_, "t") == [4, 5, 6, 7, 8, 9]
        assert _offsets(log_, "t.dlq") == []
        slow.commit({TopicPartition("t", 0): 10})
        assert log_.enforce_retention(now_ms=in_an_hour) == 2
        assert _offsets(log_, "t") == [6, 7, 8, 9]
        # Reading on from the committed offset still gets every unprocessed record.
        ingest.close()
        again = log_.consumer("ingest", ["t"])
        assert [r.offset for r in drain(again, 4)] == [6, 7, 8, 9]
        again.close()
        slow.close()
    finally:
        log_.close()


def test_a_log_without_retention_keeps_everything(sqlite_bus: SqliteLog) -> None:
    sqlite_bus.publish("t", [OutRecord(b"k", b"v")])
    assert sqlite_bus.retention_s is None
    assert sqlite_bus.enforce_retention() == 0
    assert sum(sqlite_bus.end_offsets("t").values()) == 1


def test_forget_deletes_every_record_holding_the_bytes_and_leaves_no_copy(
    tmp_path: Path,
) -> None:
    log_ = SqliteLog(tmp_path / "bus.db")
    try:
        log_.create_topics([TopicSpec("t", partitions=2), TopicSpec("t.dlq", partitions=1)])
        alice, alices_long = b'"res-alice001"', b'"res-alice0012"'
        log_.publish(
            "t",
            [OutRecord(b"res-alice001", b'{"resident_id": "res-alice001", "x": "090-1"}')]
            + [OutRecord(b"k", b'{"resident_id": "res-alice0012"}') for _ in range(50)]
            + [OutRecord(None, b'{"owner_id": "res-alice001"}')],
        )
        log_.publish("t.dlq", [OutRecord(None, b'{"resident_id": "res-alice001"}')])
        assert log_.forget(alice) == 3
        assert log_.forget(alice) == 0
        # Another id that merely starts the same is not touched (the needle is quoted).
        assert len(_offsets(log_, "t")) == 50
        assert alices_long[1:-1] in (tmp_path / "bus.db").read_bytes()
        for path in tmp_path.iterdir():
            assert b"090-1" not in path.read_bytes(), path
            assert alice not in path.read_bytes(), path
    finally:
        log_.close()


def test_the_platform_opens_the_sqlite_log_with_the_stated_retention(tmp_path: Path) -> None:
    bus = open_bus(f"sqlite:///{tmp_path / 'bus.db'}", retention_s=14 * 24 * 3600)
    try:
        assert isinstance(bus, Forgetting)
        assert bus.retention_s == 14 * 24 * 3600
    finally:
        bus.close()
