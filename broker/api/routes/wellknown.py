"""Public, unauthenticated documents: the platform's keys and the catalogues."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict

from broker.api.deps import CatalogueDep, ConsentDep, ServicesDep

router = APIRouter(tags=["public"])


class Jwks(BaseModel):
    """A JSON Web Key Set (RFC 7517)."""

    keys: list[dict[str, Any]]


@router.get("/.well-known/jwks.json", response_model=Jwks)
def jwks(services: ServicesDep) -> dict[str, Any]:
    """The platform's public keys: receipts and webhooks (EdDSA) and embedded tokens (ES256).

    Every key that ever signed a receipt stays here, so a receipt verifies offline for ever
    with this document alone.
    """
    document: dict[str, Any] = {"keys": list(services.keys.jwks()["keys"])}
    issuer = services.issuer
    if issuer is not None:
        document["keys"] += issuer.jwks()["keys"]
    return document


class PurposeOut(BaseModel):
    """A purpose partners may be approved for."""

    model_config = ConfigDict(from_attributes=True)

    code: str
    name_ja: str
    name_en: str
    description_ja: str
    description_en: str


class CategoryOut(BaseModel):
    """A data category consents cover."""

    model_config = ConfigDict(from_attributes=True)

    code: str
    name_ja: str
    name_en: str
    description_ja: str
    description_en: str
    personal: bool
    subject: str


@router.get("/v1/catalogue/purposes")
def purposes(catalogue: CatalogueDep) -> list[PurposeOut]:
    """The purpose catalogue the municipality approves partners for."""
    return [PurposeOut.model_validate(p) for p in catalogue.purposes.values()]


@router.get("/v1/catalogue/categories")
def categories(catalogue: CatalogueDep) -> list[CategoryOut]:
    """The data categories; personal ones need a consent, public ones do not."""
    return [CategoryOut.model_validate(c) for c in catalogue.categories.values()]


class PartnerEntry(BaseModel):
    """A registered partner firm and the purposes it is approved for (public, like X-Road's
    member list: residents see whom they would consent to)."""

    id: str
    name_ja: str
    name_en: str
    purposes: list[str]


@router.get("/v1/catalogue/partners")
def partners(service: ConsentDep) -> list[PartnerEntry]:
    """Registered partners with their standing purpose approvals."""
    return [
        PartnerEntry(
            id=p.id,
            name_ja=p.name_ja,
            name_en=p.name_en,
            purposes=[a.purpose for a in service.approvals(p.id)],
        )
        for p in service.partners()
    ]
