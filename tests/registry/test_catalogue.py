"""The registry: loading the shipped schemas, resolving versions, registering new ones."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from broker.registry.catalogue import IncompatibleSchemaError, InvalidSchemaError, SchemaRegistry
from broker.registry.compatibility.report import CompatibilityMode
from broker.settings import REPO_SCHEMAS
from contract.catalogue import UnknownSchemaError, UnknownTypeError

TRIP = "transport.trip.completed"


@pytest.fixture
def registry() -> SchemaRegistry:
    return SchemaRegistry.from_directory(REPO_SCHEMAS)


def _latest(registry: SchemaRegistry) -> dict[str, Any]:
    return copy.deepcopy(dict(registry.get(TRIP).schema))


def _n(registry: SchemaRegistry) -> int:
    """The number of the latest shipped version of TRIP."""
    return registry.get(TRIP).version


def test_shipped_types_load_in_their_domains(registry: SchemaRegistry) -> None:
    assert {t.split(".")[0] for t in registry.types()} == {
        "transport",
        "health",
        "currency",
        "vacant_house",
    }
    assert registry.mode(TRIP) is CompatibilityMode.BACKWARD


def test_compatible_version_is_registered_as_the_next_number(registry: SchemaRegistry) -> None:
    n = _n(registry)
    schema = _latest(registry)
    schema["properties"]["co2_g"] = {"type": "integer"}
    added = registry.register(TRIP, schema)
    assert added.version == n + 1
    assert added.urn == f"urn:tsunagu:schema:transport.trip.completed:v{n + 1}"
    assert registry.resolve(TRIP, None) == added  # no dataschema: the latest
    assert registry.resolve(TRIP, registry.get(TRIP, 1).urn).version == 1


def test_incompatible_version_is_refused_naming_the_change(registry: SchemaRegistry) -> None:
    before = [v.version for v in registry.versions(TRIP)]
    schema = _latest(registry)
    schema["properties"]["co2_g"] = {"type": "integer"}
    schema["required"].append("co2_g")
    with pytest.raises(IncompatibleSchemaError, match="field `co2_g` became required"):
        registry.register(TRIP, schema)
    assert [v.version for v in registry.versions(TRIP)] == before


def test_mode_none_accepts_what_backward_refuses(registry: SchemaRegistry) -> None:
    n = _n(registry)
    schema = _latest(registry)
    schema["required"].append("distance_m")
    registry.set_mode(TRIP, CompatibilityMode.NONE)
    assert registry.register(TRIP, schema).version == n + 1


def test_registering_the_same_schema_again_changes_nothing(registry: SchemaRegistry) -> None:
    n = _n(registry)
    assert registry.register(TRIP, _latest(registry)).version == n
    assert len(registry.versions(TRIP)) == n


def test_invalid_schema_is_refused(registry: SchemaRegistry) -> None:
    with pytest.raises(InvalidSchemaError, match="not a valid JSON Schema"):
        registry.register(TRIP, {"type": "objekt"})


def test_unknown_type_and_unknown_version_are_named(registry: SchemaRegistry) -> None:
    with pytest.raises(UnknownTypeError, match=r"transport\.boat\.sailed"):
        registry.get("transport.boat.sailed")
    with pytest.raises(UnknownSchemaError, match="no version 3"):
        registry.get(TRIP, 3)
    with pytest.raises(UnknownSchemaError, match="is not a schema of"):
        registry.resolve(TRIP, "urn:tsunagu:schema:health.points.awarded:v1")
