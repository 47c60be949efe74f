"""Every read of personal data goes through the one audited read (``broker.api.reads``), and
every read path asks the one purpose approval, fresh across processes.

The walk covers every route of the app: a route either declares the audited read, or is
listed below with why it returns no partner's read of personal data. A new route is neither
until someone decides, so the walk fails for it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute, iter_route_contexts
from sqlalchemy import create_engine, text

from broker.api.app import create_app
from broker.api.reads import AuditedRead, PartnerRead, UnauditedReadError
from broker.api.services import services_of
from broker.auth.principals import Principal, Role
from broker.runtime import Platform
from broker.settings import Settings
from consent.keys import KeyRing
from consent.service import ConsentService
from tests.fixtures.platform import RunningPlatform, register_partner

PLANNING = "transport.planning"
#: Routes that return no partner's read of personal data, and why.
NOT_PERSONAL = {
    "GET /healthz": "liveness",
    "GET /readyz": "readiness of the store, bus and ingest",
    "GET /metrics": "process metrics, counts only",
    "GET /resident": "a static page",
    "GET /auditor": "a static page",
    "GET /pages/static/{name:path}": "static assets",
    "GET /.well-known/jwks.json": "public keys",
    "GET /v1/catalogue/purposes": "the public catalogue",
    "GET /v1/catalogue/categories": "the public catalogue",
    "GET /v1/catalogue/partners": "the public register of partner firms",
    "GET /v1/schemas": "schemas, not data",
    "GET /v1/schemas/{event_type}": "schemas, not data",
    "GET /v1/schemas/{event_type}/versions/{version}": "schemas, not data",
    "POST /v1/schemas/{event_type}/versions": "registers a schema (audited as an admin change)",
    "POST /v1/schemas/{event_type}/compatibility": "compares schemas",
    "POST /v1/events": "ingest: data in, receipts out",
    "POST /v1/partners": "the register of partner firms (admin)",
    "GET /v1/partners": "the register of partner firms (admin)",
    "GET /v1/partners/{partner_id}": "the register of partner firms (admin)",
    "POST /v1/partners/{partner_id}/purposes": "an approval (audited as an admin change)",
    "DELETE /v1/partners/{partner_id}/purposes/{purpose}": "a withdrawal (audited)",
    "GET /v1/me/consents": "the resident's own consents, to the resident",
    "GET /v1/me/consents/history": "the resident's own consents, to the resident",
    "GET /v1/me/consents/categories": "what the resident may consent to, to the resident",
    "POST /v1/me/consents": "the resident's own consent (audited as a consent change)",
    "POST /v1/me/consents/{consent_id}/pause": "the resident's own consent (audited)",
    "POST /v1/me/consents/{consent_id}/resume": "the resident's own consent (audited)",
    "POST /v1/me/consents/{consent_id}/revoke": "the resident's own consent (audited)",
    "GET /v1/me/consents/{consent_id}/receipt": "the resident's own receipt, to the resident",
    "POST /v1/me/erasure": "erases; answers counts (audited as an erasure)",
    "GET /v1/me/access-log": "the resident's own access log, to the resident",
    "GET /v1/audit/entries": "audit entries name residents by an HMAC only",
    "GET /v1/audit/flows": "counts",
    "GET /v1/audit/refusals": "counts",
    "GET /v1/audit/verification": "the chain's state",
    "GET /v1/audit/export": "the log, residents by an HMAC only (audited as an export)",
    # Open data: stops, routes, the public part of public listings and statistics whose every
    # cell counts at least k residents (tests/api/test_opendata.py searches every byte).
    "GET /opendata/catalog.jsonld": "open data: the catalogue",
    "GET /opendata/datasets/{name}.csv": "open data: no personal data",
    "GET /opendata/datasets/{name}.json": "open data: no personal data",
    "GET /api/3/action/{action}": "open data: CKAN's read verbs over the catalogue",
    "POST /api/3/action/{action}": "open data: CKAN's read verbs over the catalogue",
    "GET /api/action/{action}": "open data: CKAN's read verbs over the catalogue",
    "POST /api/action/{action}": "open data: CKAN's read verbs over the catalogue",
    # The region ID: a resident signing in, and what they let the client they signed in to
    # know of themselves (a pairwise subject, how they were proofed); refusals are audited.
    "GET /regionid/.well-known/openid-configuration": "the region ID's metadata",
    "GET /regionid/jwks.json": "public keys",
    "GET /regionid/authorize": "the sign-in form",
    "POST /regionid/authorize": "a resident signing in (refusals audited)",
    "POST /regionid/token": "tokens to the client the resident signed in to",
    "GET /regionid/userinfo": "the signed-in resident's claims, to their own client",
    "POST /regionid/userinfo": "the signed-in resident's claims, to their own client",
    "GET /regionid/logout": "ends a sign-in",
    "POST /regionid/logout": "ends a sign-in",
    "POST /regionid/link-codes": "a link code to a service company (audited)",
    "GET /regionid/link-codes/{code}": "the firm's own link code: its state and the subject it "
    "already knows the resident by",
    "GET /v1/me/links": "the resident's own links, to the resident",
    "POST /v1/me/links": "the resident links a service (audited)",
    "DELETE /v1/me/links/{client_id}": "the resident ends a link (audited)",
}


def _routes(app: FastAPI) -> Iterator[tuple[str, APIRoute]]:
    """Every API route of ``app`` as ("METHOD path", route), included routers' too."""
    for context in iter_route_contexts(app.routes):
        route = context.original_route
        if isinstance(route, APIRoute):
            for method in sorted(route.methods or ()):
                yield f"{method} {context.path}", route


