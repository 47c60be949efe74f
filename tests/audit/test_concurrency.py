"""Several appenders on one store, as API processes and the ingest worker are: the chain
stays one line (no two entries chained from the same predecessor) and verifies."""

from __future__ import annotations

import multiprocessing as mp
import threading
from pathlib import Path

from sqlalchemy import Engine, select

from broker.audit import AuditLog, EntryKind, verify_store
from broker.audit import tables as t
from broker.store.database import make_engine
from consent.keys import KeyRing
from tests.audit.conftest import sample_entries

BATCHES = 20
PER_BATCH = 25


def _append(url: str, keys_dir: str, worker: int) -> None:
    """One appender: its own engine and log, batches mixed with single queued entries."""
    engine = make_engine(url)
    with AuditLog(engine, KeyRing.open(keys_dir), checkpoint_every=50, background=False) as log:
        for b in range(BATCHES):
            log.append_many(sample_entries(PER_BATCH - 1, start=b * PER_BATCH))
            log.append(
                EntryKind.ADMIN_CHANGE, actor=f"worker-{worker}", action="tick", target=str(b)
            )
    engine.dispose()


def _check(engine: Engine, keys: KeyRing, appenders: int) -> None:
    total = appenders * BATCHES * PER_BATCH
    result = verify_store(engine, keys.jwks())
    assert result.ok, result.problem
    assert result.entries == total
    with engine.connect() as conn:
        prevs = conn.execute(select(t.entries.c.prev_hash)).scalars().all()
        cps = conn.execute(select(t.checkpoints.c.seq).order_by(t.checkpoints.c.seq)).scalars()
        assert list(cps) == list(range(50, total + 1, 50))
    assert len(set(prevs)) == total  # a fork would reuse a predecessor


def test_threads_appending_at_once_keep_one_chain(
    engine: Engine, keys: KeyRing, store_url: str, audit: AuditLog
) -> None:
    threads = [
        threading.Thread(target=_append, args=(store_url, str(keys.directory), i)) for i in range(3)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    _check(engine, keys, 3)


def test_processes_appending_at_once_keep_one_chain(
    engine: Engine, keys: KeyRing, store_url: str, tmp_path: Path, audit: AuditLog
) -> None:
    ctx = mp.get_context("spawn")
    procs = [
        ctx.Process(target=_append, args=(store_url, str(keys.directory), i)) for i in range(2)
    ]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(120)

    assert [p.exitcode for p in procs] == [0, 0]
    _check(engine, keys, 2)
