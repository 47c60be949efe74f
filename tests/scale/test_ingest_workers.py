"""Several `tsunagu worker` processes in one consumer group, on Kafka and PostgreSQL: they share
the partitions, and when one stops (SIGTERM) or dies (SIGKILL) mid-stream the others take its
partitions over. Across every rebalance each event is projected exactly once, and the audit
log accounts for each one exactly once and verifies."""

from __future__ import annotations

import collections
import signal
import subprocess
import sys
from collections.abc import Sequence
from typing import Any

import orjson
from sqlalchemy import text

from tests.scale.deployment import PROJECTED_BY, REPO, Deployment, Stream, region_events


def assert_every_event_projected_once(
    deployment: Deployment, docs: Sequence[dict[str, Any]]
) -> int:
    """The ledger, each projection and the audit log hold every event exactly once; returns
    how many redelivered events the audit log shows skipped as duplicates."""
    ids = [doc["id"] for doc in docs]
    with deployment.store.connect() as conn:
        ledger = conn.execute(text("SELECT id FROM ingested_events")).scalars().all()
        projected = {
            table: conn.execute(text(f"SELECT event_id FROM {table}")).scalars().all()
            for table in PROJECTED_BY.values()
        }
        batches = [
            orjson.loads(fields)
            for fields in conn.execute(
                text("SELECT fields FROM audit_entries WHERE kind = 'publish_batch'")
            ).scalars()
        ]
    assert len(ledger) == len(ids)
    assert set(ledger) == set(ids)
    for event_type, table in PROJECTED_BY.items():
        wanted = [doc["id"] for doc in docs if doc["type"] == event_type]
        assert len(projected[table]) == len(wanted), table  # a row per event, none twice
        assert set(projected[table]) == set(wanted), table
    # Each batch is recorded in its own transaction: a batch projected again after a
    # rebalance counts as duplicates, never as events.
    assert sum(b["events"] for b in batches) == len(ids)
    assert sum(b["dead_letters"] for b in batches) == 0  # every connector token was accepted
    types: collections.Counter[str] = collections.Counter()
    for b in batches:
        types.update(b["types"])
    assert types == collections.Counter(doc["type"] for doc in docs)
    verify = subprocess.run(
        [sys.executable, "-m", "broker.cli", "audit", "verify"],
        cwd=REPO,
        env=deployment.env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert verify.stdout.startswith("ok store"), verify.stdout
    return int(sum(b["duplicates"] for b in batches))


def test_workers_in_one_group_share_the_partitions_and_project_every_event_once(
    deployment: Deployment,
) -> None:
    workers = [deployment.start_worker() for _ in range(3)]
    shares = deployment.wait_until_shared(workers)
    # Evenly by count over all topics (round robin), not 8/4/4 (range, topic by topic, which
    # gives one worker two partitions of every 4-partition topic: half of all the events).
    assert sorted(len(share) for share in shares.values()) == [5, 5, 6]

    docs = region_events(6000, "share")
    deployment.publish(docs)
    deployment.wait_for_ingested(len(docs))
    deployment.wait_for(deployment.caught_up, 60, "the group to commit every partition's end")

    # Nobody joined or left meanwhile: each worker projected the events of its own share, and
    # the three shares add up to every event (400 residents: every partition gets some).
    assert {w.name: w.current() for w in workers} == shares
    projected = [w.projected() for w in workers]
    assert all(projected), projected
    assert sum(projected) == len(docs), projected
    assert_every_event_projected_once(deployment, docs)


def _one_leaves_mid_stream(deployment: Deployment, how: signal.Signals) -> None:
    """Three workers share a stream; one gets ``how`` while events are still arriving."""
    workers = [deployment.start_worker() for _ in range(3)]
    shares = deployment.wait_until_shared(workers)
    leaving, staying = workers[0], workers[1:]
    docs = region_events(15_000, f"leave-{how.name.lower()}")
    stream = Stream(deployment, docs, chunk=500, ahead=3000).start()

    deployment.wait_for_ingested(len(docs) // 3)
    # It has done part of its share (its commits are proof) and more events are coming.
    done_before = deployment.committed_on(shares[leaving.name])
    assert any(done_before.values()), done_before
    leaving.signal(how)
    assert stream.published < len(docs), "the stream ended before the worker left"
    exit_code = leaving.wait(60)
    if how is signal.SIGTERM:
        assert exit_code == 0, leaving.tail()  # it finished its batch and left the group
    else:
        assert exit_code == -signal.SIGKILL

    # The two others split every partition between them, the left one's included ...
    taken = deployment.wait_until_shared(staying)
    assert shares[leaving.name] <= taken[staying[0].name] | taken[staying[1].name]
    stream.join()
    deployment.wait_for_ingested(len(docs))
    # ... and read its partitions on to their end.
    deployment.wait_for(deployment.caught_up, 60, "the group to commit every partition's end")
    done_after = deployment.committed_on(shares[leaving.name])
    assert all(done_after[p] > done_before[p] for p in done_before), (done_before, done_after)
    assert all(w.alive for w in staying)
    redelivered = assert_every_event_projected_once(deployment, docs)
    print(f"\n{how.name}: {redelivered} event(s) delivered again after the rebalance, skipped")


def test_a_stopped_worker_s_partitions_are_taken_over_exactly_once(
    deployment: Deployment,
) -> None:
    _one_leaves_mid_stream(deployment, signal.SIGTERM)


def test_a_killed_worker_s_partitions_are_taken_over_exactly_once(
    deployment: Deployment,
) -> None:
    _one_leaves_mid_stream(deployment, signal.SIGKILL)
