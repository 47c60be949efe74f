"""The array family of breaking changes: items, item counts, uniqueness, `contains`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from broker.registry.compatibility.family import Family
from broker.registry.compatibility.keywords import (
    Schema,
    _accepts_everything,
    _count,
    _list,
    _same,
    _writer_max_items,
)
from broker.registry.compatibility.locations import _inc, _Loc
from broker.registry.compatibility.report import ChangeKind, Incompatibility


class ArrayRules(Family):
    """Items, item counts, uniqueness and `contains`: the keyword families of arrays."""

    def _arrays(
        self, r: Mapping[str, Any], w: Mapping[str, Any], loc: _Loc
    ) -> list[Incompatibility]:
        return [
            *self._items(r, w, loc),
            *self._item_counts(r, w, loc),
            *self._unique_items(r, w, loc),
            *self._contains(r, w, loc),
        ]

    def _items(
        self, r: Mapping[str, Any], w: Mapping[str, Any], loc: _Loc
    ) -> list[Incompatibility]:
        r_prefix, w_prefix = _list(r.get("prefixItems")), _list(w.get("prefixItems"))
        r_rest, w_rest = r.get("items", True), w.get("items", True)
        w_max = _count(w.get("maxItems"))
        found: list[Incompatibility] = []
        for index in range(max(len(r_prefix), len(w_prefix))):
            if w_max is not None and index >= w_max:
                return found  # the writer never gets this far
            r_item = r_prefix[index] if index < len(r_prefix) else r_rest
            w_item = w_prefix[index] if index < len(w_prefix) else w_rest
            if w_item is False:
                return found  # no writer array reaches this position
            at = loc.item(index if index < len(r_prefix) else None)
            found += self._item(r_item, w_item, at, index)
        tail = max(len(r_prefix), len(w_prefix))
        if w_max is None or w_max > tail:
            found += self._item(r_rest, w_rest, loc.item(None), tail)
        return found

    def _item(self, r: Schema, w: Schema, loc: _Loc, index: int) -> list[Incompatibility]:
        if w is False:
            return []
        if r is False:
            message = f"{loc.what} no longer accepts items from position {index}"
            return [_inc(ChangeKind.ITEM_REMOVED_CLOSED_MODEL, loc, message)]
        nested = self.compare(r, w, loc)
        if nested and _accepts_everything(w):
            message = (
                f"{loc.what} constrains items from position {index}, which were open"
                f" ({nested[0].message})"
            )
            return [_inc(ChangeKind.ITEM_ADDED_OPEN_MODEL, loc, message)]
        return nested

    def _item_counts(
        self, r: Mapping[str, Any], w: Mapping[str, Any], loc: _Loc
    ) -> list[Incompatibility]:
        found: list[Incompatibility] = []
        r_min, w_min = _count(r.get("minItems")) or 0, _count(w.get("minItems"))
        if r_min > (w_min or 0):
            kind = ChangeKind.MIN_ITEMS_ADDED if w_min is None else ChangeKind.MIN_ITEMS_INCREASED
            message = f"{loc.what} minimum item count raised from {w_min or 0} to {r_min}"
            found.append(_inc(kind, loc.at("minItems"), message))
        r_max, w_max = _count(r.get("maxItems")), _writer_max_items(w)
        if r_max is not None and (w_max is None or w_max > r_max):
            kind = ChangeKind.MAX_ITEMS_ADDED if w_max is None else ChangeKind.MAX_ITEMS_DECREASED
            was = "unbounded" if w_max is None else str(w_max)
            message = f"{loc.what} maximum item count lowered from {was} to {r_max}"
            found.append(_inc(kind, loc.at("maxItems"), message))
        return found

    def _unique_items(
        self, r: Mapping[str, Any], w: Mapping[str, Any], loc: _Loc
    ) -> list[Incompatibility]:
        w_max = _writer_max_items(w)
        if r.get("uniqueItems") is not True or w.get("uniqueItems") is True:
            return []
        if w_max is not None and w_max <= 1:
            return []
        message = f"{loc.what} now requires unique items"
        return [_inc(ChangeKind.UNIQUE_ITEMS_ADDED, loc.at("uniqueItems"), message)]

    def _contains(
        self, r: Mapping[str, Any], w: Mapping[str, Any], loc: _Loc
    ) -> list[Incompatibility]:
        if "contains" not in r:
            return []
        group = ("contains", "minContains", "maxContains")
        r_min = _count(r.get("minContains"))
        r_min = 1 if r_min is None else r_min
        if all(_same(r.get(k), w.get(k)) for k in group) or (r_min == 0 and "maxContains" not in r):
            return []
        if "maxContains" not in r:
            w_min = _count(w.get("minContains"))
            w_min = 1 if w_min is None else w_min
            if (
                "contains" in w
                and w_min >= r_min
                and self._trial(r["contains"], w["contains"], loc)
            ):
                return []
            # Every writer item matches and there are enough of them.
            enough = (_count(w.get("minItems")) or 0) >= r_min
            if (
                enough
                and "prefixItems" not in w
                and self._trial(r["contains"], w.get("items", True), loc)
            ):
                return []
        message = f"{loc.what}: `contains` may reject arrays that were valid before"
        return [_inc(ChangeKind.CONTAINS_NARROWED, loc.at("contains"), message)]
