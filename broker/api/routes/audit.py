"""The auditor's API: the log filtered, the data-flow map, refusals over time, the chain's
verification state, and exports that verify offline. Role auditor only.

Nothing here is personal: entries name residents only by their audit reference (an HMAC),
and the map and the timeline are counts.
"""

from __future__ import annotations

import os
import tempfile
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Annotated, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import orjson
from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import FileResponse
from pydantic import BaseModel, Field
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool

from broker.api.deps import AuditDep, ChainMonitorDep, EngineDep, ServicesDep
from broker.api.identity import AsAuditor
from broker.api.links import PAGED, link_next
from broker.api.moments import Moment
from broker.api.problems import Problem, ProblemError
from broker.audit import EntryKind, export_csv, export_jsonl
from broker.audit.flows import (
    Bucket,
    FlowMap,
    NodeKind,
    TooManyBucketsError,
    flow_map,
    refusals_over_time,
)
from broker.audit.queries import EntryFilter, find_entries

router = APIRouter(
    prefix="/v1/audit",
    tags=["audit"],
    responses={
        401: {"model": Problem, "description": "No bearer token, or not a valid one"},
        403: {"model": Problem, "description": "The token's role is not auditor"},
    },
)

#: The window when the caller names none.
DEFAULT_WINDOW = timedelta(hours=24)

Since = Annotated[
    Moment | None, Query(description="Window start (inclusive); default: until − 24 h")
]
Until = Annotated[Moment | None, Query(description="Window end (exclusive); default: now")]


def _window(since: datetime | None, until: datetime | None) -> tuple[datetime, datetime]:
    hi = until or datetime.now(UTC)
    lo = since or hi - DEFAULT_WINDOW
    if lo >= hi:
        raise ProblemError(
            422, "invalid-period", f"the window is empty: since {lo} is not before until {hi}"
        )
    return lo, hi


# -- entries -----------------------------------------------------------------------------------


class EntryOut(BaseModel):
    """One entry as stored: its place in the chain, what happened, and its hashes."""

    seq: int
    at: datetime
    kind: str
    actor: str
    subject_ref: str | None = Field(description="HMAC of the resident under the audit key")
    fields: dict[str, Any]
    prev_hash: str
    hash: str


class EntriesPage(BaseModel):
    """Entries newest first."""

    entries: list[EntryOut]
    next_cursor: str | None = Field(description="Pass as `cursor` for older entries; null at end")


