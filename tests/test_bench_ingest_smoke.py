"""`python -m ops.bench.ingest --quick` runs end to end on both buses and prints its figures
(no timing asserted): raw validation, the MAC check alone, raw bus and end to end, the ratios,
and end to end again with ID-linked subjects."""

from __future__ import annotations

import re

import pytest

from tests.bench_runs import run_quick

RATE = r"[\d,]+ events/s"


@pytest.mark.slow
def test_the_ingest_benchmark_prints_its_figures_with_the_macs_cost() -> None:
    out = run_quick("ops.bench.ingest", timeout_s=600)
    assert re.search(rf"^raw validation\s+{RATE}$", out, re.M), out
    assert re.search(rf"^MAC check alone\s+{RATE}  \([\d.,]+ us/event\)$", out, re.M), out
    for backend in ("sqlite", "kafka"):
        section = out.split(f"[{backend}] 3,000 events", 1)[1].split("\n\n", 1)[0]
        for line in ("raw bus consume", "end to end, one worker"):
            assert re.search(rf"^  {line}\s+{RATE}", section, re.M), section
        for ratio in ("ratio to raw bus consume", "ratio to raw validation"):
            assert re.search(rf"^  {ratio}\s+[\d.]+$", section, re.M), section
        share = re.search(r"^  MAC share of the worker\s+([\d.]+)%", section, re.M)
        assert share and 0 < float(share.group(1)) < 100, section
        # The same run with residents named by the connector's subjects, resolved at ingest.
        assert re.search(rf"^  end to end, ID-linked\s+{RATE}", section, re.M), section
        assert re.search(r"^  ratio ID-linked / resident\s+[\d.]+", section, re.M), section
