"""The README's copy-paste examples, run as pasted against a real `tsunagu up`.

Each fenced block of the README that a reader may paste is marked by an HTML comment before
it, which readers never see:

- ``<!-- readme-example: sh -->``: run by bash, in order, in one shell (so what one block
  exports the next one has), from a checkout-like directory whose ``var/`` is the running
  platform's data directory, as it is under ``make run``;
- ``<!-- readme-example: python FILE -->``: saved as FILE there, for a later sh block to run;
- ``<!-- readme-example: output -->``: what the sh block before it prints, line by line
  (``…`` stands for any text);
- ``<!-- readme-example: not run: WHY -->``: not run here, and why.

The platform listens on a free port: the README's ``http://127.0.0.1:8000`` is replaced by
its address, the only placeholder the examples have.
"""

from __future__ import annotations

import itertools
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import create_engine, text

from connectors.sdk import stable_event_id
from tests.fixtures.platform import RunningPlatform, start_platform, stop_platform

README = Path(__file__).resolve().parents[1] / "README.md"
README_URL = "http://127.0.0.1:8000"

_MARKED = re.compile(
    r"<!-- readme-example: (?P<kind>not run|[a-z]+)(?::? (?P<arg>[^\n]*?))? -->\n"
    r"(?P<indent>[ ]*)```(?P<lang>[a-z]*)\n(?P<body>.*?)\n(?P=indent)```",
    re.DOTALL,
)
_FENCE = re.compile(r"^(?P<indent>[ ]*)```(?P<lang>[a-z]+)\n", re.MULTILINE)
_MARKER = re.compile(r"<!-- readme-example: [^>]*-->\n$")


@dataclass(frozen=True)
class Block:
    """One marked block: its kind, its argument (a file, or why not), its text, its line."""

    kind: str
    arg: str
    body: str
    line: int


def readme_blocks(readme: str) -> list[Block]:
    """The README's marked blocks, in order."""
    return [
        Block(
            m["kind"],
            (m["arg"] or "").strip(),
            "\n".join(x.removeprefix(m["indent"]) for x in m["body"].splitlines()),
            readme.count("\n", 0, m.start()) + 2,
        )
        for m in _MARKED.finditer(readme)
    ]


def test_every_code_block_of_the_readme_is_run_or_says_why_not() -> None:
    readme = README.read_text(encoding="utf-8")
    unmarked = [
        readme.count("\n", 0, m.start()) + 1
        for m in _FENCE.finditer(readme)
        if not _MARKER.search(readme, 0, m.start())
    ]
    assert unmarked == [], f"README lines {unmarked}: a block with a language needs a marker"
    blocks = readme_blocks(readme)
    assert {b.kind for b in blocks} <= {"sh", "python", "output", "not run"}
    assert all(b.arg for b in blocks if b.kind in ("python", "not run")), "name the file, or why"
    for before, output in itertools.pairwise(blocks):
        if output.kind == "output":
            assert before.kind == "sh", f"README line {output.line}: output of a block not run"


def _pattern(expected: str) -> re.Pattern[str]:
    return re.compile(
        "".join(".*" if p == "…" else re.escape(p) for p in re.split("(…)", expected))
    )


def _checkout(tmp: Path, platform: RunningPlatform) -> Path:
    """A directory shaped like the checkout under `make run`: .venv, and var/ the data dir."""
    root = tmp / "checkout"
    root.mkdir()
    (root / ".venv").symlink_to(Path(sys.prefix), target_is_directory=True)
    (root / "var").symlink_to(platform.data_dir, target_is_directory=True)
    return root


def test_the_readme_examples_run_as_pasted_and_print_what_it_says(tmp_path: Path) -> None:
    readme_platform = start_platform(tmp_path / "platform")  # `make run`, without the demo
    try:
        _run_examples(readme_platform, _checkout(tmp_path, readme_platform))
        # What the connector examples published is ingested, not dead-lettered.
        assert _ingested(readme_platform, _EXAMPLE_EVENTS) == _EXAMPLE_EVENTS
    finally:
        stop_platform(readme_platform)


#: The events the README's connector examples publish: the SDK's good row, the curl one.
_EXAMPLE_EVENTS = {
    stable_event_id("urn:tsunagu:connector:my-firm", "transport.trip.completed", "mf-0001"),
    "my-firm-mf-0003",
}


def _ingested(platform: RunningPlatform, wanted: set[str]) -> set[str]:
    """Which of ``wanted`` the platform's ingest has projected (waiting up to 30 s for all)."""
    engine = create_engine(f"sqlite:///{platform.data_dir / 'store.db'}")
    found: set[str] = set()
    deadline = time.monotonic() + 30
    try:
        while time.monotonic() < deadline and found != wanted:
            with engine.connect() as conn:
                found = wanted & set(conn.execute(text("SELECT id FROM ingested_events")).scalars())
            time.sleep(0.2)
    finally:
        engine.dispose()
    return found


def _run_examples(readme_platform: RunningPlatform, root: Path) -> None:
    """Run the marked sh blocks in one shell and compare each output block with its print."""
    blocks = readme_blocks(README.read_text(encoding="utf-8"))
    script = ["set -euo pipefail"]
    for i, block in enumerate(blocks):
        body = block.body.replace(README_URL, readme_platform.base_url)
        if block.kind == "python":
            (root / block.arg).write_text(body + "\n", encoding="utf-8")
        elif block.kind == "sh":
            script += [f"echo '::block {i}::'", body]
    env = {k: v for k, v in os.environ.items() if not k.startswith("TSUNAGU_")}
    run = subprocess.run(
        ["bash", "-c", "\n".join(script)],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    printed = dict(
        (int(n), out.strip("\n"))
        for n, out in re.findall(r"::block (\d+)::\n?(.*?)(?=::block |\Z)", run.stdout, re.DOTALL)
    )
    for i, block in enumerate(blocks):
        if block.kind != "output":
            continue
        got = printed[i - 1].splitlines()
        want = block.body.splitlines()
        assert len(got) == len(want), f"README line {block.line}: printed {got}"
        for g, w in zip(got, want, strict=True):
            assert _pattern(w).fullmatch(g), f"README line {block.line}: {g!r} is not {w!r}"
