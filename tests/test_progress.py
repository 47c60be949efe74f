"""broker/progress.py: long walks report how far they are; a bar only where a person sees it."""

from __future__ import annotations

import os
import sys

from broker.progress import counted, progress
from tests.fixtures.terminal import BAR, piped, run_in_terminal

DRAW = """
from broker.progress import counted, progress
with progress("walking", 3) as meter:
    for _ in counted(range(3), meter, 3):
        pass
print("walked")
"""


def test_counted_reports_each_item_taken_of_the_total() -> None:
    heard: list[tuple[int, int | None]] = []
    assert list(counted("abc", lambda done, total: heard.append((done, total)), 3)) == [
        "a",
        "b",
        "c",
    ]
    assert heard == [(0, 3), (1, 3), (2, 3), (3, 3)]


def test_without_a_terminal_the_meter_draws_nothing() -> None:
    # Under pytest stderr is captured, not a terminal: as in a pipe.
    with progress("walking", 3) as meter:
        assert not meter.shown
        meter(3, 3)
        meter.advance()
    done = piped([sys.executable, "-c", DRAW], dict(os.environ))
    assert (done.returncode, done.stdout, done.stderr) == (0, "walked\n", "")


def test_at_a_terminal_the_bar_is_drawn_then_erased() -> None:
    screen = run_in_terminal([sys.executable, "-c", DRAW], dict(os.environ))
    assert screen.returncode == 0, screen.output
    assert "walking" in screen.output and "3/3" in screen.output and BAR in screen.output
    # Transient: the cursor goes back up and the line is cleared before the command goes on.
    assert screen.output.index("\x1b[2K") < screen.output.index("walked")
