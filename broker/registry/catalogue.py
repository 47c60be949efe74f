"""The schema registry: every event type's versions, its compatibility mode, its validators."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jsonschema
import jsonschema_rs
import orjson

from broker.registry.compatibility.report import CompatibilityMode, Incompatibility
from broker.registry.compatibility.walk import check

_VERSION_FILE = re.compile(r"^v([1-9][0-9]*)\.json$")
_URN = re.compile(r"^urn:tsunagu:schema:(?P<type>[a-z_]+\.[a-z_]+\.[a-z_]+):v(?P<v>[1-9][0-9]*)$")


class RegistryError(Exception):
    """Root of the registry's failures."""


class UnknownTypeError(RegistryError):
    """No schema is registered for this event type."""


class UnknownSchemaError(RegistryError):
    """The event names a schema (``dataschema``) the registry does not have."""


class InvalidSchemaError(RegistryError):
    """A proposed schema is not a valid JSON Schema 2020-12 document."""


class IncompatibleSchemaError(RegistryError):
    """A proposed version breaks compatibility under its type's mode."""

    def __init__(self, event_type: str, mode: CompatibilityMode, problems: list[Incompatibility]):
        self.event_type = event_type
        self.mode = mode
        self.problems = problems
        reasons = "; ".join(p.message for p in problems)
        super().__init__(f"{event_type}: new version is not {mode.value} compatible: {reasons}")


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


def meta_errors(schema: Mapping[str, Any]) -> list[str]:
    """Reasons ``schema`` is not a valid JSON Schema 2020-12 document (empty when valid)."""
    validator = jsonschema.Draft202012Validator(jsonschema.Draft202012Validator.META_SCHEMA)
    return [
        f"{'/'.join(str(p) for p in e.absolute_path) or '(root)'}: {e.message}"
        for e in validator.iter_errors(schema)
    ]


@dataclass
class _Subject:
    mode: CompatibilityMode = CompatibilityMode.BACKWARD
    versions: list[SchemaVersion] = field(default_factory=list)


