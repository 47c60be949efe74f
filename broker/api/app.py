"""The FastAPI application: routes, error shapes, metrics."""

from __future__ import annotations

from fastapi import Response
from prometheus_client import CONTENT_TYPE_LATEST

from broker.api import docs, pages, problems
from broker.api.edge import HeadAsGet, UsableUrl, declare_refusals
from broker.api.limits import BodyLimit, TokenBuckets
from broker.api.metrics import RequestMetrics, exposition
from broker.api.recording import ReadRecorder
from broker.api.routes import (
    audit,
    ckan,
    events,
    health,
    links,
    me,
    opendata,
    partner_views,
    partners,
    regionid,
    schemas,
    statistics,
    wellknown,
)
from broker.api.services import Readiness, Services, TsunaguAPI
from broker.audit.monitor import ChainMonitor
from broker.bus.probe import BusProbe
from broker.runtime import Platform
from contract.domains import DOMAINS

#: The largest request body outside HTTP ingest (a consent, a partner, a schema).
API_MAX_BODY_BYTES = 256 * 1024

DESCRIPTION = """\
Tsunagu (つなぐ) is a regional data-linkage platform: service companies publish events under
shared JSON Schemas, residents decide who may read them, municipalities audit every flow.

Every error is an RFC 9457 problem details document (`application/problem+json`).

Callers present a JWT bearer token (`Authorization: Bearer ...`) whose `role` claim is one of
connector, partner, resident, auditor or admin: 401 without a valid token, 403 for a role the
operation is not for. The embedded platform issues its own tokens (`tsunagu token issue`).
"""


def create_app(platform: Platform, readiness: Readiness | None = None) -> TsunaguAPI:
    """The API over one platform's services; ``readiness`` names the ingest worker that
    ``/readyz`` reports on, when one runs in or beside this process."""
    settings = platform.settings
    services = Services(
        settings=settings,
        engine=platform.engine,
        bus=platform.bus,
        registry=platform.registry,
        stored_registry=platform.stored,
        gateway=platform.gateway(),
        verifier=platform.identity.verifier,
        issuer=platform.identity.issuer,
        keys=platform.keys,
        catalogue=platform.decisions.catalogue,
        consent=platform.consent,
        decisions=platform.decisions,
        vault=platform.vault,
        pseudonyms=platform.pseudonyms,
        audit=platform.audit,
        recorder=ReadRecorder(platform.audit, inline=settings.inline_reads),
        # The platform's own when it verifies the chain in the background; else one made
        # here answers the auditors (it starts nothing: it verifies when asked).
        chain_monitor=platform.chain_monitor or ChainMonitor(platform.engine, platform.keys),
        partner_buckets=TokenBuckets(settings.partner_rate_per_s, settings.partner_burst),
        schema_check_buckets=TokenBuckets(
            settings.schema_check_rate_per_s, settings.schema_check_burst
        ),
        opendata_buckets=TokenBuckets(settings.opendata_rate_per_s, settings.opendata_burst),
        sign_in_buckets=TokenBuckets(
            settings.regionid_sign_in_rate_per_s, settings.regionid_sign_in_burst
        ),
        readiness=readiness or Readiness(),
        # The platform's own topic: with TSUNAGU_TOPIC_PREFIX the bare name does not exist.
        bus_probe=BusProbe(
            platform.bus,
            settings.topic_prefix + DOMAINS.topics()[0],
            settings.bus_probe_interval_s,
        ),
        regionid=platform.regionid,
    )
    app = TsunaguAPI(
        services,
        title="Tsunagu broker API",
        version="0.1.0",
        description=DESCRIPTION,
        docs_url=None,  # served offline by broker.api.docs instead
        redoc_url=None,
    )
    problems.install(app)
    docs.install(app)
    app.include_router(health.router)
    app.include_router(schemas.router)
    app.include_router(events.router)
    app.include_router(wellknown.router)
    app.include_router(partners.router)
    app.include_router(me.router)
    app.include_router(links.router)
    app.include_router(partner_views.router)
    app.include_router(statistics.router)
    app.include_router(audit.router)
    app.include_router(opendata.router)
    for prefix in ckan.PREFIXES:
        app.include_router(ckan.router, prefix=prefix)
    app.include_router(pages.router)
    app.include_router(regionid.router)
    # HTTP ingest has its own, larger limit; every other body is small.
    app.add_middleware(
        BodyLimit,
        limit=API_MAX_BODY_BYTES,
        limits={
            "/v1/events": platform.settings.http_max_body_bytes,
            **dict.fromkeys(ckan.PREFIXES, ckan.MAX_BODY),
            regionid.PREFIX: regionid.MAX_BODY,
        },
        # Their clients POST forms without a bearer token: CKAN's and the region ID's.
        anonymous=frozenset({*ckan.PREFIXES, regionid.PREFIX}),
    )
    app.add_middleware(UsableUrl)
    declare_refusals(app)
    # Inside the metrics: a HEAD is counted as the GET it runs as.
    app.add_middleware(HeadAsGet)
    # Added last, so outermost: it counts and times the other middlewares' answers (413) too.
    app.add_middleware(RequestMetrics)

    @app.get("/metrics", tags=["health"], response_class=Response)
    def metrics() -> Response:
        """Prometheus metrics of this process (of every API process, when there are several)."""
        return Response(exposition(), media_type=CONTENT_TYPE_LATEST)

    return app
