"""HTTP kept to the letter, against a running `tsunagu up`: malformed JSON is a 400 saying where
it broke, HEAD answers wherever GET does, every problem is typed and titled after its type and
says what to change, collections link to their next page (RFC 8288), and the documentation
pages load nothing from another origin.
"""

from __future__ import annotations

import re
from http import HTTPStatus
from typing import Any

import httpx
import pytest

from broker.auth.principals import Role
from tests.fixtures.platform import RunningPlatform, register_partner

PLANNING = "transport.planning"
SOURCE = "urn:tsunagu:connector:mitoyo-pay"
#: A value for each path parameter of the API.
SAMPLES = {
    "event_type": "transport.trip.completed",
    "version": "1",
    "partner_id": "ptn-sample01",
    "purpose": PLANNING,
    "consent_id": "cns-sample01",
    "resident": "psn-sample01",
    "name": "pages.css",
}
#: The role each part of the API is for (longest prefix first).
ROLES = [
    ("/v1/partners", Role.ADMIN),
    ("/v1/partner/", Role.PARTNER),
    ("/v1/statistics/", Role.PARTNER),
    ("/v1/me/", Role.RESIDENT),
    ("/v1/audit/", Role.AUDITOR),
    ("/v1/events", Role.CONNECTOR),
    ("/v1/schemas/", Role.ADMIN),
]
#: A JSON body broken on its second line, fifth column (the missing value).
BROKEN = b'{"id": "ptn-x",\n "x": }'


def _url(path: str) -> str:
    """``path`` with every parameter filled from SAMPLES."""
    return re.sub(r"\{(\w+)(?::\w+)?\}", lambda m: SAMPLES[m.group(1)], path)


def _auth(platform: RunningPlatform, path: str) -> dict[str, str]:
    """A token of the role ``path`` is for (none for the public routes)."""
    for prefix, role in ROLES:
        if path.startswith(prefix):
            if role is Role.CONNECTOR:
                return platform.auth(role, "mitoyo-pay", sources=(SOURCE,))
            subject = {Role.PARTNER: "ptn-sample01", Role.RESIDENT: "res-sample01"}
            return platform.auth(role, subject.get(role, f"{role.value}-1"))
    return {}


def _operations(platform: RunningPlatform, method: str) -> list[tuple[str, dict[str, Any]]]:
    """Every (path, operation) of the OpenAPI document with ``method``."""
    with platform.client() as http:
        doc = http.get("/openapi.json").json()
    return [(p, item[method]) for p, item in doc["paths"].items() if method in item]


# -- malformed JSON --------------------------------------------------------------------------


def test_malformed_json_is_a_400_saying_where_it_broke_on_every_route_with_a_body(
    platform: RunningPlatform,
) -> None:
    routes = [p for p, op in _operations(platform, "post") if "requestBody" in op]
    assert {"/v1/events", "/v1/partners", "/v1/schemas/{event_type}/compatibility"} <= set(routes)
    answers = {}
    with platform.client() as http:
        for path in routes:
            media = "application/cloudevents+json" if path == "/v1/events" else "application/json"
            headers = {"content-type": media, **_auth(platform, path)}
            answers[path] = http.post(_url(path), content=BROKEN, headers=headers)
    for path, r in answers.items():
        assert r.status_code == 400, (path, r.text)
        assert r.headers["content-type"] == "application/problem+json"
        body = r.json()
        assert body["type"] == "urn:tsunagu:problem:malformed-json", path
        assert "line 2, column 7" in body["detail"], (path, body["detail"])


def test_a_well_formed_body_of_the_wrong_shape_is_still_a_422(platform: RunningPlatform) -> None:
    with platform.client() as http:
        r = http.post(
            "/v1/partners", json=["not", "an", "object"], headers=_auth(platform, "/v1/partners")
        )
    assert r.status_code == 422
    assert r.json()["type"] == "urn:tsunagu:problem:invalid-request"


# -- HEAD ------------------------------------------------------------------------------------


