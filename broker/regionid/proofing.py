"""How a resident's identity was proofed, and how the region ID states it: the ``acr`` of
their ID tokens, and ``verified_claims`` in the shape of OpenID Connect for Identity
Assurance 1.0 (§5) when a client asks for them with the ``claims`` parameter."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any


class Proofing(StrEnum):
    """The ways a resident's identity is proofed in the region, strongest first."""

    #: マイナンバーカード公的個人認証 (JPKI): the card's signature certificate was verified.
    MYNUMBER_CARD = "mynumber_card"
    #: 窓口確認: an official checked an identity document at the town office counter.
    COUNTER = "counter"
    #: Self-asserted: nobody checked who the resident is.
    SELF_ASSERTED = "self_asserted"


#: The ``acr`` value of each proofing (registered in the discovery document).
ACR: dict[Proofing, str] = {
    Proofing.MYNUMBER_CARD: "urn:tsunagu:regionid:acr:mynumber-card",
    Proofing.COUNTER: "urn:tsunagu:regionid:acr:counter",
    Proofing.SELF_ASSERTED: "urn:tsunagu:regionid:acr:self-asserted",
}

#: The IDA trust framework the region's proofing follows (犯罪収益移転防止法's methods).
TRUST_FRAMEWORK = "jp_aml"


@dataclass(frozen=True, slots=True)
class ProofedIdentity:
    """What the region ID knows of a resident and how it was proofed."""

    proofing: Proofing
    proofed_at: datetime | None
    name: str | None
    birthdate: str | None

    @property
    def acr(self) -> str:
        """The ``acr`` of this resident's ID tokens."""
        return ACR[self.proofing]

    def verified_claims(self) -> dict[str, Any] | None:
        """The IDA ``verified_claims`` object; None when self-asserted (nothing was verified)
        or when no claim was recorded to verify."""
        claims = {k: v for k, v in (("name", self.name), ("birthdate", self.birthdate)) if v}
        if self.proofing is Proofing.SELF_ASSERTED or not claims:
            return None
        verification: dict[str, Any] = {"trust_framework": TRUST_FRAMEWORK}
        if self.proofed_at is not None:
            verification["time"] = self.proofed_at.isoformat()
        if self.proofing is Proofing.MYNUMBER_CARD:
            evidence: dict[str, Any] = {
                "type": "electronic_signature",
                "signature_type": "jp_jpki",
                "issuer": "地方公共団体情報システム機構",
            }
        else:
            evidence = {
                "type": "document",
                "check_details": [{"check_method": "vpip"}],  # visual inspection, in person
            }
        verification["evidence"] = [evidence]
        return {"verification": verification, "claims": claims}


def wants_verified_claims(claims_request: dict[str, Any] | None, member: str) -> bool:
    """Whether the ``claims`` request parameter asks for ``verified_claims`` in ``member``
    (``id_token`` or ``userinfo``; OIDC Core §5.5)."""
    if not claims_request:
        return False
    part = claims_request.get(member)
    return isinstance(part, dict) and "verified_claims" in part
