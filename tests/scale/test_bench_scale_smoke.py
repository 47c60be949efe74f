"""`python -m ops.bench.scale --quick` runs end to end and prints its figures (no timing
asserted): throughput with one, two and three workers, the scaling ratios, a worker's memory."""

from __future__ import annotations

import re

import pytest

from tests.bench_runs import run_quick

ROW = re.compile(
    r"^\s+(\d)\s+([\d,]+)\s+([\d.]+)\s+([\d,]+)\s+([\d.]+)\s+([\d/]+)\s+([\d%/]+)\s+([\d.]+)"
    r"\s+([\d,]+)\s+([\d.]+)$"
)


@pytest.mark.slow
def test_the_scale_benchmark_prints_its_figures() -> None:
    out = run_quick("ops.bench.scale", timeout_s=300)
    assert re.search(r"Cores: \d+ usable", out), out
    rows = [m.groups() for line in out.splitlines() if (m := ROW.match(line))]
    assert [r[0] for r in rows] == ["1", "2", "3"], out
    for workers, events, _, rate, _, partitions, loads, _, cpu, _ in rows:
        assert events == "3,000" and int(rate.replace(",", "")) > 0, out
        assert int(cpu.replace(",", "")) > 0, out  # the workers' own CPU time was counted
        owned = [int(p) for p in partitions.split("/")]
        assert len(owned) == int(workers) and sum(owned) == 16, out  # every partition, once
        assert len(loads.split("/")) == int(workers), out
    per_event = r"CPU per event [\d.]+ of one worker's"
    assert re.search(rf"^  scaling 2 workers / 1: [\d.]+, {per_event}$", out, re.M), out
    assert re.search(rf"^  scaling 3 workers / 1: [\d.]+, {per_event}$", out, re.M), out
    assert "one worker's memory over 5,000 events" in out, out
    assert re.search(r"peak [\d,]+ MB, at the end [\d,]+ MB .* (PASS|FAIL)$", out, re.M), out
