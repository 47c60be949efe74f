"""API refusals on the pages, in the page's language: the title and detail of each problem come
from messages.json by the problem's kind (``urn:tsunagu:problem:<kind>``), switch with the
language, keep the API's own words folded beside them, and fall back to the API's title and
detail for a kind the pages do not know."""

from __future__ import annotations

import json
import re

from playwright.sync_api import Locator, Page, expect

from tests.api.test_partner_views import HOUSING, _grant, _id
from tests.fixtures.platform import RunningPlatform, register_partner
from tests.pages.browser import open_page, screenshot
from tests.pages.test_problem_messages import MESSAGES

#: Japanese script (kana, kanji, full-width forms).
JAPANESE = re.compile(r"[\u3000-\u30ff\u3400-\u9fff\uff00-\uffef]")
INQUIRIES = "property.inquiries"


def _text(lang: str, kind: str, part: str) -> str:
    text: str = json.loads(MESSAGES.read_text(encoding="utf-8"))[lang][f"problem.{kind}.{part}"]
    return text


def _says(alert: Locator, lang: str, kind: str) -> None:
    """``alert`` shows problem ``kind`` in ``lang``, as the catalogue words it."""
    expect(alert).to_have_attribute("data-kind", kind)
    expect(alert.locator(".alert-title")).to_have_text(_text(lang, kind, "title"))
    expect(alert.locator(".alert-detail")).to_have_text(_text(lang, kind, "detail"))
    shown = alert.locator(".alert-body > :not(details)").all_inner_texts()
    if lang == "ja":
        assert all(JAPANESE.search(text) for text in shown), shown
    else:
        assert not any(JAPANESE.search(text) for text in shown), shown


def _fill_grant(page: Page, partner: str, purpose: str, category: str) -> None:
    page.locator("#grant-partner").select_option(partner)
    page.locator("#grant-purpose").select_option(purpose)
    page.locator(f"#grant-categories input[value='{category}']").check()


def test_a_crafted_owner_grant_and_a_stale_change_are_refused_in_the_pages_language(
    platform: RunningPlatform, page: Page
) -> None:
    resident = _id("res")
    with platform.client() as http:
        partner = register_partner(platform, http, HOUSING)
        consent = _grant(platform, http, resident, partner, HOUSING, [INQUIRIES])
    open_page(page, platform, "/resident", platform.token("resident", resident))
    expect(page.locator("#alerts .alert")).to_have_count(0)

    # The form never offers a non-owner the owner details; a crafted checkbox is refused by
    # the API (403 not-property-owner), and the page says so in Japanese.
    page.locator("#grant-categories").evaluate(
        """box => box.append(Object.assign(document.createElement("input"),
             {type: "checkbox", name: "categories", value: "property.details"}))"""
    )
    _fill_grant(page, partner, HOUSING, "property.details")
    page.locator("#grant-submit").click()
    alert = page.locator("#alerts .alert")
    expect(alert).to_have_attribute("data-status", "403")
    _says(alert, "ja", "not-property-owner")
    expect(alert.locator(".alert-api-detail")).to_contain_text("owns no listing")
    # The alert sits above the forms, inside the page's width.
    box, app = alert.bounding_box(), page.locator("#app").bounding_box()
    assert box is not None and app is not None
    assert box["y"] + box["height"] <= app["y"]
    assert box["x"] >= 0 and box["x"] + box["width"] <= 1280
    screenshot(page, "resident-problem-ja")

    # The language switched, the alert on screen is worded again, in English.
    page.get_by_role("button", name="English", exact=True).click()
    _says(alert, "en", "not-property-owner")
    screenshot(page, "resident-problem-en")

    # A consent revoked elsewhere meanwhile: pausing the stale card is a 409 of its kind.
    with platform.client() as http:
        r = http.post(
            f"/v1/me/consents/{consent}/revoke", headers=platform.auth("resident", resident)
        )
        assert r.status_code == 200, r.text
    page.locator(f"article.consent[data-consent-id='{consent}'] [data-action='pause']").click()
    expect(alert).to_have_attribute("data-status", "409")
    _says(alert, "en", "invalid-transition")
    page.get_by_role("button", name="日本語", exact=True).click()
    _says(alert, "ja", "invalid-transition")


def test_a_problem_of_a_kind_the_pages_do_not_know_shows_the_apis_own_title_and_detail(
    platform: RunningPlatform, page: Page
) -> None:
    # A newer API than these pages may answer a kind they have no words for.
    problem = {
        "type": "urn:tsunagu:problem:brand-new-kind",
        "title": "A kind added after these pages",
        "status": 422,
        "detail": "change the brand-new thing",
    }
    page.route(
        "**/v1/me/consents/history",
        lambda route: route.fulfill(
            status=422, content_type="application/problem+json", body=json.dumps(problem)
        ),
    )
    open_page(page, platform, "/resident", platform.token("resident", _id("res")))
    alert = page.locator("#alerts .alert")
    expect(alert).to_have_count(1)
    expect(alert).to_have_attribute("data-kind", "")
    expect(alert.locator(".alert-title")).to_have_text("A kind added after these pages")
    expect(alert.locator(".alert-detail")).to_have_text("change the brand-new thing")
    expect(alert.locator(".alert-api")).to_have_count(0)
