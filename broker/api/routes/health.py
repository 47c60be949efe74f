"""Liveness and readiness for orchestrators and `make run`."""

from __future__ import annotations

from fastapi import APIRouter, Response
from pydantic import BaseModel
from sqlalchemy import text

from broker.api.deps import ServicesDep

router = APIRouter(tags=["health"])


class Health(BaseModel):
    """The state of one process and what it depends on."""

    status: str
    checks: dict[str, str] = {}
    #: Seconds since a check that is reused for a while (the bus's) was made.
    age_s: dict[str, float] = {}


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
    # Read at most every TSUNAGU_BUS_PROBE_INTERVAL_S: probes must not load a production Kafka.
    bus = services.bus_probe.check()
    checks["bus"] = bus.result
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
    return Health(
        status="ok" if ready else "unavailable", checks=checks, age_s={"bus": round(bus.age_s, 3)}
    )
