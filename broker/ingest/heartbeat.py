"""The ingest worker's sign of life, readable by every process of the platform.

The worker beats at each turn of its loop (at least every poll timeout while idle) and says
so when it stops; a worker that has not beaten for ``stall_s`` is stalled: stuck on a batch,
its store or bus down, or dead without a word. The beat is a small file in the data
directory, so the extra API processes of ``tsunagu up`` judge the worker that runs in the
main process as readily as that process does.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path

from contract.private_files import private_file

log = logging.getLogger(__name__)

#: Seconds between two writes of the beat (the loop turns far more often).
WRITE_EVERY_S = 1.0


class Heartbeat:
    """Written by the worker, judged by readiness."""

    def __init__(
        self, path: Path, *, stall_s: float, clock: Callable[[], float] = time.time
    ) -> None:
        self.path = path
        self.stall_s = stall_s
        self.clock = clock
        self._written = 0.0

    @classmethod
    def in_data_dir(cls, data_dir: Path, *, stall_s: float) -> Heartbeat:
        """The heartbeat of the ingest worker of the platform in ``data_dir``."""
        return cls(data_dir / "run" / "ingest-heartbeat.json", stall_s=stall_s)

    def beat(self) -> None:
        """The worker is turning (written at most every ``WRITE_EVERY_S``)."""
        now = self.clock()
        if now - self._written >= WRITE_EVERY_S:
            self._write({"state": "running", "at": now, "pid": os.getpid()})
            self._written = now

    def stopped(self, why: str) -> None:
        """The worker has left its loop (``why``: stopped, or the error's type)."""
        self._write({"state": "stopped", "why": why, "at": self.clock(), "pid": os.getpid()})

    def judge(self) -> str:
        """``ok``, or ``failing: ...`` saying what is wrong with the worker."""
        try:
            beat = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return "failing: the ingest worker has not started"
        if beat.get("state") == "stopped":
            return f"failing: the ingest worker stopped ({beat.get('why', 'unknown')})"
        silent = self.clock() - float(beat.get("at", 0))
        if silent > self.stall_s:
            return f"failing: the ingest worker has stalled (no progress for {silent:.0f} s)"
        return "ok"

    def _write(self, beat: dict[str, object]) -> None:
        # Written aside and renamed: a reader never sees half a beat. A beat that cannot be
        # written (disk full) is not the worker's death: readiness will say it stalled.
        try:
            partial = self.path.with_suffix(".tmp")
            private_file(partial)  # 0600 like every file of the data directory
            partial.write_text(json.dumps(beat))
            os.replace(partial, self.path)
        except OSError as exc:
            log.warning("ingest heartbeat not written: %s", exc)
