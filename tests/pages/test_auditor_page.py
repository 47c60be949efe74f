"""The auditor's page in a real browser: the flow map with dead letters and refusals by
reason, the time window and the refusals chart, the chain's state, the entries table with
its filter, the exports, and English."""

from __future__ import annotations

import csv
import io
import json
import re
import time
from typing import Any

import httpx
import orjson
import pytest
from playwright.sync_api import Page, expect

from tests.api.test_partner_views import PLANNING, _activity, _grant, _id, _pseudonyms, _trip
from tests.events import make_event
from tests.fixtures.platform import RunningPlatform, register_partner
from tests.pages.browser import ARTIFACTS, open_page, screenshot

TRIPS = "transport.trips"
POINTS = "health.points"
MONEY = "currency.transactions"
SOURCE = "urn:tsunagu:connector:test"
JAPANESE = re.compile(r"[\u3000-\u30ff\u3400-\u9fff\uff00-\uffef]")


def _auditor(platform: RunningPlatform) -> str:
    return platform.token("auditor", "city-audit")


def _edges(platform: RunningPlatform, http: httpx.Client) -> dict[str, dict[str, Any]]:
    r = http.get("/v1/audit/flows", headers=platform.auth("auditor", "city-audit"))
    assert r.status_code == 200, r.text
    return {f"{e['source']}->{e['target']}": e for e in r.json()["edges"]}


@pytest.fixture(scope="module")
def world(platform: RunningPlatform) -> dict[str, str]:
    """A partner reading a resident's whole view with consent to trips only (the other two
    categories withheld), then asking for health points by name (refused), and one event
    dead-lettered at ingest; returned once the audit API counts all of it."""
    resident = _id("res")
    with platform.client() as http:
        partner = register_partner(platform, http, PLANNING)
        _grant(platform, http, resident, partner, PLANNING, [TRIPS])
        platform.ingest([_trip(resident, 9)])
        (pseudonym,) = _pseudonyms(platform, http, partner)
        _activity(platform, http, partner, pseudonym).raise_for_status()
        _activity(platform, http, partner, pseudonym, category=[POINTS]).raise_for_status()
        bad = make_event(source=SOURCE)
        bad["data"]["fare_jpy"] = -5
        r = http.post(
            "/v1/events",
            content=orjson.dumps(bad),
            headers={
                "content-type": "application/cloudevents+json",
                **platform.auth("connector", "test-connector", sources=(SOURCE,)),
            },
        )
        assert r.status_code == 202 and r.json()["rejected"] == 1, r.text
        wanted = {
            f"connector:{SOURCE}->topic:transport": "refused",
            f"category:{TRIPS}->partner:{partner}": "count",
            f"category:{POINTS}->partner:{partner}": "refused",
            f"category:{MONEY}->partner:{partner}": "withheld",
        }
        deadline = time.monotonic() + 15
        while True:
            edges = _edges(platform, http)
            if all(edges.get(e, {}).get(field, 0) > 0 for e, field in wanted.items()):
                break
            assert time.monotonic() < deadline, f"the audit API never showed {wanted}: {edges}"
            time.sleep(0.2)
    return {"resident": resident, "partner": partner}


