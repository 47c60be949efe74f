"""JSON Schema (2020-12) compatibility checks for the schema registry, in Confluent's sense.

The core is one question: is every document valid under the *writer* schema also valid under the
*reader* schema? It is answered structurally, keyword family by keyword family. Where the answer
cannot be decided (regular expressions, `not`, `unevaluated*`, ...) the checker reports an
incompatibility rather than risk accepting a schema that rejects existing data.

Two rules keep the approximations safe:

* the writer may be *over*-approximated (treated as producing more than it really does), for
  example by dropping a writer keyword we cannot reason about;
* the reader may only be *under*-approximated (treated as accepting less than it really does).

Paths are JSON pointers into the reader schema; a `$ref` continues at its target
(`/$defs/Stop/properties/code`), while the message names the field as reached (`from.code`).
Messages describe the reader relative to the writer ("field `fare_jpy` became required"); under
FORWARD the reader is the previous schema, so they read from the new schema to the previous one.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from enum import StrEnum, auto
from fractions import Fraction
from typing import Any
from urllib.parse import unquote

import re2  # type: ignore[import-untyped]
from jsonschema import Draft202012Validator
from jsonschema.exceptions import best_match

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


class _NamedStrEnum(StrEnum):
    @staticmethod
    def _generate_next_value_(name: str, start: int, count: int, last_values: list[Any]) -> str:
        return name


class CompatibilityMode(_NamedStrEnum):
    """Confluent's compatibility levels."""

    BACKWARD = auto()
    BACKWARD_TRANSITIVE = auto()
    FORWARD = auto()
    FORWARD_TRANSITIVE = auto()
    FULL = auto()
    FULL_TRANSITIVE = auto()
    NONE = auto()


class ChangeKind(_NamedStrEnum):
    """How the reader differs from the writer in a way that rejects some writer documents."""

    # types and values
    TYPE_CHANGED = auto()
    TYPE_NARROWED = auto()
    NOTHING_ACCEPTED = auto()
    ENUM_ADDED = auto()
    ENUM_NARROWED = auto()
    CONST_ADDED = auto()
    CONST_CHANGED = auto()
    VALUE_REJECTED = auto()
    # numbers
    MINIMUM_ADDED = auto()
    MINIMUM_INCREASED = auto()
    MAXIMUM_ADDED = auto()
    MAXIMUM_DECREASED = auto()
    EXCLUSIVE_MINIMUM_ADDED = auto()
    EXCLUSIVE_MINIMUM_INCREASED = auto()
    EXCLUSIVE_MAXIMUM_ADDED = auto()
    EXCLUSIVE_MAXIMUM_DECREASED = auto()
    MULTIPLE_OF_ADDED = auto()
    MULTIPLE_OF_CHANGED = auto()
    # strings
    MIN_LENGTH_ADDED = auto()
    MIN_LENGTH_INCREASED = auto()
    MAX_LENGTH_ADDED = auto()
    MAX_LENGTH_DECREASED = auto()
    PATTERN_ADDED = auto()
    PATTERN_CHANGED = auto()
    FORMAT_ADDED = auto()
    FORMAT_CHANGED = auto()
    # objects
    REQUIRED_ADDED = auto()
    PROPERTY_ADDED_OPEN_MODEL = auto()
    PROPERTY_ADDED_NOT_COVERED = auto()
    PROPERTY_REMOVED_CLOSED_MODEL = auto()
    PROPERTY_REMOVED_NOT_COVERED = auto()
    ADDITIONAL_PROPERTIES_NARROWED = auto()
    PATTERN_PROPERTIES_NARROWED = auto()
    MIN_PROPERTIES_ADDED = auto()
    MIN_PROPERTIES_INCREASED = auto()
    MAX_PROPERTIES_ADDED = auto()
    MAX_PROPERTIES_DECREASED = auto()
    PROPERTY_NAMES_NARROWED = auto()
    DEPENDENT_REQUIRED_ADDED = auto()
    # arrays
    ITEM_ADDED_OPEN_MODEL = auto()
    ITEM_REMOVED_CLOSED_MODEL = auto()
    MIN_ITEMS_ADDED = auto()
    MIN_ITEMS_INCREASED = auto()
    MAX_ITEMS_ADDED = auto()
    MAX_ITEMS_DECREASED = auto()
    UNIQUE_ITEMS_ADDED = auto()
    CONTAINS_NARROWED = auto()
    # combinators
    ANY_OF_NARROWED = auto()
    ONE_OF_NARROWED = auto()
    ONE_OF_AMBIGUOUS = auto()
    # conservative answers: the checker could not prove compatibility
    REF_UNRESOLVED = auto()
    KEYWORD_UNVERIFIABLE = auto()


