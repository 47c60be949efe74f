"""Consent receipts: what the subject keeps, signed by the platform, verifiable offline.

A receipt is a compact JWS (alg ``Ed25519``, RFC 9864; ``typ`` ``consent-receipt+jwt``) whose
payload follows the Kantara Consent Receipt v1.1 fields that ISO/IEC TS 27560 builds on
(jurisdiction, consentTimestamp, piiPrincipalId, piiControllers, services/purposes with
piiCategory and termination, ...), plus the JWT claims ``iss``, ``sub``, ``iat``, ``jti`` and a
``consent`` object with this platform's own terms (id, status, validity, data range, supersedes).

There is no ``exp`` claim on purpose: a receipt of an expired or revoked consent stays a valid
record of what was agreed; the consent's own dates are in ``consent``.

``verify_receipt`` needs only the receipt and the platform's published JWKS: no database, no
network, no platform code beyond this module (and plain PyJWT can do the same).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import jwt

from consent.catalogue import Catalogue
from consent.errors import ReceiptInvalidError
from consent.ids import new_receipt_id
from consent.keys import JWS_ALG, Jwks, SigningKey, verifying_key
from consent.model import Consent, Partner

MEDIA_TYPE = "consent-receipt+jwt"
#: The Kantara Consent Receipt version whose fields the payload uses.
KANTARA_VERSION = "KI-CR-v1.1.0"
PROFILE = "urn:tsunagu:consent-receipt:1 (ISO/IEC TS 27560)"


@dataclass(frozen=True, slots=True)
class Controller:
    """The PII controller named on every receipt: the platform run for the municipality."""

    issuer: str = "urn:tsunagu:platform"
    name_ja: str = "つなぐ 地域データ連携基盤"
    name_en: str = "Tsunagu regional data-linkage platform"
    on_behalf: bool = True  # the platform acts for the municipality
    contact: str | None = None
    address: str | None = None
    url: str | None = None
    policy_url: str | None = None


def _iso(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def receipt_claims(
    consent: Consent,
    partner: Partner,
    catalogue: Catalogue,
    controller: Controller,
    issued_at: datetime,
) -> dict[str, Any]:
    """The receipt payload for ``consent`` (one receipt per consent row)."""
    purpose = catalogue.purpose(consent.purpose)
    categories = [catalogue.category(c) for c in consent.categories]
    receipt_id = new_receipt_id()
    party = {
        "piiController": controller.name_ja,
        "piiControllerName_en": controller.name_en,
        "onBehalf": controller.on_behalf,
        "contact": controller.contact,
        "address": controller.address,
        "piiControllerUrl": controller.url,
    }
    return {
        "iss": controller.issuer,
        "sub": consent.subject_id,
        "iat": int(issued_at.timestamp()),
        "jti": receipt_id,
        "version": KANTARA_VERSION,
        "profile": PROFILE,
        "jurisdiction": "JP",
        "consentTimestamp": int(consent.created_at.timestamp()),
        "collectionMethod": "Tsunagu resident consent service",
        "consentReceiptID": receipt_id,
        "language": "ja",
        "piiPrincipalId": consent.subject_id,
        "piiControllers": [{k: v for k, v in party.items() if v is not None}],
        **({"policyUrl": controller.policy_url} if controller.policy_url else {}),
        "legalBasis": "consent",  # APPI Art. 27(1): third-party provision with consent
        "services": [
            {
                "service": purpose.name_ja,
                "purposes": [
                    {
                        "purpose": purpose.description_ja,
                        "purposeCode": purpose.code,
                        "purposeName": {"ja": purpose.name_ja, "en": purpose.name_en},
                        "consentType": "EXPLICIT",
                        "piiCategory": [c.code for c in categories],
                        "primaryPurpose": True,
                        "termination": _iso(consent.expires_at),
                        "thirdPartyDisclosure": True,
                        "thirdPartyName": partner.name_ja,
                    }
                ],
            }
        ],
        "recipient": {"id": partner.id, "name_ja": partner.name_ja, "name_en": partner.name_en},
        "consent": {
            "id": consent.id,
            "status": consent.status,
            "change": consent.change,
            "version": consent.version,
            "subjectKind": consent.subject_kind,
            "purpose": consent.purpose,
            "categories": [
                {"code": c.code, "name_ja": c.name_ja, "name_en": c.name_en} for c in categories
            ],
            "validFrom": _iso(consent.valid_from),
            "expiresAt": _iso(consent.expires_at),
            "dataFrom": _iso(consent.data_from),
            "dataTo": _iso(consent.data_to),
            "supersedes": consent.supersedes,
            "createdAt": _iso(consent.created_at),
        },
    }


def sign_receipt(claims: dict[str, Any], key: SigningKey) -> str:
    """The compact JWS of ``claims``, signed with ``key`` (its kid in the header)."""
    return jwt.encode(
        claims, key.private_key, algorithm=JWS_ALG, headers={"kid": key.kid, "typ": MEDIA_TYPE}
    )


def verify_receipt(receipt: str, jwks: Jwks, *, issuer: str | None = None) -> dict[str, Any]:
    """The verified payload of ``receipt``, using only ``jwks``; ReceiptInvalidError otherwise."""
    try:
        header = jwt.get_unverified_header(receipt)
    except jwt.DecodeError as exc:
        raise ReceiptInvalidError("malformed", f"not a compact JWS: {exc}") from exc
    alg, key = verifying_key(jwks, header, ReceiptInvalidError)
    try:
        payload: dict[str, Any] = jwt.decode(
            receipt,
            key,
            algorithms=[alg],
            issuer=issuer,
            # iat is a record of when, not a validity window: a verifier's clock may be off.
            options={"require": ["iss", "sub", "iat", "jti"], "verify_iat": False},
        )
    except jwt.InvalidSignatureError as exc:
        raise ReceiptInvalidError("bad_signature", "the signature does not match") from exc
    except jwt.InvalidTokenError as exc:
        raise ReceiptInvalidError("bad_claims", str(exc)) from exc
    consent = payload.get("consent")
    if not isinstance(consent, dict) or payload.get("piiPrincipalId") != payload["sub"]:
        raise ReceiptInvalidError("bad_claims", "not a consent receipt")
    return payload
