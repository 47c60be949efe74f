"""The schema registry over HTTP: every event type, version and compatibility check."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from broker.api.deps import AuditDep, RegistryDep, ServicesDep, StoredRegistryDep
from broker.api.identity import Principal, Role, require
from broker.api.limits import charge
from broker.api.problems import Problem
from broker.audit import EntryKind
from broker.registry.catalogue import SchemaRegistry, meta_errors
from broker.registry.compatibility.report import CompatibilityMode
from contract.catalogue import UnknownSchemaError, UnknownTypeError
from contract.domains import DOMAINS

router = APIRouter(prefix="/v1/schemas", tags=["schemas"])


class SchemaType(BaseModel):
    """An event type with its versions."""

    type: str
    compatibility: CompatibilityMode
    versions: list[int]
    latest: str
    breaking: dict[int, str] = Field(
        default_factory=dict,
        description="Versions published as breaking changes (a new major), with why; events "
        "of earlier versions stay readable under their own version",
    )
    deprecated: dict[int, date] = Field(
        default_factory=dict,
        description="Versions superseded by a breaking change, each with the last day its "
        "events are accepted; after it they are dead-lettered as unknown_schema",
    )


class CompatibilityProblem(BaseModel):
    """One breaking change."""

    kind: str
    location: str
    message: str


class CompatibilityResult(BaseModel):
    """Whether a proposed schema could become the next version."""

    type: str
    compatibility: CompatibilityMode
    is_compatible: bool
    problems: list[CompatibilityProblem]


def _describe(registry: SchemaRegistry, event_type: str) -> SchemaType:
    versions = registry.versions(event_type)
    return SchemaType(
        type=event_type,
        compatibility=registry.mode(event_type),
        versions=[v.version for v in versions],
        latest=versions[-1].urn,
        breaking=registry.breaking(event_type),
        deprecated={
            v.version: until
            for v in versions
            if (until := registry.deprecations.get((event_type, v.version))) is not None
        },
    )


@router.get("")
def list_types(registry: RegistryDep) -> list[SchemaType]:
    """Every event type the platform accepts, with its versions."""
    return [_describe(registry, t) for t in registry.types()]


@router.get(
    "/{event_type}", responses={404: {"model": Problem, "description": "No such event type"}}
)
def get_type(event_type: str, registry: RegistryDep) -> SchemaType:
    """One event type's versions and compatibility mode."""
    return _describe(registry, event_type)


@router.get(
    "/{event_type}/versions/{version}",
    responses={
        200: {"content": {"application/schema+json": {}}},
        404: {"model": Problem, "description": "No such event type, or no such version of it"},
    },
)
def get_version(event_type: str, version: str, registry: RegistryDep) -> JSONResponse:
    """One version's JSON Schema (``latest`` for the newest)."""
    number = None if version == "latest" else _version_number(version)
    found = registry.get(event_type, number)
    return JSONResponse(dict(found.schema), media_type="application/schema+json")


class RegisteredVersion(BaseModel):
    """A version the registry accepted."""

    type: str
    version: int
    id: str


@router.post(
    "/{event_type}/versions",
    status_code=201,
    responses={
        400: {"model": Problem, "description": "The body cannot be read (not UTF-8)"},
        401: {"model": Problem, "description": "No bearer token, or not a valid one"},
        403: {"model": Problem, "description": "The token's role is not admin"},
        404: {"model": Problem, "description": "Not <domain>.<entity>.<action> of a known domain"},
        409: {"model": Problem, "description": "Not compatible; each breaking change named"},
        422: {"model": Problem, "description": "Not a valid JSON Schema 2020-12 document"},
    },
)
def register_version(
    audit: AuditDep,
    event_type: str,
    stored: StoredRegistryDep,
    schema: Annotated[dict[str, Any], Body(description="The new version's JSON Schema")],
    admin: Annotated[Principal, Depends(require(Role.ADMIN))],
) -> RegisteredVersion:
    """Register the next version of a type, if it is compatible under the type's mode."""
    domain = event_type.split(".", 1)[0]
    if domain not in DOMAINS or event_type.count(".") != 2:
        raise UnknownTypeError(
            f"{event_type!r} is not <domain>.<entity>.<action> with a domain of "
            f"{', '.join(DOMAINS.names())}"
        )
    version = stored.register(event_type, schema)
    audit.append_now(
        EntryKind.ADMIN_CHANGE,
        actor=admin.subject,
        action="schema_registered",
        target=version.urn,
    )
    return RegisteredVersion(type=event_type, version=version.version, id=version.urn)


async def schema_checker(
    services: ServicesDep,
    caller: Annotated[Principal, Depends(require(Role.CONNECTOR, Role.ADMIN))],
) -> Principal:
    """A connector or admin with a token left in its bucket of compatibility checks (429)."""
    charge(services.schema_check_buckets, caller, caller.role, "compatibility checks")
    return caller


@router.post(
    "/{event_type}/compatibility",
    responses={
        400: {"model": Problem, "description": "The body cannot be read (not UTF-8)"},
        401: {"model": Problem, "description": "No bearer token, or not a valid one"},
        403: {"model": Problem, "description": "The token's role is not connector or admin"},
        404: {"model": Problem, "description": "No such event type"},
        422: {"model": Problem, "description": "The body is not a JSON object"},
        429: {"model": Problem, "description": "Over the caller's rate; see Retry-After"},
    },
)
def check_compatibility(
    event_type: str,
    registry: RegistryDep,
    schema: Annotated[dict[str, Any], Body(description="The proposed JSON Schema")],
    caller: Annotated[Principal, Depends(schema_checker)],
) -> CompatibilityResult:
    """Would this schema be accepted as the next version? Changes nothing.

    For the firms that publish (connector) and the operator (admin), rate-limited per caller:
    each check compares two whole schemas. The proposed schema's patterns run on RE2, in
    time linear in the names they are matched against.
    """
    errors = meta_errors(schema)
    problems = [CompatibilityProblem(kind="invalid_schema", location="", message=e) for e in errors]
    if not errors:
        problems = [
            CompatibilityProblem(kind=p.kind.value, location=p.path, message=p.message)
            for p in registry.problems(event_type, schema)
        ]
    return CompatibilityResult(
        type=event_type,
        compatibility=registry.mode(event_type),
        is_compatible=not problems,
        problems=problems,
    )


def _version_number(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise UnknownSchemaError(f"version must be a positive integer or 'latest', not {text!r}")
    return int(text)
