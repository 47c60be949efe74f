"""The resident page's linked services (ID link), in Chromium: the resident enters the link
code a service gave them, sees the service listed with how and when it was linked, ends the
link after confirming; a wrong code is explained in the page's language."""

from __future__ import annotations

import secrets

import httpx
from playwright.sync_api import Page, expect

from tests.fixtures.platform import RunningPlatform
from tests.pages.browser import open_page, screenshot
from tests.regionid.test_provider import _add_client

SHOP = ("mitoyo-shop-page", "https://shop.example.jp/cb")


def _code(platform: RunningPlatform, client_id: str, secret: str) -> str:
    r = httpx.post(
        f"{platform.base_url}/regionid/link-codes",
        json={"customer": f"C-{secrets.token_hex(4)}"},
        auth=(client_id, secret),
    )
    assert r.status_code == 201, r.text
    code: str = r.json()["code"]
    return code


def test_a_resident_links_a_service_with_its_code_and_ends_the_link(
    platform: RunningPlatform, page: Page
) -> None:
    secret = _add_client(platform, SHOP[0], SHOP[1])
    resident = f"res-{secrets.token_hex(5)}"
    open_page(page, platform, "/resident", platform.token("resident", resident))
    links = page.locator("#links")
    expect(links).to_contain_text("連携しているサービスはありません。")

    # Typed as read off a receipt: lower case, spaces.
    code = _code(platform, SHOP[0], secret)
    page.locator("#link-code").fill(code.lower().replace("-", " "))
    page.locator("#link-submit").click()
    row = links.locator(f"tr[data-client='{SHOP[0]}']")
    expect(row).to_be_visible()
    expect(row.locator("td").nth(0)).to_have_text(SHOP[0])  # the name it was registered with
    expect(row.locator("td").nth(1)).to_have_text("連携コード")
    expect(page.locator("#status")).to_contain_text(f"{SHOP[0]} と連携しました。")
    expect(page.locator("#link-code")).to_have_value("")
    expect(page.locator("#alerts .alert")).to_have_count(0)
    screenshot(page, "resident-links")

    # The same code again: refused, and said so in Japanese.
    page.locator("#link-code").fill(code)
    page.locator("#link-submit").click()
    expect(page.locator("#alerts .alert")).to_contain_text("この連携コードは使用済みです")

    # Ending the link asks first; cancelling keeps it.
    row.locator("button[data-action='unlink']").click()
    expect(page.locator("#confirm-title")).to_have_text("連携を解除しますか")
    page.locator("#confirm-cancel").click()
    expect(row).to_be_visible()
    row.locator("button[data-action='unlink']").click()
    page.locator("#confirm-ok").click()
    expect(row).to_have_count(0)
    expect(links).to_contain_text("連携しているサービスはありません。")
    with platform.client() as http:
        mine = http.get("/v1/me/links", headers=platform.auth("resident", resident))
    assert mine.json() == []


def test_an_unknown_code_is_explained_in_english_too(platform: RunningPlatform, page: Page) -> None:
    open_page(
        page, platform, "/resident", platform.token("resident", f"res-{secrets.token_hex(5)}")
    )
    page.locator("button[data-lang='en']").click()
    page.locator("#link-code").fill("0000-0000-0000")
    page.locator("#link-submit").click()
    expect(page.locator("#alerts .alert")).to_contain_text("No such link code")
    expect(page.locator("#links")).to_contain_text("No service is linked with your region ID.")
