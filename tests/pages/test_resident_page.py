"""The resident's page in a real browser: signing in, granting, pausing and resuming, the
receipt, erasure, errors shown as the API words them, both languages, phone width."""

from __future__ import annotations

import re
from datetime import datetime

from playwright.sync_api import Page, expect

from tests.api.test_partner_views import PLANNING, _grant, _id, _trip
from tests.fixtures.platform import RunningPlatform, register_partner
from tests.pages.browser import ARTIFACTS, open_page, screenshot

TRIPS = "transport.trips"
#: Japanese script (kana, kanji, full-width forms): none may show on the English page.
JAPANESE = re.compile(r"[\u3000-\u30ff\u3400-\u9fff\uff00-\uffef]")


def _consents(platform: RunningPlatform, resident: str) -> list[dict[str, object]]:
    with platform.client() as http:
        r = http.get("/v1/me/consents", headers=platform.auth("resident", resident))
    assert r.status_code == 200, r.text
    consents: list[dict[str, object]] = r.json()
    return consents


def test_without_a_token_the_page_asks_for_one_and_signs_in_with_it(
    platform: RunningPlatform, page: Page
) -> None:
    resident = _id("res")
    with platform.client() as http:
        partner = register_partner(platform, http, PLANNING)
        _grant(platform, http, resident, partner, PLANNING, [TRIPS])

    open_page(page, platform, "/resident", None)
    expect(page.locator("#sign-in")).to_be_visible()
    expect(page.locator("#app")).to_be_hidden()
    expect(page.get_by_label("トークン", exact=True)).to_be_focused()
    # Signing in with nothing says so, and sends nothing.
    page.get_by_role("button", name="サインイン", exact=True).click()
    expect(page.locator("#alerts .alert")).to_contain_text("トークンを入力してください")

    page.get_by_label("トークン", exact=True).fill(platform.token("resident", resident))
    page.get_by_role("button", name="サインイン", exact=True).click()
    expect(page.locator("#sign-in")).to_be_hidden()
    expect(page.locator(f"article.consent[data-partner='{partner}'] .badge")).to_have_text("有効")
    expect(page.locator("#whoami")).to_have_text(f"{resident} としてサインイン中")
    expect(page.locator("#alerts .alert")).to_have_count(0)

    # A link carrying another resident's token, followed in the open page, switches to them.
    other = _id("res")
    with page.expect_navigation():
        page.evaluate(f"location.hash = 'token={platform.token('resident', other)}'")
    page.wait_for_selector("body[data-ready='true']", state="attached")
    expect(page.locator("#whoami")).to_have_text(f"{other} としてサインイン中")
    expect(page.locator("#consents .empty")).to_be_visible()
    assert page.url == f"{platform.base_url}/resident"

    page.get_by_role("button", name="サインアウト", exact=True).click()
    expect(page.locator("#sign-in")).to_be_visible()
    assert page.evaluate("sessionStorage.getItem('tsunagu.token.resident')") is None


