"""The chain's verification state for the auditor's page: a full verification of the store,
run at most once per interval and shared by every caller meanwhile."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Engine

from broker.audit.verify import Verification, verify_store
from consent.keys import KeyRing


@dataclass(frozen=True, slots=True)
class VerificationState:
    """The last verification and when it finished."""

    result: Verification
    verified_at: datetime


class ChainMonitor:
    """Verifies the whole chain on demand, no more often than every ``interval_s``.

    Always the whole chain, never only the new entries: an edit to an old entry must show up
    on the next look, not only at the next CLI run.
    """

    def __init__(self, engine: Engine, keys: KeyRing, interval_s: float = 30.0) -> None:
        self.engine = engine
        self.keys = keys
        self.interval_s = interval_s
        self._lock = threading.Lock()
        self._last: VerificationState | None = None
        self._last_started = self._last_mono = 0.0

    def state(self, *, fresh: bool = False) -> VerificationState:
        """The last verification if younger than the interval, else a new one; ``fresh``
        asks for one that started after the call."""
        called = time.monotonic()
        with self._lock:
            # One verification at a time: callers waiting here share the one that ran.
            last = self._last
            if last is not None:
                if fresh and self._last_started >= called:
                    return last
                if not fresh and called - self._last_mono < self.interval_s:
                    return last
            started = time.monotonic()
            result = verify_store(self.engine, self.keys.jwks())
            self._last = VerificationState(result, datetime.now(UTC))
            self._last_started, self._last_mono = started, time.monotonic()
            return self._last
