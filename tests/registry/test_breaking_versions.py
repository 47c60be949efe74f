"""A new major version: recorded as breaking in the type's config.json, older versions kept."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from broker.registry.catalogue import SchemaRegistry, check_directory

SCHEMAS = Path(__file__).parents[2] / "schemas"
REGISTERED = "vacant_house.listing.registered"


def test_the_standard_model_version_is_recorded_as_breaking_and_v1_stays_readable() -> None:
    registry = SchemaRegistry.from_directory(SCHEMAS)
    assert [v.version for v in registry.versions(REGISTERED)] == [1, 2]
    assert "空き家バンク" in registry.breaking(REGISTERED)[2]
    v1 = registry.get(REGISTERED, 1)
    assert registry.validator(v1).is_valid(v1.schema["examples"][0])
    assert check_directory(SCHEMAS) == []


def test_a_breaking_version_not_recorded_is_refused_by_the_check(tmp_path: Path) -> None:
    shutil.copytree(SCHEMAS, tmp_path / "schemas")
    (tmp_path / "schemas/vacant_house/listing.registered/config.json").unlink()
    problems = check_directory(tmp_path / "schemas")
    assert problems and all(p.startswith(f"{REGISTERED} v2:") for p in problems)


def test_a_version_recorded_as_breaking_that_breaks_nothing_is_named(tmp_path: Path) -> None:
    root = tmp_path / "schemas"
    shutil.copytree(SCHEMAS, root)
    config = root / "vacant_house/listing.registered/config.json"
    config.write_text(json.dumps({"compatibility": "BACKWARD", "breaking": {"2": "x", "3": "y"}}))
    v2 = json.loads((root / "vacant_house/listing.registered/v2.json").read_text())
    (root / "vacant_house/listing.registered/v3.json").write_text(
        json.dumps({**v2, "$id": v2["$id"].replace(":v2", ":v3")})
    )
    assert check_directory(root) == [
        f"{REGISTERED} v3: recorded as breaking in config.json but compatible with v2; "
        'remove it from "breaking"'
    ]


def test_the_next_version_is_checked_against_the_new_major_only(tmp_path: Path) -> None:
    registry = SchemaRegistry.from_directory(SCHEMAS)
    v2 = dict(registry.get(REGISTERED, 2).schema)
    # Unchanged from v2 (though incompatible with v1): accepted, checked against v2 alone.
    assert registry.problems(REGISTERED, {**v2, "title": "v3"}) == []
    narrowed = json.loads(json.dumps(v2))
    narrowed["required"] = [*v2["required"], "extra"]
    narrowed["properties"]["extra"] = {"type": "string", "description": "x"}
    assert registry.problems(REGISTERED, narrowed)
