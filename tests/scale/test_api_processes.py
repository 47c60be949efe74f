"""Two `tsunagu up` processes on one PostgreSQL store and one Apache Kafka bus, as two
API machines behind a proxy: each keeps its own consent cache, and a consent changed through
one holds in the other. (tests/api/test_api_processes.py covers `TSUNAGU_API_PROCESSES` on the
embedded SQLite store and bus.)"""

from __future__ import annotations

import httpx
import pytest

from tests.api.test_partner_views import PERIOD, PLANNING, _grant, _id, _pseudonyms, _trip
from tests.fixtures.platform import RunningPlatform, register_partner
from tests.scale.deployment import Deployment

TRIPS = "transport.trips"


@pytest.fixture
def two_machines(deployment: Deployment) -> tuple[RunningPlatform, RunningPlatform]:
    """Two API processes (each with its ingest worker thread in the group) on the deployment,
    which stops them."""
    # Many reads a second from the test's one partner: the limit is per process and not
    # what is tested here.
    deployment.extra_env["TSUNAGU_PARTNER_RATE_PER_S"] = "1000"
    deployment.extra_env["TSUNAGU_PARTNER_BURST"] = "1000"
    return deployment.start_platform("api-a"), deployment.start_platform("api-b")


def _trips(platform: RunningPlatform, partner: str, pseudonym: str) -> tuple[bool, str | None]:
    """Whether a read of the resident's activity through ``platform`` included their trips,
    and if not, why (a fresh connection each time: no state but the server's)."""
    with httpx.Client(base_url=platform.base_url, timeout=10) as http:
        r = http.get(
            f"/v1/partner/residents/{pseudonym}/activity",
            params={"purpose": PLANNING, **PERIOD},
            headers=platform.auth("partner", partner),
        )
    if r.status_code == 404 and "consented to you" in r.json()["detail"]:
        # The process rebuilt its pseudonym index since the revocation: the resident is no
        # longer among those who consented to this partner at all.
        return False, "no_longer_consenting"
    assert r.status_code == 200, r.text
    trips = next(c for c in r.json()["categories"] if c["category"] == TRIPS)
    return bool(trips["included"]), (trips["withheld"] or {}).get("reason")


def test_a_revocation_through_one_api_process_refuses_reads_through_another(
    deployment: Deployment, two_machines: tuple[RunningPlatform, RunningPlatform]
) -> None:
    a, b = two_machines
    resident = _id("res")
    with a.client() as http:
        partner = register_partner(a, http, PLANNING)
        consent = _grant(a, http, resident, partner, PLANNING, [TRIPS])
    deployment.publish([_trip(resident, 3)])  # through a connector, onto the bus
    deployment.wait_for_ingested(1, timeout_s=60)
    with b.client() as http:
        (pseudonym,) = _pseudonyms(b, http, partner)  # the same pseudonym in either process
    # Both processes allow it now, and have cached that they do.
    assert _trips(a, partner, pseudonym) == (True, None)
    assert _trips(b, partner, pseudonym) == (True, None)

    with a.client() as http:
        http.post(
            f"/v1/me/consents/{consent}/revoke", headers=a.auth("resident", resident)
        ).raise_for_status()
    # The other process has not heard of it on the bus yet, but the store's consent epoch
    # has moved: its very next read is refused, and so is every one after it.
    assert _trips(b, partner, pseudonym) == (False, "revoked")
    for platform in (a, b, b, a):
        assert not _trips(platform, partner, pseudonym)[0]
