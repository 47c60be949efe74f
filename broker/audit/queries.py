"""Reading the log for auditors: entries filtered by kind, actor, subject reference and time,
newest first, a page at a time."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Engine, select

from broker.audit import tables
from broker.audit.entries import timestamp
from broker.audit.log import StoredEntry


@dataclass(frozen=True, slots=True)
class EntryFilter:
    """Which entries to list; an empty field does not filter."""

    kinds: Sequence[str] = ()
    actor: str | None = None
    subject_ref: str | None = None
    since: datetime | None = None
    until: datetime | None = None


@dataclass(frozen=True, slots=True)
class EntryPage:
    """Entries newest first, and the seq to continue below (None at the oldest)."""

    entries: list[StoredEntry]
    before: int | None


def find_entries(
    engine: Engine, where: EntryFilter, *, before: int | None = None, limit: int = 100
) -> EntryPage:
    """One page of the entries matching ``where``, below seq ``before`` when given."""
    e = tables.entries
    query = select(e).order_by(e.c.seq.desc()).limit(limit + 1)
    if where.kinds:
        query = query.where(e.c.kind.in_(list(where.kinds)))
    if where.actor:
        query = query.where(e.c.actor == where.actor)
    if where.subject_ref:
        query = query.where(e.c.subject_ref == where.subject_ref)
    if where.since is not None:
        query = query.where(e.c.at >= timestamp(where.since))
    if where.until is not None:
        query = query.where(e.c.at < timestamp(where.until))
    if before is not None:
        query = query.where(e.c.seq < before)
    with engine.connect() as conn:
        rows = [StoredEntry(*row) for row in conn.execute(query)]
    more = len(rows) > limit
    rows = rows[:limit]
    return EntryPage(rows, rows[-1].seq if more else None)