def _audited(dependant: Dependant) -> bool:
    """Whether the audited read is anywhere in the route's dependency tree."""
    return any(isinstance(d.call, AuditedRead) or _audited(d) for d in dependant.dependencies)


def unaudited_personal_routes(app: FastAPI) -> list[str]:
    """The routes that neither pass the audited read nor are known to return no personal data."""
    return [
        name
        for name, route in _routes(app)
        if not _audited(route.dependant) and name not in NOT_PERSONAL
    ]


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FastAPI]:
    """The API over a fresh embedded platform, in this process (nothing started)."""
    data_dir = tmp_path_factory.mktemp("app")
    platform = Platform.open(Settings(data_dir=data_dir))
    yield create_app(platform)
    platform.close()


def test_every_route_that_returns_personal_data_passes_the_audited_read(app: FastAPI) -> None:
    names = dict(_routes(app))
    assert unaudited_personal_routes(app) == []
    audited = sorted(n for n, route in names.items() if _audited(route.dependant))
    assert audited == [
        "GET /v1/partner/residents",
        "GET /v1/partner/residents/{resident}/activity",
        "GET /v1/partner/vacant-houses",
        "GET /v1/statistics/people-flow",
        "GET /v1/statistics/points-by-age-band",
        "GET /v1/statistics/ridership",
        "GET /v1/statistics/spending-by-merchant-category",
        "GET /v1/statistics/town-flows",
        "GET /v1/statistics/trips-by-town-month",
    ]
    # Nothing listed as not personal is gone or audited: the list stays true.
    assert set(NOT_PERSONAL) <= set(names) - set(audited)


def test_a_route_added_without_the_audited_read_is_found(app: FastAPI) -> None:
    leak = FastAPI()
    leak.router.routes.extend(app.router.routes)

    @leak.get("/v1/partner/residents/{resident}/everything")
    def everything(resident: str) -> dict[str, str]:
        return {"resident": resident}

    assert unaudited_personal_routes(leak) == ["GET /v1/partner/residents/{resident}/everything"]


# -- on a running platform ---------------------------------------------------------------------


def _reads(platform: RunningPlatform, partner: str) -> list[str]:
    """The views of the partner's reads in the audit log, oldest first."""
    engine = create_engine(f"sqlite:///{platform.data_dir / 'store.db'}")
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT json_extract(fields, '$.view') FROM audit_entries "
                "WHERE kind = 'partner_read' AND actor = :p ORDER BY seq"
            ),
            {"p": partner},
        ).scalars()
        views = [str(v) for v in rows]
    engine.dispose()
    return views


