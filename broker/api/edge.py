"""Input no route can use, refused before any route runs."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl

from fastapi import FastAPI
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from broker.api.problems import PROBLEM_JSON, problem_response
from contract.cloudevents import YEARS, year_out_of_range


def _unusable(scope: Scope) -> str | None:
    """Why the URL of ``scope`` cannot be served, or None."""
    query: bytes = scope["query_string"]
    if "\x00" in scope["path"] or b"%00" in query or b"\x00" in query:
        # PostgreSQL refuses NUL in text: a 500 on every route that looks an id up.
        return "the request's path or query contains a NUL character (%00); remove it"
    for name, value in parse_qsl(query.decode("latin-1")):
        year = year_out_of_range(value)
        if year is not None:
            # Converting year 1 (or 9999) between offsets overflows: a 500 otherwise.
            return (
                f"query parameter {name!r} names year {year}; dates and times must lie in the "
                f"years {YEARS.start}-{YEARS.stop - 1}"
            )
    return None


class UsableUrl:
    """A URL with a NUL character, or a date outside ``YEARS`` in its query, is a 400
    problem: no identifier or period of ours holds one (the same bounds as events')."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Answer 400 for an unusable URL; pass everything else on."""
        why = _unusable(scope) if scope["type"] == "http" else None
        if why is not None:
            await problem_response(Request(scope), 400, why, "unusable-url")(scope, receive, send)
            return
        await self.app(scope, receive, send)


def declare_refusals(app: FastAPI) -> None:
    """Declare ``UsableUrl``'s 400 problem on every operation that takes path or query
    parameters, and the malformed-JSON 400 on every one that takes a body (call after
    ``problems.install``: it extends that document)."""
    built = app.openapi

    def openapi() -> dict[str, Any]:
        doc = built()
        for item in doc.get("paths", {}).values():
            for operation in item.values():
                if any(p.get("in") in ("path", "query") for p in operation.get("parameters", [])):
                    operation["responses"].setdefault("400", dict(_REFUSAL))
                if "requestBody" in operation:
                    operation["responses"].setdefault("400", dict(_MALFORMED))
        return doc

    app.openapi = openapi  # type: ignore[method-assign]


_REFUSAL = {
    "description": "A NUL character in the URL, or a query date outside the years "
    f"{YEARS.start}-{YEARS.stop - 1}",
    "content": {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}},
}
_MALFORMED = {
    "description": "The body is not valid JSON (the problem names the line and column)",
    "content": _REFUSAL["content"],
}


class HeadAsGet:
    """``HEAD`` wherever ``GET`` is (RFC 9110 §9.3.2): the GET's status and headers, no body.

    FastAPI routes answer only the methods they declare, so ``HEAD /healthz`` was a 405. The
    request runs as the GET it stands for (the same checks, limits and audit); only the body
    is dropped, and ``Content-Length`` stays what the GET's would be.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Run a HEAD as its GET and send the answer without the body."""
        if scope["type"] != "http" or scope["method"] != "HEAD":
            await self.app(scope, receive, send)
            return

        async def headers_only(message: Message) -> None:
            if message["type"] == "http.response.body":
                if message.get("more_body", False):
                    return  # the rest of the body: none of it goes out
                message = {"type": "http.response.body", "body": b"", "more_body": False}
            await send(message)

        await self.app({**scope, "method": "GET"}, receive, headers_only)
