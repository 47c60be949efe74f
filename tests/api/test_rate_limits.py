"""Per-partner rate limits: 429 with Retry-After, one partner's burst not another's problem."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.fixtures.platform import RunningPlatform, start_platform, stop_platform


@pytest.fixture(scope="module")
def limited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningPlatform]:
    """A platform allowing each partner a burst of 3 and then 0.2 requests/s."""
    running = start_platform(
        tmp_path_factory.mktemp("limits"),
        {"TSUNAGU_PARTNER_RATE_PER_S": "0.2", "TSUNAGU_PARTNER_BURST": "3"},
    )
    yield running
    stop_platform(running)


def test_partner_over_its_rate_gets_429_with_retry_after(limited: RunningPlatform) -> None:
    greedy = limited.auth("partner", "ptn-greedy1")
    polite = limited.auth("partner", "ptn-polite1")
    params = {"purpose": "transport.planning"}
    with limited.client() as http:
        statuses = [
            http.get("/v1/partner/residents", params=params, headers=greedy).status_code
            for _ in range(4)
        ]
        limited_response = http.get("/v1/partner/residents", params=params, headers=greedy)
        other = http.get("/v1/partner/residents", params=params, headers=polite)
    # Unregistered partners are refused (403), but only after the rate check counted them.
    assert statuses == [403, 403, 403, 429]
    assert limited_response.status_code == 429
    assert limited_response.headers["content-type"] == "application/problem+json"
    assert int(limited_response.headers["retry-after"]) >= 1
    assert "over its rate" in limited_response.json()["detail"]
    assert other.status_code == 403


def test_a_429_names_the_same_wait_as_its_retry_after(limited: RunningPlatform) -> None:
    hasty = limited.auth("partner", "ptn-hasty01")
    params = {"purpose": "transport.planning"}
    with limited.client() as http:
        answers = [
            http.get("/v1/partner/residents", params=params, headers=hasty) for _ in range(4)
        ]
    refused = answers[-1]
    assert refused.status_code == 429
    wait = refused.headers["retry-after"]
    assert wait.isdigit() and int(wait) >= 1
    # One number, said twice: a client reading either waits as long.
    assert f"retry in {wait} s" in refused.json()["detail"]
    assert refused.json()["type"] == "urn:tsunagu:problem:rate-limited"
    assert refused.json()["title"] == "Over the caller's rate limit"
