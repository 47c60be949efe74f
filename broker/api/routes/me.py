"""The resident's own API: my consents, their history and receipts; grant, pause, resume,
revoke. The resident is the token's subject: nobody acts on another's consents here.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, Response
from pydantic import BaseModel, Field

from broker.api.deps import AuditDep, ConsentDep, ServicesDep
from broker.api.identity import AsResident
from broker.api.moments import Moment
from broker.api.problems import Problem
from broker.audit import EntryKind
from broker.audit.tracker import After, TrackedRead, reads_of
from broker.views import cursors
from consent.erasure import ErasureRecord, erase
from consent.errors import ConsentNotFoundError
from consent.model import Consent

router = APIRouter(
    prefix="/v1/me",
    tags=["resident"],
    responses={
        401: {"model": Problem, "description": "No bearer token, or not a valid one"},
        403: {"model": Problem, "description": "The token's role is not resident"},
    },
)

JOSE = "application/jose"


class ConsentOut(BaseModel):
    """One version of a consent, with its status now and its signed receipt."""

    id: str
    subject_kind: str
    partner_id: str
    purpose: str
    categories: list[str]
    valid_from: datetime
    expires_at: datetime
    data_from: datetime | None
    data_to: datetime | None
    status: str = Field(description="active, paused, revoked or expired (derived from expiry)")
    change: str = Field(description="What made this version: granted, amended, paused, ...")
    version: int
    created_at: datetime
    supersedes: str | None
    superseded_by: str | None
    receipt: str = Field(description="Compact JWS (EdDSA); verify with /.well-known/jwks.json")

    @classmethod
    def of(cls, consent: Consent, now: datetime) -> ConsentOut:
        """The API shape of a stored consent."""
        return cls(
            **consent.model_dump(exclude={"status", "subject_id"}),
            status=consent.effective_status(now),
        )


class GrantIn(BaseModel):
    """A consent to grant (it supersedes the current one of the same partner and purpose)."""

    partner_id: str = Field(examples=["ptn-mitoyo-odt"])
    purpose: str = Field(examples=["transport.planning"])
    categories: list[str] = Field(min_length=1, examples=[["transport.trips"]])
    expires_at: Moment = Field(examples=["2027-03-31T23:59:59+09:00"])
    valid_from: Moment | None = None
    data_from: Moment | None = Field(
        default=None, description="Only data from this time on may be read"
    )
    data_to: Moment | None = Field(
        default=None, description="Only data before this time may be read"
    )


@router.get("/consents")
def my_consents(me: AsResident, service: ConsentDep) -> list[ConsentOut]:
    """My current consents, one per partner and purpose, whatever their status."""
    now = datetime.now(UTC)
    return [ConsentOut.of(c, now) for c in service.current(me.subject)]


@router.get("/consents/history")
def my_history(me: AsResident, service: ConsentDep) -> list[ConsentOut]:
    """Every version of every consent I gave, oldest first."""
    now = datetime.now(UTC)
    return [ConsentOut.of(c, now) for c in service.history(me.subject)]


@router.get("/consents/categories")
def my_grantable_categories(me: AsResident, service: ConsentDep) -> list[str]:
    """The data categories I may consent to: the owner details only if I own a vacant house
    (the same rule that refuses a grant of them)."""
    return sorted(service.grantable_categories(me.subject))


@router.post(
    "/consents",
    status_code=201,
    responses={
        400: {"model": Problem, "description": "The body cannot be read (not UTF-8)"},
        403: {"model": Problem, "description": "Owner categories from someone owning no house"},
        404: {"model": Problem, "description": "No such partner"},
        422: {"model": Problem, "description": "Unknown purpose or category, bad dates, ..."},
    },
)
def grant(body: GrantIn, me: AsResident, service: ConsentDep) -> ConsentOut:
    """Grant a consent; the answer carries its signed receipt."""
    consent = service.grant(
        me.subject,
        body.partner_id,
        body.purpose,
        body.categories,
        expires_at=body.expires_at,
        valid_from=body.valid_from,
        data_from=body.data_from,
        data_to=body.data_to,
    )
    return ConsentOut.of(consent, datetime.now(UTC))


_CHANGE_RESPONSES: dict[int | str, dict[str, object]] = {
    404: {"model": Problem, "description": "No such consent of mine"},
    409: {"model": Problem, "description": "Superseded, or not in a state allowing this"},
}


@router.post("/consents/{consent_id}/pause", responses=_CHANGE_RESPONSES)
def pause(consent_id: str, me: AsResident, service: ConsentDep) -> ConsentOut:
    """Pause an active consent: reads are refused until I resume it."""
    return ConsentOut.of(service.pause(me.subject, consent_id), datetime.now(UTC))


@router.post("/consents/{consent_id}/resume", responses=_CHANGE_RESPONSES)
def resume(consent_id: str, me: AsResident, service: ConsentDep) -> ConsentOut:
    """Resume a paused consent."""
    return ConsentOut.of(service.resume(me.subject, consent_id), datetime.now(UTC))


@router.post("/consents/{consent_id}/revoke", responses=_CHANGE_RESPONSES)
def revoke(consent_id: str, me: AsResident, service: ConsentDep) -> ConsentOut:
    """Revoke a consent: refused from the next request in every process; the partner is told."""
    return ConsentOut.of(service.revoke(me.subject, consent_id), datetime.now(UTC))


@router.get(
    "/consents/{consent_id}/receipt",
    response_class=Response,
    responses={
        200: {"content": {JOSE: {"schema": {"type": "string"}}}},
        404: {"model": Problem, "description": "No such consent of mine"},
    },
)
def receipt(consent_id: str, me: AsResident, service: ConsentDep) -> Response:
    """The consent's signed receipt (compact JWS), to keep and verify offline."""
    consent = service.get(consent_id)
    if consent.subject_id != me.subject:
        raise ConsentNotFoundError(f"no consent {consent_id!r} of {me.subject}")
    return Response(
        consent.receipt,
        media_type=JOSE,
        headers={"Content-Disposition": f'attachment; filename="{consent_id}.jws"'},
    )


