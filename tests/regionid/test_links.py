"""ID link, against a running platform: a resident signing in to a service links its account;
a service without web login hands a one-time link code, the resident enters it on their page
and the firm then learns the pairwise subject it publishes under; the resident sees and ends
their links; erasure removes them. Every refusal is an RFC 9457 problem and an audit entry.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import jwt
import pytest
from sqlalchemy import create_engine, text

from broker.demo.logins import DEMO_RESIDENT_LOGIN, seed_logins
from broker.regionid.directory import Directory
from tests.fixtures.platform import RunningPlatform, start_platform, stop_platform
from tests.regionid.test_provider import BUS, SUPER, Region, Registered, _add_client, sign_in

#: The demo resident's id on the platform: their region ID account is the same id.
HANAKO = "res-hanakolinks"
PROBLEM = "application/problem+json"


@dataclass
class Linking:
    """The region, and a firm's back office calling the link-code endpoints."""

    region: Region

    def firm(self, client_id: str, secret: str | None = None) -> httpx.Client:
        """An HTTP client authenticated as ``client_id`` (its own secret unless given)."""
        registered = self.region.clients[client_id]
        return httpx.Client(
            base_url=f"{self.region.issuer}",
            auth=(client_id, secret if secret is not None else registered.secret),
            timeout=30,
        )

    def issue(self, client_id: str, customer: str) -> str:
        """A link code from ``client_id`` for its customer number ``customer``."""
        with self.firm(client_id) as firm:
            r = firm.post("/link-codes", json={"customer": customer})
        assert r.status_code == 201, r.text
        code: str = r.json()["code"]
        return code

    def enter(self, resident: str, code: str) -> httpx.Response:
        """The resident ``resident`` enters ``code`` on their page."""
        with self.region.platform.client() as http:
            return http.post(
                "/v1/me/links",
                json={"code": code},
                headers=self.region.platform.auth("resident", resident),
            )

    def links_of(self, resident: str) -> list[dict[str, Any]]:
        """The resident's links as their page lists them."""
        with self.region.platform.client() as http:
            r = http.get("/v1/me/links", headers=self.region.platform.auth("resident", resident))
        assert r.status_code == 200, r.text
        found: list[dict[str, Any]] = r.json()
        return found

    def audit(self, event: str | None = None) -> list[dict[str, Any]]:
        """The audit log's ID link entries (fields, subject_ref), oldest first."""
        engine = create_engine(f"sqlite:///{self.region.platform.data_dir / 'store.db'}")
        try:
            with engine.connect() as conn:
                rows = conn.execute(
                    text(
                        "SELECT fields, subject_ref, actor FROM audit_entries "
                        "WHERE kind = 'id_link' ORDER BY seq"
                    )
                ).all()
        finally:
            engine.dispose()
        entries = [{**json.loads(f), "subject_ref": ref, "actor": a} for f, ref, a in rows]
        return [e for e in entries if event is None or e["event"] == event]

    def sql(self, statement: str, **params: Any) -> None:
        """Change the store directly (to age a code)."""
        engine = create_engine(f"sqlite:///{self.region.platform.data_dir / 'store.db'}")
        try:
            with engine.begin() as conn:
                conn.execute(text(statement), params)
        finally:
            engine.dispose()


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningPlatform]:
    """A platform of this module's own: its links are these tests' alone."""
    running = start_platform(
        tmp_path_factory.mktemp("links"), {"TSUNAGU_REGIONID_SIGN_IN_BURST": "1000"}
    )
    yield running
    stop_platform(running)


@pytest.fixture(scope="module")
def linking(platform: RunningPlatform) -> Linking:
    clients = {
        cid: Registered(cid, _add_client(platform, cid, uri), uri) for cid, uri in (BUS, SUPER)
    }
    engine = create_engine(f"sqlite:///{platform.data_dir / 'store.db'}")
    logins = seed_logins(Directory(engine), platform.data_dir, HANAKO)
    engine.dispose()
    hanako = next(x for x in logins if x.username == DEMO_RESIDENT_LOGIN)
    issuer = f"{platform.base_url}/regionid"
    return Linking(Region(platform, issuer, clients, hanako.username, hanako.password))


def _customer() -> str:
    return f"C-{secrets.token_hex(4)}"


def _problem(r: httpx.Response, status: int, kind: str) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith(PROBLEM)
    body: dict[str, Any] = r.json()
    assert body["type"] == f"urn:tsunagu:problem:{kind}"
    return body


