"""The import direction is checked: ``lint-imports`` keeps every contract of pyproject.toml
(connectors → contract ← broker; the store below consent; nothing imports the API but the
CLIs; the region ID knows only the store and the audit log), and breaks when a module
reaches the wrong way."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).parents[1]
PACKAGES = ("contract", "broker", "connectors", "consent")
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    """``lint-imports`` over the packages under ``root``, with the repository's contracts."""
    env = os.environ | {"PYTHONPATH": str(root)}
    return subprocess.run(
        [str(LINT_IMPORTS), "--config", str(REPO / "pyproject.toml"), "--no-cache"],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_the_repository_keeps_every_import_contract() -> None:
    result = lint_imports(REPO)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "5 kept, 0 broken" in result.stdout


@pytest.mark.parametrize(
    ("module", "statement", "contract"),
    [
        ("contract/reach.py", "import broker.settings", "contract imports nothing else of ours"),
        ("connectors/sdk/reach.py", "import broker.bus", "connectors import neither broker"),
        ("connectors/reach.py", "import consent.errors", "connectors import neither broker"),
        ("broker/store/reach.py", "import consent.errors", "the store does not import consent"),
        ("broker/views/reach.py", "import broker.api.problems", "nothing imports the API"),
        ("consent/reach.py", "from broker.api import deps", "nothing imports the API"),
        ("broker/regionid/reach.py", "import broker.views.pseudonyms", "the region ID knows"),
    ],
)
def test_a_module_reaching_the_wrong_way_breaks_its_contract(
    tmp_path: Path, module: str, statement: str, contract: str
) -> None:
    for package in PACKAGES:
        shutil.copytree(
            REPO / package,
            tmp_path / package,
            ignore=shutil.ignore_patterns("__pycache__", "static", "samples"),
        )
    (tmp_path / module).write_text(f'"""Reaches the wrong way."""\n\n{statement}\n')
    result = lint_imports(tmp_path)
    assert result.returncode != 0
    broken = [line for line in result.stdout.splitlines() if " BROKEN" in line]
    assert len(broken) == 1 and broken[0].startswith(contract), result.stdout
