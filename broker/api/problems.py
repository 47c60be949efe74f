"""RFC 9457 problem details: the one shape of every API error."""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from broker.registry.catalogue import IncompatibleSchemaError, InvalidSchemaError
from broker.registry.stored import SchemaVersionConflictError
from broker.views.statistics import (
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
}

PROBLEM_JSON = "application/problem+json"


class Problem(BaseModel):
    """An RFC 9457 problem details document."""

    type: str = "about:blank"
    title: str
    status: int
    detail: str
    instance: str | None = None
    errors: list[dict[str, Any]] | None = None


def problem_response(
    request: Request,
    status: int,
    detail: str,
    type_: str = "about:blank",
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:
    """A problem+json response with the standard title for ``status``."""
    body = Problem(
        type=type_,
        title=HTTPStatus(status).phrase,
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


def install(app: FastAPI) -> None:
    """Turn every error the app can raise into problem details."""
    declare_problems(app)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return problem_response(
            request, exc.status_code, str(exc.detail), headers=getattr(exc, "headers", None)
        )

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {"location": "/".join(str(p) for p in e["loc"]), "message": e["msg"]}
            for e in exc.errors()
        ]
        first = errors[0] if errors else {"location": "", "message": "invalid request"}
        return problem_response(
            request, 422, f"{first['location']}: {first['message']}", errors=errors
        )

    @app.exception_handler(UnknownTypeError)
    @app.exception_handler(UnknownSchemaError)
    async def _unknown(request: Request, exc: Exception) -> JSONResponse:
        return problem_response(request, 404, str(exc))

    @app.exception_handler(ConsentError)
    async def _consent(request: Request, exc: ConsentError) -> JSONResponse:
        return problem_response(
            request,
            CONSENT_STATUS.get(exc.code, 422),
            str(exc),
            type_=f"urn:tsunagu:problem:{exc.code.replace('_', '-')}",
        )

    @app.exception_handler(StatisticsRuleError)
    async def _statistics(request: Request, exc: StatisticsRuleError) -> JSONResponse:
        status, kind = STATISTICS_PROBLEMS.get(type(exc), (422, "statistics-refused"))
        return problem_response(request, status, str(exc), type_=f"urn:tsunagu:problem:{kind}")

    @app.exception_handler(InvalidSchemaError)
    async def _invalid_schema(request: Request, exc: InvalidSchemaError) -> JSONResponse:
        return problem_response(request, 422, str(exc), type_="urn:tsunagu:problem:invalid-schema")

    @app.exception_handler(SchemaVersionConflictError)
    async def _conflict(request: Request, exc: SchemaVersionConflictError) -> JSONResponse:
        return problem_response(request, 409, str(exc))

    @app.exception_handler(IncompatibleSchemaError)
    async def _incompatible(request: Request, exc: IncompatibleSchemaError) -> JSONResponse:
        return problem_response(
            request,
            409,
            str(exc),
            type_="urn:tsunagu:problem:incompatible-schema",
            errors=[
                {"kind": p.kind.value, "location": p.path, "message": p.message}
                for p in exc.problems
            ],
        )
