"""The consent form offers only what the consent rules would grant this resident: the owner
details (空き家の所有者情報) only to a vacant house's owner. The page asks the API
(``/v1/me/consents/categories``), which answers from the same rule that refuses a grant."""

from __future__ import annotations

from playwright.sync_api import Page, expect

from tests.api.test_partner_views import HOUSING, _id, _listing
from tests.fixtures.platform import RunningPlatform, register_partner
from tests.pages.browser import open_page, screenshot

DETAILS = "property.details"
#: Every personal category anyone may consent to, and the one only an owner may.
RESIDENTS = {"transport.trips", "health.points", "currency.transactions", "property.inquiries"}


def _offered(page: Page) -> list[str]:
    values: list[str] = page.locator("#grant-categories input[name='categories']").evaluate_all(
        "boxes => boxes.map(box => box.value)"
    )
    return values


def test_a_non_owner_is_not_offered_the_owner_details_and_an_owner_is(
    platform: RunningPlatform, page: Page
) -> None:
    tenant, owner = _id("res"), _id("res")
    with platform.client() as http:
        partner = register_partner(platform, http, HOUSING)
    platform.ingest([_listing(owner, "takuma-shisho")])

    open_page(page, platform, "/resident", platform.token("resident", tenant))
    expect(page.locator("#grant-categories input[value='transport.trips']")).to_be_visible()
    assert set(_offered(page)) == RESIDENTS
    expect(page.locator("#grant-categories")).not_to_contain_text("空き家の所有者情報")
    screenshot(page, "grant-form-non-owner")

    open_page(page, platform, "/resident", platform.token("resident", owner))
    details = page.locator(f"#grant-categories input[value='{DETAILS}']")
    expect(details).to_be_visible()
    assert set(_offered(page)) == RESIDENTS | {DETAILS}
    label = page.locator("#grant-categories label[for='cat-property-details']")
    expect(label.locator(".checkbox-name")).to_have_text("空き家の所有者情報")
    # Laid out like its siblings: inside the fieldset, on the grid's columns.
    field = page.locator("#grant-categories").bounding_box()
    mine = details.locator("xpath=..").bounding_box()
    first = page.locator("#grant-categories .checkbox").first.bounding_box()
    assert field is not None and mine is not None and first is not None
    assert field["x"] <= mine["x"] and mine["x"] + mine["width"] <= field["x"] + field["width"]
    assert mine["width"] == first["width"]
    screenshot(page, "grant-form-owner")

    # The owner grants it on the page, and the consent covers it.
    page.locator("#grant-partner").select_option(partner)
    page.locator("#grant-purpose").select_option(HOUSING)
    details.check()
    page.locator("#grant-submit").click()
    card = page.locator(f"article.consent[data-partner='{partner}']")
    expect(card.locator(".chip")).to_have_text(["空き家の所有者情報"])
    expect(page.locator("#alerts .alert")).to_have_count(0)


def test_the_api_refuses_a_non_owners_crafted_grant_of_the_owner_details(
    platform: RunningPlatform,
) -> None:
    tenant = _id("res")
    with platform.client() as http:
        partner = register_partner(platform, http, HOUSING)
        me = platform.auth("resident", tenant)
        offered = http.get("/v1/me/consents/categories", headers=me)
        assert offered.status_code == 200, offered.text
        assert set(offered.json()) == RESIDENTS
        r = http.post(
            "/v1/me/consents",
            json={
                "partner_id": partner,
                "purpose": HOUSING,
                "categories": ["property.inquiries", DETAILS],
                "expires_at": "2030-03-31T23:59:59+09:00",
            },
            headers=me,
        )
        assert r.status_code == 403, r.text
        assert r.json()["type"] == "urn:tsunagu:problem:not-property-owner"
        assert "property.details; leave it out" in r.json()["detail"]
        assert http.get("/v1/me/consents", headers=me).json() == []
        # Only residents have categories to consent to.
        auditor = http.get(
            "/v1/me/consents/categories", headers=platform.auth("auditor", "city-audit")
        )
        assert auditor.status_code == 403, auditor.text
