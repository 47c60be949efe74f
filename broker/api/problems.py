"""RFC 9457 problem details: the one shape of every API error."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
from fastapi.routing import iter_route_contexts
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from broker.regionid.errors import (
    ClientAuthenticationError,
    ExpiredLinkCodeError,
    LinkedElsewhereError,
    LinkError,
    NotLinkedError,
    SpentLinkCodeError,
    UnknownLinkCodeError,
)
from broker.registry.catalogue import IncompatibleSchemaError, InvalidSchemaError
from broker.registry.stored import SchemaVersionConflictError
from broker.views.statistics import (
    FilterError,
    KBelowMinimumError,
    MonthNotClosedError,
    PeriodError,
    PurposeNotServedError,
    StatisticsRuleError,
)
from consent.errors import ConsentError
from contract.catalogue import UnknownSchemaError, UnknownTypeError

#: HTTP status of each consent error code; a code not listed is a 422.
CONSENT_STATUS = {
    "consent_not_found": 404,
    "unknown_partner": 404,
    "partner_exists": 409,
    "invalid_transition": 409,
    "concurrent_change": 409,
    "not_property_owner": 403,
    "partner_not_registered": 403,
    "read_not_approved": 403,
    "key_store_error": 500,
}

#: Status and problem type of each statistics rule's refusal.
STATISTICS_PROBLEMS: dict[type[StatisticsRuleError], tuple[int, str]] = {
    PurposeNotServedError: (403, "purpose-not-served"),
    KBelowMinimumError: (422, "k-below-minimum"),
    PeriodError: (422, "invalid-period"),
    MonthNotClosedError: (422, "month-not-published"),
    FilterError: (422, "invalid-filter"),
}
#: The problem type of a statistics rule's refusal not listed above.
STATISTICS_REFUSED = (422, "statistics-refused")

#: Status and problem type of each ID link refusal.
LINK_PROBLEMS: dict[type[LinkError], tuple[int, str]] = {
    UnknownLinkCodeError: (404, "unknown-link-code"),
    ExpiredLinkCodeError: (410, "link-code-expired"),
    SpentLinkCodeError: (409, "link-code-spent"),
    LinkedElsewhereError: (409, "linked-elsewhere"),
    NotLinkedError: (404, "not-linked"),
}
#: The problem type of an ID link refusal not listed above.
LINK_REFUSED = (422, "link-refused")

PROBLEM_JSON = "application/problem+json"

#: Every problem type's URI is ``urn:tsunagu:problem:<kind>``; its title names the kind.
PROBLEM_URN = "urn:tsunagu:problem:"

#: The title of each kind of problem the API answers (RFC 9457 §3.1.3: a short summary of the
#: problem type, the same for every occurrence). A kind not listed (a consent error's code) is
#: titled from its name.
TITLES = {
    "malformed-json": "The body is not valid JSON",
    "invalid-request": "A parameter or the body does not fit the operation",
    "unusable-url": "The URL cannot be served",
    "no-such-route": "No such route",
    "method-not-allowed": "Method not allowed on this route",
    "unsupported-media-type": "Unsupported content type",
    "unauthorized": "Bearer token missing or not valid",
    "forbidden-role": "The token's role may not do this",
    "rate-limited": "Over the caller's rate limit",
    "body-too-large": "Request body too large",
    "unknown-event-type": "Unknown event type",
    "unknown-schema-version": "Unknown schema version",
    "version-conflict": "Schema version registered concurrently",
    "invalid-schema": "Not a valid JSON Schema",
    "incompatible-schema": "Schema not compatible with the latest version",
    "invalid-cursor": "Cursor not valid for this query",
    "invalid-period": "Invalid period",
    "unknown-category": "Unknown data category",
    "unknown-pseudonym": "Unknown resident pseudonym",
    "purpose-not-served": "Purpose not served by this statistic",
    "k-below-minimum": "k below the platform's minimum",
    "month-not-published": "Month not published yet",
    "invalid-filter": "A filter of the statistic's cells breaks its field's rule",
    "listing-refused": "Vacant-house listings refused",
    "unknown-dataset": "No open dataset of that name",
    "audit-unavailable": "The audit log cannot be written",
    "invalid-envelope": "Not a CloudEvents envelope",
    "invalid-time-zone": "Unknown time zone",
    "too-many-buckets": "Too many bars for the period",
    "unknown-link-code": "No such link code",
    "link-code-expired": "Link code expired",
    "link-code-spent": "Link code already used",
    "linked-elsewhere": "The service's account is linked to another resident",
    "not-linked": "No link with that service",
    "link-refused": "ID link refused",
    "client-unauthenticated": "Client credentials missing or wrong",
    "server-error": "Internal server error",
}

#: The kind of an HTTP error raised without one (Starlette's own 404 and 405, mostly).
KIND_OF_STATUS = {
    400: "invalid-request",
    401: "unauthorized",
    403: "forbidden-role",
    404: "no-such-route",
    405: "method-not-allowed",
    413: "body-too-large",
    415: "unsupported-media-type",
    422: "invalid-request",
    429: "rate-limited",
    503: "audit-unavailable",
}


def consent_kind(code: str) -> str:
    """The problem kind of a consent error's ``code`` (``not_property_owner`` →
    ``not-property-owner``)."""
    return code.replace("_", "-")


def _consent_errors() -> Iterator[type[ConsentError]]:
    """ConsentError and every subclass of it loaded (the app loads them all)."""
    pending: list[type[ConsentError]] = [ConsentError]
    while pending:
        cls = pending.pop()
        yield cls
        pending.extend(cls.__subclasses__())


def problem_kinds() -> frozenset[str]:
    """Every kind of problem the API can answer: the titled ones, those known by their status,
    the statistics rules' and every consent error's. The pages translate each of them."""
    statistics = {kind for _, kind in STATISTICS_PROBLEMS.values()} | {STATISTICS_REFUSED[1]}
    statistics |= {kind for _, kind in LINK_PROBLEMS.values()} | {LINK_REFUSED[1]}
    consent = {consent_kind(cls.code) for cls in _consent_errors()}
    return frozenset(TITLES) | frozenset(KIND_OF_STATUS.values()) | statistics | consent


def title_of(kind: str) -> str:
    """The title of problem ``kind``: from ``TITLES``, else its name as words."""
    return TITLES.get(kind) or kind.replace("-", " ").replace("_", " ").capitalize()


class ProblemError(HTTPException):
    """An HTTP error of a named kind: a problem ``urn:tsunagu:problem:<kind>``."""

    def __init__(
        self, status: int, kind: str, detail: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(status, detail, headers=headers)
        self.kind = kind


class Problem(BaseModel):
    """An RFC 9457 problem details document."""

    type: str = Field(examples=["urn:tsunagu:problem:invalid-cursor"])
    title: str
    status: int
    detail: str
    instance: str | None = None
    errors: list[dict[str, Any]] | None = None


def problem_response(
    request: Request,
    status: int,
    detail: str,
    kind: str,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:
    """A problem+json response of type ``urn:tsunagu:problem:<kind>``, titled after it."""
    body = Problem(
        type=PROBLEM_URN + kind,
        title=title_of(kind),
        status=status,
        detail=detail,
        instance=request.url.path,
        **extra,
    )
    return JSONResponse(
        body.model_dump(exclude_none=True),
        status_code=status,
        media_type=PROBLEM_JSON,
        headers=headers,
    )


def declare_problems(app: FastAPI) -> None:
    """Declare every 4xx/5xx in the OpenAPI document as what it is: problem+json.

    FastAPI files ``model=Problem`` responses under ``application/json`` and adds a default
    422 with its own shape, which this app never sends; clients and contract tests would
    then read error bodies against the wrong media type or schema.
    """

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            doc = get_openapi(
                title=app.title,
                version=app.version,
                description=app.description,
                routes=app.routes,
                tags=app.openapi_tags,
                servers=app.servers,
            )
            for item in doc.get("paths", {}).values():
                for operation in item.values():
                    for status, response in operation.get("responses", {}).items():
                        if status[:1] in ("4", "5"):
                            response["content"] = {PROBLEM_JSON: {"schema": dict(_PROBLEM_REF)}}
            schemas = doc.setdefault("components", {}).setdefault("schemas", {})
            schemas.pop("HTTPValidationError", None)
            schemas.pop("ValidationError", None)
            schemas.setdefault("Problem", Problem.model_json_schema())
            app.openapi_schema = doc
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


_PROBLEM_REF = {"$ref": "#/components/schemas/Problem"}


#: A moment every date parameter accepts, shown when one is refused.
MOMENT_EXAMPLE = "2026-04-01T00:00:00+09:00"

#: What to change, by pydantic error type, where its own message does not say.
HINTS = {
    "timezone_aware": f"give the zone, e.g. {MOMENT_EXAMPLE} or 2026-03-31T15:00:00Z",
    "datetime_parsing": f"send an RFC 3339 date and time with its zone, e.g. {MOMENT_EXAMPLE}",
    "datetime_from_date_parsing": (
        f"send an RFC 3339 date and time with its zone, e.g. {MOMENT_EXAMPLE}"
    ),
    "datetime_type": f"send an RFC 3339 date and time with its zone, e.g. {MOMENT_EXAMPLE}",
}


def malformed_json(text: str | bytes, position: int, why: str) -> str:
    """Where a JSON body broke: line, column and character offset, and the parser's reason."""
    before = text[:position]
    if isinstance(before, bytes):
        before = before.decode("utf-8", "replace")
    line = before.count("\n") + 1
    column = len(before) - (before.rfind("\n") + 1) + 1
    return (
        f"the body is not valid JSON: {why} at line {line}, column {column} (character "
        f"{position}); send one JSON document (RFC 8259), e.g. check quotes and commas there"
    )