def _get_routes(platform: RunningPlatform) -> list[str]:
    """Every GET route: the API's, and the pages and documents outside its OpenAPI document."""
    return [path for path, _ in _operations(platform, "get")] + [
        "/openapi.json",
        "/docs",
        "/redoc",
        "/resident",
        "/auditor",
        "/pages/static/{name}",
    ]


#: Headers whose value may differ between two requests in a row: the moment, and the size of
#: a body that grows with every request (metrics, the audit log each read appends to).
VOLATILE = {"date", "content-length"}


def test_head_answers_like_get_on_every_get_route(platform: RunningPlatform) -> None:
    routes = _get_routes(platform)
    assert "/healthz" in routes and "/v1/catalogue/purposes" in routes
    with platform.client() as http:
        for path in routes:
            headers = _auth(platform, path)
            params = {"purpose": PLANNING} if path.startswith("/v1/partner/") else {}
            get = http.get(_url(path), headers=headers, params=params)
            head = http.head(_url(path), headers=headers, params=params)
            assert head.status_code == get.status_code, (path, head.status_code, get.text)
            assert head.content == b"", path
            shown = {k: v for k, v in get.headers.items() if k not in VOLATILE}
            assert {k: v for k, v in head.headers.items() if k not in VOLATILE} == shown, path


def test_head_on_health_and_the_catalogue_gives_the_get_s_length(
    platform: RunningPlatform,
) -> None:
    with platform.client() as http:
        for path in ("/healthz", "/v1/catalogue/purposes"):
            get, head = http.get(path), http.head(path)
            assert head.status_code == 200, path
            assert head.headers["content-length"] == str(len(get.content)), path
            assert head.content == b""


def test_head_is_refused_where_get_is_not_served(platform: RunningPlatform) -> None:
    with platform.client() as http:
        r = http.head("/v1/events")
    assert r.status_code == 405
    assert "POST" in r.headers["allow"]


def test_a_405_names_head_beside_get(platform: RunningPlatform) -> None:
    with platform.client() as http:
        r = http.put("/healthz")
    assert r.status_code == 405
    assert r.headers["allow"] == "GET, HEAD"
    assert r.json()["detail"] == "PUT is not allowed on /healthz; use GET, HEAD"


# -- problems ----------------------------------------------------------------------------------


def _problems(platform: RunningPlatform) -> list[httpx.Response]:
    """A spread of refusals across the API, one of each kind."""
    partner = _auth(platform, "/v1/partner/")
    with platform.client() as http:
        return [
            http.get("/v1/nothing-here"),
            http.put("/healthz"),
            http.get("/v1/audit/entries"),
            http.get("/v1/audit/entries", headers=partner),
            http.get(
                "/v1/audit/entries", params={"limit": "0"}, headers=_auth(platform, "/v1/audit/")
            ),
            http.get("/v1/schemas/transport.teleport.completed"),
            http.get("/v1/schemas/transport.trip.completed/versions/9"),
            http.get("/v1/partner/residents", params={"purpose": PLANNING}, headers=partner),
        ]


def test_every_problem_is_typed_and_titled_after_its_type(platform: RunningPlatform) -> None:
    titles: dict[str, set[str]] = {}
    for r in _problems(platform):
        assert r.status_code >= 400
        body = r.json()
        assert body["type"].startswith("urn:tsunagu:problem:"), body
        # Not the status phrase ("Not Found", "Unprocessable Entity"): the problem's own name.
        assert body["title"] != HTTPStatus(r.status_code).phrase, body
        titles.setdefault(body["type"], set()).add(body["title"])
    assert len(titles) >= 6
    assert all(len(t) == 1 for t in titles.values()), titles  # one title per type


def test_an_unknown_route_names_its_neighbours_and_an_unknown_statistic_the_known_ones(
    platform: RunningPlatform,
) -> None:
    with platform.client() as http:
        r = http.get("/v1/statistics/trips-by-weekday", headers=_auth(platform, "/v1/statistics/"))
    assert r.status_code == 404
    body = r.json()
    assert body["type"] == "urn:tsunagu:problem:no-such-route"
    for known in ("trips-by-town-month", "points-by-age-band", "town-flows"):
        assert f"/v1/statistics/{known}" in body["detail"]


