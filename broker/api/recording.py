"""A partner read's audit entry is stored before its data leaves: waiting for it without
blocking the event loop on a lock, and writing the entries of concurrent reads together.

Two ways to do the store work of a read, chosen by ``TSUNAGU_API_INLINE_READS`` (on by
default with SQLite):

* on the event loop: the read runs in the request's own coroutine, and its entry is written
  by one flush scheduled on the loop after every request ready in this turn has queued its
  own (group commit, no thread involved). On SQLite a read is CPU work under the GIL either
  way, and handing each request to a thread and back cost more than the read (measured in
  ``ops/bench/api.py``). If another writer holds the audit log, the flush does not wait:
  the flusher thread writes the entry and the request awaits it.
* in a worker thread, with the flusher thread writing the entries: for PostgreSQL, where a
  read waits on the network.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, TypeVar

from fastapi import HTTPException
from starlette.concurrency import run_in_threadpool

from broker.audit import AuditLog, EntryKind

log = logging.getLogger(__name__)

T = TypeVar("T")

#: How long a read waits for its audit entry to be stored before it is refused (503).
AUDIT_WAIT_S = 10.0


class ReadRecorder:
    """Runs the store work of reads and waits for their audit entries, in one of two ways."""

    def __init__(self, audit: AuditLog, *, inline: bool) -> None:
        self.audit = audit
        self.inline = inline
        self._flushed: asyncio.Future[None] | None = None

    async def run(self, work: Callable[[], T]) -> T:
        """``work()`` on the event loop (inline) or in a worker thread."""
        return work() if self.inline else await run_in_threadpool(work)

    def append(
        self, kind: EntryKind, *, actor: str, subject: str | None = None, **fields: Any
    ) -> Future[int]:
        """Queue a read's entry; the ticket resolves once it is stored (see ``recorded``)."""
        # Inline, the loop's own flush writes it: waking the flusher thread would only race it.
        return self.audit.append_durable(
            kind, actor=actor, subject=subject, wake=not self.inline, **fields
        )

    async def recorded(self, ticket: Future[int]) -> int:
        """Wait until the entry of ``ticket`` is stored; 503 if it cannot be."""
        if self.inline and not ticket.done():
            await self._flush_this_turn()
        if not ticket.done():
            self.audit.wake()
            try:
                # Shielded: giving up must not cancel the ticket under the writer's feet.
                await asyncio.wait_for(asyncio.shield(asyncio.wrap_future(ticket)), AUDIT_WAIT_S)
            except TimeoutError:
                raise HTTPException(
                    503, "the audit log cannot be written; the read is refused until it can"
                ) from None
        return ticket.result()

    async def _flush_this_turn(self) -> None:
        """One flush for every read that asks in this turn of the loop."""
        if self._flushed is None:
            loop = asyncio.get_running_loop()
            self._flushed = loop.create_future()
            loop.call_soon(self._flush)
        await asyncio.shield(self._flushed)

    def _flush(self) -> None:
        done, self._flushed = self._flushed, None
        try:
            self.audit.try_flush()  # False: busy; the waiters fall back to the flusher
        except Exception:
            # Entries stay queued; the flusher retries, and the waiters time out if it can't.
            log.exception("audit log: writing on the event loop failed")
        if done is not None:
            done.set_result(None)