@dataclass(frozen=True)
class Incompatibility:
    """One reason why the reader cannot read some document the writer allows."""

    kind: ChangeKind
    path: str
    message: str


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


def _prefixed(prefix: str, found: Iterable[Incompatibility]) -> list[Incompatibility]:
    return [replace(inc, message=f"{prefix}: {inc.message}") for inc in found]


def _unique(found: Iterable[Incompatibility]) -> list[Incompatibility]:
    # The same reader check can fail for several writer `oneOf`/`anyOf` branches: report once.
    return list(dict.fromkeys(found))


# --------------------------------------------------------------------------- locations


def _escape(token: str) -> str:
    return token.replace("~", "~0").replace("/", "~1")


def _join(field: str, name: str) -> str:
    return f"{field}.{name}" if field else name


@dataclass(frozen=True, slots=True)
class _Loc:
    """Where a check is: a JSON pointer into the reader schema and a human name of the field."""

    pointer: str
    field: str

    def at(self, *tokens: str | int) -> _Loc:
        return _Loc(self.pointer + "".join(f"/{_escape(str(t))}" for t in tokens), self.field)

    def prop(self, name: str) -> _Loc:
        return _Loc(f"{self.pointer}/properties/{_escape(name)}", _join(self.field, name))

    def child(self, name: str) -> str:
        return _join(self.field, name)

    def item(self, index: int | None) -> _Loc:
        base = self.field or "(root)"
        if index is None:
            return _Loc(f"{self.pointer}/items", f"{base}[]")
        return _Loc(f"{self.pointer}/prefixItems/{index}", f"{base}[{index}]")

    def jump(self, pointer: str) -> _Loc:
        return _Loc(pointer, self.field)

    @property
    def what(self) -> str:
        return f"field `{self.field}`" if self.field else "the document root"


def _inc(kind: ChangeKind, loc: _Loc, message: str) -> Incompatibility:
    return Incompatibility(kind, loc.pointer, message)


# --------------------------------------------------------------------------- documents


class _UnresolvableRefError(Exception):
    def __init__(self, ref: object) -> None:
        super().__init__(ref)
        self.ref = ref


class _UndecidableError(Exception):
    """The validator could not evaluate a value (bad regex, odd `$ref`, ...)."""


class _Document:
    """One schema document: the root for `$ref` lookups and a validator for concrete values."""

    def __init__(self, root: Schema) -> None:
        self.root = root
        self._validator = Draft202012Validator(
            root, format_checker=Draft202012Validator.FORMAT_CHECKER
        )

    def resolve(self, ref: object) -> tuple[Schema, str]:
        """The subschema `ref` points at, and its JSON pointer; only local references."""
        if not isinstance(ref, str):
            raise _UnresolvableRefError(ref)
        base, _, fragment = ref.partition("#")
        root_id = self.root.get("$id") if isinstance(self.root, Mapping) else None
        if base and base != root_id:
            raise _UnresolvableRefError(ref)
        fragment = unquote(fragment)
        if fragment and not fragment.startswith("/"):
            return self._anchor(ref, fragment)
        node: Any = self.root
        for token in fragment.split("/")[1:]:
            token = token.replace("~1", "/").replace("~0", "~")
            if isinstance(node, Mapping) and token in node:
                node = node[token]
            elif isinstance(node, list) and token.isdigit() and int(token) < len(node):
                node = node[int(token)]
            else:
                raise _UnresolvableRefError(ref)
        if not isinstance(node, bool | Mapping):
            raise _UnresolvableRefError(ref)
        return node, fragment

    def _anchor(self, ref: str, name: str) -> tuple[Schema, str]:
        for pointer, node in _walk(self.root, ""):
            if node.get("$anchor") == name:
                return node, pointer
        raise _UnresolvableRefError(ref)

    def error(self, schema: Schema, value: Any) -> tuple[str | None, str] | None:
        """Why `value` fails `schema` as (keyword, message), or None if it is valid."""
        try:
            found = best_match(self._validator.evolve(schema=schema).iter_errors(value))
        except Exception as exc:  # any validator failure means "cannot tell"
            raise _UndecidableError(str(exc)) from exc
        if found is None:
            return None
        keyword = found.validator if not found.absolute_path else None
        return (str(keyword) if keyword is not None else None), found.message

    def valid(self, schema: Schema, value: Any, *, unsure: bool) -> bool:
        try:
            return self.error(schema, value) is None
        except _UndecidableError:
            return unsure


