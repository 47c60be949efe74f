"""Input no route can use, refused before any route runs."""

from __future__ import annotations

from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from broker.api.problems import problem_response


class NoNulInUrl:
    """A NUL character (``%00``) in the path or query is a 400 problem: no identifier or
    parameter of ours holds one, and PostgreSQL refuses it in text (a 500 otherwise)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Answer 400 for a NUL in the URL; pass everything else on."""
        if scope["type"] == "http" and (
            "\x00" in scope["path"]
            or b"%00" in scope["query_string"]
            or b"\x00" in scope["query_string"]
        ):
            response = problem_response(
                Request(scope),
                400,
                "the request's path or query contains a NUL character (%00); remove it",
            )
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)
