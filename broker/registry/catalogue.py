"""The schema registry: the catalogue (``contract.catalogue``) plus what only the platform
does, adding versions under each type's compatibility mode and checking a schemas tree."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import jsonschema
import orjson

from broker.registry.compatibility.report import CompatibilityMode, Incompatibility
from broker.registry.compatibility.walk import check
from contract.catalogue import (
    RegistryError,
    SchemaCatalogue,
    SchemaVersion,
    read_deprecations,
    read_versions,
    schema_directories,
)
from contract.domains import Domain


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


def meta_errors(schema: Mapping[str, Any]) -> list[str]:
    """Reasons ``schema`` is not a valid JSON Schema 2020-12 document (empty when valid)."""
    validator = jsonschema.Draft202012Validator(jsonschema.Draft202012Validator.META_SCHEMA)
    return [
        f"{'/'.join(str(p) for p in e.absolute_path) or '(root)'}: {e.message}"
        for e in validator.iter_errors(schema)
    ]


class SchemaRegistry(SchemaCatalogue):
    """The catalogue with each type's compatibility mode, taking new versions only when they
    are valid and compatible."""

    def __init__(self) -> None:
        super().__init__()
        self._modes: dict[str, CompatibilityMode] = {}
        #: Per type, the versions the operator published as breaking, with why (a new major).
        self._breaking: dict[str, dict[int, str]] = {}

    @classmethod
    def from_directory(cls, root: Path, domains: Iterable[Domain] = ()) -> SchemaRegistry:
        """Load ``root/<domain>/<type>/v<N>.json`` and the optional ``config.json`` modes, and
        the schemas ``domains`` bring (``contract.catalogue.schema_directories``)."""
        registry = cls()
        for event_type, type_dir in schema_directories(root, domains):
            config = type_dir / "config.json"
            if config.exists():
                settings = orjson.loads(config.read_bytes())
                registry._modes[event_type] = CompatibilityMode(settings["compatibility"])
                registry._breaking[event_type] = {
                    int(n): why for n, why in settings.get("breaking", {}).items()
                }
            registry.add_versions(read_versions(type_dir, event_type))
            registry.deprecations.update(read_deprecations(type_dir, event_type))
        return registry

    def mode(self, event_type: str) -> CompatibilityMode:
        """The type's compatibility mode."""
        self._known(event_type)
        return self._modes.get(event_type, CompatibilityMode.BACKWARD)

    def breaking(self, event_type: str) -> dict[int, str]:
        """The type's versions published as breaking changes (``config.json`` ``breaking``:
        version → why), each the start of a new major: older events stay readable under
        their own version, and later versions are checked against it, not across it."""
        self._known(event_type)
        return dict(self._breaking.get(event_type, {}))

    def since_major(self, event_type: str, versions: list[SchemaVersion]) -> list[SchemaVersion]:
        """``versions`` from the latest breaking one on: what a new version is checked against."""
        majors = [v.version for v in versions if v.version in self._breaking.get(event_type, {})]
        return [v for v in versions if not majors or v.version >= max(majors)]

    def set_mode(self, event_type: str, mode: CompatibilityMode) -> None:
        """Change a type's compatibility mode."""
        with self._lock:
            self._modes[event_type] = mode

    def problems(self, event_type: str, schema: Mapping[str, Any]) -> list[Incompatibility]:
        """Why ``schema`` could not become the next version of ``event_type`` (empty if it can)."""
        versions = self._versions.get(event_type)
        if not versions:
            return []
        mode = self._modes.get(event_type, CompatibilityMode.BACKWARD)
        return check(schema, [v.schema for v in self.since_major(event_type, versions)], mode)

    def register(self, event_type: str, schema: Mapping[str, Any]) -> SchemaVersion:
        """Add ``schema`` as the next version, refusing an invalid or incompatible one."""
        errors = meta_errors(schema)
        if errors:
            raise InvalidSchemaError(f"{event_type}: not a valid JSON Schema: {'; '.join(errors)}")
        with self._lock:
            versions = self._versions.setdefault(event_type, [])
            if versions and versions[-1].schema == schema:
                return versions[-1]  # registering the same schema again is a no-op
            problems = self.problems(event_type, schema)
            if problems:
                mode = self._modes.get(event_type, CompatibilityMode.BACKWARD)
                raise IncompatibleSchemaError(event_type, mode, problems)
            number = versions[-1].version + 1 if versions else 1
            version = SchemaVersion(event_type, number, schema)
            versions.append(version)
            return version

    def remove_version(self, version: SchemaVersion) -> None:
        """Forget a version that could not be stored."""
        with self._lock:
            known = self._versions[version.event_type]
            known[:] = [v for v in known if v.version != version.version]
            self._resolved.clear()


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
            if i == 0:
                continue
            previous = [p.schema for p in registry.since_major(event_type, versions[:i])]
            found = check(v.schema, previous, registry.mode(event_type))
            if v.version not in registry.breaking(event_type):
                problems.extend(f"{where}: {p.message} (at {p.path})" for p in found)
            elif not found:
                # A version recorded as breaking must break: else the record misleads readers.
                problems.append(
                    f"{where}: recorded as breaking in config.json but compatible with "
                    f'v{versions[i - 1].version}; remove it from "breaking"'
                )
    return problems
