"""CKAN's action API, its read verbs (`/api/3/action/...`), over the open datasets, so that CKAN
harvesters and national catalogues can harvest them.

It answers as CKAN does, not as the rest of this API: ``{"help", "success", "result"}``, and
errors with ``success: false`` and CKAN's error object (``__type`` "Not Found Error" 404,
"Validation Error" 409 with the field's messages, an unknown action 400), because that is what
CKAN clients parse; an RFC 9457 problem would reach them as an unknown error. Parameters come
as a query (GET) or a JSON object (POST, as CKAN clients send them). Not in ``/openapi.json``:
its shape is CKAN's (https://docs.ckan.org/en/latest/api/).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from broker.api.problems import ProblemError
from broker.api.routes.opendata import (
    MEDIA_TYPES,
    attribution,
    base_url,
    charge_open_data,
    dataset_url,
    download_url,
)
from broker.api.services import Services, services_of
from broker.settings import Settings
from broker.views.opendata import DATASETS, PDL_ID, PDL_TITLE, PDL_URL, Dataset

PREFIX = "/api/3/action"

#: Where CKAN answers the action API: with the API version, and without (as ckanapi calls it).
PREFIXES = (PREFIX, "/api/action")

#: The largest body of an action call (its parameters).
MAX_BODY = 16 * 1024

#: package_search's page size: CKAN's default and its ceiling.
DEFAULT_ROWS = 10
MAX_ROWS = 1000

router = APIRouter(include_in_schema=False)  # mounted under each of PREFIXES


class CkanError(Exception):
    """An action refused, as CKAN words it: HTTP status and CKAN's error object."""

    def __init__(self, status: int, error: dict[str, Any]) -> None:
        super().__init__(error)
        self.status = status
        self.error = error


def not_found(message: str) -> CkanError:
    """CKAN's NotFound (404)."""
    return CkanError(404, {"__type": "Not Found Error", "message": f"Not found: {message}"})


def invalid(field: str, message: str) -> CkanError:
    """CKAN's ValidationError (409), naming the field."""
    return CkanError(409, {"__type": "Validation Error", field: [message]})


def _organization(settings: Settings, full: bool) -> dict[str, Any] | str:
    name = settings.opendata_organization
    if not full:
        return name
    return {
        "id": name,
        "name": name,
        "title": settings.opendata_publisher,
        "display_name": settings.opendata_publisher,
        "description": settings.opendata_publisher_en,
        "type": "organization",
        "is_organization": True,
        "state": "active",
        "approval_status": "approved",
        "image_url": "",
        "package_count": len(DATASETS),
    }


def package(settings: Settings, ds: Dataset, base: str) -> dict[str, Any]:
    """A dataset as CKAN's package dictionary, with one resource per download format."""
    cite = attribution(settings, ds, base)
    extras = [{"key": "attribution", "value": cite}, {"key": "title_en", "value": ds.title_en}]
    if ds.conforms_to:
        extras.append({"key": "conforms_to", "value": ds.conforms_to})
    return {
        "id": ds.name,
        "name": ds.name,
        "title": ds.title_ja,
        "notes": f"{ds.description}\n\n{cite}",
        "url": dataset_url(base, ds.name),
        "license_id": PDL_ID,
        "license_title": PDL_TITLE,
        "license_url": PDL_URL,
        "author": settings.opendata_publisher,
        "maintainer": settings.opendata_publisher,
        "owner_org": settings.opendata_organization,
        "organization": _organization(settings, True),
        "private": False,
        "state": "active",
        "type": "dataset",
        "tags": [{"name": k, "display_name": k, "state": "active"} for k in ds.keywords],
        "num_tags": len(ds.keywords),
        "extras": extras,
        "resources": [
            {
                "id": f"{ds.name}-{fmt}",
                "package_id": ds.name,
                "name": f"{ds.title_ja} ({fmt.upper()})",
                "url": download_url(base, ds.name, fmt),
                "format": fmt.upper(),
                "mimetype": media,
                "state": "active",
                "position": position,
            }
            for position, (fmt, media) in enumerate(MEDIA_TYPES.items())
        ],
        "num_resources": len(MEDIA_TYPES),
    }


def _natural(params: Mapping[str, Any], name: str, default: int, ceiling: int) -> int:
    raw = params.get(name, default)
    try:
        value = int(raw)
    except (TypeError, ValueError):
        raise invalid(name, f"Invalid integer: {raw!r}; give a whole number") from None
    if value < 0:
        raise invalid(name, "Must be a natural number (0 or more)")
    return min(value, ceiling)


