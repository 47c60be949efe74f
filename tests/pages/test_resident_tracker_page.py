"""The resident's "who read my data" in a real browser: the newest read on top, older ones a
page at a time on demand, down to the oldest."""

from __future__ import annotations

from playwright.sync_api import Page, expect

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
