"""The outbox file and the backoff: what a connector relies on between publish and delivery."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import pytest

from connectors.sdk import Backoff, Outbox, OutboxEntry, OutboxInUseError

# A child process that opens the outbox, says so, and holds it until its stdin closes.
_HOLD = """
import sys
from connectors.sdk import Outbox
outbox = Outbox(sys.argv[1])
print("open", flush=True)
sys.stdin.read()
outbox.close()
"""


@contextmanager
def held_by_another_process(path: Path) -> Iterator[subprocess.Popen[str]]:
    """A second process that owns the outbox at ``path`` until the block ends."""
    child = subprocess.Popen(
        [sys.executable, "-c", _HOLD, str(path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None and child.stdout.readline() == "open\n"
        yield child
    finally:
        if child.poll() is None:
            child.kill()
        child.wait()
        for pipe in (child.stdin, child.stdout):
            if pipe is not None:
                pipe.close()


def _entries(n: int, start: int = 0) -> list[OutboxEntry]:
    return [
        OutboxEntry(f"id-{i}", "transport", f"res-{i % 3:04d}".encode(), b'{"n": %d}' % i)
        for i in range(start, start + n)
    ]


def test_queued_events_survive_reopening_in_publish_order(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "o.db")
    assert outbox.add_many(_entries(5)) == 5
    outbox.close()
    reopened = Outbox(tmp_path / "o.db")
    rows = reopened.peek(10)
    assert [r.event_id for r in rows] == [f"id-{i}" for i in range(5)]
    assert rows[0].key == b"res-0000" and rows[0].value == b'{"n": 0}'
    assert [r.seq for r in rows] == sorted(r.seq for r in rows)
    assert reopened.depth() == 5
    reopened.close()


def test_an_event_id_is_queued_once(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "o.db")
    assert outbox.add_many(_entries(3)) == 3
    assert outbox.add_many(_entries(5)) == 2  # ids 0-2 are queued already
    assert outbox.add(_entries(1)[0]) is False
    assert outbox.depth() == 5
    outbox.close()


def test_delivered_ids_are_remembered_so_a_rerun_does_not_queue_them_again(
    tmp_path: Path,
) -> None:
    outbox = Outbox(tmp_path / "o.db")
    outbox.add_many(_entries(4))
    outbox.ack(outbox.peek(2)[-1].seq)
    assert outbox.depth() == 2 and outbox.was_sent("id-1") and not outbox.was_sent("id-2")
    assert [r.event_id for r in outbox.peek(10)] == ["id-2", "id-3"]
    assert outbox.add_many(_entries(4)) == 0
    outbox.close()
    reopened = Outbox(tmp_path / "o.db")
    assert reopened.depth() == 2 and reopened.was_sent("id-0")
    reopened.close()
    # Past the retention period delivered ids are forgotten (the platform still drops
    # repeats); queued ones never are.
    forgetful = Outbox(tmp_path / "o.db", sent_retention_s=-1)
    assert not forgetful.was_sent("id-0")
    assert forgetful.add_many(_entries(4)) == 2
    assert [r.event_id for r in forgetful.peek(10)] == ["id-2", "id-3", "id-0", "id-1"]
    forgetful.close()


def _files_holding(directory: Path, needle: bytes) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if needle in p.read_bytes())


def test_a_delivered_event_keeps_only_its_id_in_every_file_of_the_outbox(
    tmp_path: Path,
) -> None:
    outbox = Outbox(tmp_path / "o.db")
    resident = [
        OutboxEntry(f"ev-{i}", "health", b"res-erasable01", b'{"phone": "090-5555-%04d"}' % i)
        for i in range(200)
    ]
    outbox.add_many([*resident, *_entries(1)])
    outbox.ack(outbox.peek(200)[-1].seq)
    queued = _files_holding(tmp_path, b"id-0")  # not delivered yet: still whole
    outbox.maybe_prune()  # what the sender does when idle
    assert _files_holding(tmp_path, b"090-5555-") == []
    assert _files_holding(tmp_path, b"res-erasable01") == []
    assert outbox.add_many(resident) == 0  # the ids are kept: a re-run sends nothing twice
    assert [r.value for r in outbox.peek(10)] == [b'{"n": 0}']
    outbox.close()
    assert queued  # the check above could have found the bytes
    assert _files_holding(tmp_path, b'{"n": 0}') == ["o.db"]


def test_failed_attempts_are_recorded_and_refused_events_kept_aside(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "o.db")
    outbox.add_many(_entries(3))
    first, second, _ = outbox.peek(3)
    outbox.record_attempt([first.seq, second.seq], "bus is down")
    outbox.record_attempt([first.seq], "bus is still down")
    rows = {r.event_id: r for r in outbox.peek(3)}
    assert (rows["id-0"].attempts, rows["id-0"].last_error) == (2, "bus is still down")
    assert (rows["id-2"].attempts, rows["id-2"].last_error) == (0, None)
    outbox.fail({second.seq: "schema_violation: data/fare_jpy: ..."})
    assert [r.event_id for r in outbox.peek(3)] == ["id-0", "id-2"]
    assert outbox.depth() == 2
    (failed,) = outbox.failed()
    assert (failed.event_id, failed.reason) == ("id-1", "schema_violation: data/fare_jpy: ...")
    assert failed.value == b'{"n": 1}'
    # A refused event is not remembered as sent: publishing it again (fixed) queues it again.
    assert outbox.add(_entries(1, start=1)[0]) is True
    outbox.close()


def test_a_refused_event_keeps_the_row_it_came_from(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "o.db")
    outbox.add_many(
        [replace(e, origin=f"trips.csv line {i + 2}") for i, e in enumerate(_entries(3))]
    )
    assert [r.origin for r in outbox.peek(3)] == [
        "trips.csv line 2",
        "trips.csv line 3",
        "trips.csv line 4",
    ]
    outbox.fail({outbox.peek(3)[1].seq: "source_not_allowed"})
    assert [(f.origin, f.reason) for f in outbox.failed()] == [
        ("trips.csv line 3", "source_not_allowed")
    ]
    outbox.close()


def test_an_outbox_file_of_an_older_sdk_opens_and_keeps_its_queue(tmp_path: Path) -> None:
    path = tmp_path / "o.db"
    with sqlite3.connect(path) as old:  # the tables as the first release made them
        old.execute(
            "CREATE TABLE events (seq INTEGER PRIMARY KEY AUTOINCREMENT, event_id TEXT NOT NULL"
            " UNIQUE, topic TEXT NOT NULL, key BLOB, value BLOB NOT NULL, created_at REAL NOT"
            " NULL, attempts INTEGER NOT NULL DEFAULT 0, last_error TEXT)"
        )
        old.execute(
            "CREATE TABLE failed (event_id TEXT PRIMARY KEY, topic TEXT NOT NULL, key BLOB,"
            " value BLOB NOT NULL, created_at REAL NOT NULL, failed_at REAL NOT NULL,"
            " reason TEXT NOT NULL) WITHOUT ROWID"
        )
        old.execute(
            "INSERT INTO events (event_id, topic, key, value, created_at) VALUES"
            " ('old-1', 'transport', NULL, x'7b7d', 0)"
        )
    old.close()
    outbox = Outbox(path)
    (queued,) = outbox.peek(10)
    assert (queued.event_id, queued.origin) == ("old-1", "")
    outbox.fail({queued.seq: "schema_violation"})
    assert [(f.event_id, f.origin) for f in outbox.failed()] == [("old-1", "")]
    outbox.close()


def test_a_second_process_cannot_open_an_outbox_another_owns(tmp_path: Path) -> None:
    path = tmp_path / "o.db"
    with held_by_another_process(path) as holder:
        with pytest.raises(OutboxInUseError) as refused:
            Outbox(path)
        assert refused.value.pid == holder.pid
        assert str(path) in str(refused.value) and f"process {holder.pid}" in str(refused.value)
        assert holder.stdin is not None
        holder.stdin.close()  # the holder closes its outbox and exits
        assert holder.wait(timeout=30) == 0
    outbox = Outbox(path)  # now free
    outbox.add_many(_entries(1))
    outbox.close()


def test_an_outbox_whose_owner_was_killed_can_be_opened(tmp_path: Path) -> None:
    path = tmp_path / "o.db"
    with held_by_another_process(path) as holder:
        os.kill(holder.pid, signal.SIGKILL)  # no close(): the kernel releases the lock
        holder.wait(timeout=30)
        outbox = Outbox(path)
        assert outbox.depth() == 0
        outbox.close()


def test_one_process_cannot_open_one_outbox_twice_at_once(tmp_path: Path) -> None:
    first = Outbox(tmp_path / "o.db")
    with pytest.raises(OutboxInUseError, match="this process"):
        Outbox(tmp_path / "o.db")
    first.close()
    Outbox(tmp_path / "o.db").close()


def test_an_outbox_must_be_a_file(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="must be a file"):
        Outbox(":memory:")


def test_backoff_doubles_from_a_tenth_of_a_second_up_to_thirty_with_jitter() -> None:
    backoff = Backoff()
    for failures, nominal in [(1, 0.1), (2, 0.2), (3, 0.4), (9, 25.6), (10, 30.0), (10_000, 30.0)]:
        delays = [backoff.delay(failures) for _ in range(50)]
        assert all(nominal * 0.5 <= d <= nominal for d in delays)
        assert len(set(delays)) > 1  # jittered, so many connectors do not retry in lockstep