def test_granting_on_the_page_makes_the_consent_and_its_receipt_downloads(
    platform: RunningPlatform, page: Page
) -> None:
    resident = _id("res")
    with platform.client() as http:
        partner = register_partner(platform, http, PLANNING)
    open_page(page, platform, "/resident", platform.token("resident", resident))
    expect(page.locator("#consents .empty")).to_be_visible()

    page.get_by_label("事業者", exact=True).select_option(partner)
    purpose = page.get_by_label("利用目的", exact=True)
    # The purposes offered are the ones the municipality approved for this partner.
    expect(purpose.locator("option")).to_have_text(["選択してください", "交通計画・路線最適化"])
    purpose.select_option(PLANNING)
    page.locator(f"#grant-categories input[value='{TRIPS}']").check()
    page.get_by_label("有効期限（この日の終わりまで）").fill("2030-03-31")
    page.get_by_role("button", name="同意する", exact=True).click()

    card = page.locator(f"article.consent[data-partner='{partner}']")
    expect(card.locator(".badge")).to_have_text("有効")
    expect(page.locator("#status")).to_contain_text("同意しました")
    (consent,) = _consents(platform, resident)
    assert consent["partner_id"] == partner
    assert consent["purpose"] == PLANNING
    assert consent["categories"] == [TRIPS]
    assert consent["status"] == "active"
    assert datetime.fromisoformat(str(consent["expires_at"])) == datetime.fromisoformat(
        "2030-03-31T23:59:59+09:00"
    )
    expect(card).to_have_attribute("data-consent-id", str(consent["id"]))
    expect(card).to_contain_text("2030/03/31")

    with page.expect_download() as download:
        card.locator("button[data-action='receipt']").click()
    saved = ARTIFACTS / "receipt.jws"
    download.value.save_as(saved)
    assert download.value.suggested_filename == f"{consent['id']}.jws"
    assert saved.read_text() == consent["receipt"]
    assert saved.read_text().count(".") == 2  # a compact JWS

    card.locator("button[data-action='pause']").click()
    expect(card.locator(".badge")).to_have_text("一時停止中")
    assert _consents(platform, resident)[0]["status"] == "paused"
    card.locator("button[data-action='resume']").click()
    expect(card.locator(".badge")).to_have_text("有効")
    assert _consents(platform, resident)[0]["status"] == "active"
    # Each change is a version of its own in the history: granted, paused, resumed.
    expect(page.locator("#history tbody tr")).to_have_count(3)


def test_erasure_asks_first_and_shows_the_record_to_keep(
    platform: RunningPlatform, page: Page
) -> None:
    resident = _id("res")
    with platform.client() as http:
        partner = register_partner(platform, http, PLANNING)
        _grant(platform, http, resident, partner, PLANNING, [TRIPS])
    platform.ingest([_trip(resident, 14)])
    open_page(page, platform, "/resident", platform.token("resident", resident))
    expect(page.locator(".danger-zone .warning")).to_contain_text("元に戻すことはできません")

    # Cancelling changes nothing.
    page.get_by_role("button", name="データの消去を申請する").click()
    expect(page.locator("dialog#confirm")).to_be_visible()
    page.locator("#confirm-cancel").click()
    expect(page.locator("dialog#confirm")).to_be_hidden()
    assert _consents(platform, resident)[0]["status"] == "active"

    page.get_by_role("button", name="データの消去を申請する").click()
    expect(page.locator("#confirm-title")).to_have_text("本当にすべてのデータを消去しますか？")
    page.locator("#confirm-ok").click()
    record = page.locator("#erasure-record .record")
    expect(record).to_be_visible()
    salt = record.locator("code.salt").inner_text()
    assert re.fullmatch(r"[0-9a-f]{16,}", salt), salt
    assert (record.get_attribute("data-erasure-id") or "") != ""
    expect(record.locator("dt:has-text('撤回した同意') + dd")).to_have_text("1")
    expect(record.locator("dt:has-text('暗号鍵の破棄') + dd")).to_have_text("はい")
    expect(record.locator("dt:has-text('削除した行') + dd")).to_contain_text("transport_trips: 1")
    expect(record.locator("dt:has-text('残る複製の消滅期限') + dd")).to_be_visible()
    # The consents stay for the partner's record, but no longer name the resident.
    expect(page.locator(f"article.consent[data-partner='{partner}']")).to_have_count(0)
    assert _consents(platform, resident) == []


