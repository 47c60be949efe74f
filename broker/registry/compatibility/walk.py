"""The walk over two schemas: is every document the writer allows valid under the reader?
It follows `$ref`s and combinators and hands each keyword family to its module; `check`
applies it under a compatibility mode."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from broker.registry.compatibility.arrays import ArrayRules
from broker.registry.compatibility.bounds import _VALUE_KINDS
from broker.registry.compatibility.combinators import CombinatorRules
from broker.registry.compatibility.documents import (
    _Document,
    _UndecidableError,
    _UnresolvableRefError,
)
from broker.registry.compatibility.keywords import (
    _COMBINATORS,
    _FAMILY,
    _MAX_DEPTH,
    _TYPES,
    Schema,
    _accepts_everything,
    _conjoin,
    _covered,
    _drop_parts_the_writer_has,
    _finite_values,
    _fmt_values,
    _list,
    _normalise_unevaluated,
    _overlaps,
    _same,
    _type_set,
    _without,
)
from broker.registry.compatibility.locations import _inc, _Loc
from broker.registry.compatibility.objects import ObjectRules
from broker.registry.compatibility.report import (
    ChangeKind,
    CompatibilityMode,
    Incompatibility,
    _prefixed,
    _unique,
)
from broker.registry.compatibility.scalars import ScalarRules


def reader_can_read(reader: Mapping[str, Any], writer: Mapping[str, Any]) -> list[Incompatibility]:
    """Every document valid under `writer` is valid under `reader` (empty list = compatible)."""
    checker = _Checker(_Document(reader), _Document(writer))
    return _unique(checker.compare(reader, writer, _Loc("", "")))


def check(
    new: Mapping[str, Any], previous: Sequence[Mapping[str, Any]], mode: CompatibilityMode
) -> list[Incompatibility]:
    """Can `new` be registered after `previous` (oldest first) under `mode`?"""
    if mode == CompatibilityMode.NONE or not previous:
        return []
    transitive = mode.endswith("_TRANSITIVE")
    versions = list(enumerate(previous, start=1))
    against = versions if transitive else versions[-1:]
    backward = mode.startswith(("BACKWARD", "FULL"))
    forward = mode.startswith(("FORWARD", "FULL"))
    found: list[Incompatibility] = []
    for number, old in against:
        suffix = f" vs version {number}" if transitive else ""
        if backward:
            found += _prefixed(f"BACKWARD{suffix}", reader_can_read(new, old))
        if forward:
            # The previous schema is the reader here, so messages read from new to previous.
            found += _prefixed(f"FORWARD{suffix}", reader_can_read(old, new))
    return found


class _Checker(CombinatorRules, ScalarRules, ArrayRules, ObjectRules):
    """Structural inclusion check of one writer document in one reader document."""

    def __init__(self, reader: _Document, writer: _Document) -> None:
        self.reader = reader
        self.writer = writer
        self._in_progress: set[tuple[int, int]] = set()

    def compare(
        self, r: Schema, w: Schema, loc: _Loc, excluded: Sequence[Schema] = ()
    ) -> list[Incompatibility]:
        """Reasons why reader subschema `r` rejects some instance of writer subschema `w`.

        `excluded` lists writer subschemas the instances are known not to match (the other
        branches of a writer `oneOf`).
        """
        if _accepts_everything(r) or w is False:
            return []
        if not isinstance(r, bool | Mapping):
            return [_inc(ChangeKind.KEYWORD_UNVERIFIABLE, loc, f"{loc.what} is not a schema")]
        if not isinstance(w, bool | Mapping):
            w = True  # a malformed writer is widened to "anything", the safe direction
        key = (id(r), id(w))
        if key in self._in_progress:
            # Recursive `$ref`s: assume the pair holds while proving it (coinduction); the
            # rest of the pair's keywords are still checked by the outer call.
            return []
        if len(self._in_progress) >= _MAX_DEPTH:
            return [_inc(ChangeKind.KEYWORD_UNVERIFIABLE, loc, f"{loc.what} is nested too deep")]
        self._in_progress.add(key)
        try:
            return self._compare(r, w, loc, excluded)
        except _UnresolvableRefError as exc:
            message = f"{loc.what}: cannot resolve `$ref` {exc.ref!r} (only local refs are)"
            return [_inc(ChangeKind.REF_UNRESOLVED, loc, message)]
        finally:
            self._in_progress.discard(key)

    def _compare(
        self, r: Schema, w: Schema, loc: _Loc, excluded: Sequence[Schema]
    ) -> list[Incompatibility]:
        if _same(r, w):
            return []
        r = _drop_parts_the_writer_has(r, w)
        w = self._flatten_writer(w)
        if w is False:
            return []
        if r is False:
            return [
                _inc(ChangeKind.NOTHING_ACCEPTED, loc, f"{loc.what} no longer accepts any value")
            ]
        writer: Mapping[str, Any] = {} if w is True else _normalise_unevaluated(w)
        if any(k in writer for k in _COMBINATORS):
            return self._split_writer(r, writer, loc, excluded)
        values = _finite_values(writer)
        if values is not None:
            return self._finite_writer(r, writer, values, loc, excluded)
        if not isinstance(r, Mapping):  # True was handled by _accepts_everything
            return []
        if "$ref" in r:
            return self._reader_ref(r, writer, loc, excluded)
        reader = _normalise_unevaluated(r)
        return [
            *self._all_of(reader, writer, loc, excluded),
            *self._any_of(reader, writer, loc, excluded),
            *self._one_of(reader, writer, loc, excluded),
            *self._not(reader, writer, loc),
            *self._conditional(reader, writer, loc),
            *self._unverifiable(reader, loc),
            *self._core(reader, writer, loc),
        ]

    def _swapped(self) -> _Checker:
        """A checker of the same documents with the reader and the writer exchanged."""
        return _Checker(self.writer, self.reader)

    def _trial(self, r: Schema, w: Schema, loc: _Loc, excluded: Sequence[Schema] = ()) -> bool:
        return not self.compare(r, w, loc, excluded)

    def _flatten_writer(self, w: Schema, depth: int = 0) -> Schema:
        """Fold the writer's own `$ref` and `allOf` into one (over-approximating) schema."""
        if not isinstance(w, Mapping):
            return w if isinstance(w, bool) else True  # malformed: widen to anything
        if "$ref" not in w and "allOf" not in w:
            return w
        if depth > _MAX_DEPTH:
            return True  # a wider writer is always the safe assumption
        parts: list[Schema] = [_without(w, "$ref", "allOf")]
        if "$ref" in w:
            parts.append(self._flatten_writer(self.writer.resolve(w["$ref"])[0], depth + 1))
        all_of = w.get("allOf")
        if isinstance(all_of, list):
            parts.extend(self._flatten_writer(p, depth + 1) for p in all_of)
        return _conjoin(parts)

    def _split_writer(
        self, r: Schema, w: Mapping[str, Any], loc: _Loc, excluded: Sequence[Schema]
    ) -> list[Incompatibility]:
        # A writer instance matches some branch: check each branch (with the writer's other
        # keywords) on its own. A second combinator stays in `rest` and is split next.
        keyword = "oneOf" if "oneOf" in w else "anyOf"
        branches = _list(w[keyword])
        rest = _without(w, keyword)
        found: list[Incompatibility] = []
        for index, branch in enumerate(branches):
            others = branches[:index] + branches[index + 1 :] if keyword == "oneOf" else []
            merged = self._flatten_writer({"allOf": [rest, branch]})
            found += self.compare(r, merged, loc, [*excluded, *others])
        return found

    def _reader_ref(
        self, r: Mapping[str, Any], w: Mapping[str, Any], loc: _Loc, excluded: Sequence[Schema]
    ) -> list[Incompatibility]:
        target, pointer = self.reader.resolve(r["$ref"])
        found = self.compare(target, w, loc.jump(pointer), excluded)
        rest = _without(r, "$ref")
        if not _accepts_everything(rest):
            found += self.compare(rest, w, loc, excluded)
        return found

    def _unverifiable(self, r: Mapping[str, Any], loc: _Loc) -> list[Incompatibility]:
        return [
            _inc(ChangeKind.KEYWORD_UNVERIFIABLE, loc.at(k), f"{loc.what}: cannot verify `{k}`")
            for k in ("unevaluatedProperties", "unevaluatedItems", "$dynamicRef")
            if k in r and r[k] is not True
        ]

    def _finite_writer(
        self,
        r: Schema,
        w: Mapping[str, Any],
        values: list[Any],
        loc: _Loc,
        excluded: Sequence[Schema] = (),
    ) -> list[Incompatibility]:
        """Check each value the writer can produce directly against the reader."""
        produced = [
            v
            for v in values
            if self.writer.valid(w, v, unsure=True)
            and not any(self.writer.valid(x, v, unsure=False) for x in excluded)
        ]
        rejected: dict[tuple[ChangeKind, str | None], list[tuple[Any, str]]] = {}
        for value in produced:
            failure = self._value_failure(r, value)
            if failure is not None:
                kind, keyword, reason = failure
                rejected.setdefault((kind, keyword), []).append((value, reason))
        found: list[Incompatibility] = []
        for (kind, keyword), failures in rejected.items():
            shown = _fmt_values(v for v, _ in failures)
            message = f"{loc.what} no longer accepts {shown} ({failures[0][1]})"
            found.append(_inc(kind, loc.at(keyword) if keyword else loc, message))
        return found

    def _value_failure(self, r: Schema, value: Any) -> tuple[ChangeKind, str | None, str] | None:
        """(kind, reader keyword at this node or None, reason) when `r` rejects `value`."""
        try:
            error = self.reader.error(r, value)
        except _UndecidableError as exc:
            return ChangeKind.VALUE_REJECTED, None, f"cannot evaluate: {exc}"
        if error is None:
            return None
        keyword, message = error
        own = isinstance(r, Mapping) and keyword in r
        if isinstance(r, Mapping) and isinstance(r.get("enum"), list):
            return ChangeKind.ENUM_NARROWED, "enum", message
        if isinstance(r, Mapping) and "const" in r:
            return ChangeKind.CONST_CHANGED, "const", message
        kind = _VALUE_KINDS.get(keyword or "", ChangeKind.VALUE_REJECTED)
        return kind, keyword if own else None, message

    def _core(self, r: Mapping[str, Any], w: Mapping[str, Any], loc: _Loc) -> list[Incompatibility]:
        if "const" in r or isinstance(r.get("enum"), list):
            return self._reader_values(r, w, loc)
        r_types, w_types = _type_set(r), _type_set(w)
        found = self._types(r_types, w_types, loc)
        produced = w_types if w_types is not None else _TYPES
        shared = {_FAMILY[t] for t in produced if t in _FAMILY and _overlaps(t, r_types)}
        if "number" in shared:
            integer_only = not ("number" in produced and _covered("number", r_types))
            found += self._numbers(r, w, loc, integer_only)
        if "string" in shared:
            found += self._strings(r, w, loc)
        if "array" in shared:
            found += self._arrays(r, w, loc)
        if "object" in shared:
            found += self._objects(r, w, loc)
        return found
