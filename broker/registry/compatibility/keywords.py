"""What the checker knows of JSON Schema keywords, and the helpers that read, compare and
combine subschemas."""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import re2  # type: ignore[import-untyped]

from broker.registry.compatibility.bounds import _lower, _number, _upper

Schema = bool | Mapping[str, Any]

#: Writer/reader pairs nested deeper than this are reported instead of recursed into (each level
#: costs several Python frames, and the default recursion limit is 1000).
_MAX_DEPTH = 64
#: Writer `allOf` parts that both carry `oneOf` (or `anyOf`) are multiplied out up to this size.
_MAX_BRANCH_PRODUCT = 16
#: Values listed in a message before it is cut short.
_MAX_SHOWN = 5
#: Integer ranges up to this size are enumerated so that they can be checked against an enum.
_MAX_ENUMERATED_RANGE = 256

_TYPES = frozenset({"null", "boolean", "object", "array", "string", "number", "integer"})
_FAMILY = {
    "null": "null",
    "boolean": "boolean",
    "object": "object",
    "array": "array",
    "string": "string",
    "number": "number",
    "integer": "number",
}
# Keywords that make a reader reject something; anything else is an annotation or unknown.
_ASSERTIONS = frozenset(
    {
        "$ref", "$dynamicRef", "allOf", "anyOf", "oneOf", "not", "if", "then", "else",
        "type", "enum", "const",
        "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf",
        "minLength", "maxLength", "pattern", "format",
        "items", "prefixItems", "minItems", "maxItems", "uniqueItems",
        "contains", "minContains", "maxContains", "unevaluatedItems",
        "properties", "required", "additionalProperties", "patternProperties",
        "minProperties", "maxProperties", "dependentRequired", "dependentSchemas",
        "propertyNames", "unevaluatedProperties",
    }
)  # fmt: skip
# Where subschemas sit, so that annotations can be told apart from property names.
_SCHEMA_MAPS = ("properties", "patternProperties", "dependentSchemas", "$defs")
_SCHEMA_LISTS = ("prefixItems", "allOf", "anyOf", "oneOf")
_SCHEMA_VALUES = (
    "items", "additionalProperties", "not", "if", "then", "else", "contains", "propertyNames",
    "unevaluatedItems", "unevaluatedProperties",
)  # fmt: skip
# Keywords whose effect depends on sibling subschemas ("evaluated" annotations).
_IN_PLACE_APPLICATORS = ("$ref", "$dynamicRef", "allOf", "anyOf", "oneOf", "if", "dependentSchemas")
_COMBINATORS = ("anyOf", "oneOf")


# Marks a writer `allOf` that no document satisfies (conflicting `const`s, say).
_IMPOSSIBLE = object()


def _accepts_everything(schema: Any) -> bool:
    return schema is True or (
        isinstance(schema, Mapping) and not any(k in _ASSERTIONS for k in schema)
    )


def _without(schema: Mapping[str, Any], *keys: str) -> dict[str, Any]:
    return {k: v for k, v in schema.items() if k not in keys}


