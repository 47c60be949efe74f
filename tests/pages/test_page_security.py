"""What the pages are served with and made of: a strict CSP and friends on every response,
no inline script or style for the CSP to forbid, nothing outside the OpenAPI contract, and a
message catalogue complete in both languages."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser

import pytest

from broker.api.pages.serve import STATIC
from broker.audit.entries import EntryKind
from broker.audit.flows import NodeKind
from consent.decisions import DecisionReason
from consent.model import ConsentChangeKind, ConsentStatus
from contract.deadletter import DeadLetterReason
from contract.domains import DOMAINS
from tests.fixtures.platform import RunningPlatform

PAGES = ["/resident", "/auditor"]
ASSETS = [
    "/pages/static/common.js",
    "/pages/static/resident.js",
    "/pages/static/auditor.js",
    "/pages/static/pages.css",
    "/pages/static/messages.json",
    "/pages/static/icon.svg",
]


def _csp(header: str) -> dict[str, str]:
    directives = (d.strip().split(" ", 1) for d in header.split(";") if d.strip())
    return {d[0]: d[1] if len(d) > 1 else "" for d in directives}


@pytest.mark.parametrize("path", PAGES + ASSETS)
def test_every_page_and_asset_carries_the_security_headers(
    platform: RunningPlatform, path: str
) -> None:
    with platform.client() as http:
        r = http.get(path)
    assert r.status_code == 200, r.text
    csp = _csp(r.headers["content-security-policy"])
    assert csp["default-src"] == "'self'"
    assert csp["script-src"] == "'self'"  # no 'unsafe-inline', no 'unsafe-eval', no host
    assert csp["style-src"] == "'self'"
    assert csp["connect-src"] == "'self'"
    assert csp["frame-ancestors"] == "'none'"
    assert csp["object-src"] == "'none'"
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["referrer-policy"] == "no-referrer"
    assert "set-cookie" not in r.headers


def test_pages_are_html_and_assets_have_their_media_types(platform: RunningPlatform) -> None:
    with platform.client() as http:
        types = {path: http.get(path).headers["content-type"] for path in PAGES + ASSETS}
        missing = http.get("/pages/static/nothing.js")
        outside = http.get("/pages/static/..%2Fserve.py")
    assert types["/resident"] == types["/auditor"] == "text/html; charset=utf-8"
    assert types["/pages/static/common.js"] == "text/javascript; charset=utf-8"
    assert types["/pages/static/pages.css"] == "text/css; charset=utf-8"
    assert types["/pages/static/messages.json"] == "application/json"
    assert types["/pages/static/icon.svg"] == "image/svg+xml"
    assert missing.status_code == 404
    assert missing.headers["content-type"] == "application/problem+json"
    assert outside.status_code == 404  # only the files shipped as assets, never a path


def test_the_pages_are_not_part_of_the_api_contract(platform: RunningPlatform) -> None:
    with platform.client() as http:
        paths = http.get("/openapi.json").json()["paths"]
    assert not [p for p in paths if p in PAGES or p.startswith("/pages")]


class _Markup(HTMLParser):
    """Scripts, styles, inline handlers and external references of one HTML page."""

    def __init__(self) -> None:
        super().__init__()
        self.scripts: list[dict[str, str | None]] = []
        self.inline: list[str] = []
        self.external: list[str] = []
        self.i18n: set[str] = set()
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if tag == "script":
            self.scripts.append(found)
            self._in_script = True
        if tag == "style":
            self.inline.append("<style>")
        for name, value in attrs:
            if name.startswith("on") or name == "style":
                self.inline.append(f"{tag} {name}")
            if name in ("src", "href") and value and re.match(r"^(https?:)?//", value):
                self.external.append(value)
            if name.startswith("data-i18n") and value:
                self.i18n.add(value)

    def handle_endtag(self, tag: str) -> None:
        if tag == "script":
            self._in_script = False

    def handle_data(self, data: str) -> None:
        if self._in_script and data.strip():
            self.inline.append(f"script body: {data.strip()[:40]}")


@pytest.mark.parametrize("name", ["resident.html", "auditor.html"])
def test_the_html_has_no_inline_script_style_or_foreign_resource(name: str) -> None:
    markup = _Markup()
    markup.feed((STATIC / name).read_text(encoding="utf-8"))
    assert markup.inline == []
    assert markup.external == []
    assert [s.get("src") for s in markup.scripts] == [
        "/pages/static/common.js",
        f"/pages/static/{name.removesuffix('.html')}.js",
    ]


def test_the_message_catalogue_is_complete_in_both_languages() -> None:
    messages = json.loads((STATIC / "messages.json").read_text(encoding="utf-8"))
    assert set(messages) == {"ja", "en"}
    assert set(messages["ja"]) == set(messages["en"])
    assert all(text.strip() for lang in messages.values() for text in lang.values())
    used: set[str] = set()
    for name in ("resident.html", "auditor.html"):
        markup = _Markup()
        markup.feed((STATIC / name).read_text(encoding="utf-8"))
        used |= markup.i18n
    for script in STATIC.glob("*.js"):
        used |= set(
            re.findall(r"\bt\(\s*\"([a-z0-9_.]+)\"\s*[,)]", script.read_text(encoding="utf-8"))
        )
    # Keys built at run time from the platform's own codes: every code has its words.
    used |= {f"status.{s}" for s in ConsentStatus}
    used |= {f"change.{c}" for c in ConsentChangeKind}
    used |= {f"kind.{k}" for k in EntryKind}
    used |= {f"flows.col.{n}" for n in NodeKind}
    used |= {f"topic.{t}" for t in DOMAINS.topics()}
    refusals = set(DecisionReason) - {DecisionReason.ALLOWED, DecisionReason.NOT_PERSONAL}
    used |= {f"reason.{r}" for r in refusals | set(DeadLetterReason)}
    assert used - set(messages["ja"]) == set()
    # Both pages' titles, looked up as "<page>.title".
    assert {"resident.title", "auditor.title"} <= set(messages["ja"])
    # Placeholders agree between the languages.
    for key, text in messages["ja"].items():
        assert set(re.findall(r"\{(\w+)\}", text)) == set(
            re.findall(r"\{(\w+)\}", messages["en"][key])
        ), key
