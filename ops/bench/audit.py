"""Audit log throughput: appending with chaining and checkpointing, against plain inserts of
the same rows in the same run, and verification speed.

Prints, per store, in one run:
  - plain inserts:    the entries' final rows (fields encoded, hashes filled in) inserted
                      into a table of the same shape (columns and indexes), ``--batch`` rows
                      per transaction
  - append_many:      the same entries through ``AuditLog.append_many`` in ``--batch``-entry
                      calls: fields checked and encoded, subjects HMACed, each entry hashed
                      with its predecessor, the head locked, a checkpoint signed every 1,000;
                      and its ratio to plain inserts (target ≥ 0.5)
  - queued append:    ``append`` from the caller's thread, written by the flusher thread;
                      entries/s until the last one is in the store
  - decision enqueue: the decision recorder's cost on the decision point's hot path, ns
  - verify:           ``verify_store`` over everything appended, entries/s

    python -m ops.bench.audit [--entries 100000] [--batch 1000] [--store URL ...]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import Engine, MetaData, Table, insert, text
from sqlalchemy.sql import quoted_name

from broker.audit import AuditLog, EntryKind, NewEntry, verify_store
from broker.audit import tables as audit_tables
from broker.audit.entries import SubjectRefs, encode_fields, timestamp
from broker.store.database import make_engine
from consent.decisions import Decision, DecisionReason
from consent.keys import KeyRing


def make_entries(n: int) -> list[NewEntry]:
    """A realistic mix: mostly decisions' neighbours, partner reads and ingest batches."""
    made = []
    for i in range(n):
        if i % 3 == 0:
            made.append(
                NewEntry(
                    EntryKind.PARTNER_READ,
                    "ptn-mitoyobus01",
                    {
                        "partner": "ptn-mitoyobus01",
                        "purpose": "transport.planning",
                        "categories": ["transport.trips", "transport.stops"],
                        "pseudonym": f"psn-{i:026d}",
                        "consent_ids": [f"cns-{i:020d}"],
                        "view": "resident_activity",
                        "rows": 12,
                    },
                    subject=f"res-{i % 2000:08d}",
                )
            )
        elif i % 3 == 1:
            made.append(
                NewEntry(
                    EntryKind.PUBLISH_BATCH,
                    "ingest",
                    {"topic": "transport", "events": 2000, "duplicates": 0, "offsets": [f"0:{i}"]},
                )
            )
        else:
            made.append(
                NewEntry(
                    EntryKind.CONSENT_CHANGE,
                    "subject",
                    {
                        "event": "granted",
                        "consent_id": f"cns-{i}",
                        "partner": "ptn-x",
                        "purpose": "p",
                    },
                    subject=f"res-{i % 2000:08d}",
                )
            )
    return made


def _plain_table(engine: Engine) -> Table:
    """A table of the same shape as ``audit_entries``: same columns, same indexes."""
    table = audit_tables.entries.to_metadata(MetaData(), name="bench_plain_entries")
    for index in table.indexes:
        index.name = quoted_name(f"bench_plain_{index.name}", None)
    table.drop(engine, checkfirst=True)
    table.create(engine)
    return table


def bench_plain(
    engine: Engine, entries: list[NewEntry], batch: int, start_seq: int, refs: SubjectRefs
) -> float:
    """Entries/s of inserting the same rows, already built, with nothing else."""
    table = _plain_table(engine)
    at = timestamp()
    rows = [
        {
            "seq": start_seq + i,
            "at": at,
            "kind": e.kind,
            "actor": e.actor,
            "subject_ref": None if e.subject is None else refs.of(e.subject),
            "fields": encode_fields(e.fields),
            "prev_hash": "0" * 64,
            "hash": "0" * 64,
        }
        for i, e in enumerate(entries)
    ]
    started = time.perf_counter()
    for i in range(0, len(rows), batch):
        with engine.begin() as conn:
            conn.execute(insert(table), rows[i : i + batch])
    return len(rows) / (time.perf_counter() - started)


def bench_append_many(log: AuditLog, entries: list[NewEntry], batch: int) -> float:
    """Entries/s through ``append_many``."""
    started = time.perf_counter()
    for i in range(0, len(entries), batch):
        log.append_many(entries[i : i + batch])
    return len(entries) / (time.perf_counter() - started)


def bench_queued(log: AuditLog, n: int) -> float:
    """Entries/s from ``append`` in this thread to the store, via the flusher thread."""
    started = time.perf_counter()
    for i in range(n):
        log.append(EntryKind.ADMIN_CHANGE, actor="ops", action="bench", target=str(i))
    log.flush()  # whatever the flusher has not yet taken
    return n / (time.perf_counter() - started)


def bench_decision_enqueue(log: AuditLog, n: int) -> float:
    """Nanoseconds the decision recorder adds to one decision (queue only)."""
    decision = Decision(
        True, DecisionReason.ALLOWED, "cns-1", "ptn-1", "p", "c", "res-1", datetime.now(UTC)
    )
    record = log.record_decision
    log.flush_at = n + 1  # measure the enqueue alone: the flusher writes after the loop
    started = time.perf_counter()
    for _ in range(n):
        record(decision)
    elapsed = time.perf_counter() - started
    log.flush()
    return elapsed / n * 1e9


def bench_verify(engine: Engine, keys: KeyRing) -> tuple[float, int]:
    """(entries/s of ``verify_store``, entries verified)."""
    started = time.perf_counter()
    result = verify_store(engine, keys.jwks())
    elapsed = time.perf_counter() - started
    if not result.ok:
        raise SystemExit(f"verification failed: {result.problem}")
    return result.entries / elapsed, result.entries


def run(store: str, n: int, batch: int, keys: KeyRing) -> None:
    """Every figure for one store."""
    engine = make_engine(store)
    entries = make_entries(n)
    with AuditLog(engine, keys, checkpoint_every=1000, flush_interval_s=0.1) as log:
        with engine.connect() as conn:
            start = int(conn.execute(text("SELECT seq FROM audit_head")).scalar_one()) + 1
        plain = bench_plain(engine, entries, batch, start, log.refs)
        chained = bench_append_many(log, entries, batch)
        queued = bench_queued(log, n // 2)
        enqueue_ns = bench_decision_enqueue(log, 200_000)
    verify_rate, verified = bench_verify(engine, keys)
    with engine.begin() as conn:
        conn.execute(text("DROP TABLE bench_plain_entries"))
    engine.dispose()
    print(f"\n[{store.split(':')[0]}] {n:,} entries, {batch:,} per transaction")
    print(f"  plain inserts               {plain:>10,.0f} entries/s")
    print(f"  append_many (chained)       {chained:>10,.0f} entries/s")
    print(f"  ratio to plain inserts      {chained / plain:>10.2f}  (target ≥ 0.5)")
    print(f"  queued append via flusher   {queued:>10,.0f} entries/s")
    print(f"  decision recorder enqueue   {enqueue_ns:>10,.0f} ns/decision")
    print(f"  verify                      {verify_rate:>10,.0f} entries/s  ({verified:,} entries)")


def main() -> None:
    """Run the benchmark and print its figures."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--entries", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument(
        "--store", action="append", default=[], help="store URL (default: a temp SQLite file)"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        keys = KeyRing.open(Path(tmp) / "keys")
        for store in args.store or [f"sqlite:///{Path(tmp) / 'store.db'}"]:
            run(store, args.entries, args.batch, keys)


if __name__ == "__main__":
    main()