class SchemaRegistry:
    """Event types with their ordered versions; thread-safe; validators compiled lazily."""

    def __init__(self) -> None:
        self._subjects: dict[str, _Subject] = {}
        self._validators: dict[tuple[str, int], Any] = {}
        self._resolved: dict[tuple[str, str | None], SchemaVersion] = {}
        self._lock = threading.Lock()

    @classmethod
    def from_directory(cls, root: Path) -> SchemaRegistry:
        """Load ``root/<domain>/<type>/v<N>.json`` (and optional ``config.json`` modes)."""
        registry = cls()
        for type_dir in sorted(p for p in root.glob("*/*") if p.is_dir()):
            domain, name = type_dir.parent.name, type_dir.name
            if domain == "catalogue":
                continue
            event_type = f"{domain}.{name}"
            subject = registry._subjects.setdefault(event_type, _Subject())
            config = type_dir / "config.json"
            if config.exists():
                subject.mode = CompatibilityMode(orjson.loads(config.read_bytes())["compatibility"])
            found = sorted(
                (int(m[1]), p) for p in type_dir.iterdir() if (m := _VERSION_FILE.match(p.name))
            )
            for number, path in found:
                subject.versions.append(
                    SchemaVersion(event_type, number, orjson.loads(path.read_bytes()))
                )
        return registry

    def types(self) -> list[str]:
        """Every registered event type, sorted."""
        return sorted(t for t, s in self._subjects.items() if s.versions)

    def mode(self, event_type: str) -> CompatibilityMode:
        """The type's compatibility mode."""
        return self._subject(event_type).mode

    def versions(self, event_type: str) -> list[SchemaVersion]:
        """The type's versions, oldest first."""
        return list(self._subject(event_type).versions)

    def get(self, event_type: str, version: int | None = None) -> SchemaVersion:
        """One version (the latest when ``version`` is None)."""
        versions = self._subject(event_type).versions
        if version is None:
            return versions[-1]
        for v in versions:
            if v.version == version:
                return v
        raise UnknownSchemaError(f"{event_type} has no version {version}")

    def resolve(self, event_type: str, dataschema: str | None) -> SchemaVersion:
        """The version an event declares in ``dataschema``, or the latest when it names none."""
        found = self._resolved.get((event_type, dataschema))
        if found is None:
            found = self._resolve(event_type, dataschema)
            if dataschema is not None:  # "latest" moves when a version is added; pins do not
                self._resolved[(event_type, dataschema)] = found
        return found

    def _resolve(self, event_type: str, dataschema: str | None) -> SchemaVersion:
        self._subject(event_type)  # an unknown type is named as such, whatever dataschema says
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

    def set_mode(self, event_type: str, mode: CompatibilityMode) -> None:
        """Change a type's compatibility mode."""
        with self._lock:
            self._subjects.setdefault(event_type, _Subject()).mode = mode

    def problems(self, event_type: str, schema: Mapping[str, Any]) -> list[Incompatibility]:
        """Why ``schema`` could not become the next version of ``event_type`` (empty if it can)."""
        subject = self._subjects.get(event_type)
        if subject is None or not subject.versions:
            return []
        return check(schema, [v.schema for v in subject.versions], subject.mode)

    def register(self, event_type: str, schema: Mapping[str, Any]) -> SchemaVersion:
        """Add ``schema`` as the next version, refusing an invalid or incompatible one."""
        errors = meta_errors(schema)
        if errors:
            raise InvalidSchemaError(f"{event_type}: not a valid JSON Schema: {'; '.join(errors)}")
        with self._lock:
            subject = self._subjects.setdefault(event_type, _Subject())
            if subject.versions and subject.versions[-1].schema == schema:
                return subject.versions[-1]  # registering the same schema again is a no-op
            problems = self.problems(event_type, schema)
            if problems:
                raise IncompatibleSchemaError(event_type, subject.mode, problems)
            number = subject.versions[-1].version + 1 if subject.versions else 1
            version = SchemaVersion(event_type, number, schema)
            subject.versions.append(version)
            return version

    def add_versions(self, versions: Iterable[SchemaVersion]) -> None:
        """Add already-accepted versions (e.g. read back from the store) that are not known yet."""
        with self._lock:
            for v in versions:
                subject = self._subjects.setdefault(v.event_type, _Subject())
                if all(existing.version != v.version for existing in subject.versions):
                    subject.versions.append(v)
                    subject.versions.sort(key=lambda s: s.version)

    def remove_version(self, version: SchemaVersion) -> None:
        """Forget a version that could not be stored."""
        with self._lock:
            subject = self._subjects[version.event_type]
            subject.versions = [v for v in subject.versions if v.version != version.version]
            self._resolved.clear()

    def _subject(self, event_type: str) -> _Subject:
        subject = self._subjects.get(event_type)
        if subject is None or not subject.versions:
            raise UnknownTypeError(f"no schema is registered for event type {event_type!r}")
        return subject


def check_directory(root: Path) -> list[str]:
    """Every problem of a schemas directory: meta-schema, ids, examples, version chains."""
    problems: list[str] = []
    registry = SchemaRegistry.from_directory(root)
    for event_type in registry.types():
        versions = registry.versions(event_type)
        for i, v in enumerate(versions):
            where = f"{event_type} v{v.version}"
            errors = meta_errors(v.schema)
            problems.extend(f"{where}: {e}" for e in errors)
            if errors:
                continue
            if v.schema.get("$id") not in (None, v.urn):
                problems.append(f"{where}: $id {v.schema.get('$id')!r} should be {v.urn!r}")
            validator = registry.validator(v)
            for n, example in enumerate(v.schema.get("examples", [])):
                for err in validator.iter_errors(example):
                    path = "/" + "/".join(str(p) for p in err.instance_path)
                    problems.append(f"{where}: example {n} is invalid at {path}: {err.message}")
            if i > 0:
                previous = [p.schema for p in versions[:i]]
                problems.extend(
                    f"{where}: {p.message} (at {p.path})"
                    for p in check(v.schema, previous, registry.mode(event_type))
                )
    return problems