@pytest.mark.parametrize(
    "token",
    ["not-a-jwt", "a.b.c", "eyJhbGciOiJFUzI1NiJ9.@@@.@@@"],
    ids=["no-dots", "not-base64", "bad-payload"],
)
def test_a_bad_token_says_what_to_send_not_the_decoder_s_words(
    platform: RunningPlatform, token: str
) -> None:
    with platform.client() as http:
        r = http.get("/v1/audit/entries", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 401
    detail = r.json()["detail"]
    for leak in ("segments", "padding", "Invalid header", "utf-8", "codec", "Expecting"):
        assert leak not in detail, detail
    assert "send the token" in detail


def test_a_bad_cursor_says_what_to_send_not_the_decoder_s_words(
    platform: RunningPlatform,
) -> None:
    with platform.client() as http:
        partner = register_partner(platform, http, PLANNING)
        headers = platform.auth("partner", partner)
        answers = [
            http.get(
                "/v1/partner/residents",
                params={"purpose": PLANNING, "cursor": cursor},
                headers=headers,
            )
            for cursor in ("%%%", "bm90IGpzb24", "eyJ0IjoieCJ9")
        ]
    for r in answers:
        assert r.status_code == 400, r.text
        body = r.json()
        assert body["type"] == "urn:tsunagu:problem:invalid-cursor"
        assert "next_cursor" in body["detail"]
        for leak in ("padding", "unexpected", "Invalid", "isoformat", "line 1"):
            assert leak not in body["detail"], body["detail"]


def test_a_date_without_a_zone_is_refused_with_an_example_of_one(
    platform: RunningPlatform,
) -> None:
    with platform.client() as http:
        r = http.get(
            "/v1/audit/entries",
            params={"since": "2026-04-01T00:00:00"},
            headers=_auth(platform, "/v1/audit/"),
        )
    assert r.status_code == 422
    assert "2026-04-01T00:00:00+09:00" in r.json()["detail"]


# -- Link headers ------------------------------------------------------------------------------


def _next(link: str) -> str:
    """The target of a ``Link: <...>; rel="next"`` header."""
    match = re.fullmatch(r'<([^>]+)>; rel="next"', link)
    assert match, link
    return match.group(1)


def test_a_collection_page_links_to_the_next_one(platform: RunningPlatform) -> None:
    auditor = _auth(platform, "/v1/audit/")
    with platform.client() as http:
        register_partner(platform, http, PLANNING)  # a few entries in the log
        first = http.get("/v1/audit/entries", params={"limit": 2}, headers=auditor)
        target = _next(first.headers["link"])
        second = http.get(target, headers=auditor)
        by_cursor = http.get(
            "/v1/audit/entries",
            params={"limit": 2, "cursor": first.json()["next_cursor"]},
            headers=auditor,
        )
        last = http.get("/v1/audit/entries", params={"limit": 1000}, headers=auditor)
    assert target.startswith("/v1/audit/entries?") and "limit=2" in target
    assert second.status_code == 200
    assert second.json()["entries"] == by_cursor.json()["entries"]
    assert second.json()["entries"][0]["seq"] < first.json()["entries"][-1]["seq"]
    assert last.json()["next_cursor"] is None
    assert "link" not in last.headers


# -- documentation pages -----------------------------------------------------------------------


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_the_documentation_pages_load_nothing_from_another_origin(
    platform: RunningPlatform, page: str
) -> None:
    with platform.client() as http:
        html = http.get(page)
        assert html.status_code == 200
        assert not re.search(r"(https?:)?//[a-z0-9.-]+\.[a-z]{2,}", html.text, re.I), html.text
        assets = re.findall(r'(?:src|href)="([^"]+)"', html.text)
        assert any(a.endswith(".js") for a in assets)
        for asset in assets:
            assert asset.startswith("/"), asset
            assert http.get(asset).status_code == 200, asset
