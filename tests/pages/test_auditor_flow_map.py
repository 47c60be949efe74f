"""The auditor's flow map stays legible at a region's size: ten connectors and ten partners,
refusals on many edges. Measured in a real browser: no two labels overlap, every name is
shown whole inside its box, and each refusal label sits on its own edge, nearer to it than
to any other."""

from __future__ import annotations

import time
import uuid
from itertools import combinations
from typing import Any

import httpx
import orjson
import pytest
from playwright.sync_api import Page

from tests.api.test_partner_views import PLANNING, _activity, _grant, _id, _pseudonyms, _trip
from tests.events import make_event
from tests.fixtures.platform import RunningPlatform
from tests.pages.browser import ARTIFACTS, open_page, screenshot

POINTS = "health.points"
MONEY = "currency.transactions"
TRIPS = "transport.trips"
#: Connector names as firms choose them: some long, none to be cut.
CONNECTORS = [
    "takuma-community-bus",
    "nio-ondemand-ride",
    "zentsuji-health-walk",
    "kanonji-local-coin",
    "mitoyo-akiya-bank",
    "shonai-kids-shuttle",
    "toyonaka-clinic-points",
    "yamamoto-farm-market-pay",
    "saita-seaside-ferry",
    "mino-hillside-taxi-cooperative",
]
#: One event type per connector, so the ten feed every topic.
TYPES = [
    "transport.trip.completed",
    "transport.ride.requested",
    "health.points.awarded",
    "currency.payment.settled",
    "vacant_house.listing.registered",
    "transport.vehicle.position",
    "health.points.redeemed",
    "currency.wallet.topped_up",
    "transport.vehicle.position",
    "transport.trip.completed",
]
#: Partner names (Japanese, English) of very different lengths.
PARTNERS = [
    ("詫間まちづくり協議会", "Takuma Town Council"),
    (
        "三豊市社会福祉協議会 高齢者移動支援センター",
        "Mitoyo Social Welfare Council Mobility Centre",
    ),
    ("にお交通", "Nio Transit"),
    ("観音寺ヘルスケア研究所", "Kanonji Healthcare Lab"),
    ("みとよ地域通貨推進機構", "Mitoyo Local Currency Association"),
    ("瀬戸内二地域居住サポート株式会社", "Setouchi Dual Residence Support Co."),
    ("仁尾港フェリー", "Nio Port Ferry"),
    ("豊中町商工会", "Toyonaka Chamber of Commerce"),
    ("さいたの里 介護サービス", "Saita Care Services"),
    ("三野オンデマンド配車センター", "Mino On-demand Dispatch"),
]

#: Every box in the map (node rectangles and their names, column titles, refusal labels),
#: each label's distance to every edge, measured in the SVG's own units (1 unit = 1 px).
MEASURE = """
() => {
  const svg = document.querySelector("#flow-map svg");
  const box = (b) => ({ x: b.x, y: b.y, w: b.width, h: b.height });
  const nodes = [...svg.querySelectorAll("g.node")].map((g) => ({
    id: g.dataset.node,
    text: g.querySelector("text").textContent,
    textBox: box(g.querySelector("text").getBBox()),
    rect: box(g.querySelector("rect").getBBox()),
  }));
  const titles = [...svg.querySelectorAll("text.column-title")].map((t) => box(t.getBBox()));
  // Each edge's curves as points 1 px apart, sampled once.
  const paths = [...svg.querySelectorAll("g.edge")].map((g) => {
    const points = [];
    for (const path of g.querySelectorAll("path")) {
      const length = path.getTotalLength();
      for (let s = 0; s <= length; s += 1) points.push(path.getPointAtLength(s));
    }
    return { edge: g.dataset.edge, refused: Number(g.dataset.refused), points };
  });
  const labels = [...svg.querySelectorAll("g.refused-label")].map((g) => {
    const rect = box(g.querySelector("rect").getBBox());
    const centre = { x: rect.x + rect.w / 2, y: rect.y + rect.h / 2 };
    const distances = {};
    for (const { edge, points } of paths) {
      distances[edge] = Math.min(...points.map((p) => Math.hypot(p.x - centre.x, p.y - centre.y)));
    }
    return {
      edge: g.dataset.edge,
      text: g.querySelector("text").textContent,
      rect,
      textBox: box(g.querySelector("text").getBBox()),
      distances,
    };
  });
  const refusedEdges = paths.filter((p) => p.refused > 0).map((p) => p.edge);
  return { nodes, titles, labels, refusedEdges };
}
"""


def _overlap(a: dict[str, float], b: dict[str, float]) -> bool:
    return (
        a["x"] < b["x"] + b["w"]
        and b["x"] < a["x"] + a["w"]
        and a["y"] < b["y"] + b["h"]
        and b["y"] < a["y"] + a["h"]
    )


def _inside(inner: dict[str, float], outer: dict[str, float]) -> bool:
    return (
        inner["x"] >= outer["x"]
        and inner["y"] >= outer["y"]
        and inner["x"] + inner["w"] <= outer["x"] + outer["w"]
        and inner["y"] + inner["h"] <= outer["y"] + outer["h"]
    )


def _register(http: httpx.Client, platform: RunningPlatform, name_ja: str, name_en: str) -> str:
    admin = platform.auth("admin", "city-ops")
    pid = f"ptn-{uuid.uuid4().hex[:12]}"
    r = http.post(
        "/v1/partners", json={"id": pid, "name_ja": name_ja, "name_en": name_en}, headers=admin
    )
    assert r.status_code == 201, r.text
    r = http.post(f"/v1/partners/{pid}/purposes", json={"purpose": PLANNING}, headers=admin)
    assert r.status_code == 201, r.text
    return pid