def test_an_api_refusal_is_shown_in_the_pages_language_with_the_apis_words_at_hand(
    platform: RunningPlatform, page: Page
) -> None:
    # An auditor's token on the resident's page: every /v1/me call is a 403 problem.
    open_page(page, platform, "/resident", platform.token("auditor", "city-audit"))
    alert = page.locator("#alerts .alert")
    expect(alert).to_have_count(1)
    expect(alert).to_have_attribute("data-status", "403")
    expect(alert).to_have_attribute("data-kind", "forbidden-role")
    expect(alert.locator(".alert-title")).to_have_text("このトークンの役割ではこの操作はできません")
    expect(alert.locator(".alert-detail")).to_contain_text("住民のページなら住民")
    # The API's own (English) words stay at hand, folded until asked for.
    words = alert.locator(".alert-api-detail")
    expect(words).to_be_hidden()
    alert.locator(".alert-api summary").click()
    expect(words).to_have_text(
        "this operation is for the resident role; the token's role is auditor"
    )
    expect(words).to_have_attribute("lang", "en")
    expect(page.locator("#app")).to_be_visible()

    # A token that is not one: 401, said in Japanese, and the sign-in form back.
    open_page(page, platform, "/resident", "not-a-jwt")
    alert = page.locator("#alerts .alert").first
    expect(alert).to_have_attribute("data-status", "401")
    expect(alert.locator(".alert-title")).to_have_text("トークンがないか、有効ではありません")
    expect(alert.locator(".alert-detail")).to_contain_text("有効なトークンを貼り付けて")
    expect(page.locator("#sign-in")).to_be_visible()
    expect(page.locator("#status")).to_have_text("もう一度サインインしてください。")


def test_the_language_toggle_switches_every_visible_word_and_is_remembered(
    platform: RunningPlatform, page: Page
) -> None:
    resident = _id("res")
    with platform.client() as http:
        partner = register_partner(platform, http, PLANNING)
        _grant(platform, http, resident, partner, PLANNING, [TRIPS])
    open_page(page, platform, "/resident", platform.token("resident", resident))
    expect(page.locator("html")).to_have_attribute("lang", "ja")
    expect(page.locator("#consents-title")).to_have_text("わたしの同意")
    expect(page.locator("button[data-lang='ja']")).to_have_attribute("aria-pressed", "true")

    page.get_by_role("button", name="English", exact=True).click()
    expect(page.locator("html")).to_have_attribute("lang", "en")
    expect(page.locator("button[data-lang='en']")).to_have_attribute("aria-pressed", "true")
    expect(page.locator("#consents-title")).to_have_text("My consents")
    expect(page).to_have_title("My data — Tsunagu")
    card = page.locator(f"article.consent[data-partner='{partner}']")
    expect(card.locator("h3")).to_have_text("Mitoyo Transport")
    expect(card.locator(".purpose")).to_have_text("Transport planning")
    expect(card.locator(".chip")).to_have_text(["Trips and ride requests"])
    expect(card.locator(".badge")).to_have_text("Active")
    expect(page.locator("#grant-submit")).to_have_text("Grant consent")
    visible = page.locator("body").inner_text()
    # Only the button leading back to Japanese is written in Japanese.
    assert JAPANESE.findall(visible.replace("日本語", "")) == [], visible
    screenshot(page, "resident-page-en")

    # Remembered: a reload (the token stays in the tab) comes back in English.
    page.reload()
    page.wait_for_selector("body[data-ready='true']", state="attached")
    expect(page.locator("html")).to_have_attribute("lang", "en")
    expect(card.locator(".badge")).to_have_text("Active")

    page.get_by_role("button", name="日本語", exact=True).click()
    expect(page.locator("html")).to_have_attribute("lang", "ja")
    expect(card.locator("h3")).to_have_text("三豊交通")


def test_the_page_fits_a_phone(platform: RunningPlatform, page: Page) -> None:
    resident = _id("res")
    with platform.client() as http:
        partner = register_partner(platform, http, PLANNING)
        _grant(platform, http, resident, partner, PLANNING, [TRIPS])
    page.set_viewport_size({"width": 390, "height": 844})
    open_page(page, platform, "/resident", platform.token("resident", resident))
    card = page.locator(f"article.consent[data-partner='{partner}']")
    expect(card).to_be_visible()
    box = card.bounding_box()
    assert box is not None and box["width"] <= 390
    # Nothing but the tables (which scroll inside their own box) is wider than the screen.
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    revoke = card.locator("button[data-action='revoke']").bounding_box()
    assert revoke is not None and revoke["height"] >= 40  # a finger-sized target
    screenshot(page, "resident-page-phone")
