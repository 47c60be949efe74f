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


@pytest.mark.parametrize(
    "moment", ["0001-01-01T00:00:00+09:00", "9999-12-31T23:59:59-05:00", "9999-12-31"]
)
def test_a_date_near_year_1_or_9999_in_a_query_is_a_400_problem(
    on_postgres: RunningPlatform, moment: str
) -> None:
    auditor = on_postgres.auth("auditor", "aud-mitoyo")
    with on_postgres.client() as http:
        for param in ("from", "to"):
            r = http.get(
                "/v1/statistics/trips-by-town-month", params={param: moment}, headers=auditor
            )
            assert r.status_code == 400, (param, r.status_code, r.text)
            assert r.headers["content-type"] == "application/problem+json"
            assert f"names year {int(moment[:4])}" in r.json()["detail"]
        # Dates within the years events may name still pass.
        fine = http.get(
            "/v1/statistics/trips-by-town-month",
            params={"from": "2025-01-01T00:00:00+09:00"},
            headers=auditor,
        )
        assert fine.status_code == 200, fine.text
