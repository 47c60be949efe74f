"""One schema document: its `$ref` lookups and a validator for concrete values."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any
from urllib.parse import unquote

from jsonschema import Draft202012Validator
from jsonschema.exceptions import best_match

from broker.registry.compatibility.keywords import Schema
from broker.registry.compatibility.locations import _escape


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
