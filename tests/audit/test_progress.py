"""``tsunagu audit verify`` and ``audit export`` show a bar on a terminal, and piped print
exactly their report (no bar, no control characters)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from sqlalchemy import Engine

from broker.audit import AuditLog
from tests.audit.conftest import REPO, run_cli, sample_entries
from tests.fixtures.terminal import BAR, assert_plain, run_in_terminal

ENTRIES = 35
VERIFIED = (
    "35 entries (1..35), 3 checkpoints, last signed at seq 30; 5 newer entries not yet signed\n"
)


@pytest.fixture
def filled(audit: AuditLog, engine: Engine) -> str:
    """35 entries, checkpoints at 10, 20 and 30; the store's URL."""
    audit.append_many(sample_entries(ENTRIES))
    return engine.url.render_as_string(hide_password=False)


def _at_terminal(data_dir: Path, *args: str) -> str:
    screen = run_in_terminal(
        [sys.executable, "-m", "broker.audit.cli", *args],
        {**os.environ, "TSUNAGU_DATA_DIR": str(data_dir)},
        cwd=str(REPO),
    )
    assert screen.returncode == 0, screen.output
    return screen.output


def test_verify_at_a_terminal_shows_the_entries_checked(filled: str, data_dir: Path) -> None:
    output = _at_terminal(data_dir, "verify", "--store", filled)
    assert f"{ENTRIES}/{ENTRIES}" in output and "100%" in output and BAR in output
    assert "ok store: " + VERIFIED.rstrip("\n") in output


def test_verify_piped_prints_only_its_report(filled: str, data_dir: Path) -> None:
    done = run_cli("verify", "--store", filled, data_dir=data_dir)
    assert done.returncode == 0, done.stderr
    assert (done.stdout, done.stderr) == ("ok store: " + VERIFIED, "")
    assert_plain(done.stdout, done.stderr)


@pytest.mark.parametrize("format_", ["jsonl", "csv"])
def test_export_at_a_terminal_shows_the_entries_written(
    filled: str, data_dir: Path, tmp_path: Path, format_: str
) -> None:
    out = tmp_path / f"audit.{format_}"
    output = _at_terminal(
        data_dir, "export", "--store", filled, "--format", format_, "--out", str(out)
    )
    assert f"{ENTRIES}/{ENTRIES}" in output and "100%" in output and BAR in output
    assert f"{ENTRIES} entries written to {out}" in output


def test_export_piped_prints_only_its_report(
    filled: str, data_dir: Path, tmp_path: Path, jwks_file: Path
) -> None:
    out = tmp_path / "audit.jsonl"
    done = run_cli("export", "--store", filled, "--out", str(out), data_dir=data_dir)
    assert done.returncode == 0, done.stderr
    assert done.stdout == (
        f"signed a checkpoint of the head at seq {ENTRIES}\n{ENTRIES} entries written to {out}\n"
    )
    assert done.stderr == ""
    assert_plain(done.stdout, done.stderr)
    # The export's own bytes are what a verifier reads: the bar never reaches the file.
    assert BAR.encode() not in out.read_bytes()

    at_terminal = _at_terminal(data_dir, "verify", "--export", str(out), "--jwks", str(jwks_file))
    assert f"{ENTRIES}/{ENTRIES}" in at_terminal and BAR in at_terminal
    piped = run_cli("verify", "--export", str(out), "--jwks", str(jwks_file), data_dir=data_dir)
    assert (piped.stdout, piped.stderr) == (
        f"ok {out}: 35 entries (1..35), 4 checkpoints, last signed at seq 35\n",
        "",
    )
