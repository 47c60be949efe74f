"""`tsunagu schemas check`: the CI gate for the shipped schemas and for a firm's proposal."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson

from broker.settings import REPO_SCHEMAS


def _check(directory: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "broker.cli", "schemas", "check", str(directory)],
        capture_output=True,
        text=True,
        timeout=120,
    )


#: The version a proposal adds to transport.trip.completed: the one after the shipped latest.
NEXT = 1 + max(
    int(p.stem[1:]) for p in (REPO_SCHEMAS / "transport" / "trip.completed").glob("v*.json")
)


def _copy_with_next(tmp_path: Path, change: Any) -> Path:
    root = tmp_path / "schemas"
    shutil.copytree(REPO_SCHEMAS, root)
    type_dir = root / "transport" / "trip.completed"
    schema = orjson.loads((type_dir / f"v{NEXT - 1}.json").read_bytes())
    schema["$id"] = f"urn:tsunagu:schema:transport.trip.completed:v{NEXT}"
    change(schema)
    (type_dir / f"v{NEXT}.json").write_bytes(orjson.dumps(schema))
    return root


def test_shipped_schemas_pass_the_check() -> None:
    result = _check(REPO_SCHEMAS)
    assert result.returncode == 0, result.stderr
    assert "valid" in result.stdout


def test_new_required_field_fails_the_check_naming_it(tmp_path: Path) -> None:
    def add_required(schema: dict[str, Any]) -> None:
        schema["properties"]["co2_g"] = {"type": "integer", "minimum": 0}
        schema["required"].append("co2_g")
        schema["examples"] = []

    result = _check(_copy_with_next(tmp_path, add_required))
    assert result.returncode == 1
    assert "field `co2_g` became required" in result.stderr
    assert f"transport.trip.completed v{NEXT}" in result.stderr


def test_new_optional_field_passes_the_check(tmp_path: Path) -> None:
    def add_optional(schema: dict[str, Any]) -> None:
        schema["properties"]["co2_g"] = {"type": "integer", "minimum": 0}

    result = _check(_copy_with_next(tmp_path, add_optional))
    assert result.returncode == 0, result.stderr


def test_forward_mode_refuses_what_backward_accepts(tmp_path: Path) -> None:
    def add_optional(schema: dict[str, Any]) -> None:
        schema["properties"]["co2_g"] = {"type": "integer", "minimum": 0}

    root = _copy_with_next(tmp_path, add_optional)
    config = root / "transport" / "trip.completed" / "config.json"
    config.write_text('{"compatibility": "FORWARD"}')
    result = _check(root)
    assert result.returncode == 1
    assert "co2_g" in result.stderr


def test_schema_that_breaks_the_meta_schema_fails_the_check(tmp_path: Path) -> None:
    def break_it(schema: dict[str, Any]) -> None:
        schema["properties"]["fare_jpy"]["type"] = "money"

    result = _check(_copy_with_next(tmp_path, break_it))
    assert result.returncode == 1
    assert "fare_jpy" in result.stderr


def test_example_that_fails_its_schema_fails_the_check(tmp_path: Path) -> None:
    def bad_example(schema: dict[str, Any]) -> None:
        schema["examples"][0]["fare_jpy"] = "六百円"

    result = _check(_copy_with_next(tmp_path, bad_example))
    assert result.returncode == 1
    assert "example 0 is invalid at /fare_jpy" in result.stderr


def test_missing_directory_exits_2(tmp_path: Path) -> None:
    assert _check(tmp_path / "nowhere").returncode == 2