def _walk(node: Any, pointer: str) -> Iterator[tuple[str, Mapping[str, Any]]]:
    if isinstance(node, Mapping):
        yield pointer, node
        for key, value in node.items():
            if key not in ("enum", "const"):
                yield from _walk(value, f"{pointer}/{_escape(str(key))}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _walk(value, f"{pointer}/{index}")


# --------------------------------------------------------------------------- schema helpers


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


def _number(value: Any) -> Fraction | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    # repr keeps the decimal the author wrote (0.1 stays 1/10, not the nearest binary float).
    return Fraction(value) if isinstance(value, int) else Fraction(repr(value))


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


# --------------------------------------------------------------------------- numeric bounds


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


# --------------------------------------------------------------------------- the checker


class _Checker:
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

    def _trial(self, r: Schema, w: Schema, loc: _Loc, excluded: Sequence[Schema] = ()) -> bool:
        return not self.compare(r, w, loc, excluded)

    # ---- references and combinators

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

    def _all_of(
        self, r: Mapping[str, Any], w: Mapping[str, Any], loc: _Loc, excluded: Sequence[Schema]
    ) -> list[Incompatibility]:
        return [
            inc
            for i, part in enumerate(_list(r.get("allOf")))
            for inc in self.compare(part, w, loc.at("allOf", i), excluded)
        ]

    def _any_of(
        self, r: Mapping[str, Any], w: Mapping[str, Any], loc: _Loc, excluded: Sequence[Schema]
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
        self, r: Mapping[str, Any], w: Mapping[str, Any], loc: _Loc, excluded: Sequence[Schema]
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
        self, branches: Sequence[Schema], piece: Schema, loc: _Loc, excluded: Sequence[Schema] = ()
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
        swapped = _Checker(self.writer, self.reader)
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
        if "not" in w and _Checker(self.writer, self.reader)._trial(w["not"], negated, loc):
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

    def _unverifiable(self, r: Mapping[str, Any], loc: _Loc) -> list[Incompatibility]:
        return [
            _inc(ChangeKind.KEYWORD_UNVERIFIABLE, loc.at(k), f"{loc.what}: cannot verify `{k}`")
            for k in ("unevaluatedProperties", "unevaluatedItems", "$dynamicRef")
            if k in r and r[k] is not True
        ]

    # ---- concrete writer values

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

    # ---- one keyword family at a time

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

    # ---- arrays

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

    # ---- objects

    def _objects(
        self, r: Mapping[str, Any], w: Mapping[str, Any], loc: _Loc
    ) -> list[Incompatibility]:
        return [
            *self._required(r, w, loc),
            *self._properties(r, w, loc),
            *self._pattern_properties(r, w, loc),
            *self._additional_properties(r, w, loc),
            *self._dependent_required(r, w, loc),
            *self._dependent_schemas(r, w, loc),
            *self._property_counts(r, w, loc),
            *self._property_names(r, w, loc),
        ]

    def _required(
        self, r: Mapping[str, Any], w: Mapping[str, Any], loc: _Loc
    ) -> list[Incompatibility]:
        # JSON Schema has no default resolution: a new required field breaks even with `default`.
        guaranteed = set(_names(w.get("required")))
        declared = _mapping(r.get("properties"))
        return [
            _inc(
                ChangeKind.REQUIRED_ADDED,
                loc.prop(name) if name in declared else loc.at("required"),
                f"field `{loc.child(name)}` became required",
            )
            for name in dict.fromkeys(_names(r.get("required")))
            if name not in guaranteed
        ]

    def _properties(
        self, r: Mapping[str, Any], w: Mapping[str, Any], loc: _Loc
    ) -> list[Incompatibility]:
        r_props, w_props = _mapping(r.get("properties")), _mapping(w.get("properties"))
        found: list[Incompatibility] = []
        for name, r_prop in r_props.items():
            if name in w_props:
                found += self.compare(r_prop, _writer_source(w, name), loc.prop(name))
            else:
                found += self._added_property(name, r_prop, w, loc)
        r_patterns = _mapping(r.get("patternProperties"))
        for name, w_prop in w_props.items():
            if name in r_props or w_prop is False:
                continue
            if any(_surely_matches(p, name) for p in r_patterns):
                continue  # the reader's matching pattern is checked in _pattern_properties
            found += self._removed_property(name, w_prop, r, loc)
        return found

    def _added_property(
        self, name: str, r_prop: Schema, w: Mapping[str, Any], loc: _Loc
    ) -> list[Incompatibility]:
        source = _writer_source(w, name)
        if source is False or not self.compare(r_prop, source, loc.prop(name)):
            return []
        if _accepts_everything(source):
            # Confluent: an open writer may already have sent this name with any value.
            message = (
                f"field `{loc.child(name)}` was added with constraints, but the other schema leaves"
                f" unknown fields open, so data may carry `{name}` with any value"
            )
            return [_inc(ChangeKind.PROPERTY_ADDED_OPEN_MODEL, loc.prop(name), message)]
        message = (
            f"field `{loc.child(name)}` was added, but its schema does not accept every value the"
            f" other schema's additional or pattern properties allow for it"
        )
        return [_inc(ChangeKind.PROPERTY_ADDED_NOT_COVERED, loc.prop(name), message)]

    def _removed_property(
        self, name: str, w_prop: Schema, r: Mapping[str, Any], loc: _Loc
    ) -> list[Incompatibility]:
        additional = r.get("additionalProperties", True)
        if not self.compare(additional, w_prop, loc.at("additionalProperties")):
            return []
        if additional is False:
            message = (
                f"field `{loc.child(name)}` was removed, but unknown fields are rejected"
                f" (additionalProperties: false) and data may still carry `{name}`"
            )
            return [_inc(ChangeKind.PROPERTY_REMOVED_CLOSED_MODEL, loc.prop(name), message)]
        message = (
            f"field `{loc.child(name)}` was removed, and `additionalProperties` does not accept"
            f" the values it could have"
        )
        return [_inc(ChangeKind.PROPERTY_REMOVED_NOT_COVERED, loc.prop(name), message)]

    def _pattern_properties(
        self, r: Mapping[str, Any], w: Mapping[str, Any], loc: _Loc
    ) -> list[Incompatibility]:
        found: list[Incompatibility] = []
        w_props = _mapping(w.get("properties"))
        w_patterns = _mapping(w.get("patternProperties"))
        for pattern, r_schema in _mapping(r.get("patternProperties")).items():
            at = loc.at("patternProperties", pattern)
            # Pattern overlap is not decided: every writer pattern might produce such names.
            sources = [
                (f"field `{loc.child(n)}`", _writer_source(w, n))
                for n in w_props
                if _may_match(pattern, n)
            ]
            sources += [(f"the other schema's pattern /{p}/", s) for p, s in w_patterns.items()]
            if pattern not in w_patterns:  # else such names are never "additional" for the writer
                sources.append(("unknown fields", w.get("additionalProperties", True)))
            for label, source in sources:
                if source is not False and not self._trial(r_schema, source, at):
                    message = (
                        f"{loc.what}: properties matching /{pattern}/ no longer accept every"
                        f" value of {label}"
                    )
                    found.append(_inc(ChangeKind.PATTERN_PROPERTIES_NARROWED, at, message))
                    break
        return found

    def _additional_properties(
        self, r: Mapping[str, Any], w: Mapping[str, Any], loc: _Loc
    ) -> list[Incompatibility]:
        additional = r.get("additionalProperties", True)
        if _accepts_everything(additional):
            return []
        r_patterns = _mapping(r.get("patternProperties"))
        sources = [
            (f"names matching the other schema's pattern /{p}/", s)
            for p, s in _mapping(w.get("patternProperties")).items()
            if p not in r_patterns
        ]
        sources.append(("unknown fields", w.get("additionalProperties", True)))
        at = loc.at("additionalProperties")
        for label, source in sources:
            if source is not False and not self._trial(additional, source, at):
                detail = "rejects" if additional is False else "narrowed what it accepts for"
                message = f"{loc.what} now {detail} {label} (additionalProperties)"
                return [_inc(ChangeKind.ADDITIONAL_PROPERTIES_NARROWED, at, message)]
        return []

    def _dependent_required(
        self, r: Mapping[str, Any], w: Mapping[str, Any], loc: _Loc
    ) -> list[Incompatibility]:
        found: list[Incompatibility] = []
        w_dependent = _mapping(w.get("dependentRequired"))
        for trigger, needs in _mapping(r.get("dependentRequired")).items():
            if _writer_source(w, trigger) is False:
                continue  # the writer never sends the trigger
            guaranteed = set(_names(w.get("required"))) | set(_names(w_dependent.get(trigger)))
            for name in _names(needs):
                if name not in guaranteed:
                    message = (
                        f"field `{loc.child(name)}` became required when"
                        f" `{loc.child(trigger)}` is present"
                    )
                    found.append(
                        _inc(
                            ChangeKind.DEPENDENT_REQUIRED_ADDED,
                            loc.at("dependentRequired", trigger),
                            message,
                        )
                    )
        return found

    def _dependent_schemas(
        self, r: Mapping[str, Any], w: Mapping[str, Any], loc: _Loc
    ) -> list[Incompatibility]:
        found: list[Incompatibility] = []
        w_dependent = _mapping(w.get("dependentSchemas"))
        for trigger, schema in _mapping(r.get("dependentSchemas")).items():
            if _writer_source(w, trigger) is False:
                continue
            # Only writer instances that carry the trigger matter.
            needs = [trigger, *_names(_mapping(w.get("dependentRequired")).get(trigger))]
            parts: list[Schema] = [w, {"required": needs}]
            if trigger in w_dependent:
                parts.append(self._flatten_writer(w_dependent[trigger]))
            found += self.compare(schema, _conjoin(parts), loc.at("dependentSchemas", trigger))
        return found

    def _property_counts(
        self, r: Mapping[str, Any], w: Mapping[str, Any], loc: _Loc
    ) -> list[Incompatibility]:
        found: list[Incompatibility] = []
        r_min = _count(r.get("minProperties")) or 0
        w_min = max(_count(w.get("minProperties")) or 0, len(set(_names(w.get("required")))))
        if r_min > w_min:
            kind = (
                ChangeKind.MIN_PROPERTIES_ADDED
                if "minProperties" not in w
                else ChangeKind.MIN_PROPERTIES_INCREASED
            )
            message = f"{loc.what} minimum property count raised from {w_min} to {r_min}"
            found.append(_inc(kind, loc.at("minProperties"), message))
        r_max, w_max = _count(r.get("maxProperties")), _writer_max_properties(w)
        if r_max is not None and (w_max is None or w_max > r_max):
            kind = (
                ChangeKind.MAX_PROPERTIES_ADDED
                if w_max is None
                else ChangeKind.MAX_PROPERTIES_DECREASED
            )
            was = "unbounded" if w_max is None else str(w_max)
            message = f"{loc.what} maximum property count lowered from {was} to {r_max}"
            found.append(_inc(kind, loc.at("maxProperties"), message))
        return found

    def _property_names(
        self, r: Mapping[str, Any], w: Mapping[str, Any], loc: _Loc
    ) -> list[Incompatibility]:
        if "propertyNames" not in r:
            return []
        r_names = r["propertyNames"]
        at = loc.at("propertyNames")
        if _is_closed(w):
            names = [n for n, s in _mapping(w.get("properties")).items() if s is not False]
            rejected = [n for n in names if not self.reader.valid(r_names, n, unsure=False)]
            if not rejected:
                return []
            message = f"{loc.what}: `propertyNames` now rejects {_fmt_values(rejected)}"
            return [_inc(ChangeKind.PROPERTY_NAMES_NARROWED, at, message)]
        nested = self.compare(r_names, w.get("propertyNames", {"type": "string"}), at)
        if not nested:
            return []
        message = f"{loc.what}: `propertyNames` narrowed ({nested[0].message})"
        return [_inc(ChangeKind.PROPERTY_NAMES_NARROWED, at, message)]


# --------------------------------------------------------------------------- object helpers


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


# --------------------------------------------------------------------------- disjointness


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
