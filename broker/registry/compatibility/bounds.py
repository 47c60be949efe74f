"""Numeric bounds (`minimum`, `exclusiveMaximum`, ...) and which change each one reports."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from broker.registry.compatibility.report import ChangeKind


@dataclass(frozen=True, slots=True)
class _Bound:
    """A lower or upper numeric bound, remembering the keyword it came from."""

    value: Fraction
    exclusive: bool
    keyword: str
    lower: bool

    def as_integer(self) -> int:
        if self.lower:
            return math.floor(self.value) + 1 if self.exclusive else math.ceil(self.value)
        return math.ceil(self.value) - 1 if self.exclusive else math.floor(self.value)

    @property
    def side(self) -> str:
        return "lower" if self.lower else "upper"

    def text(self) -> str:
        sign = (">" if self.lower else "<") + ("" if self.exclusive else "=")
        shown = self.value.numerator if self.value.denominator == 1 else float(self.value)
        return f"{sign} {shown}"


def _bound(schema: Mapping[str, Any], inclusive: str, exclusive: str, lower: bool) -> _Bound | None:
    found = [
        _Bound(value, keyword == exclusive, keyword, lower)
        for keyword in (inclusive, exclusive)
        if (value := _number(schema.get(keyword))) is not None
    ]
    if not found:
        return None
    # The tighter bound wins; on a tie the exclusive one is tighter.
    sign = 1 if lower else -1
    return max(found, key=lambda b: (sign * b.value, b.exclusive))


def _lower(schema: Mapping[str, Any]) -> _Bound | None:
    return _bound(schema, "minimum", "exclusiveMinimum", lower=True)


def _upper(schema: Mapping[str, Any]) -> _Bound | None:
    return _bound(schema, "maximum", "exclusiveMaximum", lower=False)


def _bound_holds(reader: _Bound, writer: _Bound, integer_only: bool) -> bool:
    """Does every number within the writer's bound lie within the reader's?"""
    if integer_only:
        r, w = reader.as_integer(), writer.as_integer()
        return r <= w if reader.lower else r >= w
    if reader.value != writer.value:
        return reader.value < writer.value if reader.lower else reader.value > writer.value
    return writer.exclusive or not reader.exclusive


_BOUND_KINDS = {
    "minimum": (ChangeKind.MINIMUM_ADDED, ChangeKind.MINIMUM_INCREASED),
    "exclusiveMinimum": (
        ChangeKind.EXCLUSIVE_MINIMUM_ADDED,
        ChangeKind.EXCLUSIVE_MINIMUM_INCREASED,
    ),
    "maximum": (ChangeKind.MAXIMUM_ADDED, ChangeKind.MAXIMUM_DECREASED),
    "exclusiveMaximum": (
        ChangeKind.EXCLUSIVE_MAXIMUM_ADDED,
        ChangeKind.EXCLUSIVE_MAXIMUM_DECREASED,
    ),
}


# Which kind to report when a concrete writer value fails a reader keyword.
_VALUE_KINDS = {
    "type": ChangeKind.TYPE_CHANGED,
    "enum": ChangeKind.ENUM_NARROWED,
    "const": ChangeKind.CONST_CHANGED,
    "minimum": ChangeKind.MINIMUM_INCREASED,
    "maximum": ChangeKind.MAXIMUM_DECREASED,
    "exclusiveMinimum": ChangeKind.EXCLUSIVE_MINIMUM_INCREASED,
    "exclusiveMaximum": ChangeKind.EXCLUSIVE_MAXIMUM_DECREASED,
    "multipleOf": ChangeKind.MULTIPLE_OF_CHANGED,
    "minLength": ChangeKind.MIN_LENGTH_INCREASED,
    "maxLength": ChangeKind.MAX_LENGTH_DECREASED,
    "pattern": ChangeKind.PATTERN_CHANGED,
    "format": ChangeKind.FORMAT_CHANGED,
    "anyOf": ChangeKind.ANY_OF_NARROWED,
    "oneOf": ChangeKind.ONE_OF_NARROWED,
}


def _number(value: Any) -> Fraction | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    # repr keeps the decimal the author wrote (0.1 stays 1/10, not the nearest binary float).
    return Fraction(value) if isinstance(value, int) else Fraction(repr(value))
