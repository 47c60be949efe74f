"""HTTP ingest: the CloudEvents HTTP binding, in structured, batch and binary content mode."""

from __future__ import annotations

import uuid
from typing import Any

import orjson
from fastapi import APIRouter, HTTPException, Request
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from broker.api.deps import GatewayDep
from broker.api.identity import AsConnector
from broker.api.problems import Problem, ProblemError, malformed_json
from broker.ingest.gateway import EventResult, Outcome
from contract import cloudevents
from contract.deadletter import DeadLetterReason

router = APIRouter(prefix="/v1/events", tags=["ingest"])

STRUCTURED = "application/cloudevents+json"
BATCH = "application/cloudevents-batch+json"
#: Binary mode's data, which Content-Type names (``datacontenttype``): ours is always JSON.
BINARY_DATA = cloudevents.DEFAULT_DATA_CONTENT_TYPE


class IngestReceipt(BaseModel):
    """The answer to an ingest request: counts and a result per event."""

    accepted: int
    duplicates: int
    rejected: int
    results: list[EventResult]


_EXAMPLE = {
    "specversion": "1.0",
    "id": "odt-20250612-000123",
    "source": "urn:tsunagu:connector:mitoyo-ondemand",
    "type": "transport.trip.completed",
    "subject": "res-a1b2c3d4",
    "time": "2025-06-12T09:58:02+09:00",
    "datacontenttype": "application/json",
    "dataschema": "urn:tsunagu:schema:transport.trip.completed:v1",
    "data": {"...": "see GET /v1/schemas/transport.trip.completed/versions/latest"},
}


@router.post(
    "",
    status_code=202,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                STRUCTURED: {"schema": {"type": "object"}, "example": _EXAMPLE},
                BATCH: {"schema": {"type": "array", "items": {"type": "object"}}},
            },
        }
    },
    responses={
        400: {
            "model": Problem,
            "description": "The body is not JSON, a batch is not an array, or a binary-mode "
            "header is missing or not valid (the problem names it)",
        },
        401: {"model": Problem, "description": "No bearer token, or not a valid one"},
        403: {"model": Problem, "description": "The token's role is not connector"},
        413: {"model": Problem, "description": "The body is over the configured limit"},
        415: {
            "model": Problem,
            "description": "Neither a CloudEvents JSON media type nor binary mode with JSON data",
        },
    },
)
async def ingest(
    request: Request,
    gateway: GatewayDep,
    connector: AsConnector,
) -> IngestReceipt:
    """Accept CloudEvents; each is checked like on the bus, and a bad one is dead-lettered.

    The connector's token registers it for the CloudEvents `source`s it publishes as and the
    event types it publishes (`event_types`: exact, or `<domain>.*`): an event from any other
    source is rejected (`source_not_allowed`), one of any other type (`not_authorized`), and
    dead-lettered and audited.

    Three content modes of the CloudEvents HTTP binding: structured (one event as
    `application/cloudevents+json`), batch (a JSON array of them as
    `application/cloudevents-batch+json`) and binary (the attributes in `ce-*` headers, e.g.
    `ce-specversion: 1.0`, `ce-id`, `ce-source`, `ce-type`, `ce-subject`, `ce-time`,
    `ce-dataschema`; the data as an `application/json` body). A binary request whose headers
    do not make a valid envelope is a 400 problem naming the header.
    """
    content_type = request.headers.get("content-type", "")
    media_type = content_type.split(";", 1)[0].strip().lower()
    binary: dict[str, str] = {}
    if media_type not in (STRUCTURED, BATCH):
        try:
            binary = cloudevents.http_binary_attributes(request.headers.raw)
        except cloudevents.EnvelopeError as exc:
            raise ProblemError(400, "invalid-envelope", str(exc)) from None
        if not binary:
            raise HTTPException(
                415,
                f"content type must be {STRUCTURED} or {BATCH}, or binary mode (ce-* headers "
                f"with a {BINARY_DATA} body), not {media_type or 'missing'!r}",
            )
        if media_type not in (BINARY_DATA, ""):
            raise HTTPException(
                415,
                f"binary mode carries the event's data as {BINARY_DATA}: send the data as "
                f"JSON with Content-Type: {BINARY_DATA}, not {media_type!r}",
            )
    body = await request.body()  # its size is capped as it streams in (broker.api.limits)
    origin = uuid.uuid4().hex[:12]
    try:
        parsed: Any = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        await run_in_threadpool(
            gateway.reject_body,
            body,
            DeadLetterReason.NOT_JSON,
            f"not JSON: {exc}",
            origin,
            connector.subject,
        )
        raise ProblemError(400, "malformed-json", malformed_json(body, exc.pos, exc.msg)) from None
    if media_type == BATCH and not isinstance(parsed, list):
        detail = f"a batch is a JSON array of CloudEvents, not {type(parsed).__name__}"
        await run_in_threadpool(
            gateway.reject_body,
            body,
            DeadLetterReason.INVALID_ENVELOPE,
            detail,
            origin,
            connector.subject,
        )
        raise ProblemError(400, "invalid-envelope", detail)
    if binary:
        docs = [cloudevents.binary_document(binary, content_type or None, parsed)]
    else:
        docs = parsed if media_type == BATCH else [parsed]
    # The verified token goes on with the events: the worker checks what it ingests.
    token = request.headers.get("authorization", "").partition(" ")[2].strip()
    results = await run_in_threadpool(gateway.submit, docs, origin, connector, token)
    if binary:
        _refuse_bad_headers(results[0])
    return _receipt(results)


def _refuse_bad_headers(result: EventResult) -> None:
    """A binary-mode event whose headers make no valid envelope is a problem naming the
    header (it is dead-lettered and audited all the same, like any refused event)."""
    if result.status is not Outcome.REJECTED or result.reason is not (
        DeadLetterReason.INVALID_ENVELOPE
    ):
        return
    header = cloudevents.http_header_of((result.path or "/").removeprefix("/"))
    raise ProblemError(400, "invalid-envelope", f"binary mode, {header}: {result.detail}")


def _receipt(results: list[EventResult]) -> IngestReceipt:
    return IngestReceipt(
        accepted=sum(r.status is Outcome.ACCEPTED for r in results),
        duplicates=sum(r.status is Outcome.DUPLICATE for r in results),
        rejected=sum(r.status is Outcome.REJECTED for r in results),
        results=results,
    )
