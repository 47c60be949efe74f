"""A check of the bus made at most once per interval, its answer reused in between.

``/readyz`` is asked every few seconds by orchestrators and load balancers, by each API
process: answering each from a fresh offset read would put that many admin requests on a
production Kafka. The answer says how old it is.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from contract.bus import Bus

OK = "ok"


@dataclass(frozen=True, slots=True)
class Probed:
    """A check's answer (``ok`` or ``failing: <why>``) and its age in seconds."""

    result: str
    age_s: float


class BusProbe:
    """Whether the bus answers an offset read of ``topic``, read at most every ``interval_s``."""

    def __init__(
        self,
        bus: Bus,
        topic: str,
        interval_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.bus = bus
        self.topic = topic
        self.interval_s = interval_s
        self._clock = clock
        self._lock = threading.Lock()
        self._last: tuple[str, float] | None = None  # (result, when)

    def check(self) -> Probed:
        """The last answer if younger than the interval; else a fresh one."""
        with self._lock:  # concurrent /readyz calls wait for one read rather than each making one
            now = self._clock()
            if self._last is None or now - self._last[1] >= self.interval_s:
                self._last = (self._read(), now)
            result, at = self._last
            return Probed(result, now - at)

    def _read(self) -> str:
        try:
            self.bus.end_offsets(self.topic)
        except Exception as exc:  # any failure means not ready; say which
            return f"failing: {exc.__class__.__name__}"
        return OK
