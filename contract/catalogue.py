"""The schema catalogue, read side: every event type's versions and their compiled validators.

Both sides read it: ingest validates with it, and a connector checks its rows with it before
they leave the firm. Adding versions under a compatibility mode is the platform's business
(``broker.registry.catalogue``).
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import jsonschema_rs
import orjson

from contract.domains import Domain

_VERSION_FILE = re.compile(r"^v([1-9][0-9]*)\.json$")
_URN = re.compile(r"^urn:tsunagu:schema:(?P<type>[a-z_]+\.[a-z_]+\.[a-z_]+):v(?P<v>[1-9][0-9]*)$")
#: Directories of the schemas tree that hold no event types.
_NOT_DOMAINS = frozenset({"catalogue"})


class RegistryError(Exception):
    """Root of the catalogue's and the registry's failures."""


class UnknownTypeError(RegistryError):
    """No schema is registered for this event type."""


class UnknownSchemaError(RegistryError):
    """The event names a schema (``dataschema``) the registry does not have."""


@dataclass(frozen=True, slots=True)
class SchemaVersion:
    """One version of one event type's data schema."""

    event_type: str
    version: int
    schema: Mapping[str, Any]

    @property
    def urn(self) -> str:
        """The schema's identifier, used as the CloudEvents ``dataschema``."""
        return schema_urn(self.event_type, self.version)


def schema_urn(event_type: str, version: int) -> str:
    """``urn:tsunagu:schema:<type>:v<N>``."""
    return f"urn:tsunagu:schema:{event_type}:v{version}"


def parse_urn(urn: str) -> tuple[str, int] | None:
    """(type, version) of a schema URN, or None when it is not one of ours."""
    m = _URN.match(urn)
    return (m["type"], int(m["v"])) if m else None


def type_directories(root: Path, domain: str = "*") -> list[tuple[str, Path]]:
    """``(event type, directory)`` of every ``root/<domain>/<type>/``, sorted."""
    return [
        (f"{p.parent.name}.{p.name}", p)
        for p in sorted(root.glob(f"{domain}/*"))
        if p.is_dir() and p.parent.name not in _NOT_DOMAINS
    ]


def schema_directories(root: Path, domains: Iterable[Domain] = ()) -> list[tuple[str, Path]]:
    """``type_directories`` of the platform's tree ``root``, then of each domain's own tree
    (a plug-in's ``Domain.schemas``), where only that domain's directory is read."""
    found = type_directories(root)
    for d in domains:
        if d.schemas is not None:
            found += type_directories(d.schemas, d.name)
    return found


def read_versions(type_dir: Path, event_type: str) -> list[SchemaVersion]:
    """The versions ``v<N>.json`` in one type's directory, oldest first."""
    found = sorted((int(m[1]), p) for p in type_dir.iterdir() if (m := _VERSION_FILE.match(p.name)))
    return [SchemaVersion(event_type, n, orjson.loads(p.read_bytes())) for n, p in found]


def read_deprecations(type_dir: Path, event_type: str) -> dict[tuple[str, int], date]:
    """The versions ``config.json`` deprecates (``"deprecated": {"1": "2027-09-30"}``), each
    with the last day its events are accepted."""
    config = type_dir / "config.json"
    if not config.exists():
        return {}
    deprecated = orjson.loads(config.read_bytes()).get("deprecated", {})
    return {(event_type, int(n)): date.fromisoformat(day) for n, day in deprecated.items()}


class SchemaCatalogue:
    """Event types with their ordered versions; thread-safe; validators compiled lazily."""

    def __init__(self) -> None:
        self._versions: dict[str, list[SchemaVersion]] = {}
        #: (type, version) -> the last day its events are accepted (``config.json``
        #: ``deprecated``): a major superseded, accepted for a window stated in advance.
        self.deprecations: dict[tuple[str, int], date] = {}
        self._validators: dict[tuple[str, int], Any] = {}
        self._resolved: dict[tuple[str, str | None], SchemaVersion] = {}
        self._lock = threading.Lock()

    @classmethod
    def from_directory(cls, root: Path, domains: Iterable[Domain] = ()) -> SchemaCatalogue:
        """Load ``root/<domain>/<type>/v<N>.json`` and the schemas ``domains`` bring."""
        catalogue = cls()
        for event_type, type_dir in schema_directories(root, domains):
            catalogue.add_versions(read_versions(type_dir, event_type))
            catalogue.deprecations.update(read_deprecations(type_dir, event_type))
        return catalogue

    def types(self) -> list[str]:
        """Every registered event type, sorted."""
        return sorted(t for t, versions in self._versions.items() if versions)

    def versions(self, event_type: str) -> list[SchemaVersion]:
        """The type's versions, oldest first."""
        return list(self._known(event_type))

    def get(self, event_type: str, version: int | None = None) -> SchemaVersion:
        """One version (the latest when ``version`` is None)."""
        versions = self._known(event_type)
        if version is None:
            return versions[-1]
        for v in versions:
            if v.version == version:
                return v
        raise UnknownSchemaError(f"{event_type} has no version {version}")

    def latest_naming(self, event_type: str, field: str) -> SchemaVersion:
        """The latest version whose data names the person it is about by ``field``
        (``resident_id``, or the service's ``subject`` under ID link); the latest version for
        a type naming no person either way."""
        versions = self._known(event_type)
        for v in reversed(versions):
            properties = v.schema.get("properties", {})
            if field in properties or not {"resident_id", "subject"} & set(properties):
                return v
        raise UnknownSchemaError(f"no version of {event_type} names the person by {field!r}")

    def resolve(self, event_type: str, dataschema: str | None) -> SchemaVersion:
        """The version an event declares in ``dataschema``, or the latest when it names none."""
        found = self._resolved.get((event_type, dataschema))
        if found is None:
            found = self._resolve(event_type, dataschema)
            if dataschema is not None:  # "latest" moves when a version is added; pins do not
                self._resolved[(event_type, dataschema)] = found
        return found

    def _resolve(self, event_type: str, dataschema: str | None) -> SchemaVersion:
        self._known(event_type)  # an unknown type is named as such, whatever dataschema says
        if dataschema is None:
            return self.get(event_type)
        parsed = parse_urn(dataschema)
        if parsed is None or parsed[0] != event_type:
            raise UnknownSchemaError(
                f"dataschema {dataschema!r} is not a schema of {event_type} "
                f"(expected {schema_urn(event_type, 1)} or a later version)"
            )
        return self.get(event_type, parsed[1])

    def validator(self, version: SchemaVersion) -> Any:
        """The compiled (jsonschema-rs) validator of a version."""
        key = (version.event_type, version.version)
        compiled = self._validators.get(key)
        if compiled is None:
            compiled = jsonschema_rs.validator_for(dict(version.schema), validate_formats=True)
            self._validators[key] = compiled
        return compiled

    def add_versions(self, versions: Iterable[SchemaVersion]) -> None:
        """Add already-accepted versions (e.g. read back from the store) that are not known yet."""
        with self._lock:
            for v in versions:
                known = self._versions.setdefault(v.event_type, [])
                if all(existing.version != v.version for existing in known):
                    known.append(v)
                    known.sort(key=lambda s: s.version)

    def _known(self, event_type: str) -> list[SchemaVersion]:
        versions = self._versions.get(event_type)
        if not versions:
            raise UnknownTypeError(f"no schema is registered for event type {event_type!r}")
        return versions
