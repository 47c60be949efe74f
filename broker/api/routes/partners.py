"""The municipality's register of partner firms and the purposes each is approved for."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter
from pydantic import BaseModel, Field

from broker.api.deps import AuditDep, ConsentDep
from broker.api.identity import AsAdmin
from broker.api.problems import Problem
from broker.audit import AuditLog, EntryKind
from consent.service import ConsentService

router = APIRouter(
    prefix="/v1/partners",
    tags=["partners (admin)"],
    responses={
        401: {"model": Problem, "description": "No bearer token, or not a valid one"},
        403: {"model": Problem, "description": "The token's role is not admin"},
    },
)


class PartnerIn(BaseModel):
    """A partner firm to register."""

    id: str | None = Field(
        default=None, description="Wanted id (generated when absent)", examples=["ptn-mitoyo-odt"]
    )
    name_ja: str = Field(min_length=1, max_length=200, examples=["三豊オンデマンド交通"])
    name_en: str = Field(min_length=1, max_length=200, examples=["Mitoyo On-Demand Transport"])
    webhook_url: str | None = Field(
        default=None,
        max_length=2000,
        description="Where revocations and expiries are notified (signed, retried)",
    )


class ApprovalOut(BaseModel):
    """One approval of a purpose for a partner."""

    purpose: str
    approved_by: str
    approved_at: datetime
    revoked_by: str | None
    revoked_at: datetime | None


class PartnerOut(BaseModel):
    """A registered partner and its standing approvals."""

    id: str
    name_ja: str
    name_en: str
    webhook_url: str | None
    created_at: datetime
    approvals: list[ApprovalOut]


class PurposeIn(BaseModel):
    """A purpose to approve, from the purpose catalogue."""

    purpose: str = Field(examples=["transport.planning"])


def _out(service: ConsentService, partner_id: str, *, withdrawn: bool = False) -> PartnerOut:
    partner = service.partner(partner_id)
    return PartnerOut(
        id=partner.id,
        name_ja=partner.name_ja,
        name_en=partner.name_en,
        webhook_url=partner.webhook_url,
        created_at=partner.created_at,
        approvals=[
            ApprovalOut(
                purpose=a.purpose,
                approved_by=a.approved_by,
                approved_at=a.approved_at,
                revoked_by=a.revoked_by,
                revoked_at=a.revoked_at,
            )
            for a in service.approvals(partner_id, include_withdrawn=withdrawn)
        ],
    )


@router.post(
    "",
    status_code=201,
    responses={
        400: {"model": Problem, "description": "The body cannot be read (not UTF-8)"},
        409: {"model": Problem},
        422: {"model": Problem},
    },
)
def register(audit: AuditDep, body: PartnerIn, service: ConsentDep, admin: AsAdmin) -> PartnerOut:
    """Register a partner firm."""
    partner = service.register_partner(
        body.name_ja, body.name_en, partner_id=body.id, webhook_url=body.webhook_url
    )
    _record(audit, admin.subject, "partner_registered", partner.id)
    return _out(service, partner.id)


@router.get("")
def list_partners(service: ConsentDep, admin: AsAdmin) -> list[PartnerOut]:
    """Every registered partner with its standing approvals."""
    return [_out(service, p.id) for p in service.partners()]


@router.get("/{partner_id}", responses={404: {"model": Problem}})
def get_partner(partner_id: str, service: ConsentDep, admin: AsAdmin) -> PartnerOut:
    """One partner, with the history of its approvals (withdrawn ones included)."""
    return _out(service, partner_id, withdrawn=True)


@router.post(
    "/{partner_id}/purposes",
    status_code=201,
    responses={
        400: {"model": Problem, "description": "The body cannot be read (not UTF-8)"},
        404: {"model": Problem},
        409: {"model": Problem},
        422: {"model": Problem},
    },
)
def approve(
    audit: AuditDep, partner_id: str, body: PurposeIn, service: ConsentDep, admin: AsAdmin
) -> PartnerOut:
    """Approve a purpose for the partner (residents may then consent to it)."""
    service.approve_purpose(partner_id, body.purpose, approved_by=admin.subject)
    _record(audit, admin.subject, "purpose_approved", f"{partner_id}/{body.purpose}")
    return _out(service, partner_id)


@router.delete(
    "/{partner_id}/purposes/{purpose}",
    responses={
        404: {"model": Problem},
        409: {"model": Problem},
        422: {"model": Problem, "description": "Unknown purpose, or not approved for the partner"},
    },
)
def withdraw(
    audit: AuditDep, partner_id: str, purpose: str, service: ConsentDep, admin: AsAdmin
) -> PartnerOut:
    """Withdraw an approval: every read for that purpose is refused from the next request."""
    service.withdraw_purpose(partner_id, purpose, withdrawn_by=admin.subject)
    _record(audit, admin.subject, "purpose_withdrawn", f"{partner_id}/{purpose}")
    return _out(service, partner_id)


def _record(audit: AuditLog, operator: str, action: str, target: str) -> None:
    """The admin change, naming the operator, stored before the answer (the consent change
    the service records beside it names only the municipality)."""
    audit.append_now(EntryKind.ADMIN_CHANGE, actor=operator, action=action, target=target)
