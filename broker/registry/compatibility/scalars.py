"""The families of breaking changes of one value: type, enum and const, numbers, strings."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from broker.registry.compatibility.bounds import _BOUND_KINDS, _bound_holds, _lower, _number, _upper
from broker.registry.compatibility.family import Family
from broker.registry.compatibility.keywords import (
    _TYPES,
    _count,
    _covered,
    _finite_values,
    _fmt_types,
    _fmt_value,
    _fmt_values,
    _json_equal,
    _overlaps,
)
from broker.registry.compatibility.locations import _inc, _Loc
from broker.registry.compatibility.report import ChangeKind, Incompatibility


class ScalarRules(Family):
    """Types, values, numbers and strings: the keyword families of a single value."""

    def _reader_values(
        self, r: Mapping[str, Any], w: Mapping[str, Any], loc: _Loc
    ) -> list[Incompatibility]:
        # Booleans, null or a small integer range can still be checked value by value.
        values = _finite_values(w, expand=True)
        if values is not None:
            return self._finite_writer(r, w, values, loc)
        if "const" in r:
            message = f"{loc.what} became fixed to {_fmt_value(r['const'])}"
            return [_inc(ChangeKind.CONST_ADDED, loc.at("const"), message)]
        if isinstance(r.get("enum"), list):
            message = f"{loc.what} became restricted to {_fmt_values(r['enum'])}"
            return [_inc(ChangeKind.ENUM_ADDED, loc.at("enum"), message)]
        return []

    def _types(
        self, r_types: frozenset[str] | None, w_types: frozenset[str] | None, loc: _Loc
    ) -> list[Incompatibility]:
        if r_types is None:
            return []
        produced = w_types if w_types is not None else _TYPES
        missing = frozenset(t for t in produced if not _covered(t, r_types))
        if not missing:
            return []
        at = loc.at("type")
        if w_types is not None and not any(_overlaps(t, r_types) for t in w_types):
            message = f"{loc.what} changed type from {_fmt_types(w_types)} to {_fmt_types(r_types)}"
            return [_inc(ChangeKind.TYPE_CHANGED, at, message)]
        if w_types is None:
            message = f"{loc.what} became restricted to {_fmt_types(r_types)} (was any type)"
        else:
            now = _fmt_types(r_types)
            message = f"{loc.what} no longer accepts {_fmt_types(missing)} (type is now {now})"
        return [_inc(ChangeKind.TYPE_NARROWED, at, message)]

    def _numbers(
        self, r: Mapping[str, Any], w: Mapping[str, Any], loc: _Loc, integer_only: bool
    ) -> list[Incompatibility]:
        found: list[Incompatibility] = []
        for reader_bound, writer_bound in ((_lower(r), _lower(w)), (_upper(r), _upper(w))):
            if reader_bound is None:
                continue
            added, tightened = _BOUND_KINDS[reader_bound.keyword]
            at = loc.at(reader_bound.keyword)
            if writer_bound is None:
                message = f"{loc.what} gained the {reader_bound.side} bound {reader_bound.text()}"
                found.append(_inc(added, at, message))
            elif not _bound_holds(reader_bound, writer_bound, integer_only):
                message = (
                    f"{loc.what} {reader_bound.side} bound tightened from {writer_bound.text()}"
                    f" to {reader_bound.text()}"
                )
                found.append(_inc(tightened, at, message))
        return found + self._multiple_of(r, w, loc, integer_only)

    def _multiple_of(
        self, r: Mapping[str, Any], w: Mapping[str, Any], loc: _Loc, integer_only: bool
    ) -> list[Incompatibility]:
        step = _number(r.get("multipleOf"))
        if not step:
            return []
        writer_step = _number(w.get("multipleOf"))
        if writer_step and (writer_step / step).denominator == 1:
            return []
        if integer_only and (1 / step).denominator == 1:
            return []  # every integer is a multiple of 1, 0.5, 0.25, ...
        at = loc.at("multipleOf")
        if writer_step is None:
            message = f"{loc.what} must now be a multiple of {r['multipleOf']}"
            return [_inc(ChangeKind.MULTIPLE_OF_ADDED, at, message)]
        message = f"{loc.what} multipleOf changed from {w['multipleOf']} to {r['multipleOf']}"
        return [_inc(ChangeKind.MULTIPLE_OF_CHANGED, at, message)]

    def _strings(
        self, r: Mapping[str, Any], w: Mapping[str, Any], loc: _Loc
    ) -> list[Incompatibility]:
        found: list[Incompatibility] = []
        r_min, w_min = _count(r.get("minLength")) or 0, _count(w.get("minLength"))
        if r_min > (w_min or 0):
            kind = ChangeKind.MIN_LENGTH_ADDED if w_min is None else ChangeKind.MIN_LENGTH_INCREASED
            message = f"{loc.what} minimum length raised from {w_min or 0} to {r_min}"
            found.append(_inc(kind, loc.at("minLength"), message))
        r_max, w_max = _count(r.get("maxLength")), _count(w.get("maxLength"))
        if r_max is not None and (w_max is None or w_max > r_max):
            kind = ChangeKind.MAX_LENGTH_ADDED if w_max is None else ChangeKind.MAX_LENGTH_DECREASED
            was = "unbounded" if w_max is None else str(w_max)
            message = f"{loc.what} maximum length lowered from {was} to {r_max}"
            found.append(_inc(kind, loc.at("maxLength"), message))
        found += self._exact_keyword(
            r, w, loc, "pattern", ChangeKind.PATTERN_ADDED, ChangeKind.PATTERN_CHANGED
        )
        found += self._exact_keyword(
            r, w, loc, "format", ChangeKind.FORMAT_ADDED, ChangeKind.FORMAT_CHANGED
        )
        return found

    def _exact_keyword(
        self,
        r: Mapping[str, Any],
        w: Mapping[str, Any],
        loc: _Loc,
        keyword: str,
        added: ChangeKind,
        changed: ChangeKind,
    ) -> list[Incompatibility]:
        # Inclusion of regular expressions (and of formats) is not decided: only equality passes.
        if keyword not in r or (keyword in w and _json_equal(r[keyword], w[keyword])):
            return []
        if keyword not in w:
            message = f"{loc.what} gained {keyword} `{r[keyword]}`"
            return [_inc(added, loc.at(keyword), message)]
        message = f"{loc.what} {keyword} changed from `{w[keyword]}` to `{r[keyword]}`"
        return [_inc(changed, loc.at(keyword), message)]
