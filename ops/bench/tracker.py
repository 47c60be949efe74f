"""The resident's tracker at scale: one page of "who read my data" when a million audit entries
concern one resident.

Fills a store, made by its migrations, with ``--entries`` partner reads of one resident, a
second apart, and ``--others`` entries of other residents, as plain inserts of the log's rows
(the hashes are placeholders: the tracker reads neither them nor the chain, and chaining a
million entries would only slow the fill). Then times ``reads_of`` (the query behind
``GET /v1/me/access-log``, rows decoded) for pages of ``--limit`` reads:

  - newest:  the first page
  - middle:  the page after a cursor half-way down the list
  - oldest:  the page after a cursor just above the oldest read
  - period:  the first page of one day half-way back (``from`` and ``to``)

and prints the median and the slowest of ``--runs`` runs of each, per store.

    python -m ops.bench.tracker [--entries 1000000] [--others 100000] [--store URL ...] [--quick]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import Engine, insert

from broker.audit import tables
from broker.audit.entries import EntryKind, SubjectRefs, encode_fields, timestamp
from broker.audit.tracker import After, ReadsPage, reads_of
from broker.store.database import make_engine

START = datetime(2025, 1, 1, tzinfo=UTC)
PLACEHOLDER = "0" * 64


def _rows(refs: SubjectRefs, entries: int, others: int) -> Iterator[dict[str, object]]:
    """The resident's reads, one other resident's entry after every ``entries // others``."""
    mine = refs.of("res-bench-0001")
    every = max(1, entries // max(1, others))
    seq = 0
    for i in range(entries):
        seq += 1
        fields = {
            "partner": "ptn-mitoyobus01",
            "purpose": "transport.planning",
            "categories": ["transport.trips", "health.points"],
            "view": "activity",
            "pseudonym": f"psn-{i:026d}",
            "consent_ids": [f"cns-{i % 7:020d}"],
            "rows": 12,
        }
        at = timestamp(START + timedelta(seconds=i))
        yield _row(seq, at, EntryKind.PARTNER_READ, mine, encode_fields(fields))
        if others and i % every == 0:
            seq += 1
            other = refs.of(f"res-other-{i % 2000:04d}")
            yield _row(seq, at, EntryKind.PARTNER_READ, other, encode_fields(fields))


def _row(seq: int, at: str, kind: str, ref: str, fields: str) -> dict[str, object]:
    return {
        "seq": seq,
        "at": at,
        "kind": kind,
        "actor": "ptn-mitoyobus01",
        "subject_ref": ref,
        "fields": fields,
        "prev_hash": PLACEHOLDER,
        "hash": PLACEHOLDER,
    }


def fill(engine: Engine, refs: SubjectRefs, entries: int, others: int) -> float:
    """Insert the rows; seconds taken."""
    began = time.perf_counter()
    batch: list[dict[str, object]] = []
    with engine.begin() as conn:
        for row in _rows(refs, entries, others):
            batch.append(row)
            if len(batch) == 20_000:
                conn.execute(insert(tables.entries), batch)
                batch = []
        if batch:
            conn.execute(insert(tables.entries), batch)
    with engine.connect() as conn:
        if engine.dialect.name == "postgresql":
            conn.exec_driver_sql("ANALYZE audit_entries")
        else:
            conn.exec_driver_sql("ANALYZE")
        conn.commit()
    return time.perf_counter() - began


def _timed(work: Callable[[], ReadsPage], runs: int) -> tuple[float, float, int]:
    took = []
    served = 0
    for _ in range(runs):
        began = time.perf_counter()
        served = len(work().reads)
        took.append((time.perf_counter() - began) * 1000)
    return statistics.median(took), max(took), served


def measure(url: str, entries: int, others: int, limit: int, runs: int) -> None:
    """Fill the store at ``url`` and print the tracker's page times."""
    engine = make_engine(url)
    refs = SubjectRefs(b"b" * 32)
    ref = refs.of("res-bench-0001")
    try:
        filled = fill(engine, refs, entries, others)
        print(
            f"{engine.dialect.name}: {entries:,} reads of one resident, {others:,} of others, "
            f"filled in {filled:.0f} s"
        )
        half = START + timedelta(seconds=entries // 2)
        cases: dict[str, Callable[[], ReadsPage]] = {
            "newest": lambda: reads_of(engine, ref, limit=limit),
            "middle": lambda: reads_of(engine, ref, after=After(half, 10**12), limit=limit),
            "oldest": lambda: reads_of(
                engine,
                ref,
                after=After(START + timedelta(seconds=limit // 2), 0),
                limit=limit,
            ),
            "period": lambda: reads_of(
                engine, ref, since=half, until=half + timedelta(days=1), limit=limit
            ),
        }
        for name, work in cases.items():
            median, worst, served = _timed(work, runs)
            print(f"  {name:7} {served:4} reads  median {median:6.2f} ms  slowest {worst:6.2f} ms")
    finally:
        engine.dispose()


def main() -> None:
    """Run the benchmark on each store."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument("--others", type=int, default=100_000)
    parser.add_argument("--limit", type=int, default=100)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--store", action="append", help="store URLs (default: a temp SQLite)")
    parser.add_argument("--quick", action="store_true", help="a small run: 5k reads, 3 runs")
    args = parser.parse_args()
    if args.quick:
        args.entries, args.others, args.runs = 5_000, 500, 3
    with tempfile.TemporaryDirectory() as tmp:
        for url in args.store or [f"sqlite:///{Path(tmp) / 'store.db'}"]:
            measure(url, args.entries, args.others, args.limit, args.runs)


if __name__ == "__main__":
    main()
