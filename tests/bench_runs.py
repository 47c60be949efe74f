"""Running a benchmark of ops/bench the way its smoke tests do: ``--quick``, from the repo."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def run_quick(module: str, timeout_s: float) -> str:
    """``python -m <module> --quick``; its standard output, failing the test if it failed."""
    run = subprocess.run(
        [sys.executable, "-m", module, "--quick"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout_s,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    return run.stdout
