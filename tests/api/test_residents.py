"""The resident's API (`/v1/me`) and the municipality's partner register, on a running platform."""

from __future__ import annotations

import base64
import uuid
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from consent.errors import ReceiptInvalidError
from consent.receipts import verify_receipt
from tests.fixtures.platform import RunningPlatform, register_partner

PURPOSE = "transport.planning"


def _resident() -> str:
    return f"res-{uuid.uuid4().hex[:12]}"


def _grant(
    http: httpx.Client, me: dict[str, str], partner: str, purpose: str = PURPOSE
) -> httpx.Response:
    return http.post(
        "/v1/me/consents",
        json={
            "partner_id": partner,
            "purpose": purpose,
            "categories": ["transport.trips"],
            "expires_at": (datetime.now(UTC) + timedelta(days=30)).isoformat(),
        },
        headers=me,
    )


def test_resident_grants_and_sees_the_consent_with_a_receipt_verifiable_offline(
    platform: RunningPlatform,
) -> None:
    resident = _resident()
    me = platform.auth("resident", resident)
    with platform.client() as http:
        partner = register_partner(platform, http, PURPOSE)
        granted = _grant(http, me, partner)
        listed = http.get("/v1/me/consents", headers=me).json()
        receipt = http.get(f"/v1/me/consents/{granted.json()['id']}/receipt", headers=me)
        jwks = http.get("/.well-known/jwks.json").json()
    assert granted.status_code == 201
    assert [c["id"] for c in listed] == [granted.json()["id"]]
    assert listed[0]["status"] == "active"
    assert receipt.headers["content-type"] == "application/jose"
    payload = verify_receipt(receipt.text, jwks)
    assert payload["sub"] == resident
    assert payload["consent"]["id"] == granted.json()["id"]
    assert payload["recipient"]["id"] == partner
    # A receipt altered by one character no longer verifies.
    head, body, sig = receipt.text.split(".")
    claims = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)).replace(
        resident.encode(), _resident().encode()
    )
    forged = ".".join([head, base64.urlsafe_b64encode(claims).rstrip(b"=").decode(), sig])
    with pytest.raises(ReceiptInvalidError):
        verify_receipt(forged, jwks)


def test_pause_resume_revoke_each_make_a_new_version_and_history_keeps_them_all(
    platform: RunningPlatform,
) -> None:
    me = platform.auth("resident", _resident())
    with platform.client() as http:
        partner = register_partner(platform, http, PURPOSE)
        first = _grant(http, me, partner).json()["id"]
        paused = http.post(f"/v1/me/consents/{first}/pause", headers=me).json()
        resumed = http.post(f"/v1/me/consents/{paused['id']}/resume", headers=me).json()
        stale = http.post(f"/v1/me/consents/{first}/revoke", headers=me)
        revoked = http.post(f"/v1/me/consents/{resumed['id']}/revoke", headers=me).json()
        again = http.post(f"/v1/me/consents/{revoked['id']}/revoke", headers=me)
        history = http.get("/v1/me/consents/history", headers=me).json()
        current = http.get("/v1/me/consents", headers=me).json()
    assert (paused["status"], resumed["status"], revoked["status"]) == (
        "paused",
        "active",
        "revoked",
    )
    assert stale.status_code == 409
    assert "superseded" in stale.json()["detail"]
    assert again.status_code == 409
    assert [c["change"] for c in history] == ["granted", "paused", "resumed", "revoked"]
    assert [c["version"] for c in history] == [1, 2, 3, 4]
    assert [c["id"] for c in current] == [revoked["id"]]


def test_a_resident_cannot_see_or_change_anothers_consent(platform: RunningPlatform) -> None:
    alice = platform.auth("resident", _resident())
    bob = platform.auth("resident", _resident())
    with platform.client() as http:
        partner = register_partner(platform, http, PURPOSE)
        consent = _grant(http, alice, partner).json()["id"]
        revoke = http.post(f"/v1/me/consents/{consent}/revoke", headers=bob)
        receipt = http.get(f"/v1/me/consents/{consent}/receipt", headers=bob)
        bobs = http.get("/v1/me/consents", headers=bob).json()
        alices = http.get("/v1/me/consents", headers=alice).json()
    assert revoke.status_code == 404
    assert receipt.status_code == 404
    assert bobs == []
    assert alices[0]["status"] == "active"


def test_consent_for_a_purpose_the_partner_is_not_approved_for_cannot_be_granted(
    platform: RunningPlatform,
) -> None:
    me = platform.auth("resident", _resident())
    with platform.client() as http:
        partner = register_partner(platform, http, PURPOSE)
        refused = _grant(http, me, partner, purpose="currency.promotion")
        unknown = _grant(http, me, "ptn-doesnotexist")
    assert refused.status_code == 422
    assert refused.json()["type"] == "urn:tsunagu:problem:purpose-not-approved"
    assert "not approved" in refused.json()["detail"]
    assert unknown.status_code == 404


def test_withdrawn_approval_is_visible_in_the_partners_history(platform: RunningPlatform) -> None:
    admin = platform.auth("admin", "city-ops")
    with platform.client() as http:
        partner = register_partner(platform, http, PURPOSE)
        http.delete(f"/v1/partners/{partner}/purposes/{PURPOSE}", headers=admin)
        detail = http.get(f"/v1/partners/{partner}", headers=admin).json()
        listed = {p["id"]: p for p in http.get("/v1/partners", headers=admin).json()}
    (approval,) = detail["approvals"]
    assert approval["revoked_by"] == "city-ops"
    assert listed[partner]["approvals"] == []


@pytest.mark.parametrize("role", ["partner", "connector", "auditor", "admin"])
def test_the_resident_api_is_for_residents_only(platform: RunningPlatform, role: str) -> None:
    sources = ("urn:tsunagu:connector:x",) if role == "connector" else ()
    with platform.client() as http:
        r = http.get("/v1/me/consents", headers=platform.auth(role, "someone", sources=sources))
    assert r.status_code == 403
    assert r.headers["content-type"] == "application/problem+json"


@pytest.mark.parametrize("role", ["partner", "resident", "auditor"])
def test_only_the_municipality_registers_partners(platform: RunningPlatform, role: str) -> None:
    with platform.client() as http:
        r = http.post(
            "/v1/partners",
            json={"name_ja": "偽", "name_en": "Fake"},
            headers=platform.auth(role, "res-abcdef12"),
        )
        anonymous = http.get("/v1/partners")
    assert r.status_code == 403
    assert anonymous.status_code == 401
