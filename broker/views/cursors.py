"""Opaque pagination cursors: the position after the last item served, keyset-style.

A cursor is the sort key of the last row (a time and a unique id), so a page never repeats
or skips a row when others are inserted meanwhile: new rows sort by their own key. A cursor
grants nothing: it only says where to continue, and every page is decided again.
"""

from __future__ import annotations

import base64
from datetime import datetime
from typing import NamedTuple

import orjson


class InvalidCursorError(ValueError):
    """A cursor that this API did not make."""


class Position(NamedTuple):
    """Where a page ended: the last row's sort time and unique id."""

    at: datetime
    id: str


def encode(position: Position, scope: str) -> str:
    """An opaque cursor; ``scope`` ties it to one view's query."""
    raw = orjson.dumps({"t": position.at.isoformat(), "i": position.id, "s": scope})
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def decode(cursor: str, scope: str) -> Position:
    """The position in ``cursor``; InvalidCursorError if it is not one of this view's."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        doc = orjson.loads(raw)
        position = Position(datetime.fromisoformat(doc["t"]), str(doc["i"]))
        same_scope = doc["s"] == scope
    except (ValueError, KeyError, TypeError) as exc:
        raise InvalidCursorError(f"the cursor is not one this API made: {exc}") from exc
    if not same_scope:
        raise InvalidCursorError("the cursor belongs to another query; start without one")
    if position.at.tzinfo is None:
        raise InvalidCursorError("the cursor's time has no zone")
    return position
