"""What each family of breaking change may ask of the walk, and of the other families: the
checker (`walk._Checker`) is all of them at once."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from typing import Any

from broker.registry.compatibility.documents import _Document
from broker.registry.compatibility.keywords import Schema
from broker.registry.compatibility.locations import _Loc
from broker.registry.compatibility.report import Incompatibility


class Family(ABC):
    """The checker as one family of rules sees it."""

    reader: _Document
    writer: _Document

    @abstractmethod
    def _finite_writer(
        self,
        r: Schema,
        w: Mapping[str, Any],
        values: list[Any],
        loc: _Loc,
        excluded: Sequence[Schema] = (),
    ) -> list[Incompatibility]:
        """Defined by the walk."""

    @abstractmethod
    def _flatten_writer(self, w: Schema, depth: int = 0) -> Schema:
        """Defined by the walk."""

    @abstractmethod
    def _trial(self, r: Schema, w: Schema, loc: _Loc, excluded: Sequence[Schema] = ()) -> bool:
        """Defined by the walk."""

    @abstractmethod
    def compare(
        self, r: Schema, w: Schema, loc: _Loc, excluded: Sequence[Schema] = ()
    ) -> list[Incompatibility]:
        """Defined by the walk."""

    @abstractmethod
    def _swapped(self) -> Family:
        """Defined by the walk."""
