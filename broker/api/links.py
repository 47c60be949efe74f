"""RFC 8288 web links of a collection's pages: ``Link: <...>; rel="next"``."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

#: The OpenAPI response of a page that may link to the next one (``responses={200: ...}``).
PAGED: dict[str, Any] = {
    "headers": {
        "Link": {
            "description": 'The next page, `<...>; rel="next"` (RFC 8288); absent on the last',
            "schema": {"type": "string"},
        }
    }
}


def link_next(request: Request, response: Response, cursor: str | None) -> None:
    """Point ``response`` at the page after this one (the request with ``cursor``), if any.

    The target is a relative reference (resolved against the request's URL), so it stays
    right behind a proxy that rewrites the host; the body's ``next_cursor`` says the same.
    """
    if cursor is None:
        return
    url = request.url.include_query_params(cursor=cursor)
    response.headers["Link"] = f'<{url.path}?{url.query}>; rel="next"'
