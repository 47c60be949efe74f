"""Prometheus over HTTP: the API's request metrics (a pure ASGI middleware), /metrics for
the processes that run no API (the worker, a connector), and the API's several processes.

With ``TSUNAGU_API_PROCESSES`` > 1 each API process writes its metrics to files in one
directory (prometheus-client's multiprocess mode, ``PROMETHEUS_MULTIPROC_DIR``), and whichever
process answers /metrics adds them all up: counters never go backwards between two scrapes
answered by different processes.

Requests are labelled by the route's template (``/v1/partner/residents/{resident}/activity``),
never the concrete path: one series per resident would swamp Prometheus. Paths no route
matches are ``other``, and so are methods outside HTTP's usual few (clients may send anything).
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from pathlib import Path
from typing import Any

from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    start_http_server,
)
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead
from starlette.routing import Match, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from broker.audit.metrics import AUDIT

log = logging.getLogger(__name__)

REQUESTS = Counter(
    "tsunagu_http_requests_total",
    "HTTP requests answered, by route template, method and status",
    ["route", "method", "status"],
)
REQUEST_SECONDS = Histogram(
    "tsunagu_http_request_seconds",
    "Time from a request's arrival to the end of its response, by route template and method",
    ["route", "method"],
    # Finer than the default at the low end: the views' target is p99 <= 50 ms.
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
UNMATCHED = "other"
#: prometheus-client reads its multiprocess directory from this variable when it is imported.
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


class RequestMetrics:
    """Counts and times every HTTP request; install it outermost to time the others too."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        # Label children by label values: labels() costs ~1 µs, a dict lookup ~50 ns.
        self._counts: dict[tuple[str, str, str], Any] = {}
        self._times: dict[tuple[str, str], Any] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # what the server answers when the app fails before responding

        async def send_and_note(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        finally:
            self._observe(scope, status, time.perf_counter() - started)

    def _observe(self, scope: Scope, status: int, seconds: float) -> None:
        method = scope["method"] if scope["method"] in _METHODS else UNMATCHED
        route = route_template(scope)
        timer = self._times.get((route, method))
        if timer is None:
            timer = self._times[route, method] = REQUEST_SECONDS.labels(route, method)
        timer.observe(seconds)
        key = (route, method, str(status))
        counter = self._counts.get(key)
        if counter is None:
            counter = self._counts[key] = REQUESTS.labels(*key)
        counter.inc()


def route_template(scope: Scope) -> str:
    """The template of the route that handled the request (after it ran), or ``other``."""
    # The router records the route it chose in the scope (Starlette, FastAPI's own routes).
    route = scope.get("route")
    template = getattr(route, "path_format", None)
    if isinstance(template, str):
        return template
    # Routes FastAPI adds by itself (/docs, /openapi.json) are plain Starlette routes it does
    # not record: match them here (only the app's top-level ones; never for a mount).
    app = scope.get("app")
    for candidate in getattr(getattr(app, "router", None), "routes", ()):
        if type(candidate) is Route and candidate.matches(scope)[0] is not Match.NONE:
            return candidate.path_format
    return UNMATCHED


def serve_metrics(host: str, port: int, what: str) -> bool:
    """Serve this process's /metrics on ``host:port`` (0: none); whether it does.

    A port already taken is logged, not raised: a worker or connector without metrics is
    better than one that does not run (e.g. a second worker started on the same machine).
    """
    if not port:
        return False
    try:
        start_http_server(port, addr=host)
    except OSError as exc:
        log.error("%s: no /metrics: port %s:%d is not free (%s)", what, host, port, exc)
        return False
    return True


def share_between_processes(data_dir: Path) -> Path:
    """Make the processes started from now on write their metrics to files under
    ``data_dir`` (emptied: counts of an earlier run must not add up into this one's)."""
    directory = data_dir / "metrics"
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    # Only processes started after this (spawned: a fresh interpreter) read it at import.
    os.environ[MULTIPROC_ENV] = str(directory)
    return directory


def process_ended(pid: int) -> None:
    """Drop the live-only gauges of an API process that ended (its counters stay counted)."""
    if os.environ.get(MULTIPROC_ENV):
        mark_process_dead(pid)  # type: ignore[no-untyped-call]


def exposition() -> bytes:
    """The /metrics text: this process's, or every API process's in multiprocess mode."""
    if not os.environ.get(MULTIPROC_ENV):
        return generate_latest(REGISTRY)
    registry = CollectorRegistry()
    MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    # The audit head is read from the store at scrape time: the same from any process.
    registry.register(AUDIT)
    return generate_latest(registry)
