"""A NUL character in a URL is a 400 problem on every route, on PostgreSQL (which refuses NUL
in text, and answered 500) as on SQLite."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fixtures.databases import fresh_postgres_database
from tests.fixtures.platform import RunningPlatform, start_platform, stop_platform


@pytest.fixture(scope="module")
def on_postgres(
    tmp_path_factory: pytest.TempPathFactory, postgres_url: str
) -> Iterator[RunningPlatform]:
    """The embedded platform with its store on PostgreSQL."""
    data_dir: Path = tmp_path_factory.mktemp("nul")
    running = start_platform(
        data_dir, {"TSUNAGU_DATABASE_URL": fresh_postgres_database(postgres_url)}
    )
    yield running
    stop_platform(running)


def test_a_nul_in_any_path_or_query_parameter_is_a_400_problem(
    on_postgres: RunningPlatform,
) -> None:
    platform = on_postgres
    resident = platform.auth("resident", "res-abcd1234")
    admin = platform.auth("admin", "city-ops")
    with platform.client() as http:
        spec = http.get("/openapi.json").json()
        tried = 0
        for path, item in spec["paths"].items():
            for method, operation in item.items():
                queries = [p["name"] for p in operation.get("parameters", []) if p["in"] == "query"]
                if "{" not in path and not queries:
                    continue
                auth = resident if path.startswith("/v1/me") else admin
                target = re.sub(r"\{[^}]+\}", "a%00b", path)
                r = http.request(
                    method.upper(), target, params={q: "a\x00b" for q in queries}, headers=auth
                )
                assert r.status_code == 400, (method, path, r.status_code, r.text)
                assert r.headers["content-type"] == "application/problem+json"
                assert "NUL" in r.json()["detail"]
                tried += 1
        # The consent routes that answered 500 before are among them.
        r = http.post("/v1/me/consents/a%00b/revoke", headers=resident)
        assert r.status_code == 400
    assert tried > 10