def _publish(http: httpx.Client, platform: RunningPlatform, name: str, events: list[Any]) -> None:
    source = f"urn:tsunagu:connector:{name}"
    for event in events:
        event["source"] = source
    r = http.post(
        "/v1/events",
        content=orjson.dumps(events),
        headers={
            "content-type": "application/cloudevents-batch+json",
            **platform.auth("connector", name, sources=(source,)),
        },
    )
    assert r.status_code == 202, r.text
    assert r.json()["rejected"] == 1, r.text


def seed_region(platform: RunningPlatform) -> dict[str, tuple[str, str]]:
    """Ten connectors, each with events taken in and one dead-lettered; ten partners, each
    reading a resident's trips under consent and refused health points (half of them also
    refused local currency) by name; the partners' names by id, once the audit API counts
    all of it."""
    resident = _id("res")
    partners: dict[str, tuple[str, str]] = {}
    with platform.client() as http:
        for i, (name, event_type) in enumerate(zip(CONNECTORS, TYPES, strict=True)):
            good = _trip(resident, 9) if i == 0 else make_event(event_type)
            bad = make_event(event_type)
            bad["data"] = {"not": "the schema"}
            _publish(http, platform, name, [good, bad])
        for name_ja, name_en in PARTNERS:
            pid = _register(http, platform, name_ja, name_en)
            partners[pid] = (name_ja, name_en)
            _grant(platform, http, resident, pid, PLANNING, [TRIPS])
        deadline = time.monotonic() + 15
        while not all(_pseudonyms(platform, http, pid) for pid in partners):
            assert time.monotonic() < deadline, "the partners never saw the resident"
            time.sleep(0.2)
        for i, pid in enumerate(partners):
            (pseudonym,) = _pseudonyms(platform, http, pid)
            _activity(platform, http, pid, pseudonym, category=[TRIPS]).raise_for_status()
            _activity(platform, http, pid, pseudonym, category=[POINTS]).raise_for_status()
            if i % 2:
                _activity(platform, http, pid, pseudonym, category=[MONEY]).raise_for_status()
        auditor = platform.auth("auditor", "city-audit")
        deadline = time.monotonic() + 20
        while True:
            flows = http.get("/v1/audit/flows", headers=auditor).json()
            refused = {e["source"] for e in flows["edges"] if e["refused"]} | {
                e["target"] for e in flows["edges"] if e["refused"]
            }
            wanted = {f"connector:urn:tsunagu:connector:{n}" for n in CONNECTORS} | {
                f"partner:{p}" for p in partners
            }
            if wanted <= refused and sum(1 for e in flows["edges"] if e["refused"]) >= 25:
                break
            assert time.monotonic() < deadline, f"the audit API never counted it all: {flows}"
            time.sleep(0.2)
    return partners


@pytest.fixture(scope="module")
def region(platform: RunningPlatform) -> dict[str, Any]:
    """The region of :func:`seed_region`, seeded once for the module."""
    return {"partners": seed_region(platform)}


@pytest.mark.parametrize("lang", ["ja", "en"])
def test_the_flow_map_of_ten_connectors_and_ten_partners_stays_legible(
    platform: RunningPlatform, region: dict[str, Any], page: Page, lang: str
) -> None:
    token = platform.token("auditor", "city-audit")
    open_page(page, platform, f"/auditor?lang={lang}#token={token}", None)
    page.wait_for_selector("#flow-map svg g.refused-label")
    seen = page.evaluate(MEASURE)
    screenshot(page, f"auditor-flow-map-10x10-{lang}")

    # Every name whole: the connector's own name, the partner's name in the page's language.
    names = {n["id"]: n for n in seen["nodes"]}
    for connector in CONNECTORS:
        assert names[f"connector:urn:tsunagu:connector:{connector}"]["text"] == connector
    for pid, (name_ja, name_en) in region["partners"].items():
        assert names[f"partner:{pid}"]["text"] == (name_ja if lang == "ja" else name_en)
    for node in seen["nodes"]:
        assert "…" not in node["text"], node
        assert node["textBox"]["w"] <= node["rect"]["w"], node
        assert _inside(node["textBox"], node["rect"]), node

    # One label per refused edge, its text inside its box.
    assert sorted(label["edge"] for label in seen["labels"]) == sorted(seen["refusedEdges"])
    assert len(seen["labels"]) >= 25
    for label in seen["labels"]:
        assert "…" not in label["text"], label
        assert _inside(label["textBox"], label["rect"]), label

    # Nothing overlaps: names, column titles and refusal labels.
    boxes = (
        [(f"node {n['id']}", n["rect"]) for n in seen["nodes"]]
        + [(f"title {i}", b) for i, b in enumerate(seen["titles"])]
        + [(f"label {lb['edge']}", lb["rect"]) for lb in seen["labels"]]
    )
    clashes = [(a, b) for (a, ba), (b, bb) in combinations(boxes, 2) if _overlap(ba, bb)]
    assert clashes == []

    # Each refusal label sits on its own edge, and no other edge comes as near to it.
    for label in seen["labels"]:
        distances = label["distances"]
        own = distances[label["edge"]]
        nearest_other = min(d for edge, d in distances.items() if edge != label["edge"])
        assert own <= 1.5, label
        assert own < nearest_other, (label["edge"], own, nearest_other)

    # The whole map as drawn, past the sideways scroll of its box, for a person to look at.
    page.locator("#flow-map").evaluate("box => { box.style.overflow = 'visible'; }")
    svg = page.locator("#flow-map svg").bounding_box()
    assert svg is not None
    page.screenshot(
        path=str(ARTIFACTS / f"auditor-flow-map-10x10-{lang}-whole.png"), full_page=True, clip=svg
    )