def test_the_flow_map_draws_every_flow_with_dead_letters_and_refusals_by_reason(
    platform: RunningPlatform, world: dict[str, str], page: Page
) -> None:
    partner = world["partner"]
    open_page(page, platform, "/auditor", _auditor(platform))
    with platform.client() as http:
        edges = _edges(platform, http)

    drawn = page.locator("svg g.edge")
    expect(drawn).to_have_count(len(edges))
    for key, edge in edges.items():
        one = page.locator(f"svg g.edge[data-edge='{key}']")
        expect(one).to_have_attribute("data-count", str(edge["count"]))
        expect(one).to_have_attribute("data-refused", str(edge["refused"]))
        expect(one.locator("path.flow-refused")).to_have_count(1 if edge["refused"] else 0)
        expect(one.locator("path.flow")).to_have_count(1 if edge["count"] else 0)

    ingest = page.locator(f"svg g.refused-label[data-edge='connector:{SOURCE}->topic:transport']")
    expect(ingest).to_have_attribute("data-reasons", "schema_violation")
    expect(ingest).to_contain_text("スキーマ違反")
    points = page.locator(f"svg g.refused-label[data-edge='category:{POINTS}->partner:{partner}']")
    expect(points).to_have_attribute("data-reasons", "category_not_covered")
    expect(points).to_contain_text("対象外の項目")
    # The read that was allowed is a flow without a refusal.
    allowed = page.locator(f"svg g.edge[data-edge='category:{TRIPS}->partner:{partner}']")
    expect(allowed).to_have_class("edge")
    expect(
        page.locator(f"svg g.refused-label[data-edge='category:{TRIPS}->partner:{partner}']")
    ).to_have_count(0)
    expect(page.locator(f"svg g.node[data-node='connector:{SOURCE}']")).to_contain_text("test")
    expect(page.locator("svg g.node[data-node='topic:transport']")).to_contain_text("交通")

    # The same flows as a table, for screen readers and for reading the numbers.
    page.get_by_text("表で見る").click()
    expect(page.locator("#flow-table tbody tr")).to_have_count(len(edges))
    expect(page.locator("#flow-table tbody tr.refused")).to_have_count(
        sum(1 for e in edges.values() if e["refused"])
    )
    dead = sum(e["refused"] for k, e in edges.items() if k.startswith("connector:"))
    expect(page.locator("#tile-dead-letters")).to_have_attribute("data-value", str(dead))

    state = page.locator("#verification .verify-state")
    expect(state).to_have_attribute("data-ok", "true")
    expect(state).to_have_text("改ざんなし")
    expect(page.locator("#verification .problem")).to_have_count(0)


def test_the_page_shows_refused_and_withheld_apart(
    platform: RunningPlatform, world: dict[str, str], page: Page
) -> None:
    partner = world["partner"]
    open_page(page, platform, "/auditor", _auditor(platform))

    # One read refused (health points asked for by name); two categories withheld (health
    # points and local currency, outside the consent, of the view read as a whole).
    expect(page.locator("#tile-refused")).to_have_attribute("data-value", "1")
    expect(page.locator("#tile-withheld")).to_have_attribute("data-value", "2")
    expect(page.locator("#tile-withheld")).to_contain_text("同意の範囲外で提供せず")
    expect(page.locator("#tile-reads")).to_have_attribute("data-value", "1")

    money = page.locator(f"svg g.edge[data-edge='category:{MONEY}->partner:{partner}']")
    expect(money).to_have_attribute("data-withheld", "1")
    expect(money).to_have_attribute("data-refused", "0")
    expect(money).to_have_class("edge")  # not drawn as a refusal
    expect(money.locator("path.flow-refused")).to_have_count(0)
    expect(money.locator("title")).to_contain_text("同意の範囲外のため提供せず 1 件")
    expect(
        page.locator(f"svg g.refused-label[data-edge='category:{MONEY}->partner:{partner}']")
    ).to_have_count(0)
    points = page.locator(f"svg g.edge[data-edge='category:{POINTS}->partner:{partner}']")
    expect(points).to_have_attribute("data-refused", "1")
    expect(points).to_have_attribute("data-withheld", "1")

    page.get_by_text("表で見る").click()
    row = page.locator(f"#flow-table tbody tr[data-flow='category:{MONEY}->partner:{partner}']")
    expect(row).not_to_have_class("refused")
    expect(page.locator("#flow-table thead")).to_contain_text("提供せず（同意の範囲外）")
    cells = row.locator("td")
    expect(cells.nth(3)).to_have_text("0")  # refused
    expect(cells.nth(4)).to_have_text("1")  # withheld

    chart = page.locator("#refusals svg")
    expect(chart).to_have_attribute("data-refused", "1")
    expect(chart).to_have_attribute("data-withheld", "2")
    note = page.locator("#refusals-withheld")
    expect(note).to_have_attribute("data-withheld", "2")
    expect(note).to_contain_text("2 件提供していません")
    screenshot(page, "auditor-refused-and-withheld")


