"""The combinator family of breaking changes: a reader's `allOf`, `anyOf`, `oneOf`, `not`
and `if`/`then`/`else` against the writer."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from broker.registry.compatibility.disjoint import _disjoint
from broker.registry.compatibility.family import Family
from broker.registry.compatibility.keywords import Schema, _describe, _list, _same, _split_by_type
from broker.registry.compatibility.locations import _inc, _Loc
from broker.registry.compatibility.report import ChangeKind, Incompatibility


class CombinatorRules(Family):
    """How a reader's `allOf`, `anyOf`, `oneOf`, `not` and `if` narrow what it accepts."""

    def _all_of(
        self,
        r: Mapping[str, Any],
        w: Mapping[str, Any],
        loc: _Loc,
        excluded: Sequence[Schema],
    ) -> list[Incompatibility]:
        return [
            inc
            for i, part in enumerate(_list(r.get("allOf")))
            for inc in self.compare(part, w, loc.at("allOf", i), excluded)
        ]

    def _any_of(
        self,
        r: Mapping[str, Any],
        w: Mapping[str, Any],
        loc: _Loc,
        excluded: Sequence[Schema],
    ) -> list[Incompatibility]:
        branches = r.get("anyOf")
        if not isinstance(branches, list):
            return []
        found: list[Incompatibility] = []
        for piece in _split_by_type(w):
            if self._first_match(branches, piece, loc.at("anyOf"), excluded) is None:
                found.append(
                    self._unmatched(ChangeKind.ANY_OF_NARROWED, "anyOf", branches, piece, loc)
                )
        return found

    def _one_of(
        self,
        r: Mapping[str, Any],
        w: Mapping[str, Any],
        loc: _Loc,
        excluded: Sequence[Schema],
    ) -> list[Incompatibility]:
        branches = r.get("oneOf")
        if not isinstance(branches, list):
            return []
        found: list[Incompatibility] = []
        for piece in _split_by_type(w):
            index = self._first_match(branches, piece, loc.at("oneOf"), excluded)
            if index is None:
                found.append(
                    self._unmatched(ChangeKind.ONE_OF_NARROWED, "oneOf", branches, piece, loc)
                )
                continue
            for other_index, other in enumerate(branches):
                if other_index != index and not self._exclusive(
                    piece, branches[index], other, excluded
                ):
                    message = (
                        f"{loc.what}: {_describe(piece)} may match both branch {index} and branch"
                        f" {other_index} of `oneOf`, which then rejects them"
                    )
                    found.append(
                        _inc(ChangeKind.ONE_OF_AMBIGUOUS, loc.at("oneOf", other_index), message)
                    )
        return found

    def _first_match(
        self,
        branches: Sequence[Schema],
        piece: Schema,
        loc: _Loc,
        excluded: Sequence[Schema] = (),
    ) -> int | None:
        for index, branch in enumerate(branches):
            if self._trial(branch, piece, loc.at(index), excluded):
                return index
        return None

    def _exclusive(
        self, piece: Schema, chosen: Schema, other: Schema, excluded: Sequence[Schema]
    ) -> bool:
        """Can no writer instance (in `piece`, within reader branch `chosen`) match `other`?"""
        if _disjoint(piece, self.writer, other, self.reader) or _disjoint(
            chosen, self.reader, other, self.reader
        ):
            return True
        # Writer instances match exactly one writer `oneOf` branch, so they avoid every
        # reader branch that lies inside another writer branch.
        swapped = self._swapped()
        return any(swapped._trial(branch, other, _Loc("", "")) for branch in excluded)

    def _unmatched(
        self,
        kind: ChangeKind,
        keyword: str,
        branches: Sequence[Schema],
        piece: Schema,
        loc: _Loc,
    ) -> Incompatibility:
        reasons = [self.compare(b, piece, loc.at(keyword, i)) for i, b in enumerate(branches)]
        message = f"{loc.what}: {_describe(piece)} no longer match any branch of `{keyword}`"
        if reasons:
            closest = min(range(len(reasons)), key=lambda i: len(reasons[i]))
            message += f" (closest, branch {closest}: {reasons[closest][0].message})"
        return _inc(kind, loc.at(keyword), message)

    def _not(self, r: Mapping[str, Any], w: Mapping[str, Any], loc: _Loc) -> list[Incompatibility]:
        if "not" not in r:
            return []
        negated = r["not"]
        if _disjoint(w, self.writer, negated, self.reader):
            return []
        # The writer already excludes a superset of what the reader excludes.
        if "not" in w and self._swapped()._trial(w["not"], negated, loc):
            return []
        message = f"{loc.what}: cannot prove that `not` still accepts every earlier value"
        return [_inc(ChangeKind.KEYWORD_UNVERIFIABLE, loc.at("not"), message)]

    def _conditional(
        self, r: Mapping[str, Any], w: Mapping[str, Any], loc: _Loc
    ) -> list[Incompatibility]:
        if "if" not in r:
            return []
        if all(_same(r.get(k), w.get(k)) for k in ("if", "then", "else")):
            return []
        then, otherwise = r.get("then", True), r.get("else", True)
        if self._trial(r["if"], w, loc.at("if")):
            return self.compare(then, w, loc.at("then"))
        if _disjoint(w, self.writer, r["if"], self.reader):
            return self.compare(otherwise, w, loc.at("else"))
        # Either branch may apply: the writer must satisfy both.
        return self.compare(then, w, loc.at("then")) + self.compare(otherwise, w, loc.at("else"))