# -- linking by signing in --------------------------------------------------------------------


def test_signing_in_to_a_service_links_it_and_the_resident_sees_it(linking: Linking) -> None:
    assert [x["client_id"] for x in linking.links_of(HANAKO)] == []
    signed = sign_in(linking.region, BUS[0])
    links = linking.links_of(HANAKO)
    assert [(x["client_id"], x["how"]) for x in links] == [(BUS[0], "sign_in")]
    assert links[0]["linked_at"]
    # Signing in again links nothing twice.
    sign_in(linking.region, BUS[0])
    assert len(linking.links_of(HANAKO)) == 1
    linked = [e for e in linking.audit("linked") if e["client"] == BUS[0]]
    assert len(linked) == 1 and linked[0]["how"] == "sign_in"
    assert linked[0]["subject_ref"] and HANAKO not in json.dumps(linked)
    # Never the pairwise subject the firm knows the resident by, in the audit log.
    sub = jwt.decode(signed.tokens["id_token"].jwt, options={"verify_signature": False})["sub"]
    assert sub not in json.dumps(linking.audit())


def test_another_resident_sees_none_of_hanakos_links(linking: Linking) -> None:
    sign_in(linking.region, BUS[0])
    assert linking.links_of(f"res-{secrets.token_hex(4)}") == []


# -- linking with a code ----------------------------------------------------------------------


def test_a_link_code_links_a_customer_and_tells_the_firm_its_subject(linking: Linking) -> None:
    resident = f"res-{secrets.token_hex(4)}"
    code = linking.issue(SUPER[0], _customer())
    assert len(code) == 14 and code.count("-") == 2
    with linking.firm(SUPER[0]) as firm:
        waiting = firm.get(f"/link-codes/{code}").json()
    assert waiting["status"] == "waiting" and waiting["sub"] is None
    # Typed as a person would: lower case, spaces instead of hyphens.
    r = linking.enter(resident, code.lower().replace("-", " "))
    assert r.status_code == 201, r.text
    assert (r.json()["client_id"], r.json()["how"]) == (SUPER[0], "link_code")
    assert [x["client_id"] for x in linking.links_of(resident)] == [SUPER[0]]
    with linking.firm(SUPER[0]) as firm:
        linked = firm.get(f"/link-codes/{code}").json()
    assert linked["status"] == "linked" and linked["linked_at"]
    assert len(linked["sub"]) == 43  # a pairwise subject, not the resident's id
    assert resident not in json.dumps(linked)


def test_the_code_gives_the_same_subject_the_firm_receives_at_sign_in(linking: Linking) -> None:
    code = linking.issue(SUPER[0], _customer())
    assert linking.enter(HANAKO, code).status_code == 201
    signed = sign_in(linking.region, SUPER[0])
    at_sign_in = jwt.decode(signed.tokens["id_token"].jwt, options={"verify_signature": False})
    with linking.firm(SUPER[0]) as firm:
        by_code = firm.get(f"/link-codes/{code}").json()["sub"]
    assert by_code == at_sign_in["sub"]
    # ...and another firm knows the same resident by another subject.
    bus = sign_in(linking.region, BUS[0])
    at_bus = jwt.decode(bus.tokens["id_token"].jwt, options={"verify_signature": False})
    assert at_bus["sub"] != by_code


def test_an_unknown_code_is_refused_and_audited(linking: Linking) -> None:
    resident = f"res-{secrets.token_hex(4)}"
    before = len(linking.audit("refused"))
    body = _problem(linking.enter(resident, "0000-0000-0000"), 404, "unknown-link-code")
    assert "check it against the one the service gave you" in body["detail"]
    refused = linking.audit("refused")[before:]
    assert [e["reason"] for e in refused] == ["UnknownLinkCodeError"]
    assert refused[0]["subject_ref"]
    assert linking.links_of(resident) == []


def test_a_code_works_once(linking: Linking) -> None:
    first, second = f"res-{secrets.token_hex(4)}", f"res-{secrets.token_hex(4)}"
    code = linking.issue(SUPER[0], _customer())
    assert linking.enter(first, code).status_code == 201
    _problem(linking.enter(second, code), 409, "link-code-spent")
    _problem(linking.enter(first, code), 409, "link-code-spent")
    assert linking.links_of(second) == []


