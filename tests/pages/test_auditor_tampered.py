"""The auditor's page on a tampered log: an entry edited in the store shows as a broken chain
naming the entry. A module of its own, so that its platform's log is the only one broken."""

from __future__ import annotations

from playwright.sync_api import Page, expect
from sqlalchemy import create_engine, text

from tests.api.test_partner_views import PLANNING
from tests.fixtures.platform import RunningPlatform, register_partner
from tests.pages.browser import open_page, screenshot


def test_an_edited_entry_shows_as_a_broken_chain_naming_its_seq(
    platform: RunningPlatform, page: Page
) -> None:
    with platform.client() as http:
        register_partner(platform, http, PLANNING)
    open_page(page, platform, "/auditor", platform.token("auditor", "city-audit"))
    state = page.locator("#verification .verify-state")
    expect(state).to_have_attribute("data-ok", "true")

    # Someone with write access to the store rewrites what entry 2 says.
    engine = create_engine(f"sqlite:///{platform.data_dir / 'store.db'}")
    with engine.begin() as conn:
        edited = conn.execute(
            text("UPDATE audit_entries SET fields = :f WHERE seq = 2"), {"f": '{"event":"x"}'}
        )
    engine.dispose()
    assert edited.rowcount == 1

    page.get_by_role("button", name="もう一度検証", exact=True).click()
    expect(state).to_have_attribute("data-ok", "false")
    expect(state).to_have_text("改ざんまたは欠落あり")
    problem = page.locator("#verification .problem")
    expect(problem).to_have_attribute("data-seq", "2")
    expect(problem).to_contain_text("seq 2")
    expect(problem).to_contain_text("edited")
    screenshot(page, "auditor-page-tampered")
