"""A partner read's audit entry is stored before its data leaves, on the event loop as well:
the reads of one turn share one write, and a busy log makes them wait, never skip."""

from __future__ import annotations

import asyncio
import threading

import pytest
from fastapi import HTTPException
from sqlalchemy import Engine, select

from broker.api import recording
from broker.api.recording import ReadRecorder
from broker.audit import AuditLog, EntryKind, verify_store
from broker.audit import tables as t
from consent.keys import KeyRing


def _read(recorder: ReadRecorder, n: int) -> asyncio.Future[int]:
    ticket = recorder.append(
        EntryKind.PARTNER_READ,
        actor="ptn-a",
        partner="ptn-a",
        purpose="transport.planning",
        categories=[],
        view="residents",
        rows=n,
    )
    return asyncio.ensure_future(recorder.recorded(ticket))


def test_reads_in_one_turn_of_the_loop_share_one_write(engine: Engine, keys: KeyRing) -> None:
    audit = AuditLog(engine, keys, background=False)
    writes = 0
    try_flush = audit.try_flush

    def counted() -> bool:
        nonlocal writes
        writes += 1
        return try_flush()

    audit.try_flush = counted  # type: ignore[method-assign]
    recorder = ReadRecorder(audit, inline=True)

    async def ten_reads() -> list[int]:
        return list(await asyncio.gather(*(_read(recorder, n) for n in range(10))))

    try:
        seqs = asyncio.run(ten_reads())
    finally:
        audit.close()

    assert seqs == list(range(1, 11))
    assert writes == 1
    assert verify_store(engine, keys.jwks()).entries == 10


def _hold_the_head(engine: Engine, held: threading.Event, release: threading.Event) -> None:
    with engine.connect() as conn:
        if engine.dialect.name == "sqlite":
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        else:
            conn.execute(select(t.head).with_for_update()).one()
        held.set()
        release.wait(30)
        conn.rollback()


def test_a_read_waits_for_a_busy_log_and_is_then_recorded(engine: Engine, keys: KeyRing) -> None:
    audit = AuditLog(engine, keys)  # with its flusher thread, which takes over when busy
    recorder = ReadRecorder(audit, inline=True)
    held, release = threading.Event(), threading.Event()
    holder = threading.Thread(target=_hold_the_head, args=(engine, held, release))
    holder.start()
    held.wait(10)

    async def read_while_busy() -> tuple[bool, int]:
        read = _read(recorder, 1)
        await asyncio.sleep(0.3)
        waiting = not read.done()  # the loop's own write gave way; nothing was served
        release.set()
        return waiting, await read

    try:
        waiting, seq = asyncio.run(read_while_busy())
    finally:
        release.set()
        holder.join()
        audit.close()

    assert waiting
    assert seq == 1
    assert verify_store(engine, keys.jwks()).entries == 1


def test_a_read_whose_entry_cannot_be_stored_is_refused(
    engine: Engine, keys: KeyRing, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(recording, "AUDIT_WAIT_S", 0.3)
    audit = AuditLog(engine, keys, background=False)  # no flusher: the busy log stays busy
    recorder = ReadRecorder(audit, inline=True)
    held, release = threading.Event(), threading.Event()
    holder = threading.Thread(target=_hold_the_head, args=(engine, held, release))
    holder.start()
    held.wait(10)
    try:
        with pytest.raises(HTTPException) as refused:
            asyncio.run(_first(recorder))
    finally:
        release.set()
        holder.join()
        audit.close()

    assert refused.value.status_code == 503


async def _first(recorder: ReadRecorder) -> int:
    return await _read(recorder, 1)