def test_the_window_selector_redraws_the_refusals_chart(
    platform: RunningPlatform, world: dict[str, str], page: Page
) -> None:
    open_page(page, platform, "/auditor", _auditor(platform))
    bars = page.locator("#refusals svg g.bar")
    # The last 24 hours in hourly buckets, every bucket drawn, zeros included.
    assert 24 <= bars.count() <= 25
    refused = sum(int(b.get_attribute("data-refused") or 0) for b in bars.all())
    dead = sum(int(b.get_attribute("data-dead-letters") or 0) for b in bars.all())
    assert refused == 1  # health.points, asked for by name (the withheld are not refusals)
    assert dead >= 1
    assert page.locator("#refusals svg rect.bar-refused").count() >= 1
    assert page.locator("#refusals svg rect.bar-dead").count() >= 1
    range_24h = page.locator("#range").inner_text()

    page.get_by_label("期間").select_option("7d")
    expect(page.locator("#range")).not_to_have_text(range_24h)
    expect(bars.first).to_have_attribute("data-start", re.compile(r"T00:00:00\+09:00$"))
    assert 7 <= bars.count() <= 8
    assert sum(int(b.get_attribute("data-refused") or 0) for b in bars.all()) == refused

    page.get_by_label("期間").select_option("1h")
    expect(bars).to_have_count(2)


def test_the_entries_filter_by_kind_and_the_exports_download(
    platform: RunningPlatform, world: dict[str, str], page: Page
) -> None:
    open_page(page, platform, "/auditor", _auditor(platform))
    rows = page.locator("#entries tbody tr")
    expect(rows.first).to_be_visible()
    kinds = {r.get_attribute("data-kind") for r in rows.all()}
    assert {"consent_change", "decision", "partner_read"} <= kinds

    page.get_by_label("種類").select_option("consent_change")
    expect(rows.first).to_have_attribute("data-kind", "consent_change")
    expect(page.locator("#entries tbody tr:not([data-kind='consent_change'])")).to_have_count(0)
    expect(rows.first).to_contain_text("同意の変更")
    # Newest first.
    seqs = [int(r.get_attribute("data-seq") or 0) for r in rows.all()]
    assert seqs == sorted(seqs, reverse=True)

    with page.expect_download() as jsonl:
        page.get_by_role("button", name="JSON Lines で保存").click()
    assert jsonl.value.suggested_filename.endswith(".jsonl")
    saved = ARTIFACTS / "audit-export.jsonl"
    jsonl.value.save_as(saved)
    lines = [json.loads(line) for line in saved.read_text().splitlines() if line.strip()]
    assert lines[0]["type"] == "header" and lines[0]["format"] == "tsunagu-audit"
    exported = [line for line in lines if line["type"] == "entry"]
    assert max(e["seq"] for e in exported) >= max(seqs)
    expect(page.locator("#status")).to_contain_text(jsonl.value.suggested_filename)

    with page.expect_download() as table:
        page.get_by_role("button", name="CSV で保存").click()
    assert table.value.suggested_filename.endswith(".csv")
    saved = ARTIFACTS / "audit-export.csv"
    table.value.save_as(saved)
    header = next(csv.reader(io.StringIO(saved.read_text(encoding="utf-8"))))
    assert "seq" in header and "kind" in header


def test_the_auditor_page_in_english(
    platform: RunningPlatform, world: dict[str, str], page: Page
) -> None:
    open_page(page, platform, f"/auditor?lang=en#token={_auditor(platform)}", None)
    # The token left the address bar; the language choice stays in it.
    assert page.url == f"{platform.base_url}/auditor?lang=en"
    expect(page.locator("html")).to_have_attribute("lang", "en")
    expect(page.locator("#flows-title")).to_have_text("Data flows")
    expect(page.locator(f"svg g.node[data-node='category:{TRIPS}']")).to_contain_text(
        "Trips and ride requests"
    )
    expect(page.locator(f"svg g.node[data-node='partner:{world['partner']}']")).to_contain_text(
        "Mitoyo Transport"
    )
    edge = f"category:{POINTS}->partner:{world['partner']}"
    label = page.locator(f"svg g.refused-label[data-edge='{edge}']")
    expect(label).to_contain_text("category not covered")
    expect(page.locator("#tile-withheld")).to_contain_text("Withheld (outside consent)")
    expect(page.locator("#refusals-withheld")).to_contain_text("were withheld")
    expect(page.locator("#verification .verify-state")).to_have_text("Untampered")
    visible = page.locator("body").inner_text()
    assert JAPANESE.findall(visible.replace("日本語", "")) == [], visible
    screenshot(page, "auditor-page-en")