def _validation_problem(request: Request, exc: RequestValidationError) -> JSONResponse:
    """400 for a body that is not JSON; 422 naming each parameter that does not fit."""
    for error in exc.errors():
        if error.get("type") == "json_invalid":
            loc = error.get("loc", ())
            position = loc[-1] if loc and isinstance(loc[-1], int) else 0
            why = str(error.get("ctx", {}).get("error", "not JSON"))
            detail = malformed_json(exc.body if exc.body is not None else "", position, why)
            return problem_response(request, 400, detail, "malformed-json")
    errors = []
    for e in exc.errors():
        message = e["msg"]
        if e["type"] in HINTS:
            message = f"{message}: {HINTS[e['type']]}"
        errors.append({"location": "/".join(str(p) for p in e["loc"]), "message": message})
    first = errors[0] if errors else {"location": "", "message": "invalid request"}
    return problem_response(
        request, 422, f"{first['location']}: {first['message']}", "invalid-request", errors=errors
    )


def _no_route(request: Request) -> str:
    """A 404 without a route: what is there instead, near the path asked for."""
    path = request.url.path
    known = sorted({c.path for c in iter_route_contexts(request.app.routes) if c.path})
    parent = path.rstrip("/").rsplit("/", 1)[0]
    while parent:  # not up to the root: that would list every route
        near = [p for p in known if p.startswith(parent + "/") and p != path]
        if near:
            return (
                f"there is no {path}; under {parent}/ there are: {', '.join(near)} "
                "(the OpenAPI document at /openapi.json lists every operation)"
            )
        parent = parent.rsplit("/", 1)[0]
    return f"there is no {path}; the OpenAPI document at /openapi.json lists every operation"


