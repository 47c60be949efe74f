"""The API's documentation pages, `/docs` (Swagger UI) and `/redoc`, served offline.

FastAPI's own pages load Swagger UI, ReDoc, a favicon and fonts from CDNs: on a municipal
network without the internet (or behind a strict proxy) they are blank. The same assets ship
in the ``fastapi-offline`` wheel; they are served from it here, under ``/docs/assets``.
"""

from __future__ import annotations

from importlib.resources import files

from fastapi import FastAPI
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.staticfiles import StaticFiles
from starlette.requests import Request
from starlette.responses import HTMLResponse

#: Where the Swagger UI and ReDoc assets are served.
ASSETS = "/docs/assets"


def install(app: FastAPI) -> None:
    """Serve `/docs` and `/redoc` with assets from the package (make the app with
    ``docs_url=None, redoc_url=None``: these replace FastAPI's CDN-bound pages)."""
    assets = str(files("fastapi_offline") / "static")
    app.mount(ASSETS, StaticFiles(directory=assets), name="docs-assets")

    async def swagger(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_swagger_ui_html(
            openapi_url=f"{root}{app.openapi_url}",
            title=f"{app.title} - Swagger UI",
            swagger_js_url=f"{root}{ASSETS}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{ASSETS}/swagger-ui.css",
            swagger_favicon_url=f"{root}{ASSETS}/favicon.png",
        )

    async def redoc(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_redoc_html(
            openapi_url=f"{root}{app.openapi_url}",
            title=f"{app.title} - ReDoc",
            redoc_js_url=f"{root}{ASSETS}/redoc.standalone.js",
            redoc_favicon_url=f"{root}{ASSETS}/favicon.png",
            with_google_fonts=False,
        )

    # Plain routes, as FastAPI adds its own docs: outside the OpenAPI document, and GET
    # routes of Starlette answer HEAD too.
    app.add_route("/docs", swagger, include_in_schema=False)
    app.add_route("/redoc", redoc, include_in_schema=False)