def test_the_entries_table_speaks_an_auditors_words_and_keeps_the_raw_entry(
    platform: RunningPlatform, world: dict[str, str], page: Page
) -> None:
    open_page(page, platform, "/auditor", _auditor(platform))
    expect(page.locator("#entries thead th")).to_have_text(
        [
            "番号",
            "日時",
            "種類",
            "誰が",
            "誰のデータ・どのビュー",
            "利用目的",
            "判定・内容",
            "理由",
            "記録の原文",
        ]
    )
    rows = page.locator("#entries tbody tr")
    expect(rows.first).to_be_visible()
    cells = page.locator("#entries tbody td").all_inner_texts()
    assert cells and not [c for c in cells if "{" in c or "}" in c], cells

    page.get_by_label("種類").select_option("decision")
    expect(page.locator("#entries tbody tr:not([data-kind='decision'])")).to_have_count(0)
    refused = rows.filter(has=page.locator("td[data-outcome='refused']"))
    expect(refused).to_have_count(1)  # health points, asked for by name
    expect(refused.locator("td[data-col='who']")).to_have_text("三豊交通")
    expect(refused.locator("td[data-col='whose']")).to_contain_text("住民（参照 ")
    expect(refused.locator("td[data-col='purpose']")).to_have_text("交通計画・路線最適化")
    expect(refused.locator("td[data-col='decision']")).to_have_text("拒否 健康ポイント")
    expect(refused.locator("td[data-col='reason']")).to_have_text("対象外の項目")
    withheld = rows.filter(has=page.locator("td[data-outcome='withheld']"))
    expect(withheld).to_have_count(2)  # outside the consent, of the view read as a whole
    expect(withheld.locator("td[data-col='decision']")).to_contain_text(
        ["提供せず（同意の範囲外） ", "提供せず（同意の範囲外） "]
    )
    allowed = rows.filter(has=page.locator("td[data-outcome='allowed']")).first
    expect(allowed.locator("td[data-col='decision']")).to_have_text("許可 乗車・予約履歴")
    expect(allowed.locator("td[data-col='reason']")).to_have_text("同意の範囲内")
    for text in page.locator("#entries tbody td").all_inner_texts():
        assert "{" not in text and "}" not in text, text

    # The entry as stored stays one click away, whole.
    raw = refused.locator("pre.raw-entry")
    expect(raw).to_be_hidden()
    refused.get_by_text("原文を表示").click()
    expect(raw).to_be_visible()
    stored = json.loads(raw.inner_text())
    assert stored["seq"] == int(refused.get_attribute("data-seq") or 0)
    assert stored["fields"]["reason"] == "category_not_covered"
    assert stored["fields"]["category"] == POINTS and len(stored["hash"]) == 64

    page.get_by_label("種類").select_option("partner_read")
    # The view read as a whole: trips provided (the withheld categories are not in it).
    read = rows.filter(has=page.locator("td[data-outcome='read']")).filter(
        has_text="生活サービス利用状況"
    )
    trips = read.filter(has_text="乗車・予約履歴")
    expect(trips).to_have_count(1)
    expect(trips.locator("td[data-col='decision']")).to_have_text("提供 乗車・予約履歴（1 件）")
    expect(trips.locator("td[data-col='who']")).to_have_text("三豊交通")
    expect(trips.locator("td[data-col='whose']")).to_contain_text("住民（参照 ")

    page.get_by_label("種類").select_option("dead_letter")
    dead = rows.first
    expect(dead.locator("td[data-col='decision']")).to_have_text("受け付けず（デッドレター）")
    expect(dead.locator("td[data-col='reason']")).to_have_text("スキーマ違反（/data/fare_jpy）")
    expect(dead.locator("td[data-col='whose']")).to_have_text("交通")
    expect(dead.locator("td[data-col='who']")).to_have_text("接続サービス test-connector")
    screenshot(page, "auditor-entries")

    page.get_by_role("button", name="English").click()
    expect(page.locator("#entries thead th").nth(6)).to_have_text("Decision / what happened")
    expect(dead.locator("td[data-col='decision']")).to_have_text("Not accepted (dead letter)")
    expect(dead.locator("td[data-col='reason']")).to_have_text(
        "schema violation (at /data/fare_jpy)"
    )
    page.get_by_label("Kind").select_option("decision")
    expect(refused.locator("td[data-col='decision']")).to_have_text("Refused Health points")
    english = " ".join(page.locator("#entries tbody td").all_inner_texts())
    assert "{" not in english and JAPANESE.findall(english) == [], english
