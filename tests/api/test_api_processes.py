"""The API served by several processes (`TSUNAGU_API_PROCESSES`): each has its own consent
cache, and a revocation made through one holds in all of them."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest

from tests.api.test_partner_views import PLANNING, _grant, _id, _pseudonyms, _trip
from tests.fixtures.platform import RunningPlatform, register_partner, start_platform, stop_platform

PERIOD = {"from": "2025-06-01T00:00:00+09:00", "to": "2025-07-01T00:00:00+09:00"}


@pytest.fixture(scope="module")
def two_processes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningPlatform]:
    """A platform whose API runs in two processes sharing the port."""
    running = start_platform(tmp_path_factory.mktemp("procs"), {"TSUNAGU_API_PROCESSES": "2"})
    yield running
    stop_platform(running)


def _trips_included(platform: RunningPlatform, partner: str, pseudonym: str) -> set[bool]:
    """Whether trips were included, over 20 reads on fresh connections (either process)."""
    seen: set[bool] = set()
    for _ in range(20):
        with httpx.Client(base_url=platform.base_url, timeout=10) as http:
            view = http.get(
                f"/v1/partner/residents/{pseudonym}/activity",
                params={"purpose": PLANNING, **PERIOD},
                headers=platform.auth("partner", partner),
            ).json()
        trips = next(p for p in view["categories"] if p["category"] == "transport.trips")
        seen.add(trips["included"])
    return seen


def _api_processes(pid: int) -> list[int]:
    """The platform's children started by multiprocessing to serve (uvicorn workers)."""
    with open(f"/proc/{pid}/task/{pid}/children") as children:
        pids = [int(c) for c in children.read().split()]
    found = []
    for child in pids:
        with open(f"/proc/{child}/cmdline", "rb") as cmdline:
            if b"multiprocessing.spawn" in cmdline.read():
                found.append(child)
    return found


def test_the_api_runs_in_two_processes(two_processes: RunningPlatform) -> None:
    assert len(_api_processes(two_processes.process.pid)) == 2


def test_a_revocation_holds_in_every_api_process(two_processes: RunningPlatform) -> None:
    platform = two_processes
    resident = _id("res")
    with platform.client() as http:
        partner = register_partner(platform, http, PLANNING)
        consent = _grant(platform, http, resident, partner, PLANNING, ["transport.trips"])
        platform.ingest([_trip(resident, 3)])
        (pseudonym,) = _pseudonyms(platform, http, partner)
    assert _trips_included(platform, partner, pseudonym) == {True}
    with platform.client() as http:
        http.post(
            f"/v1/me/consents/{consent}/revoke", headers=platform.auth("resident", resident)
        ).raise_for_status()
    # The other process learns of it through consent.changes (milliseconds on this bus);
    # once it has, no read in either process is allowed again.
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and _trips_included(platform, partner, pseudonym) != {False}:
        time.sleep(0.05)
    assert _trips_included(platform, partner, pseudonym) == {False}


@pytest.fixture(scope="module")
def two_servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[RunningPlatform]]:
    """Two platforms on one store, each with a bus of its own: the second never hears of the
    first's changes on ``consent.changes``, so only the store can keep it fresh."""
    first_dir = tmp_path_factory.mktemp("first")
    store = {"TSUNAGU_DATABASE_URL": f"sqlite:///{first_dir / 'store.db'}"}
    first = start_platform(first_dir, store)
    try:
        second = start_platform(tmp_path_factory.mktemp("second"), store)
    except BaseException:
        stop_platform(first)
        raise
    yield [first, second]
    stop_platform(second)
    stop_platform(first)


def _statistics_status(platform: RunningPlatform, partner: str, purpose: str) -> int:
    """The status of one statistics read on a fresh connection."""
    with httpx.Client(base_url=platform.base_url, timeout=10) as http:
        return http.get(
            "/v1/statistics/town-flows",
            params={"purpose": purpose},
            headers=platform.auth("partner", partner),
        ).status_code


def test_a_withdrawn_purpose_refuses_the_next_statistics_read_in_another_process(
    two_servers: list[RunningPlatform],
) -> None:
    where_changed, where_read = two_servers
    purpose = "statistics.municipal"
    admin = where_changed.auth("admin", "city-ops")
    with where_changed.client() as http:
        partner = register_partner(where_changed, http)
    for _ in range(3):
        with where_changed.client() as http:
            http.post(
                f"/v1/partners/{partner}/purposes", json={"purpose": purpose}, headers=admin
            ).raise_for_status()
        # The reading process has the approval in its cache...
        assert [_statistics_status(where_read, partner, purpose) for _ in range(3)] == [200] * 3
        with where_changed.client() as http:
            http.delete(
                f"/v1/partners/{partner}/purposes/{purpose}", headers=admin
            ).raise_for_status()
        # ...and its very next read, with no word of the withdrawal on its bus, is refused.
        assert [_statistics_status(where_read, partner, purpose) for _ in range(3)] == [403] * 3
