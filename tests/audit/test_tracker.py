"""The resident's data tracker on both stores: partner reads of one resident, newest first,
in pages that never repeat or skip a read while others are appended, within a period; no
other resident's entries and no other kind."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine, text

from broker.audit import AuditLog, EntryKind, NewEntry
from broker.audit.entries import timestamp
from broker.audit.tracker import After, page_query, reads_of
from tests.audit.conftest import RESIDENT

NEIGHBOUR = "res-sato-ichiro-0043"
PARTNER = "ptn-mitoyobus01"
T0 = datetime(2026, 10, 1, tzinfo=UTC)


def _read(n: int, *, subject: str = RESIDENT, at: datetime | None = None) -> NewEntry:
    return NewEntry(
        EntryKind.PARTNER_READ,
        PARTNER,
        {
            "partner": PARTNER,
            "purpose": "transport.planning",
            "categories": ["transport.trips"],
            "view": "activity",
            "consent_ids": ["cns-1"],
            "rows": n,  # tells the reads apart
        },
        subject=subject,
        at=at,
    )


def _every_page(audit: AuditLog, limit: int, **period: datetime) -> list[int]:
    """The rows-numbers of every read, page after page."""
    ref = audit.refs.of(RESIDENT)
    seen: list[int] = []
    after: After | None = None
    while True:
        page = reads_of(audit.engine, ref, after=after, limit=limit, **period)
        seen += [r.rows or 0 for r in page.reads]
        if page.next is None:
            return seen
        after = page.next


def test_the_newest_read_comes_first(audit: AuditLog) -> None:
    audit.append_many(_read(n) for n in range(1, 31))
    page = reads_of(audit.engine, audit.refs.of(RESIDENT), limit=10)
    assert [r.rows for r in page.reads] == list(range(30, 20, -1))
    newest = page.reads[0]
    assert (newest.partner, newest.purpose, newest.categories) == (
        PARTNER,
        "transport.planning",
        ["transport.trips"],
    )
    assert newest.consent_ids == ["cns-1"] and newest.view == "activity"
    assert page.next == After(page.reads[-1].at, page.reads[-1].seq)


def test_the_last_page_says_there_is_no_next(audit: AuditLog) -> None:
    audit.append_many(_read(n) for n in range(1, 11))
    page = reads_of(audit.engine, audit.refs.of(RESIDENT), limit=10)
    assert len(page.reads) == 10
    assert page.next is None


def test_pages_follow_without_repeat_or_gap_while_reads_are_appended(audit: AuditLog) -> None:
    audit.append_many(_read(n) for n in range(1, 101))
    ref = audit.refs.of(RESIDENT)
    seen: list[int] = []
    after: After | None = None
    appended = 1000
    while True:
        page = reads_of(audit.engine, ref, after=after, limit=7)
        seen += [r.rows or 0 for r in page.reads]
        # Partners keep reading between the resident's pages: their new reads sort above the
        # first page, so the pages go on where they were.
        appended += 1
        audit.append_many([_read(appended), _read(appended + 5000)])
        if page.next is None:
            break
        after = page.next
    assert seen == list(range(100, 0, -1))


def test_reads_with_the_same_moment_are_told_apart_by_their_place_in_the_chain(
    audit: AuditLog,
) -> None:
    audit.append_many(_read(n, at=T0) for n in range(1, 26))
    assert _every_page(audit, 4) == list(range(25, 0, -1))


def test_the_period_keeps_reads_from_its_start_and_before_its_end(audit: AuditLog) -> None:
    audit.append_many(_read(day, at=T0 + timedelta(days=day)) for day in range(10))
    since, until = T0 + timedelta(days=3), T0 + timedelta(days=7)
    assert _every_page(audit, 2, since=since, until=until) == [6, 5, 4, 3]
    assert _every_page(audit, 100, since=since) == [9, 8, 7, 6, 5, 4, 3]
    assert _every_page(audit, 100, until=until) == [6, 5, 4, 3, 2, 1, 0]


def test_only_the_residents_own_partner_reads_are_tracked(audit: AuditLog) -> None:
    audit.append_many(
        [
            _read(1),
            _read(2, subject=NEIGHBOUR),
            NewEntry(EntryKind.TOKEN_ISSUED, "ops", {"role": "resident"}, subject=RESIDENT),
            _read(3),
        ]
    )
    assert _every_page(audit, 100) == [3, 1]
    neighbours = reads_of(audit.engine, audit.refs.of(NEIGHBOUR), limit=100)
    assert [r.rows for r in neighbours.reads] == [2]


def test_a_page_is_one_range_of_the_trackers_index(audit: AuditLog) -> None:
    """The query plan walks the tracker's index, never the whole log (SQLite and PostgreSQL)."""
    engine: Engine = audit.engine
    audit.append_many(_read(n) for n in range(1, 5))
    at = datetime(2026, 10, 5, tzinfo=UTC)
    query = page_query(audit.refs.of(RESIDENT), T0, T0 + timedelta(days=90), After(at, 10), 50)
    sql = str(query.compile(engine, compile_kwargs={"literal_binds": True}))
    with engine.connect() as conn:
        if engine.dialect.name == "sqlite":
            plan = " ".join(str(r[-1]) for r in conn.execute(text("EXPLAIN QUERY PLAN " + sql)))
            assert "ix_audit_entries_tracker" in plan, plan
            assert "at<" in plan, plan  # the cursor bounds the range: no walk from the newest
            assert "TEMP B-TREE" not in plan, plan  # no sort: the index gives the order
        else:
            conn.execute(text("SET enable_seqscan = off"))  # a tiny table would be scanned
            plan = " ".join(r[0] for r in conn.execute(text("EXPLAIN " + sql)))
            assert "ix_audit_entries_tracker" in plan, plan
            index_cond = plan.split("Filter")[0]
            assert f"<= '{timestamp(at)}'" in index_cond, plan  # the cursor bounds the index scan
            assert "Sort" not in plan, plan
