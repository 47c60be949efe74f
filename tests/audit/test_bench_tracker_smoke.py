"""`python -m ops.bench.tracker --quick` runs end to end and prints a page time for each case
(no timing asserted)."""

from __future__ import annotations

import re

from tests.bench_runs import run_quick

ROW = re.compile(r"^\s+(newest|middle|oldest|period)\s+(\d+) reads\s+median\s+[\d.]+ ms", re.M)


def test_the_tracker_benchmark_prints_a_full_page_for_every_case() -> None:
    out = run_quick("ops.bench.tracker", timeout_s=120)
    served = dict(ROW.findall(out))
    assert set(served) == {"newest", "middle", "oldest", "period"}, out
    # Every case served reads (a broken cursor or period would serve none); the oldest page
    # holds the 50 reads below its cursor, the others a full page of 100.
    assert served == {"newest": "100", "middle": "100", "oldest": "50", "period": "100"}, out
