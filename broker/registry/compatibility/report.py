"""What a compatibility check reports: the modes, each kind of breaking change, and one
incompatibility with where it is and what changed."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from enum import StrEnum, auto
from typing import Any


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


def _prefixed(prefix: str, found: Iterable[Incompatibility]) -> list[Incompatibility]:
    return [replace(inc, message=f"{prefix}: {inc.message}") for inc in found]


def _unique(found: Iterable[Incompatibility]) -> list[Incompatibility]:
    # The same reader check can fail for several writer `oneOf`/`anyOf` branches: report once.
    return list(dict.fromkeys(found))