def test_every_audited_route_writes_its_read_to_the_audit_log(
    platform: RunningPlatform, app: FastAPI
) -> None:
    with platform.client() as http:
        partner = register_partner(
            platform, http, PLANNING, "health.incentive", "currency.promotion"
        )
        resident = f"res-{partner[4:]}"
        r = http.post(
            "/v1/me/consents",
            json={
                "partner_id": partner,
                "purpose": PLANNING,
                "categories": ["transport.trips"],
                "expires_at": (datetime.now(UTC) + timedelta(days=30)).isoformat(),
            },
            headers=platform.auth("resident", resident),
        )
        assert r.status_code == 201, r.text
        auth = platform.auth("partner", partner)
        purposes = {
            "/v1/statistics/points-by-age-band": "health.incentive",
            "/v1/statistics/spending-by-merchant-category": "currency.promotion",
        }
        listed = http.get("/v1/partner/residents", params={"purpose": PLANNING}, headers=auth)
        assert listed.status_code == 200, listed.text
        pseudonym = listed.json()["residents"][0]["resident"]
        for name, _ in _routes(app):
            method, path = name.split(" ", 1)
            if name in NOT_PERSONAL or method != "GET":
                continue
            before = len(_reads(platform, partner))
            url = path.replace("{resident}", pseudonym)
            purpose = purposes.get(path, PLANNING)
            r = http.get(url, params={"purpose": purpose}, headers=auth)
            assert r.status_code == 200, (name, r.text)
            assert len(_reads(platform, partner)) > before, f"{name} answered without audit"


def _elsewhere(platform: RunningPlatform, tmp_path: Path) -> ConsentService:
    """Another process's consent service on the platform's store, whose changes never reach
    the platform over the bus (it publishes nowhere): only the store says they happened."""
    engine = create_engine(f"sqlite:///{platform.data_dir / 'store.db'}")
    return ConsentService(engine, KeyRing.open(tmp_path / "keys"), lambda topic, records: None)


def test_an_approval_withdrawn_in_another_process_blocks_the_next_view_and_statistic(
    platform: RunningPlatform, tmp_path: Path
) -> None:
    with platform.client() as http:
        partner = register_partner(platform, http, PLANNING)
        auth = platform.auth("partner", partner)
        view = ("/v1/partner/residents", {"purpose": PLANNING})
        statistic = ("/v1/statistics/trips-by-town-month", {"purpose": PLANNING})
        for url, params in (view, statistic):  # approved: both answer, and are cached
            assert http.get(url, params=params, headers=auth).status_code == 200
        elsewhere = _elsewhere(platform, tmp_path)
        elsewhere.withdraw_purpose(partner, PLANNING, withdrawn_by="city-ops")
        for url, params in (view, statistic):
            r = http.get(url, params=params, headers=auth)
            assert r.status_code == 403, r.text
            assert r.json()["type"] == "urn:tsunagu:problem:read-not-approved"
            assert "ask the municipality to approve" in r.json()["detail"]
        elsewhere.approve_purpose(partner, PLANNING, approved_by="city-ops")
        for url, params in (view, statistic):
            assert http.get(url, params=params, headers=auth).status_code == 200
        elsewhere.engine.dispose()


def test_a_partners_statistic_without_a_purpose_is_refused_saying_what_to_add(
    platform: RunningPlatform,
) -> None:
    with platform.client() as http:
        partner = register_partner(platform, http, PLANNING)
        r = http.get(
            "/v1/statistics/trips-by-town-month", headers=platform.auth("partner", partner)
        )
        assert r.status_code == 422
        assert r.json()["type"] == "urn:tsunagu:problem:purpose-required"
        assert "?purpose=" in r.json()["detail"]
        auditor = http.get(
            "/v1/statistics/trips-by-town-month", headers=platform.auth("auditor", "town-audit")
        )
        assert auditor.status_code == 200  # the municipality reads with no partner purpose


def _partner(subject: str) -> Principal:
    return Principal(subject, Role.PARTNER, "test", datetime.now(UTC) + timedelta(hours=1))


def test_a_read_that_records_no_audit_entry_is_refused_not_answered(app: FastAPI) -> None:
    services = services_of(app)
    read = PartnerRead(_partner("ptn-forgetful"), PLANNING, services)
    with pytest.raises(UnauditedReadError, match="recorded no audit entry"):
        asyncio.run(read.run(lambda: {"resident": "psn-leaked"}))
    audited = PartnerRead(_partner("ptn-careful"), PLANNING, services)

    def work() -> dict[str, str]:
        audited.record("residents", [], rows=0)
        return {"residents": "none"}

    assert asyncio.run(audited.run(work)) == {"residents": "none"}
