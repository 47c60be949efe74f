"""The resident's "who read my data" (`/v1/me/access-log`) on a running platform: newest first
however many reads came before, a page at a time by an opaque cursor that only its resident's
next request accepts, within a period."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from broker.audit import AuditLog, EntryKind, NewEntry
from broker.store.database import make_engine
from consent.keys import KeyRing
from tests.api.test_partner_views import PLANNING, _activity, _grant, _id, _pseudonyms, _trip
from tests.fixtures.platform import RunningPlatform, register_partner

#: The old tracker read at most this many entries of a resident, oldest first.
OLD_CAP = 10_000
#: When the seeded reads happened: a year back, a second apart.
LONG_AGO = datetime.now(UTC).replace(microsecond=0) - timedelta(days=365)


def seed_reads(
    platform: RunningPlatform,
    resident: str,
    n: int,
    *,
    start: datetime = LONG_AGO,
    step: timedelta = timedelta(seconds=1),
) -> None:
    """``n`` partner reads of ``resident``, ``step`` apart from ``start`` (read i has i rows),
    written straight to the platform's audit log (the API would take minutes to make as many)."""
    engine = make_engine(f"sqlite:///{platform.data_dir / 'store.db'}", upgrade=False)
    try:
        with AuditLog(engine, KeyRing.in_data_dir(platform.data_dir), background=False) as log:
            log.append_many(
                NewEntry(
                    EntryKind.PARTNER_READ,
                    "ptn-seeded",
                    {
                        "partner": "ptn-seeded",
                        "purpose": PLANNING,
                        "categories": ["transport.trips"],
                        "view": "activity",
                        "rows": i,
                    },
                    subject=resident,
                    at=start + i * step,
                )
                for i in range(n)
            )
    finally:
        engine.dispose()


def _tracker(platform: RunningPlatform, resident: str, **params: Any) -> Any:
    with platform.client() as http:
        return http.get(
            "/v1/me/access-log", params=params, headers=platform.auth("resident", resident)
        )


def _page(platform: RunningPlatform, resident: str, **params: Any) -> dict[str, Any]:
    r = _tracker(platform, resident, **params)
    assert r.status_code == 200, r.text
    page: dict[str, Any] = r.json()
    return page


def _all_rows(platform: RunningPlatform, resident: str, **params: Any) -> list[int]:
    rows: list[int] = []
    cursor = None
    while True:
        page = _page(platform, resident, **params, **({"cursor": cursor} if cursor else {}))
        rows += [r["rows"] for r in page["reads"]]
        cursor = page["next_cursor"]
        if cursor is None:
            return rows


def test_the_newest_read_comes_first_past_the_old_cap(platform: RunningPlatform) -> None:
    resident = _id("res")
    seed_reads(platform, resident, OLD_CAP + 1)
    with platform.client() as http:
        partner = register_partner(platform, http, PLANNING)
        consent = _grant(platform, http, resident, partner, PLANNING, ["transport.trips"])
        platform.ingest([_trip(resident, 6)])
        (pseudonym,) = _pseudonyms(platform, http, partner)
        _activity(platform, http, partner, pseudonym).raise_for_status()

    page = _page(platform, resident, limit=3)
    newest = page["reads"][0]
    assert (newest["partner"], newest["view"], newest["consent_ids"]) == (
        partner,
        "activity",
        [consent],
    )
    assert [r["rows"] for r in page["reads"][1:]] == [OLD_CAP, OLD_CAP - 1]
    assert page["next_cursor"]


def test_pages_follow_one_another_to_the_oldest_read(platform: RunningPlatform) -> None:
    resident = _id("res")
    seed_reads(platform, resident, 25)
    assert _all_rows(platform, resident, limit=10) == list(range(24, -1, -1))
    # The last page says so.
    assert _page(platform, resident, limit=25)["next_cursor"] is None


def test_pages_neither_repeat_nor_skip_while_partners_keep_reading(
    platform: RunningPlatform,
) -> None:
    resident = _id("res")
    seed_reads(platform, resident, 30)
    rows: list[int] = []
    cursor = None
    for round_ in range(20):
        page = _page(platform, resident, limit=4, **({"cursor": cursor} if cursor else {}))
        rows += [r["rows"] for r in page["reads"]]
        # Reads appended between the pages, as partners read on.
        seed_reads(platform, resident, 2, start=datetime.now(UTC) + timedelta(seconds=round_))
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert rows == list(range(29, -1, -1))


def test_the_period_keeps_reads_from_its_start_and_before_its_end(
    platform: RunningPlatform,
) -> None:
    resident = _id("res")
    seed_reads(platform, resident, 10)
    since = (LONG_AGO + timedelta(seconds=3)).isoformat()
    until = (LONG_AGO + timedelta(seconds=7)).isoformat()
    assert _all_rows(platform, resident, limit=2, **{"from": since, "to": until}) == [6, 5, 4, 3]
    assert _all_rows(platform, resident, **{"from": since}) == [9, 8, 7, 6, 5, 4, 3]
    assert _all_rows(platform, resident, **{"to": until}) == [6, 5, 4, 3, 2, 1, 0]


def test_a_period_ending_before_it_starts_is_refused_saying_what_to_change(
    platform: RunningPlatform,
) -> None:
    r = _tracker(
        platform, _id("res"), **{"from": "2026-05-01T00:00:00Z", "to": "2026-04-01T00:00:00Z"}
    )
    assert r.status_code == 422, r.text
    assert "`from` must be before `to`" in r.json()["detail"]


def test_another_residents_cursor_is_refused(platform: RunningPlatform) -> None:
    mine, theirs = _id("res"), _id("res")
    seed_reads(platform, mine, 5)
    seed_reads(platform, theirs, 5)
    cursor = _page(platform, theirs, limit=2)["next_cursor"]
    r = _tracker(platform, mine, limit=2, cursor=cursor)
    assert r.status_code == 400, r.text
    problem = r.json()
    assert r.headers["content-type"].startswith("application/problem+json")
    assert "belongs to someone else" in problem["detail"]
    assert "start without a cursor" in problem["detail"]  # what to do instead
    # Their own cursor serves them.
    assert _tracker(platform, theirs, limit=2, cursor=cursor).status_code == 200


def test_a_tampered_cursor_is_refused(platform: RunningPlatform) -> None:
    resident = _id("res")
    seed_reads(platform, resident, 5)
    cursor = _page(platform, resident, limit=2)["next_cursor"]
    raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
    doc, mac = raw[:-32], raw[-32:]
    moved = orjson.loads(doc)
    moved["i"] = str(int(moved["i"]) + 1)  # a step up the list, MAC kept
    for forged in (
        base64.urlsafe_b64encode(orjson.dumps(moved) + mac).decode(),
        base64.urlsafe_b64encode(doc).decode(),  # the MAC dropped
        "bm90LWEtY3Vyc29y",  # not one at all
    ):
        r = _tracker(platform, resident, limit=2, cursor=forged)
        assert r.status_code == 400, r.text
        assert "start without a cursor" in r.json()["detail"]


def test_a_cursor_serves_only_the_period_it_was_made_for(platform: RunningPlatform) -> None:
    resident = _id("res")
    seed_reads(platform, resident, 5)
    cursor = _page(platform, resident, limit=2)["next_cursor"]
    r = _tracker(platform, resident, limit=2, cursor=cursor, **{"from": LONG_AGO.isoformat()})
    assert r.status_code == 400, r.text
    assert "same partner, purpose, period and filters" in r.json()["detail"]