def _flag(params: Mapping[str, Any], name: str) -> bool:
    raw = params.get(name, False)
    return raw is True or str(raw).lower() in ("true", "1", "yes")


def _matches(ds: Dataset, terms: list[str]) -> bool:
    text = " ".join((ds.name, ds.title_ja, ds.title_en, ds.description, *ds.keywords)).lower()
    return all(term in text for term in terms)


def package_list(settings: Settings, base: str, params: Mapping[str, Any]) -> Any:
    """The names of every dataset."""
    return [ds.name for ds in DATASETS]


def package_show(settings: Settings, base: str, params: Mapping[str, Any]) -> Any:
    """One dataset by name (or id, the same here)."""
    wanted = params.get("id") or params.get("name_or_id")
    if not wanted:
        raise invalid("id", "Missing value: give the dataset's name as id")
    for ds in DATASETS:
        if ds.name == wanted:
            return package(settings, ds, base)
    raise not_found(f"no dataset {wanted!r}; package_list names them")


def package_search(settings: Settings, base: str, params: Mapping[str, Any]) -> Any:
    """Datasets whose name, titles, description or tags hold every word of ``q``."""
    q = str(params.get("q") or "").strip()
    terms = [] if q in ("", "*:*") else q.lower().split()
    rows = _natural(params, "rows", DEFAULT_ROWS, MAX_ROWS)
    start = _natural(params, "start", 0, len(DATASETS))
    found = [ds for ds in DATASETS if _matches(ds, terms)]
    return {
        "count": len(found),
        "results": [package(settings, ds, base) for ds in found[start : start + rows]],
        "sort": "score desc, metadata_modified desc",
        "facets": {},
        "search_facets": {},
    }


def organization_list(settings: Settings, base: str, params: Mapping[str, Any]) -> Any:
    """The one organization: the publishing municipality (names, or dicts with all_fields)."""
    return [_organization(settings, _flag(params, "all_fields"))]


def help_show(settings: Settings, base: str, params: Mapping[str, Any]) -> Any:
    """What an action does (the ``help`` every answer points to)."""
    name = str(params.get("name") or "")
    verb = ACTIONS.get(name)
    if verb is None:
        raise not_found(f"no action {name!r}; this catalogue answers {', '.join(ACTIONS)}")
    return verb.__doc__


ACTIONS: Mapping[str, Callable[[Settings, str, Mapping[str, Any]], Any]] = {
    "package_list": package_list,
    "package_show": package_show,
    "package_search": package_search,
    "organization_list": organization_list,
    "help_show": help_show,
}


def _answer(base: str, action: str, status: int, **body: Any) -> JSONResponse:
    help_url = f"{base}{PREFIX}/help_show?name={action}"
    return JSONResponse({"help": help_url, **body}, status_code=status)


async def _params(request: Request) -> dict[str, Any]:
    params: dict[str, Any] = dict(request.query_params)
    if request.method == "POST":
        raw = await request.body()
        if raw.strip():
            try:
                body = json.loads(raw)
            except ValueError as exc:
                raise CkanError(
                    400, {"message": f"Bad request - JSON Error: {exc}; send a JSON object"}
                ) from exc
            if not isinstance(body, dict):
                raise CkanError(
                    400, {"message": "Bad request - JSON Error: send the parameters as an object"}
                )
            params.update(body)
    return params


@router.api_route("/{action}", methods=["GET", "POST"])
async def action(action: str, request: Request) -> JSONResponse:
    """One CKAN action, answered in CKAN's envelope."""
    services: Services = services_of(request.app)
    base = base_url(request)
    try:
        try:
            charge_open_data(request, services)
        except ProblemError as exc:
            raise CkanError(
                429, {"__type": "Rate Limit Error", "message": str(exc.detail)}
            ) from exc
        verb = ACTIONS.get(action)
        if verb is None:
            raise CkanError(
                400,
                {
                    "message": f"Bad request - Action name not known: {action}; "
                    f"this catalogue answers {', '.join(ACTIONS)}"
                },
            )
        result = verb(services.settings, base, await _params(request))
    except CkanError as exc:
        response = _answer(base, action, exc.status, success=False, error=exc.error)
        if exc.status == 429 and isinstance(exc.__cause__, ProblemError):
            response.headers.update(exc.__cause__.headers or {})
        return response
    return _answer(base, action, 200, success=True, result=result)
