"""Per-partner rate limits (429 with Retry-After) and a request-size cap for the whole API.

The bucket is per process: with N API processes behind a balancer a partner gets up to N
times the rate. That is deliberate (no shared state on the hot path) and said in the README.
"""

from __future__ import annotations

import math
import threading
import time
from typing import Annotated

from fastapi import Depends, HTTPException, Request, Response
from fastapi.security import HTTPAuthorizationCredentials
from starlette.types import ASGIApp, Receive, Scope, Send

from broker.api.identity import bearer, check_role, current_principal
from broker.api.problems import problem_response
from broker.auth.principals import Principal, Role


class TokenBuckets:
    """One token bucket per key: ``rate`` tokens a second, up to ``burst``."""

    def __init__(self, rate: float, burst: int) -> None:
        self.rate = rate
        self.burst = burst
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, updated at)
        self._lock = threading.Lock()

    def take(self, key: str, now: float | None = None) -> float:
        """Take one token; 0.0 when granted, else the seconds until one is available."""
        moment = time.monotonic() if now is None else now
        with self._lock:
            tokens, updated = self._buckets.get(key, (float(self.burst), moment))
            tokens = min(float(self.burst), tokens + (moment - updated) * self.rate)
            if tokens >= 1.0:
                self._buckets[key] = (tokens - 1.0, moment)
                return 0.0
            self._buckets[key] = (tokens, moment)
            return (1.0 - tokens) / self.rate


_PARTNER = frozenset({Role.PARTNER})


async def partner_within_limit(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> Principal:
    """The calling partner, if its bucket has a token; 429 with Retry-After otherwise."""
    # One dependency rather than three nested ones: it runs on every partner read, and each
    # level of FastAPI's dependency solving costs about as much as the check it wraps.
    partner = check_role(await current_principal(request, credentials), _PARTNER)
    return within_limit(request, partner)


def within_limit(request: Request, partner: Principal) -> Principal:
    """``partner`` if its bucket has a token; 429 with Retry-After otherwise."""
    buckets: TokenBuckets = request.app.state.partner_buckets
    wait = buckets.take(partner.subject)
    if wait > 0:
        raise HTTPException(
            429,
            f"partner {partner.subject} is over its rate of {buckets.rate:g} requests/s "
            f"(burst {buckets.burst}); retry in {wait:.2f} s",
            headers={"Retry-After": str(max(1, math.ceil(wait)))},
        )
    return partner


AsLimitedPartner = Annotated[Principal, Depends(partner_within_limit)]


class BodyLimit:
    """Refuse (413) a request whose declared body is over ``limit`` bytes, outside ``exempt``.

    HTTP ingest has its own, larger limit and also cuts off chunked bodies as they stream.
    """

    def __init__(self, app: ASGIApp, limit: int, exempt: tuple[str, ...] = ()) -> None:
        self.app = app
        self.limit = limit
        self.exempt = exempt

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not scope["path"].startswith(self.exempt):
            length = dict(scope["headers"]).get(b"content-length", b"")
            if length.isdigit() and int(length) > self.limit:
                request = Request(scope)
                response: Response = problem_response(
                    request, 413, f"the body is {int(length)} bytes, over the limit of {self.limit}"
                )
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)