def _json_equal(a: Any, b: Any) -> bool:
    # Python says True == 1; JSON Schema does not.
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, int | float) and isinstance(b, int | float):
        return a == b
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        return a.keys() == b.keys() and all(_json_equal(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(_json_equal(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and bool(a == b)


def _has_ref(node: Any) -> bool:
    if isinstance(node, Mapping):
        return "$ref" in node or "$dynamicRef" in node or any(_has_ref(v) for v in node.values())
    if isinstance(node, list):
        return any(_has_ref(v) for v in node)
    return False


def _same(a: Any, b: Any) -> bool:
    """Identical up to annotations and self-contained, so they accept the same documents."""
    return _json_equal(_strip(a), _strip(b)) and not _has_ref(a)


def _drop_parts_the_writer_has(r: Schema, w: Schema) -> Schema:
    """``r`` without the ``allOf`` parts that ``w`` also has: every writer instance meets them.

    A conditional (``if``/``then``/``else``) kept unchanged from one version to the next is
    then never compared through the flattened writer, where it cannot be proven.
    """
    if not (isinstance(r, Mapping) and isinstance(w, Mapping)):
        return r
    reader_parts, writer_parts = r.get("allOf"), w.get("allOf")
    if not (isinstance(reader_parts, list) and isinstance(writer_parts, list)):
        return r
    kept = [p for p in reader_parts if not any(_same(p, q) for q in writer_parts)]
    if len(kept) == len(reader_parts):
        return r
    return {**r, "allOf": kept} if kept else _without(r, "allOf")


def _strip(schema: Any) -> Any:
    """The schema without annotations (title, description, ...), which never reject anything."""
    if not isinstance(schema, Mapping):
        return schema
    stripped: dict[str, Any] = {}
    for key, value in schema.items():
        if key in _SCHEMA_MAPS:
            stripped[key] = {k: _strip(v) for k, v in _mapping(value).items()}
        elif key in _SCHEMA_LISTS:
            stripped[key] = [_strip(v) for v in _list(value)]
        elif key in _SCHEMA_VALUES:
            stripped[key] = _strip(value)
        elif key in _ASSERTIONS:
            stripped[key] = value
    return stripped


def _type_set(schema: Mapping[str, Any]) -> frozenset[str] | None:
    declared = schema.get("type")
    if isinstance(declared, str):
        return frozenset({declared})
    if isinstance(declared, list):
        return frozenset(t for t in declared if isinstance(t, str))
    return None


def _covered(t: str, types: frozenset[str] | None) -> bool:
    return types is None or t in types or (t == "integer" and "number" in types)


def _overlaps(t: str, types: frozenset[str] | None) -> bool:
    return _covered(t, types) or (t == "number" and types is not None and "integer" in types)


def _types_intersect(a: frozenset[str], b: frozenset[str]) -> frozenset[str]:
    both = set(a & b)
    if ("integer" in a and "number" in b) or ("number" in a and "integer" in b):
        both.add("integer")
    return frozenset(both)


def _fmt_types(types: frozenset[str] | None) -> str:
    return "any type" if types is None else " or ".join(sorted(types))


def _fmt_values(values: Iterable[Any]) -> str:
    shown = list(values)
    more = ", ..." if len(shown) > _MAX_SHOWN else ""
    return ", ".join(_fmt_value(v) for v in shown[:_MAX_SHOWN]) + more


def _fmt_value(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value) if isinstance(value, str) else str(value)


def _count(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _names(value: Any) -> list[str]:
    return [v for v in value if isinstance(v, str)] if isinstance(value, list) else []


#: RE2 never backtracks: a pattern matches in time linear in the name, whatever its shape, so
#: a pattern sent in a request (`^(?:(?:.*)*)*$X`) cannot hold a thread for hours. Patterns
#: RE2 cannot express (look-around, back-references) are treated as undecidable.
_RE2_OPTIONS = re2.Options()


_RE2_OPTIONS.log_errors = False  # an unsupported pattern is an answer here, not a log line


@functools.lru_cache(maxsize=1024)
def _compiled(pattern: str) -> Any:
    """``pattern`` compiled by RE2, or None when RE2 cannot express it."""
    try:
        return re2.compile(pattern, _RE2_OPTIONS)
    except re2.error:
        return None


def _may_match(pattern: str, name: str) -> bool:
    compiled = _compiled(pattern)
    if compiled is None:
        return True  # undecidable: assume the pattern applies
    return compiled.search(name) is not None


def _surely_matches(pattern: str, name: str) -> bool:
    compiled = _compiled(pattern)
    return compiled is not None and compiled.search(name) is not None


def _finite_values(schema: Mapping[str, Any], expand: bool = False) -> list[Any] | None:
    """The schema's possible values when they can be listed (before its other keywords).

    With `expand`, also list booleans, null and small integer ranges.
    """
    if "const" in schema:
        return [schema["const"]]
    if isinstance(schema.get("enum"), list):
        return list(schema["enum"])
    types = _type_set(schema)
    if not expand or types is None:
        return None
    if types <= {"boolean", "null"}:
        return [v for t in sorted(types) for v in ((True, False) if t == "boolean" else (None,))]
    if types == frozenset({"integer"}):
        low, high = _lower(schema), _upper(schema)
        if low is not None and high is not None:
            start, stop = low.as_integer(), high.as_integer()
            if stop - start < _MAX_ENUMERATED_RANGE:
                return list(range(start, stop + 1))
    return None


def _conjoin(parts: Sequence[Schema]) -> Schema:
    """One schema accepting at least every document that all `parts` accept (writer side)."""
    if any(p is False for p in parts):
        return False
    maps = [p for p in parts if isinstance(p, Mapping)]
    merged: dict[str, Any] = {}
    for part in maps:
        for key, value in part.items():
            merged[key] = _conjoin_keyword(key, merged[key], value) if key in merged else value
    if len(maps) > 1:
        # `properties` and `items` depend on sibling keywords of their own part.
        if any("properties" in m for m in maps):
            names = dict.fromkeys(n for m in maps for n in _mapping(m.get("properties")))
            merged["properties"] = {n: _all([_writer_source(m, n) for m in maps]) for n in names}
        if any("prefixItems" in m or "items" in m for m in maps):
            merged.update(_conjoin_items(maps))
    if ("type" in merged and not merged["type"]) or _IMPOSSIBLE in merged.values():
        return False
    return merged


def _conjoin_items(maps: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    def position(m: Mapping[str, Any], index: int) -> Schema:
        prefix = _list(m.get("prefixItems"))
        result: Schema = prefix[index] if index < len(prefix) else m.get("items", True)
        return result

    length = max(len(_list(m.get("prefixItems"))) for m in maps)
    merged: dict[str, Any] = {"items": _all([m.get("items", True) for m in maps])}
    if length:
        merged["prefixItems"] = [_all([position(m, i) for m in maps]) for i in range(length)]
    return merged


def _all(schemas: Sequence[Schema]) -> Schema:
    """The conjunction of `schemas` as one schema."""
    if any(s is False for s in schemas):
        return False
    constraining = [s for s in schemas if isinstance(s, Mapping) and not _accepts_everything(s)]
    if not constraining:
        return True
    return constraining[0] if len(constraining) == 1 else {"allOf": constraining}


def _conjoin_keyword(key: str, current: Any, value: Any) -> Any:
    # Whenever two values cannot be combined exactly, keeping one of them only widens the
    # writer, which is the safe direction.
    if key == "const":
        return current if _json_equal(current, value) else _IMPOSSIBLE
    if key == "enum" and isinstance(current, list) and isinstance(value, list):
        common = [v for v in current if any(_json_equal(v, x) for x in value)]
        return common or _IMPOSSIBLE
    if key in _COMBINATORS and isinstance(current, list) and isinstance(value, list):
        # One branch of each holds, so some pair of branches holds (exclusive if both oneOf).
        if len(current) * len(value) <= _MAX_BRANCH_PRODUCT:
            return [{"allOf": [a, b]} for a in current for b in value]
        return current
    if key == "not":
        return {"anyOf": [current, value]}  # not A and not B == not (A or B)
    if key == "type":
        a, b = _type_set({"type": current}), _type_set({"type": value})
        return sorted(_types_intersect(_TYPES if a is None else a, _TYPES if b is None else b))
    if key == "required" and isinstance(current, list) and isinstance(value, list):
        return list(dict.fromkeys([*current, *value]))
    if key in ("minimum", "exclusiveMinimum", "minLength", "minItems", "minProperties"):
        return (
            max(current, value)
            if _number(current) is not None and _number(value) is not None
            else current
        )
    if key in ("maximum", "exclusiveMaximum", "maxLength", "maxItems", "maxProperties"):
        return (
            min(current, value)
            if _number(current) is not None and _number(value) is not None
            else current
        )
    if key == "uniqueItems":
        return current is True or value is True
    if key in ("properties", "patternProperties", "dependentSchemas"):
        both = dict(_mapping(current))
        for name, schema in _mapping(value).items():
            both[name] = {"allOf": [both[name], schema]} if name in both else schema
        return both
    if key == "dependentRequired":
        needs = {k: list(v) for k, v in _mapping(current).items() if isinstance(v, list)}
        for name, more in _mapping(value).items():
            needs[name] = list(dict.fromkeys([*needs.get(name, []), *_names(more)]))
        return needs
    if key in ("additionalProperties", "items", "propertyNames"):
        return {"allOf": [current, value]}
    return current


def _split_by_type(schema: Schema) -> list[Schema]:
    types = _type_set(schema) if isinstance(schema, Mapping) else None
    if types is None or len(types) < 2 or not isinstance(schema, Mapping):
        return [schema]
    return [{**schema, "type": t} for t in sorted(types)]


def _normalise_unevaluated(schema: Mapping[str, Any]) -> Mapping[str, Any]:
    """Turn `unevaluated*` into `additionalProperties`/`items` where they mean the same."""
    if any(k in schema for k in _IN_PLACE_APPLICATORS):
        return schema
    result = dict(schema)
    if "unevaluatedProperties" in result:
        extra = result.pop("unevaluatedProperties")
        result.setdefault("additionalProperties", extra)
    if "unevaluatedItems" in result and "contains" not in result:
        extra = result.pop("unevaluatedItems")
        result.setdefault("items", extra)
    return result


def _is_closed(w: Mapping[str, Any]) -> bool:
    """The writer sends no names beyond its declared properties."""
    return w.get("additionalProperties", True) is False and not _mapping(w.get("patternProperties"))


def _writer_source(w: Mapping[str, Any], name: str) -> Schema:
    """The writer schema values under `name` satisfy (over-approximated)."""
    props = _mapping(w.get("properties"))
    patterns = _mapping(w.get("patternProperties"))
    if name in props:
        matching = [s for p, s in patterns.items() if _surely_matches(p, name)]
        return _all([props[name], *matching])
    if any(_may_match(p, name) and not _surely_matches(p, name) for p in patterns):
        return True  # cannot tell which rule applies: assume anything
    matching = [s for p, s in patterns.items() if _surely_matches(p, name)]
    if matching:
        return _conjoin(matching)
    additional: Schema = w.get("additionalProperties", True)
    return additional


def _writer_max_properties(w: Mapping[str, Any]) -> int | None:
    declared = _count(w.get("maxProperties"))
    if _is_closed(w):
        closed = sum(1 for s in _mapping(w.get("properties")).values() if s is not False)
        return closed if declared is None else min(declared, closed)
    return declared


def _writer_max_items(w: Mapping[str, Any]) -> int | None:
    declared = _count(w.get("maxItems"))
    prefix = w.get("prefixItems")
    if w.get("items") is False and isinstance(prefix, list):
        return len(prefix) if declared is None else min(declared, len(prefix))
    return declared


def _describe(piece: Schema) -> str:
    types = _type_set(piece) if isinstance(piece, Mapping) else None
    return "earlier values" if types is None else f"earlier {_fmt_types(types)} values"
