"""The FastAPI application: routes, error shapes, metrics."""

from __future__ import annotations

from fastapi import FastAPI, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from broker.api import problems
from broker.api.admin import admin_token
from broker.api.routes import events, health, schemas
from broker.runtime import Platform

DESCRIPTION = """\
Tsunagu (つなぐ) is a regional data-linkage platform: service companies publish events under
shared JSON Schemas, residents decide who may read them, municipalities audit every flow.

Every error is an RFC 9457 problem details document (`application/problem+json`).
"""


def create_app(platform: Platform) -> FastAPI:
    """The API over one platform's store, bus and registry."""
    app = FastAPI(title="Tsunagu broker API", version="0.1.0", description=DESCRIPTION)
    app.state.engine = platform.engine
    app.state.bus = platform.bus
    app.state.registry = platform.registry
    app.state.stored_registry = platform.stored
    app.state.admin_token = admin_token(platform.settings)
    app.state.settings = platform.settings
    app.state.gateway = platform.gateway()
    problems.install(app)
    app.include_router(health.router)
    app.include_router(schemas.router)
    app.include_router(events.router)

    @app.get("/metrics", tags=["health"], response_class=Response)
    def metrics() -> Response:
        """Prometheus metrics of this process."""
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return app