@router.get("/entries", responses={200: PAGED, 422: {"model": Problem}})
def entries(
    request: Request,
    response: Response,
    engine: EngineDep,
    auditor: AsAuditor,
    kind: Annotated[list[EntryKind] | None, Query(description="Only these kinds")] = None,
    actor: Annotated[str | None, Query(max_length=200)] = None,
    subject_ref: Annotated[str | None, Query(max_length=64)] = None,
    since: Since = None,
    until: Until = None,
    cursor: Annotated[str | None, Query(pattern=r"^[0-9]{1,18}$")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> EntriesPage:
    """The log, newest first, filtered by kind, actor, subject reference and time."""
    page = find_entries(
        engine,
        EntryFilter(kind or (), actor, subject_ref, since, until),
        before=None if cursor is None else int(cursor),
        limit=limit,
    )
    next_cursor = None if page.before is None else str(page.before)
    link_next(request, response, next_cursor)
    return EntriesPage(
        entries=[
            EntryOut(
                seq=e.seq,
                at=datetime.fromisoformat(e.at),
                kind=e.kind,
                actor=e.actor,
                subject_ref=e.subject_ref,
                fields=orjson.loads(e.fields),
                prev_hash=e.prev_hash,
                hash=e.hash,
            )
            for e in page.entries
        ],
        next_cursor=next_cursor,
    )


# -- the data-flow map -------------------------------------------------------------------------


class NodeOut(BaseModel):
    """A connector, topic, data category or partner."""

    id: str = Field(examples=["category:transport.trips"])
    kind: NodeKind
    code: str


class EdgeOut(BaseModel):
    """A flow in the window: how much passed, how much was refused and why."""

    source: str
    target: str
    count: int = Field(description="Events (from connectors and topics) or partner reads")
    refused: int = Field(
        description="Dead-lettered events or refused consent decisions (asked for and denied)"
    )
    withheld: int = Field(
        description="Consent decisions withheld: categories of a view the partner read as a "
        "whole that its consent does not cover (not asked for; not refusals)"
    )
    reasons: dict[str, int] = Field(description="Refusals by reason")
    purposes: dict[str, int] = Field(description="Partner reads by purpose")
    last_seen: datetime | None


class FlowMapOut(BaseModel):
    """Connector → topic → data category → partner over the window."""

    since: datetime
    until: datetime
    nodes: list[NodeOut]
    edges: list[EdgeOut]

    @classmethod
    def of(cls, flows: FlowMap) -> FlowMapOut:
        """The API shape of a map."""
        return cls(
            since=flows.since,
            until=flows.until,
            nodes=[NodeOut(id=f"{k.value}:{code}", kind=k, code=code) for k, code in flows.nodes],
            edges=[
                EdgeOut(
                    source=e.source,
                    target=e.target,
                    count=e.count,
                    refused=e.refused,
                    withheld=e.withheld,
                    reasons=e.reasons,
                    purposes=e.purposes,
                    last_seen=None if e.last_seen is None else datetime.fromisoformat(e.last_seen),
                )
                for e in flows.edges
            ],
        )


@router.get("/flows", responses={422: {"model": Problem}})
def flows(
    services: ServicesDep, auditor: AsAuditor, since: Since = None, until: Until = None
) -> FlowMapOut:
    """The data-flow map: who published what, into which categories, read by which partners,
    with counts, last seen, and refusals with their reasons."""
    lo, hi = _window(since, until)
    return FlowMapOut.of(flow_map(services.engine, services.catalogue, lo, hi))


class RefusalBarOut(BaseModel):
    """Refusals in one bucket."""

    start: datetime
    refused: int = Field(description="Refused consent decisions (asked for and denied)")
    dead_letters: int = Field(description="Events refused at ingest")
    withheld: int = Field(
        description="Withheld consent decisions (not asked for, not part of the consent): "
        "not refusals, and not in `reasons`"
    )
    reasons: dict[str, int]


class RefusalsOut(BaseModel):
    """Refusals over time, every bucket of the window, zeros included."""

    bucket: Bucket
    tz: str
    since: datetime
    until: datetime
    series: list[RefusalBarOut]


@router.get("/refusals", responses={422: {"model": Problem}})
def refusals(
    engine: EngineDep,
    auditor: AsAuditor,
    since: Since = None,
    until: Until = None,
    bucket: Bucket = Bucket.HOUR,
    tz: Annotated[
        str,
        Query(max_length=64, description="IANA time zone whose hours and days the buckets are"),
    ] = "Asia/Tokyo",
) -> RefusalsOut:
    """Refused decisions and dead letters per hour or day, by reason; withheld decisions
    apart."""
    lo, hi = _window(since, until)
    try:
        zone = ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        raise ProblemError(
            422, "invalid-time-zone", f"unknown time zone {tz!r}; use an IANA name, e.g. Asia/Tokyo"
        ) from None
    try:
        bars = refusals_over_time(engine, lo, hi, bucket, zone)
    except TooManyBucketsError as exc:
        raise ProblemError(422, "too-many-buckets", str(exc)) from None
    return RefusalsOut(
        bucket=bucket,
        tz=tz,
        since=lo,
        until=hi,
        series=[
            RefusalBarOut(
                start=b.start,
                refused=b.refused,
                dead_letters=b.dead_letters,
                withheld=b.withheld,
                reasons=b.reasons,
            )
            for b in bars
        ],
    )


# -- verification and exports ------------------------------------------------------------------


class ProblemOut(BaseModel):
    """The first bad entry."""

    seq: int | None
    kind: str
    detail: str


class VerificationOut(BaseModel):
    """The chain and its checkpoints, verified against the platform's keys."""

    ok: bool
    entries: int
    checkpoints: int
    last_seq: int
    last_checkpoint_seq: int
    unsigned_tail: int = Field(description="Entries chained but not yet covered by a checkpoint")
    problem: ProblemOut | None
    verified_at: datetime


@router.get("/verification")
async def verification(
    monitor: ChainMonitorDep,
    auditor: AsAuditor,
    fresh: Annotated[
        bool, Query(description="Verify now rather than answer from ≤30 s ago")
    ] = False,
) -> VerificationOut:
    """Whether the whole chain and every checkpoint verify, and the first problem if not."""
    state = await run_in_threadpool(monitor.state, fresh=fresh)
    r = state.result
    return VerificationOut(
        ok=r.ok,
        entries=r.entries,
        checkpoints=r.checkpoints,
        last_seq=r.last_seq,
        last_checkpoint_seq=r.last_checkpoint_seq,
        unsigned_tail=r.unsigned_tail,
        problem=None
        if r.problem is None
        else ProblemOut(seq=r.problem.seq, kind=r.problem.kind.value, detail=r.problem.detail),
        verified_at=state.verified_at,
    )


class ExportFormat(StrEnum):
    """An export's format."""

    JSONL = "jsonl"
    CSV = "csv"


MEDIA = {ExportFormat.JSONL: "application/x-ndjson", ExportFormat.CSV: "text/csv; charset=utf-8"}


@router.get(
    "/export",
    response_class=FileResponse,
    responses={
        200: {
            "content": {m: {"schema": {"type": "string"}} for m in MEDIA.values()},
            "description": "The whole log up to its head",
        }
    },
)
def export(
    audit: AuditDep, engine: EngineDep, auditor: AsAuditor, format: ExportFormat
) -> FileResponse:
    """The whole log: JSON lines with checkpoints (verify offline with `tsunagu audit verify
    --export FILE --jwks jwks.json`), or CSV for reading."""
    # The head signed first, as the CLI does: a cut tail of the export cannot go unnoticed.
    audit.checkpoint()
    audit.append_now(EntryKind.AUDIT_EXPORT, actor=auditor.subject, format=format.value)
    handle, path = tempfile.mkstemp(prefix="tsunagu-audit-", suffix=f".{format.value}")
    try:
        if format is ExportFormat.JSONL:
            with os.fdopen(handle, "wb") as out:
                export_jsonl(engine, out)
        else:
            with os.fdopen(handle, "w", encoding="utf-8", newline="") as text:
                export_csv(engine, text)
    except BaseException:
        os.unlink(path)
        raise
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    return FileResponse(
        path,
        media_type=MEDIA[format],
        filename=f"tsunagu-audit-{stamp}.{format.value}",
        background=BackgroundTask(os.unlink, path),
    )
