"""RFC 9457 problem details: the one shape of every API error."""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from broker.registry.catalogue import (
    IncompatibleSchemaError,
    InvalidSchemaError,
    UnknownSchemaError,
    UnknownTypeError,
)
from broker.registry.stored import SchemaVersionConflictError

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
    request: Request, status: int, detail: str, type_: str = "about:blank", **extra: Any
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
        body.model_dump(exclude_none=True), status_code=status, media_type=PROBLEM_JSON
    )


def install(app: FastAPI) -> None:
    """Turn every error the app can raise into problem details."""

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return problem_response(request, exc.status_code, str(exc.detail))

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