def http_problem(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    """An HTTP error as a problem of its kind (named, or known by its status)."""
    headers = getattr(exc, "headers", None)
    kind = getattr(exc, "kind", None) or KIND_OF_STATUS.get(exc.status_code, "server-error")
    detail = str(exc.detail)
    if not isinstance(exc, ProblemError):
        # Starlette's own answers ("Not Found", "Method Not Allowed") say nothing to change.
        if exc.status_code == 404 and detail == "Not Found":
            detail = _no_route(request)
        elif exc.status_code == 405 and detail == "Method Not Allowed":
            allowed = (headers or {}).get("Allow", "")
            if "GET" in allowed.split(", "):
                allowed += ", HEAD"  # broker.api.edge.HeadAsGet answers it wherever GET is
                headers = {**(headers or {}), "Allow": allowed}
            detail = f"{request.method} is not allowed on {request.url.path}; use {allowed}"
    return problem_response(request, exc.status_code, detail, kind, headers=headers)


def install(app: FastAPI) -> None:
    """Turn every error the app can raise into problem details."""
    declare_problems(app)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return http_problem(request, exc)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        return _validation_problem(request, exc)

    @app.exception_handler(UnknownTypeError)
    async def _unknown_type(request: Request, exc: UnknownTypeError) -> JSONResponse:
        return problem_response(request, 404, str(exc), "unknown-event-type")

    @app.exception_handler(UnknownSchemaError)
    async def _unknown_schema(request: Request, exc: UnknownSchemaError) -> JSONResponse:
        return problem_response(request, 404, str(exc), "unknown-schema-version")

    @app.exception_handler(ConsentError)
    async def _consent(request: Request, exc: ConsentError) -> JSONResponse:
        return problem_response(
            request, CONSENT_STATUS.get(exc.code, 422), str(exc), consent_kind(exc.code)
        )

    @app.exception_handler(StatisticsRuleError)
    async def _statistics(request: Request, exc: StatisticsRuleError) -> JSONResponse:
        status, kind = STATISTICS_PROBLEMS.get(type(exc), STATISTICS_REFUSED)
        return problem_response(request, status, str(exc), kind)

    @app.exception_handler(LinkError)
    async def _link(request: Request, exc: LinkError) -> JSONResponse:
        status, kind = LINK_PROBLEMS.get(type(exc), LINK_REFUSED)
        return problem_response(request, status, str(exc), kind)

    @app.exception_handler(ClientAuthenticationError)
    async def _client(request: Request, exc: ClientAuthenticationError) -> JSONResponse:
        headers = {"WWW-Authenticate": 'Basic realm="regionid"'}
        return problem_response(request, 401, str(exc), "client-unauthenticated", headers)

    @app.exception_handler(InvalidSchemaError)
    async def _invalid_schema(request: Request, exc: InvalidSchemaError) -> JSONResponse:
        return problem_response(request, 422, str(exc), "invalid-schema")

    @app.exception_handler(SchemaVersionConflictError)
    async def _conflict(request: Request, exc: SchemaVersionConflictError) -> JSONResponse:
        return problem_response(request, 409, str(exc), "version-conflict")

    @app.exception_handler(IncompatibleSchemaError)
    async def _incompatible(request: Request, exc: IncompatibleSchemaError) -> JSONResponse:
        return problem_response(
            request,
            409,
            str(exc),
            "incompatible-schema",
            errors=[
                {"kind": p.kind.value, "location": p.path, "message": p.message}
                for p in exc.problems
            ],
        )
