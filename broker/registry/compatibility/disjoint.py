"""Whether two subschemas can accept a common value (`oneOf` branches that overlap)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from broker.registry.compatibility.documents import _Document, _UnresolvableRefError
from broker.registry.compatibility.keywords import (
    _COMBINATORS,
    Schema,
    _finite_values,
    _is_closed,
    _list,
    _mapping,
    _names,
    _type_set,
    _types_intersect,
)


def _disjoint(a: Schema, a_doc: _Document, b: Schema, b_doc: _Document, depth: int = 0) -> bool:
    """True only if provably no instance satisfies both `a` and `b` (incomplete by design)."""
    if a is False or b is False:
        return True
    if not isinstance(a, Mapping) or not isinstance(b, Mapping) or depth > 16:
        return False
    try:
        return _disjoint_maps(a, a_doc, b, b_doc, depth) or _disjoint_maps(
            b, b_doc, a, a_doc, depth
        )
    except _UnresolvableRefError:
        return False


def _disjoint_maps(
    a: Mapping[str, Any], a_doc: _Document, b: Mapping[str, Any], b_doc: _Document, depth: int
) -> bool:
    # Each rule looks at `a`'s keywords only; the caller tries both orders.
    if "$ref" in a:
        # The referenced schema alone accepts more than `a`; disjointness of it suffices.
        return _disjoint(a_doc.resolve(a["$ref"])[0], a_doc, b, b_doc, depth + 1)
    if any(_disjoint(p, a_doc, b, b_doc, depth + 1) for p in _list(a.get("allOf"))):
        return True
    for keyword in _COMBINATORS:
        branches = a.get(keyword)
        if isinstance(branches, list) and all(
            _disjoint(x, a_doc, b, b_doc, depth + 1) for x in branches
        ):
            return True
    a_types, b_types = _type_set(a), _type_set(b)
    if a_types is not None and b_types is not None and not _types_intersect(a_types, b_types):
        return True
    values = _finite_values(a, expand=True)
    if values is not None and not any(b_doc.valid(b, v, unsure=True) for v in values):
        return True
    return _disjoint_objects(a, a_doc, b, b_doc, depth)


def _disjoint_objects(
    a: Mapping[str, Any], a_doc: _Document, b: Mapping[str, Any], b_doc: _Document, depth: int
) -> bool:
    # A property `a` requires whose value sets differ (a discriminator), or that `b` forbids.
    a_types, b_types = _type_set(a), _type_set(b)
    if (a_types is not None and "object" not in a_types) or (
        b_types is not None and "object" not in b_types
    ):
        return False
    a_props, b_props = _mapping(a.get("properties")), _mapping(b.get("properties"))
    for name in _names(a.get("required")):
        if name in a_props and name in b_props:
            if _disjoint(a_props[name], a_doc, b_props[name], b_doc, depth + 1):
                return True
        elif name not in b_props and _is_closed(b):
            return True
    return False
