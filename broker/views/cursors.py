"""Opaque pagination cursors: the position after the last item served, keyset-style.

A cursor is the sort key of the last row (a time and a unique id), so a page never repeats
or skips a row when others are inserted meanwhile: new rows sort by their own key. A cursor
grants nothing: it only says where to continue, and every page is decided again. A cursor
made with a ``key`` also carries its MAC, so an altered one, or one made under another key
(another resident's list), is refused before anything in it is read.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from datetime import datetime
from typing import NamedTuple

import orjson


class InvalidCursorError(ValueError):
    """A cursor that this API did not make."""


#: Why a cursor is refused when it is not one of ours; the decoder's own words would only
#: describe our encoding, not what the caller should send.
NOT_OURS = (
    "the cursor is not one this API made: send the `next_cursor` of the previous page "
    "unchanged, or start without a cursor"
)


class Position(NamedTuple):
    """Where a page ended: the last row's sort time and unique id."""

    at: datetime
    id: str


def encode(
    position: Position,
    scope: str,
    pinned_end: datetime | None = None,
    *,
    key: bytes | None = None,
) -> str:
    """An opaque cursor; ``scope`` ties it to one view's query (caller, purpose, filters).

    ``pinned_end`` is the period end the first page resolved "now" to: the following pages
    read the same period instead of one that moved on with the clock. ``key`` seals it.
    """
    doc: dict[str, str] = {"t": position.at.isoformat(), "i": position.id, "s": scope}
    if pinned_end is not None:
        doc["e"] = pinned_end.isoformat()
    raw = orjson.dumps(doc)
    if key is not None:
        raw += _mac(key, raw)
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


_MAC_SIZE = 32


def _mac(key: bytes, raw: bytes) -> bytes:
    return hmac.new(key, raw, hashlib.sha256).digest()


def _unsealed(raw: bytes, key: bytes) -> bytes:
    body, mac = raw[:-_MAC_SIZE], raw[-_MAC_SIZE:]
    if len(raw) <= _MAC_SIZE or not hmac.compare_digest(mac, _mac(key, body)):
        raise InvalidCursorError(
            "the cursor is not one of your list's pages: it was altered or belongs to someone "
            "else; send `next_cursor` exactly as your previous page returned it, or start "
            "without a cursor"
        )
    return body


def decode(cursor: str, scope: str, *, key: bytes | None = None) -> Position:
    """The position in ``cursor``; InvalidCursorError if it is not one of this view's."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
    except ValueError as exc:
        raise InvalidCursorError(f"the cursor is not one this API made: {exc}") from exc
    if key is not None:
        raw = _unsealed(raw, key)
    try:
        doc = orjson.loads(raw)
        position = Position(datetime.fromisoformat(doc["t"]), str(doc["i"]))
        same_scope = doc["s"] == scope
    except (ValueError, KeyError, TypeError) as exc:
        raise InvalidCursorError(NOT_OURS) from exc
    if not same_scope:
        raise InvalidCursorError(
            "the cursor belongs to another query: send it with the same partner, purpose, "
            "period and filters as the request that returned it, or start without a cursor"
        )
    if position.at.tzinfo is None:
        raise InvalidCursorError(NOT_OURS)
    return position


def pinned_end(cursor: str) -> datetime | None:
    """The period end an unsealed cursor pinned (call after ``decode`` accepted it), if any."""
    try:
        doc = orjson.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        end = doc.get("e")
        return None if end is None else datetime.fromisoformat(end)
    except (ValueError, TypeError, AttributeError) as exc:
        raise InvalidCursorError(NOT_OURS) from exc