class ErasureOut(BaseModel):
    """What an erasure did; the record kept names no one (only a salted digest)."""

    id: str
    subject_digest: str = Field(description="SHA-256 of your id with the salt below")
    digest_salt: str = Field(description="Keep it: with your id it proves this record is yours")
    requested_at: datetime
    completed_at: datetime
    consents_revoked: int
    key_destroyed: bool = Field(description="False when your key was already destroyed before")
    rows_deleted: dict[str, int] = Field(
        description="Per table, rows deleted (or, for consents, scrubbed of your id); "
        "bus_records: records holding your id deleted from the embedded bus"
    )
    copies_expire_at: datetime | None = Field(
        description="When the last copy outside the platform's reach expires: events and "
        "dead letters on the bus, kept at most its retention (Kafka cannot delete a record)"
    )

    @classmethod
    def of(cls, record: ErasureRecord) -> ErasureOut:
        """The API shape of an erasure record."""
        return cls(
            id=record.id,
            subject_digest=record.subject_digest,
            digest_salt=record.digest_salt,
            requested_at=record.requested_at,
            completed_at=record.completed_at,
            consents_revoked=record.consents_revoked,
            key_destroyed=record.key_destroyed,
            rows_deleted=record.rows_deleted,
            copies_expire_at=record.copies_expire_at,
        )


@router.post("/erasure", status_code=200)
def erase_me(services: ServicesDep, me: AsResident) -> ErasureOut:
    """Erase my data: revoke my consents (partners are notified), destroy my key, delete my
    rows. Afterwards nothing about me can be read or decrypted, backups of the store included.
    """
    record = erase(
        me.subject,
        vault=services.vault,
        store=services.engine,
        # Not the resident's id: the record must not say whom it erased.
        requested_by="the resident, through /v1/me/erasure",
        consent_service=services.consent,
        bus=services.bus,
        bus_retention_s=services.settings.bus_retention_s,
        pseudonym=services.pseudonyms.of,
    )
    services.audit.append_now(
        EntryKind.ERASURE,
        actor="resident",
        erasure_id=record.id,
        consents_revoked=record.consents_revoked,
        key_destroyed=record.key_destroyed,
        rows_deleted={str(table): n for table, n in record.rows_deleted.items()},
    )
    return ErasureOut.of(record)


class AccessOut(BaseModel):
    """One read of my data by a partner, from the audit log."""

    seq: int = Field(description="The audit entry's position in the hash chain")
    at: datetime
    partner: str
    purpose: str
    categories: list[str]
    view: str | None = None
    consent_ids: list[str] = []
    rows: int | None = None

    @classmethod
    def of(cls, read: TrackedRead) -> AccessOut:
        """The API shape of a tracked read."""
        return cls(
            seq=read.seq,
            at=read.at,
            partner=read.partner,
            purpose=read.purpose,
            categories=read.categories,
            view=read.view,
            consent_ids=read.consent_ids,
            rows=read.rows,
        )


class AccessPage(BaseModel):
    """One page of the reads of my data, newest first."""

    reads: list[AccessOut]
    next_cursor: str | None = Field(
        description="Pass as `cursor` (with the same `from` and `to`) for older reads; null "
        "after the oldest"
    )


@router.get(
    "/access-log",
    responses={
        400: {"model": Problem, "description": "The cursor is not one of my list's pages"},
        422: {"model": Problem, "description": "A malformed period, `from` not before `to`"},
    },
)
def my_access_log(
    audit: AuditDep,
    me: AsResident,
    since: Annotated[
        Moment | None,
        Query(alias="from", description="Only reads at or after this time; default: all"),
    ] = None,
    until: Annotated[
        Moment | None, Query(alias="to", description="Only reads before this time; default: now")
    ] = None,
    cursor: Annotated[
        str | None,
        Query(description="`next_cursor` of the previous page; absent for the newest reads"),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> AccessPage:
    """Who read my data: every partner read of it, newest first, when, for which purpose and
    categories, under which consents (the data tracker); a page at a time, within a period."""
    if since is not None and until is not None and since >= until:
        raise HTTPException(422, "`from` must be before `to`: swap them, or leave one out")
    key = audit.refs.cursor_key(me.subject)
    scope = f"tracker:{since}:{until}"
    after = None
    if cursor is not None:
        try:
            position = cursors.decode(cursor, scope, key=key)
        except cursors.InvalidCursorError as exc:
            raise HTTPException(400, str(exc)) from None
        after = After(position.at, int(position.id))
    page = reads_of(
        audit.engine,
        audit.refs.of(me.subject),
        since=since,
        until=until,
        after=after,
        limit=limit,
    )
    return AccessPage(
        reads=[AccessOut.of(read) for read in page.reads],
        next_cursor=None
        if page.next is None
        else cursors.encode(cursors.Position(page.next.at, str(page.next.seq)), scope, key=key),
    )
