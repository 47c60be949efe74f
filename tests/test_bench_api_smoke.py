"""`python -m ops.bench.api --quick` runs end to end and prints its figures (no timing asserted)."""

from __future__ import annotations

import re

import pytest

from tests.bench_runs import run_quick

CPU = re.compile(r"\s([\d.]+) ms$")
ROW = re.compile(r"^\s*[\d,]+\s+(GET \S+ \([^)]*\))\s+([\d,]+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)")


@pytest.mark.slow
def test_the_api_benchmark_prints_its_table() -> None:
    out = run_quick("ops.bench.api", timeout_s=240)
    rows = [m.groups() for line in out.splitlines() if (m := ROW.match(line))]
    endpoints = {r[0] for r in rows}
    assert endpoints == {
        "GET /healthz (baseline)",
        "GET .../activity (view)",
        "GET .../activity (1 client)",
    }, out
    assert len(rows) == 6, out  # three endpoints at each of the two sizes
    assert all(int(r[1].replace(",", "")) > 0 for r in rows), out  # every one answered
    # Each row ends with the server's CPU time per request, a figure the machine's load moves
    # far less than requests/s.
    cpu = [
        float(m[1]) for line in out.splitlines() if ROW.match(line) for m in [CPU.search(line)] if m
    ]
    assert len(cpu) == 6 and all(ms > 0 for ms in cpu), out
    assert "view latency by stored events" in out
    assert re.search(r"^\s+ratio\s+[\d.]+\s+[\d.]+", out, re.M), out
    assert re.search(r"now [\d,]+, peak [\d,]+", out), out  # the server's memory
    targets = re.findall(r"^  (.+?)\s{2,}.*\s(PASS|FAIL)$", out, re.M)
    assert len(targets) == 4, out
    # A broken view (every answer refused) must not pass as a figure.
    assert dict(targets)["every answer a complete 200"] == "PASS", out
