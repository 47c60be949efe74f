"""The ledger of ingested event ids: what makes every projection effect idempotent."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from sqlalchemy import Connection, select
from sqlmodel import Field, SQLModel

from broker.cloudevents import CloudEvent
from broker.store.bulk import insert_many


class IngestedEvent(SQLModel, table=True):
    """One accepted event: its id, where it came from and when (not its personal data)."""

    __tablename__ = "ingested_events"

    id: str = Field(primary_key=True, max_length=128)
    type: str = Field(index=True, max_length=100)
    source: str = Field(max_length=300)
    subject: str = Field(max_length=128)
    time: datetime
    ingested_at: datetime


_table = IngestedEvent.__table__  # type: ignore[attr-defined]
_CHUNK = 500  # keeps IN (...) lists under every backend's parameter limit


def known_ids(conn: Connection, ids: Sequence[str]) -> set[str]:
    """Which of ``ids`` have been ingested already."""
    seen: set[str] = set()
    for i in range(0, len(ids), _CHUNK):
        chunk = ids[i : i + _CHUNK]
        seen.update(conn.execute(select(_table.c.id).where(_table.c.id.in_(chunk))).scalars())
    return seen


def claim(conn: Connection, events: Sequence[CloudEvent]) -> list[CloudEvent]:
    """Record ``events`` as ingested and return those not seen before (first of in-batch twins)."""
    unique: dict[str, CloudEvent] = {}
    for e in events:
        unique.setdefault(e.id, e)
    seen = known_ids(conn, list(unique))
    fresh = [e for e in unique.values() if e.id not in seen]
    if fresh:
        now = datetime.now(UTC)
        insert_many(
            conn,
            _table,
            [
                {
                    "id": e.id,
                    "type": e.type,
                    "source": e.source,
                    "subject": e.subject,
                    "time": e.time,
                    "ingested_at": now,
                }
                for e in fresh
            ],
        )
    return fresh
