"""The way out of every consent and partner change: written to the outbox in the change's own
transaction, handed after the commit to this process's hooks (its decision point drops what it
cached: the change is effective here at once), then published to ``consent.changes`` for every
other process. A failed publish leaves the outbox rows for the next change or the relay to
send, so no committed change is ever lost on the way.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace
from datetime import datetime

import orjson
from sqlalchemy import Connection, Engine, select
from sqlalchemy.exc import SQLAlchemyError

from consent import epoch
from consent.changes import ConsentChange, changes_topic
from consent.model import ConsentOutbox
from contract.bus import Bus, BusError, OutRecord

log = logging.getLogger(__name__)

Publish = Callable[[str, Sequence[OutRecord]], None]
ChangeHook = Callable[[ConsentChange], None]

_outbox = ConsentOutbox.__table__  # type: ignore[attr-defined]

_OUTBOX_BATCH = 500


class ChangeRelay:
    """Enqueues changes in their transaction, applies them here, publishes them to the topic."""

    def __init__(
        self,
        engine: Engine,
        publisher: Bus | Publish,
        *,
        topic: str,
        on_change: Iterable[ChangeHook],
        clock: Callable[[], datetime],
    ) -> None:
        self.engine = engine
        if callable(publisher):
            self._publish: Publish = publisher  # the caller has created the topic
        else:
            publisher.create_topics([changes_topic(topic)])
            self._publish = publisher.publish
        self.topic = topic
        self._hooks = list(on_change)
        self._clock = clock
        self._outbox_lock = threading.Lock()

    def add_change_hook(self, hook: ChangeHook) -> None:
        """Call ``hook`` synchronously after each committed change (e.g. a decision point)."""
        self._hooks.append(hook)

    def flush_outbox(self) -> int:
        """Publish changes committed but not yet published; returns how many were sent."""
        sent = 0
        with self._outbox_lock:
            while True:
                with self.engine.connect() as conn:
                    rows = conn.execute(
                        select(_outbox.c.seq, _outbox.c.key, _outbox.c.value)
                        .order_by(_outbox.c.seq)
                        .limit(_OUTBOX_BATCH)
                    ).all()
                if not rows:
                    return sent
                records = [OutRecord(r.key.encode("utf-8"), orjson.dumps(r.value)) for r in rows]
                self._publish(self.topic, records)
                with self.engine.begin() as conn:
                    # Another process may have sent them too: duplicates only invalidate twice.
                    conn.execute(_outbox.delete().where(_outbox.c.seq <= rows[-1].seq))
                sent += len(rows)

    def relay(self, stop: threading.Event, interval_s: float = 5.0) -> None:
        """Retry unpublished changes every ``interval_s`` until ``stop`` is set (a thread body)."""
        while not stop.wait(interval_s):
            try:
                self.flush_outbox()
            except (BusError, SQLAlchemyError) as exc:
                log.warning("consent outbox: publishing failed, will retry: %s", exc)

    def _enqueue(self, conn: Connection, change: ConsentChange) -> ConsentChange:
        """Write ``change`` to the outbox in the change's own transaction, numbered by the
        store's consent epoch (how every process tells that it has not heard of it yet)."""
        change = replace(change, epoch=epoch.advance(conn))
        wire = change.published()  # the outbox and the topic never hold the subject id
        conn.execute(
            _outbox.insert().values(key=wire.key, value=wire.to_value(), created_at=self._clock())
        )
        return change

    def _after_commit(self, change: ConsentChange) -> None:
        # This process first, synchronously: the change holds here before the call returns.
        for hook in self._hooks:
            hook(change)
        try:
            self.flush_outbox()
        except (BusError, SQLAlchemyError) as exc:
            # Committed and effective here; the outbox keeps it for the next flush.
            log.warning("consent change %s not published yet (%s); kept in the outbox", change, exc)
