"""The resident's "who read my data" in a real browser: the newest read on top, older ones a
page at a time on demand, down to the oldest; a period of days chosen on the page."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from playwright.sync_api import Page, Route, expect

from tests.api.test_partner_views import _id
from tests.api.test_resident_tracker import seed_reads
from tests.fixtures.platform import RunningPlatform
from tests.pages.browser import open_page, screenshot

#: The page asks for this many reads at a time (resident.js, READS_PAGE).
PAGE = 50


def _rows_column(page: Page) -> list[int]:
    """The 件数 column of every row of the tracker, top to bottom."""
    cells = page.locator("#tracker tbody tr td.num").all_inner_texts()
    return [int(text) for text in cells]


def test_the_tracker_shows_the_newest_read_first_and_loads_older_ones_on_demand(
    platform: RunningPlatform, page: Page
) -> None:
    resident = _id("res")
    seed_reads(platform, resident, PAGE + 12)  # read i has i rows; the last is the newest
    open_page(page, platform, "/resident", platform.token("resident", resident))

    rows = page.locator("#tracker tbody tr")
    expect(rows).to_have_count(PAGE)
    assert _rows_column(page) == list(range(PAGE + 11, 11, -1))
    seqs = [int(s or 0) for s in rows.evaluate_all("rs => rs.map(r => r.dataset.seq)")]
    assert seqs == sorted(seqs, reverse=True)
    more = page.locator("#tracker-more")
    expect(more).to_be_visible()
    expect(more).to_have_text("さらに表示")
    # The button sits below the table, not over it.
    table_box, more_box = page.locator("#tracker table").bounding_box(), more.bounding_box()
    assert table_box and more_box and more_box["y"] >= table_box["y"] + table_box["height"]
    screenshot(page, "resident-tracker-first-page")

    more.click()
    expect(rows).to_have_count(PAGE + 12)
    assert _rows_column(page) == list(range(PAGE + 11, -1, -1))
    expect(more).to_be_hidden()  # the oldest read is shown: nothing more to load
    expect(page.locator("#alerts .alert")).to_have_count(0)
    screenshot(page, "resident-tracker-all-pages")


def test_a_resident_without_reads_sees_so_and_no_button(
    platform: RunningPlatform, page: Page
) -> None:
    open_page(page, platform, "/resident", platform.token("resident", _id("res")))
    expect(page.locator("#tracker")).to_contain_text("まだ誰もあなたのデータを読んでいません。")
    expect(page.locator("#tracker-more")).to_be_hidden()


def test_choosing_days_shows_only_the_reads_of_those_days(
    platform: RunningPlatform, page: Page
) -> None:
    resident = _id("res")
    # Read i (i rows) at noon in Japan on June 1 + i.
    noon = datetime(2026, 6, 1, 12, tzinfo=ZoneInfo("Asia/Tokyo"))
    seed_reads(platform, resident, 5, start=noon, step=timedelta(days=1))
    open_page(page, platform, "/resident", platform.token("resident", resident))
    expect(page.locator("#tracker tbody tr")).to_have_count(5)

    page.get_by_label("この日から", exact=True).fill("2026-06-02")
    page.get_by_label("この日まで", exact=True).fill("2026-06-04")  # the 4th included
    expect(page.locator("#tracker tbody tr")).to_have_count(3)
    assert _rows_column(page) == [3, 2, 1]
    expect(page.locator("#tracker tbody tr").first).to_contain_text("2026/06/04")
    screenshot(page, "resident-tracker-period")

    page.get_by_label("この日から", exact=True).fill("2027-01-01")
    page.get_by_label("この日まで", exact=True).fill("")
    expect(page.locator("#tracker .empty")).to_have_text(
        "この期間にあなたのデータを読んだ事業者はありません。"
    )
    expect(page.locator("#tracker-more")).to_be_hidden()


def test_a_slow_answer_to_an_earlier_period_does_not_replace_the_period_now_chosen(
    platform: RunningPlatform, page: Page
) -> None:
    resident = _id("res")
    noon = datetime(2026, 6, 1, 12, tzinfo=ZoneInfo("Asia/Tokyo"))
    seed_reads(platform, resident, 5, start=noon, step=timedelta(days=1))
    open_page(page, platform, "/resident", platform.token("resident", resident))
    expect(page.locator("#tracker tbody tr")).to_have_count(5)

    # Hold back the answer to "from the 2nd" (no end day yet) until the full period is shown.
    held: list[Route] = []
    page.route(
        "**/v1/me/access-log?*",
        lambda route: held.append(route) if "to=" not in route.request.url else route.continue_(),
    )
    page.get_by_label("この日から", exact=True).fill("2026-06-02")
    page.get_by_label("この日まで", exact=True).fill("2026-06-04")
    expect(page.locator("#tracker tbody tr")).to_have_count(3)
    assert len(held) == 1
    with page.expect_response(lambda response: "to=" not in response.url):
        held[0].continue_()
    page.wait_for_timeout(300)  # time for the page to handle the late answer, which it must drop
    expect(page.locator("#tracker tbody tr")).to_have_count(3)
    assert _rows_column(page) == [3, 2, 1]
