"""Liveness and readiness for orchestrators and `make run`."""

from __future__ import annotations

from fastapi import APIRouter, Response
from pydantic import BaseModel
from sqlalchemy import text

from broker.api.deps import ServicesDep
from contract.domains import DOMAINS

router = APIRouter(tags=["health"])


class Health(BaseModel):
    """The state of one process and what it depends on."""

    status: str
    checks: dict[str, str] = {}


@router.get("/healthz")
def healthz() -> Health:
    """The process is alive."""
    return Health(status="ok")


@router.get("/readyz", responses={503: {"model": Health}})
def readyz(services: ServicesDep, response: Response) -> Health:
    """The store and the bus answer, and the ingest worker (if any here) is running."""
    checks: dict[str, str] = {}
    try:
        with services.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        checks["store"] = "ok"
    except Exception as exc:  # any failure means not ready; say which
        checks["store"] = f"failing: {exc.__class__.__name__}"
    try:
        # The platform's own topic: with TSUNAGU_TOPIC_PREFIX the bare name does not exist.
        services.bus.end_offsets(services.settings.topic_prefix + DOMAINS.topics()[0])
        checks["bus"] = "ok"
    except Exception as exc:
        checks["bus"] = f"failing: {exc.__class__.__name__}"
    # The ingest worker of this platform, when one runs beside this API (in this process, or
    # in the main process of a multi-process `tsunagu up`): stopped, or stalled on a batch.
    heartbeat, worker = services.readiness.heartbeat, services.readiness.worker
    if heartbeat is not None:
        checks["ingest"] = heartbeat.judge()
    if worker is not None and not worker.is_alive():
        checks["ingest"] = "failing: the ingest worker stopped"
    ready = all(v == "ok" for v in checks.values())
    if not ready:
        response.status_code = 503
    return Health(status="ok" if ready else "unavailable", checks=checks)