def test_an_expired_code_is_refused(linking: Linking) -> None:
    resident = f"res-{secrets.token_hex(4)}"
    code = linking.issue(BUS[0], _customer())
    from broker.regionid.directory import digest
    from broker.regionid.links import normalise_code

    linking.sql(
        "UPDATE regionid_link_codes SET expires_at = '2000-01-01 00:00:00' WHERE code_hash = :h",
        h=digest(normalise_code(code)),
    )
    body = _problem(linking.enter(resident, code), 410, "link-code-expired")
    assert "ask the service for a new one" in body["detail"]
    assert linking.links_of(resident) == []
    with linking.firm(BUS[0]) as firm:
        assert firm.get(f"/link-codes/{code}").json()["status"] == "expired"


def test_an_account_linked_to_one_resident_is_refused_to_another(linking: Linking) -> None:
    customer = _customer()
    owner, other = f"res-{secrets.token_hex(4)}", f"res-{secrets.token_hex(4)}"
    assert linking.enter(owner, linking.issue(SUPER[0], customer)).status_code == 201
    # The firm's clerk issues a second code for the same customer number, by mistake or not.
    r = linking.enter(other, linking.issue(SUPER[0], customer))
    _problem(r, 409, "linked-elsewhere")
    assert linking.links_of(other) == []
    assert linking.audit("refused")[-1]["reason"] == "LinkedElsewhereError"
    # The same resident entering a second code for their own account is fine.
    assert linking.enter(owner, linking.issue(SUPER[0], customer)).status_code == 201
    assert len(linking.links_of(owner)) == 1


def test_a_firm_cannot_read_another_firms_code(linking: Linking) -> None:
    code = linking.issue(SUPER[0], _customer())
    with linking.firm(BUS[0]) as bus:
        _problem(bus.get(f"/link-codes/{code}"), 404, "unknown-link-code")
    with linking.firm(SUPER[0]) as firm:
        assert firm.get(f"/link-codes/{code}").status_code == 200


def test_link_codes_need_the_firms_credentials(linking: Linking) -> None:
    issuer = linking.region.issuer
    anonymous = httpx.post(f"{issuer}/link-codes", json={"customer": "C-1"})
    body = _problem(anonymous, 401, "client-unauthenticated")
    assert anonymous.headers["www-authenticate"].startswith("Basic")
    assert "client_secret" in body["detail"]
    with linking.firm(SUPER[0], secret="wrong") as firm:
        _problem(firm.post("/link-codes", json={"customer": "C-1"}), 401, "client-unauthenticated")
    before = len(linking.audit("code_issued"))
    linking.issue(SUPER[0], _customer())
    issued = linking.audit("code_issued")[before:]
    assert [(e["client"], e["actor"]) for e in issued] == [(SUPER[0], SUPER[0])]


def test_a_link_code_needs_a_customer_number(linking: Linking) -> None:
    with linking.firm(SUPER[0]) as firm:
        r = firm.post("/link-codes", json={"customer": ""})
    _problem(r, 422, "invalid-request")


# -- ending a link ----------------------------------------------------------------------------


def test_the_resident_ends_a_link_and_the_firm_sees_it_ended(linking: Linking) -> None:
    resident = f"res-{secrets.token_hex(4)}"
    code = linking.issue(BUS[0], _customer())
    assert linking.enter(resident, code).status_code == 201
    with linking.region.platform.client() as http:
        auth = linking.region.platform.auth("resident", resident)
        r = http.delete(f"/v1/me/links/{BUS[0]}", headers=auth)
        assert r.status_code == 200, r.text
        assert r.json()["unlinked_at"]
        assert linking.links_of(resident) == []
        _problem(http.delete(f"/v1/me/links/{BUS[0]}", headers=auth), 404, "not-linked")
    with linking.firm(BUS[0]) as firm:
        assert firm.get(f"/link-codes/{code}").json()["status"] == "unlinked"
    assert linking.audit("unlinked")[-1]["client"] == BUS[0]


def test_erasure_removes_the_residents_links(linking: Linking) -> None:
    resident = f"res-{secrets.token_hex(4)}"
    code = linking.issue(SUPER[0], _customer())
    assert linking.enter(resident, code).status_code == 201
    with linking.region.platform.client() as http:
        r = http.post("/v1/me/erasure", headers=linking.region.platform.auth("resident", resident))
    assert r.status_code == 200, r.text
    assert r.json()["rows_deleted"]["regionid_links"] == 1
    assert linking.links_of(resident) == []
    # The firm's code is gone with the link: nothing says whom it was for.
    with linking.firm(SUPER[0]) as firm:
        _problem(firm.get(f"/link-codes/{code}"), 404, "unknown-link-code")
