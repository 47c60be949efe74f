"""The ledger of ingested event ids: what makes every projection effect idempotent."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from sqlalchemy import Connection
from sqlmodel import Field, SQLModel

from broker.store.bulk import insert_many
from contract.cloudevents import CloudEvent


class IngestedEvent(SQLModel, table=True):
    """One accepted event: its id, where it came from and when (not its personal data).

    Deliberately not its subject: projection rows carry the event id, so a subject here
    would link every row (and every backup of the store) back to the person, undoing the
    blind row references that erasure relies on.
    """

    __tablename__ = "ingested_events"

    id: str = Field(primary_key=True, max_length=128)
    type: str = Field(index=True, max_length=100)
    source: str = Field(max_length=300)
    time: datetime
    ingested_at: datetime


_table = IngestedEvent.__table__  # type: ignore[attr-defined]
_CHUNK = 500  # keeps IN (...) lists under every backend's parameter limit


def known_ids(conn: Connection, ids: Sequence[str]) -> set[str]:
    """Which of ``ids`` have been ingested already."""
    if conn.dialect.name == "postgresql":
        # One array parameter for the whole batch: no IN list to build or compile.
        found = conn.exec_driver_sql(
            "SELECT id FROM ingested_events WHERE id = ANY(%(ids)s)", {"ids": list(ids)}
        )
        return set(found.scalars())
    seen: set[str] = set()
    for i in range(0, len(ids), _CHUNK):
        chunk = tuple(ids[i : i + _CHUNK])
        # Plain SQL: compiling an expanding IN per batch cost more than running it.
        sql = f"SELECT id FROM ingested_events WHERE id IN ({', '.join('?' * len(chunk))})"
        seen.update(conn.exec_driver_sql(sql, chunk).scalars())
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
                    "time": e.time,
                    "ingested_at": now,
                }
                for e in fresh
            ],
        )
    return fresh
