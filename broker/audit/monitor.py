"""The chain's verification state for the auditor's page: a full verification of the store,
run at most once per interval and shared by every caller meanwhile. Each verification is also
published as metrics (``tsunagu_audit_chain_ok``), and ``watch`` runs one every interval."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Engine

from broker.audit.metrics import record_verification
from broker.audit.verify import Verification, verify_store
from consent.keys import KeyRing

log = logging.getLogger(__name__)


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
            record_verification(result.ok, self._last.verified_at.timestamp())
            if not result.ok:
                log.error("audit chain verification failed: %s", result.problem)
            return self._last

    def watch(self, stop: threading.Event) -> None:
        """Verify now and then every ``interval_s`` until ``stop`` is set (a thread's target)."""
        while not stop.is_set():
            try:
                self.state(fresh=True)
            except Exception:
                if stop.is_set():
                    return  # the process is closing the store under us
                # The store is down, say: the last-verified time stops moving, which alerts.
                log.exception("audit chain verification could not run; trying again")
            stop.wait(self.interval_s)
