"""Serving the API: in the process that runs the platform, or in extra processes beside it.

``tsunagu up`` with ``TSUNAGU_API_PROCESSES`` > 1 starts that many processes on the port, each
with its own socket (``broker.api.processes``); each has uvicorn call ``app_for_process`` to
open its own platform (store, bus, vault,
consent cache with its change listener) — every consent change reaches each of them through
``consent.changes`` like any other process. The ingest worker stays in the main process.
"""

from __future__ import annotations

import gc
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio.to_thread
from fastapi import FastAPI

from broker.api.app import create_app
from broker.api.services import Readiness
from broker.ingest.heartbeat import Heartbeat
from broker.runtime import Platform
from broker.settings import Settings

SWITCH_INTERVAL_S = 0.001


def configure_serving(
    app: FastAPI, threads: int, on_shutdown: Callable[[], None] | None = None
) -> None:
    """Cap the threads serving blocking routes (a few threads contend less for the GIL), and
    call ``on_shutdown`` when the server stops."""
    previous = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[Any]:
        anyio.to_thread.current_default_thread_limiter().total_tokens = threads
        # The event loop, the store threads and the audit writer share one GIL: hand it over
        # every millisecond rather than every 5, so the loop waits less behind a busy thread.
        sys.setswitchinterval(SWITCH_INTERVAL_S)
        # Everything built so far (modules, app, caches) lives as long as the process: out of
        # the collector's sight, a full collection no longer stops every request in flight
        # for 60-80 ms to walk it (measured with ops/bench/api.py).
        gc.collect()
        gc.freeze()
        try:
            async with previous(app) as state:
                yield state
        finally:
            if on_shutdown is not None:
                on_shutdown()

    app.router.lifespan_context = lifespan


def app_for_process(readiness: Readiness | None = None) -> FastAPI:
    """A whole API process: its own platform, closed when the server stops (uvicorn factory)."""
    settings = Settings()
    platform = Platform.open(settings)
    platform.start_consent_threads()
    app = create_app(platform, readiness)
    configure_serving(app, settings.api_threads, on_shutdown=platform.close)
    return app


def app_beside_ingest() -> FastAPI:
    """An API process of `tsunagu up`, whose readiness includes the ingest worker running in
    the main process (uvicorn factory)."""
    settings = Settings()
    heartbeat = Heartbeat.in_data_dir(settings.data_dir, stall_s=settings.ingest_stall_s)
    return app_for_process(Readiness(heartbeat=heartbeat))
