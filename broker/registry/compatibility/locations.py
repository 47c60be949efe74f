"""Where a check is: a JSON pointer into the reader schema and the field's human name."""

from __future__ import annotations

from dataclasses import dataclass

from broker.registry.compatibility.report import ChangeKind, Incompatibility


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
