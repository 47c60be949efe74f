"""Progress of the long commands: a transient bar on stderr when it is a terminal, else nothing.

Piped or redirected, a command prints exactly what it prints without a bar (no control
characters), so scripts and ``--json`` readers see the same bytes. The domain code below the
CLIs knows nothing of this: it reports ``(done, total)`` to a plain callback (``Steps``), and
a command passes the ``Meter`` it gets from ``progress()``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import TypeVar

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TaskProgressColumn,
    TextColumn,
    TimeRemainingColumn,
)

T = TypeVar("T")

#: How a long walk reports how far it is: ``(done, total)``, total None when unknown.
Steps = Callable[[int, int | None], None]


class Meter:
    """One bar: set how far it is (``meter(done, total)``, a ``Steps``) or advance it."""

    def __init__(self, bar: Progress | None, task: TaskID | None) -> None:
        self._bar = bar
        self._task = task

    @property
    def shown(self) -> bool:
        """Whether a bar is drawn (stderr is a terminal)."""
        return self._bar is not None

    def __call__(self, done: int, total: int | None = None) -> None:
        if self._bar is not None and self._task is not None:
            self._bar.update(self._task, completed=done, total=total)

    def advance(self, by: int = 1) -> None:
        """``by`` more steps done."""
        if self._bar is not None and self._task is not None:
            self._bar.advance(self._task, by)


@contextmanager
def progress(description: str, total: int | None = None) -> Iterator[Meter]:
    """A transient bar named ``description`` on stderr while the block runs, if stderr is a
    terminal; elsewhere a meter that draws nothing."""
    console = Console(stderr=True)
    if not console.is_terminal:
        yield Meter(None, None)
        return
    bar = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TaskProgressColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=True,
        # The command's own output goes where it always goes, never through the bar's console.
        redirect_stdout=False,
        redirect_stderr=False,
    )
    with bar:
        yield Meter(bar, bar.add_task(description, total=total))


def counted(items: Iterable[T], steps: Steps | None, total: int | None) -> Iterator[T]:
    """``items``, reporting to ``steps`` how many were taken so far (of ``total``)."""
    if steps is None:
        yield from items
        return
    steps(0, total)
    for done, item in enumerate(items, 1):
        yield item
        steps(done, total)
