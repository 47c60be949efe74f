"""Per-partner rate limits (429 with Retry-After) and the request-body cap for the whole API.

The bucket is per process: with N API processes behind a balancer a partner gets up to N
times the rate. That is deliberate (no shared state on the hot path) and said in the README.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Mapping

from fastapi import HTTPException, Request
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from broker.api.identity import (
    authenticate,
    bearer_token,
)
from broker.api.problems import ProblemError, http_problem
from broker.auth.principals import Principal


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


def charge(buckets: TokenBuckets, caller: Principal, who: str, what: str) -> None:
    """Take a token from ``caller``'s bucket; 429 with Retry-After when it is empty."""
    charge_key(buckets, caller.subject, f"{who} {caller.subject}", what)


def charge_key(buckets: TokenBuckets, key: str, who: str, what: str) -> None:
    """Take a token from the bucket of ``key`` (a caller, or an anonymous client's address);
    429 with Retry-After when it is empty."""
    wait = buckets.take(key)
    if wait > 0:
        # Retry-After is whole seconds (RFC 9110): the detail says the same number.
        retry = max(1, math.ceil(wait))
        raise ProblemError(
            429,
            "rate-limited",
            f"{who} is over its rate of {buckets.rate:g} {what}/s "
            f"(burst {buckets.burst}); retry in {retry} s",
            headers={"Retry-After": str(retry)},
        )


class BodyTooLargeError(ProblemError):
    """The request body grew past its limit while it streamed in (413)."""

    def __init__(self, limit: int) -> None:
        super().__init__(
            413,
            "body-too-large",
            f"the body is over the limit of {limit} bytes: send a smaller one "
            "(split a batch of events into several requests)",
            headers=dict(CLOSE),
        )


#: Sent with every refusal of a body: the server then closes the connection instead of
#: reading the rest of the body to find the next request on it.
CLOSE = {"Connection": "close"}


class BodyLimit:
    """Cap every request body as it streams, and authenticate the caller before reading any.

    ``Content-Length`` is not trusted: a chunked body declares none, so the bytes are counted
    as they arrive and the request is cut off (413) as soon as they pass the limit, having
    read at most one chunk more. A request that carries a body must first show a valid bearer
    token (401 otherwise, the body unread): every route that takes a body is for a signed-in
    role, so an anonymous caller cannot make the server buffer anything; except under the
    ``anonymous`` prefixes (CKAN's action API, whose clients POST their parameters), whose
    bodies are read without a token, up to their own small limit.
    """

    def __init__(
        self,
        app: ASGIApp,
        limit: int,
        limits: Mapping[str, int] | None = None,
        anonymous: frozenset[str] = frozenset(),
    ) -> None:
        self.app = app
        self.limit = limit
        self.limits = dict(limits or {})  # path prefix -> its own limit (HTTP ingest)
        self.anonymous = anonymous  # path prefixes read without a token (in ``limits``)

    def _anonymous(self, path: str) -> bool:
        return any(path.startswith(prefix.rstrip("/") + "/") for prefix in self.anonymous)

    def limit_for(self, path: str) -> int:
        """The body limit of a request to ``path``."""
        for prefix, limit in self.limits.items():
            if path == prefix or path.startswith(prefix.rstrip("/") + "/"):
                return limit
        return self.limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        length = headers.get("content-length", "")
        chunked = "chunked" in headers.get("transfer-encoding", "").lower()
        if not chunked and (not length.isdigit() or int(length) == 0):
            await self.app(scope, receive, send)  # no body to read
            return
        request = Request(scope)
        limit = self.limit_for(scope["path"])
        try:
            if not self._anonymous(scope["path"]):
                await authenticate(request, bearer_token(request))
            if length.isdigit() and int(length) > limit:
                raise ProblemError(
                    413,
                    "body-too-large",
                    f"the body is {int(length)} bytes, over the limit of {limit}: send a "
                    "smaller one (split a batch of events into several requests)",
                )
        except HTTPException as exc:
            exc.headers = {**(exc.headers or {}), **CLOSE}
            response = http_problem(request, exc)
            await response(scope, receive, send)
            return
        await self.app(scope, _counting(receive, limit), send)


def _counting(receive: Receive, limit: int) -> Receive:
    """``receive`` that raises BodyTooLargeError once the body passes ``limit`` bytes."""
    size = 0

    async def counted() -> Message:
        nonlocal size
        message = await receive()
        if message["type"] == "http.request":
            size += len(message.get("body", b""))
            if size > limit:
                raise BodyTooLargeError(limit)
        return message

    return counted
