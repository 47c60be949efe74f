"""The object family of breaking changes: required and added or removed properties,
additional and pattern properties, counts, names and dependencies."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from broker.registry.compatibility.family import Family
from broker.registry.compatibility.keywords import (
    Schema,
    _accepts_everything,
    _conjoin,
    _count,
    _fmt_values,
    _is_closed,
    _mapping,
    _may_match,
    _names,
    _surely_matches,
    _writer_max_properties,
    _writer_source,
)
from broker.registry.compatibility.locations import _inc, _Loc
from broker.registry.compatibility.report import ChangeKind, Incompatibility


class ObjectRules(Family):
    """Required and added or removed properties, counts, names and dependencies."""

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
