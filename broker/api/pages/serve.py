"""Serve the two web pages (`/resident`, `/auditor`) and their static assets.

The pages are plain HTML, CSS and JavaScript shipped in the package: no framework, no build
step, nothing from another origin. They talk to the API with the bearer token the user
brought, so they are served with a strict Content-Security-Policy: only our own scripts,
styles and API, no inline script, no framing. None of this is part of the API contract, so
it stays out of the OpenAPI document (schemathesis runs over that).
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, HTTPException
from fastapi.responses import FileResponse

STATIC = Path(__file__).parent / "static"

#: Everything the pages load comes from us; scripts only from files (no inline, no eval).
CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)

SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
}

#: The pages' own HTML is never cached: a new release must not meet an old page.
_PAGE_HEADERS = {**SECURITY_HEADERS, "Cache-Control": "no-store"}
#: Assets are revalidated (ETag) on every load, so a release is picked up at once.
_ASSET_HEADERS = {**SECURITY_HEADERS, "Cache-Control": "no-cache"}

_MEDIA_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".json": "application/json",
    ".svg": "image/svg+xml",
}

router = APIRouter(include_in_schema=False)


def _assets() -> dict[str, Path]:
    # A fixed table of what exists when the process starts: a request path is looked up,
    # never joined onto the directory, so no "../" can reach another file.
    return {
        path.relative_to(STATIC).as_posix(): path
        for path in STATIC.rglob("*")
        if path.is_file() and path.suffix in _MEDIA_TYPES and path.suffix != ".html"
    }


_ASSETS = _assets()


def _file(path: Path, headers: dict[str, str]) -> FileResponse:
    return FileResponse(path, media_type=_MEDIA_TYPES[path.suffix], headers=headers)


@router.get("/resident")
def resident_page() -> FileResponse:
    """The resident's page: consents, receipts, the data tracker, erasure."""
    return _file(STATIC / "resident.html", _PAGE_HEADERS)


@router.get("/auditor")
def auditor_page() -> FileResponse:
    """The auditor's page: the data-flow map, refusals, the chain's state, entries, export."""
    return _file(STATIC / "auditor.html", _PAGE_HEADERS)


@router.get("/pages/static/{name:path}")
def asset(name: str) -> FileResponse:
    """One of the pages' scripts, styles, message catalogues or icons."""
    path = _ASSETS.get(name)
    if path is None:
        raise HTTPException(404, f"no page asset {name!r}")
    return _file(path, _ASSET_HEADERS)
