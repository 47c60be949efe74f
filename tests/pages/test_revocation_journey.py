"""The issue's proof, through a real browser: a resident revokes a consent on their page, the
partner's next read is refused, the resident's data tracker shows the read made before, and
the auditor's flow map shows the refused flow with its reason."""

from __future__ import annotations

import time
from typing import Any

import httpx
from playwright.sync_api import Page, expect

from tests.api.test_partner_views import PLANNING, _activity, _grant, _id, _pseudonyms, _trip
from tests.fixtures.platform import RunningPlatform, register_partner
from tests.pages.browser import open_page, screenshot

TRIPS = "transport.trips"


def _category(view: dict[str, Any], code: str) -> dict[str, Any]:
    part: dict[str, Any] = next(p for p in view["categories"] if p["category"] == code)
    return part


def _refused_flow(
    platform: RunningPlatform, http: httpx.Client, edge: str, timeout_s: float = 10
) -> dict[str, Any]:
    """The flow-map edge ``edge`` once the API counts a refusal on it (decisions reach the
    log within ~0.1 s, a little after the read that made them)."""
    auditor = platform.auth("auditor", "city-audit")
    deadline = time.monotonic() + timeout_s
    while True:
        r = http.get("/v1/audit/flows", headers=auditor)
        assert r.status_code == 200, r.text
        edges = {f"{e['source']}->{e['target']}": e for e in r.json()["edges"]}
        found: dict[str, Any] | None = edges.get(edge)
        if found is not None and found["refused"] > 0:
            return found
        assert time.monotonic() < deadline, f"no refusal on {edge}: {sorted(edges)}"
        time.sleep(0.2)


def test_revoking_on_the_page_refuses_the_next_read_and_shows_on_both_pages(
    platform: RunningPlatform, page: Page
) -> None:
    resident = _id("res")
    with platform.client() as http:
        partner = register_partner(platform, http, PLANNING)
        consent = _grant(platform, http, resident, partner, PLANNING, [TRIPS])
        platform.ingest([_trip(resident, 12)])
        (pseudonym,) = _pseudonyms(platform, http, partner)
        before = _activity(platform, http, partner, pseudonym)
        log = http.get("/v1/me/access-log", headers=platform.auth("resident", resident)).json()[
            "reads"
        ]
    assert before.status_code == 200, before.text
    assert _category(before.json(), TRIPS)["included"] is True
    (read,) = [r for r in log if r["view"] == "activity"]

    token = platform.token("resident", resident)
    open_page(page, platform, "/resident", token)
    # The token left the address bar for the tab's session storage.
    assert page.url == f"{platform.base_url}/resident"
    stored = page.evaluate("sessionStorage.getItem('tsunagu.token.resident')")
    assert stored == token
    card = page.locator(f"article.consent[data-partner='{partner}']")
    expect(card).to_have_attribute("data-consent-id", consent)
    expect(card.locator("h3")).to_have_text("三豊交通")
    expect(card.locator(".purpose")).to_have_text("交通計画・路線最適化")
    expect(card.locator(".chip")).to_have_text(["乗車・予約履歴"])
    expect(card.locator(".badge")).to_have_text("有効")

    card.locator("button[data-action='revoke']").click()
    dialog = page.locator("dialog#confirm")
    expect(dialog).to_be_visible()
    expect(dialog).to_contain_text("三豊交通")
    dialog.locator("#confirm-ok").click()
    expect(dialog).to_be_hidden()
    # Revoking makes a new version of the consent: the card now shows that one.
    expect(card.locator(".badge")).to_have_text("撤回済み")
    expect(card).not_to_have_attribute("data-consent-id", consent)
    expect(card.locator("button[data-action='revoke']")).to_have_count(0)
    expect(page.locator("#status")).to_contain_text("同意を撤回しました")
    expect(page.locator("#alerts .alert")).to_have_count(0)

    with platform.client() as http:
        (current,) = http.get("/v1/me/consents", headers=platform.auth("resident", resident)).json()
        after = _activity(platform, http, partner, pseudonym)
        flow = _refused_flow(platform, http, f"category:{TRIPS}->partner:{partner}")
    assert current["status"] == "revoked"
    assert current["supersedes"] == consent
    assert after.status_code == 200, after.text
    trips = _category(after.json(), TRIPS)
    assert trips["included"] is False
    assert trips["withheld"]["reason"] == "revoked"
    assert after.json()["items"] == []
    assert flow["reasons"].get("revoked", 0) >= 1

    # The data tracker (refreshed after the revocation) still lists the read made before it.
    row = page.locator(f"#tracker tr[data-seq='{read['seq']}']")
    expect(row).to_have_attribute("data-view", "activity")
    expect(row).to_contain_text("三豊交通")
    expect(row).to_contain_text("交通計画・路線最適化")
    expect(row).to_contain_text("乗車・予約履歴")
    expect(row.locator(f"code[title='{consent}']")).to_have_count(1)
    # The history shows both versions: the grant and the revocation.
    expect(page.locator("#history tbody tr")).to_have_count(2)
    expect(page.locator("#history tr[data-change='revoked']")).to_have_count(1)
    screenshot(page, "resident-page")

    open_page(page, platform, "/auditor", platform.token("auditor", "city-audit"))
    assert page.url == f"{platform.base_url}/auditor"
    edge = f"category:{TRIPS}->partner:{partner}"
    drawn = page.locator(f"svg g.edge[data-edge='{edge}']")
    expect(drawn).to_have_count(1)
    expect(drawn).to_have_class("edge refused")
    assert int(drawn.get_attribute("data-refused") or 0) >= 1
    assert int(drawn.get_attribute("data-count") or 0) >= 1  # the read before the revocation
    expect(drawn.locator("path.flow-refused")).to_have_count(1)
    expect(drawn.locator("title")).to_contain_text("撤回済み")
    label = page.locator(f"svg g.refused-label[data-edge='{edge}']")
    expect(label).to_be_visible()
    expect(label).to_have_attribute("data-reasons", "revoked")
    expect(label).to_contain_text("撤回済み")
    # The partner's node carries its registered name; the category its catalogue name.
    expect(page.locator(f"svg g.node[data-node='partner:{partner}']")).to_contain_text("三豊交通")
    expect(page.locator(f"svg g.node[data-node='category:{TRIPS}']")).to_contain_text(
        "乗車・予約履歴"
    )
    expect(page.locator("#tile-refused")).not_to_have_attribute("data-value", "0")
    screenshot(page, "auditor-page")
