"""The resident's data tracker: the partner reads of one resident's data, newest first, a page
at a time, within a period.

A page continues below the last read served by its sort key (``at``, then ``seq``), so pages
never repeat or skip a read while new ones are appended: they sort above the first page. The
index ``ix_audit_entries_tracker`` (subject_ref, kind, at, seq) answers every page, with or
without a period, by one range scan however many entries concern the resident.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import orjson
from sqlalchemy import Engine, Select, or_, select

from broker.audit import tables
from broker.audit.entries import EntryKind, timestamp


@dataclass(frozen=True, slots=True)
class TrackedRead:
    """One partner read of the resident's data, as its audit entry records it."""

    seq: int
    at: datetime
    partner: str
    purpose: str
    categories: list[str]
    view: str | None
    consent_ids: list[str]
    rows: int | None


@dataclass(frozen=True, slots=True)
class After:
    """Where a page ended: the last read's time and seq (the next page starts below it)."""

    at: datetime
    seq: int


@dataclass(frozen=True, slots=True)
class ReadsPage:
    """Reads newest first, and where the next page starts (None after the oldest)."""

    reads: list[TrackedRead]
    next: After | None


def reads_of(
    engine: Engine,
    subject_ref: str,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    after: After | None = None,
    limit: int = 100,
) -> ReadsPage:
    """One page of the partner reads of ``subject_ref`` in [since, until), newest first."""
    with engine.connect() as conn:
        rows = conn.execute(page_query(subject_ref, since, until, after, limit)).all()
    reads = [_read(seq, at, fields) for seq, at, fields in rows[:limit]]
    more = len(rows) > limit
    return ReadsPage(reads, After(reads[-1].at, reads[-1].seq) if more else None)


def page_query(
    subject_ref: str,
    since: datetime | None,
    until: datetime | None,
    after: After | None,
    limit: int,
) -> Select[int, str, str]:
    """The statement of one page: ``limit`` + 1 rows, to tell whether another page follows."""
    e = tables.entries
    query = (
        select(e.c.seq, e.c.at, e.c.fields)
        .where(e.c.subject_ref == subject_ref, e.c.kind == EntryKind.PARTNER_READ)
        .order_by(e.c.at.desc(), e.c.seq.desc())
        .limit(limit + 1)
    )
    if since is not None:
        query = query.where(e.c.at >= timestamp(since))
    if until is not None:
        query = query.where(e.c.at < timestamp(until))
    if after is not None:
        at = timestamp(after.at)
        # ``at <= …`` bounds the index range on both stores; the OR only sorts out the reads
        # of that very moment (an OR alone made SQLite walk down from the newest).
        query = query.where(e.c.at <= at, or_(e.c.at < at, e.c.seq < after.seq))
    return query


def _read(seq: int, at: str, text: str) -> TrackedRead:
    fields = orjson.loads(text)
    return TrackedRead(
        seq=seq,
        at=datetime.fromisoformat(at),
        partner=fields["partner"],
        purpose=fields["purpose"],
        categories=fields["categories"],
        view=fields.get("view"),
        consent_ids=fields.get("consent_ids", []),
        rows=fields.get("rows"),
    )
