"""Receipts: signed by the platform, kept by the subject, verifiable by anyone offline with
only the published JWKS; any tampering fails."""

from __future__ import annotations

import base64
import json
from typing import Any, cast

import joserfc.jwk
import joserfc.jws
import jwt
import orjson
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from consent.errors import ReceiptInvalidError
from consent.keys import Jwks, KeyRing, SigningKey
from consent.model import Consent
from consent.receipts import sign_receipt, verify_receipt
from consent.service import ConsentService
from tests.consent.world import ALICE, BUS_FIRM, PLANNING, TRIPS, days, now


@pytest.fixture
def consent(service: ConsentService) -> Consent:
    """ALICE's consent for the bus firm's transport planning."""
    return service.grant(ALICE, BUS_FIRM, PLANNING, [TRIPS], expires_at=now() + days(365))


def _published(keys: KeyRing) -> Jwks:
    """The JWKS as a verifier fetches it: JSON from /.well-known/jwks.json."""
    loaded: Jwks = json.loads(json.dumps(keys.jwks()))
    return loaded


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _claims(receipt: str) -> dict[str, Any]:
    claims: dict[str, Any] = json.loads(_unb64(receipt.split(".")[1]))
    return claims


def test_a_receipt_verifies_with_nothing_but_the_published_jwks(
    consent: Consent, keys: KeyRing
) -> None:
    payload = verify_receipt(consent.receipt, _published(keys))
    assert payload["sub"] == payload["piiPrincipalId"] == ALICE
    assert payload["jurisdiction"] == "JP"
    assert payload["legalBasis"] == "consent"
    assert payload["recipient"]["id"] == BUS_FIRM
    (service,) = payload["services"]
    (purpose,) = service["purposes"]
    assert (purpose["purposeCode"], purpose["piiCategory"]) == (PLANNING, [TRIPS])
    assert purpose["purposeName"]["ja"] == "交通計画・路線最適化"
    assert payload["consent"]["id"] == consent.id
    assert payload["consent"]["status"] == "active"
    assert payload["consent"]["expiresAt"] is not None


def test_anyone_can_verify_a_receipt_with_a_standard_jose_library(
    consent: Consent, keys: KeyRing
) -> None:
    # joserfc (Authlib's), not the PyJWT we sign with: RFC 9864's fully-specified Ed25519.
    verified = joserfc.jws.deserialize_compact(
        consent.receipt,
        joserfc.jwk.KeySet.import_key_set(cast(Any, _published(keys))),
        algorithms=["Ed25519"],
    )
    assert verified.protected["alg"] == "Ed25519"
    assert verified.protected["typ"] == "consent-receipt+jwt"
    assert orjson.loads(verified.payload)["consent"]["id"] == consent.id


def test_a_receipt_signed_under_the_deprecated_eddsa_name_still_verifies(
    consent: Consent, keys: KeyRing
) -> None:
    claims = jwt.decode(consent.receipt, options={"verify_signature": False})
    earlier = jwt.encode(
        claims,
        keys.signing_key.private_key,
        algorithm="EdDSA",
        headers={"kid": keys.signing_key.kid, "typ": "consent-receipt+jwt"},
    )
    assert verify_receipt(earlier, _published(keys))["consent"]["id"] == consent.id


def test_every_change_comes_with_its_own_receipt_naming_what_it_supersedes(
    service: ConsentService, consent: Consent, keys: KeyRing
) -> None:
    revoked = service.revoke(ALICE, consent.id)
    payload = verify_receipt(revoked.receipt, _published(keys))
    assert payload["consent"]["id"] == revoked.id
    assert payload["consent"]["status"] == "revoked"
    assert payload["consent"]["supersedes"] == consent.id
    assert service.get(revoked.id).receipt == revoked.receipt  # kept in the store


def test_a_receipt_with_a_changed_payload_fails(consent: Consent, keys: KeyRing) -> None:
    header, _, signature = consent.receipt.split(".")
    claims = _claims(consent.receipt)
    claims["consent"]["expiresAt"] = "2099-12-31T00:00:00Z"
    forged = f"{header}.{_b64(json.dumps(claims).encode())}.{signature}"
    with pytest.raises(ReceiptInvalidError) as failure:
        verify_receipt(forged, _published(keys))
    assert failure.value.reason == "bad_signature"


def test_a_receipt_signed_by_another_key_under_the_platforms_kid_fails(
    consent: Consent, keys: KeyRing
) -> None:
    impostor = SigningKey(keys.signing_key.kid, Ed25519PrivateKey.generate())
    forged = sign_receipt(_claims(consent.receipt), impostor)
    with pytest.raises(ReceiptInvalidError) as failure:
        verify_receipt(forged, _published(keys))
    assert failure.value.reason == "bad_signature"


def test_a_receipt_signed_by_a_key_the_platform_never_published_fails(
    consent: Consent, keys: KeyRing
) -> None:
    forged = sign_receipt(_claims(consent.receipt), SigningKey.generate())
    with pytest.raises(ReceiptInvalidError) as failure:
        verify_receipt(forged, _published(keys))
    assert failure.value.reason == "unknown_kid"


def test_an_unsigned_receipt_fails(consent: Consent, keys: KeyRing) -> None:
    header = {"alg": "none", "kid": keys.signing_key.kid, "typ": "consent-receipt+jwt"}
    body = consent.receipt.split(".")[1]
    unsigned = f"{_b64(json.dumps(header).encode())}.{body}."
    with pytest.raises(ReceiptInvalidError) as failure:
        verify_receipt(unsigned, _published(keys))
    assert failure.value.reason == "unsupported_alg"


def test_a_receipt_hmac_signed_with_the_public_key_fails(consent: Consent, keys: KeyRing) -> None:
    # The classic algorithm confusion: HS256 keyed with the (public) x coordinate.
    public = _published(keys)["keys"][0]["x"].encode()
    forged = jwt.encode(
        _claims(consent.receipt),
        public,
        algorithm="HS256",
        headers={"kid": keys.signing_key.kid},
    )
    with pytest.raises(ReceiptInvalidError) as failure:
        verify_receipt(forged, _published(keys))
    assert failure.value.reason == "unsupported_alg"


def test_something_that_is_not_a_jws_fails(keys: KeyRing) -> None:
    with pytest.raises(ReceiptInvalidError) as failure:
        verify_receipt("not-a-receipt", _published(keys))
    assert failure.value.reason == "malformed"


def test_receipts_signed_before_a_key_rotation_still_verify(
    service: ConsentService, consent: Consent, keys: KeyRing
) -> None:
    old_kid = keys.signing_key.kid
    keys.rotate()
    revoked = service.revoke(ALICE, consent.id)
    jwks = _published(keys)
    assert verify_receipt(consent.receipt, jwks)["consent"]["id"] == consent.id
    assert verify_receipt(revoked.receipt, jwks)["consent"]["id"] == revoked.id
    assert jwt.get_unverified_header(consent.receipt)["kid"] == old_kid
    assert jwt.get_unverified_header(revoked.receipt)["kid"] == keys.signing_key.kid != old_kid
