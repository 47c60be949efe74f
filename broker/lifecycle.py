"""The one owner of a process's background threads: each starts here and stops in ``close``.

A thread body takes the owner's ``stop`` event and returns soon after it is set; ``close``
sets it, wakes the bodies that sleep on something else, joins every thread within one bounded
wait (logging any that do not stop), then runs the registered closers, last registered first,
so that nothing is released while a thread of the owner may still use it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from types import TracebackType

log = logging.getLogger(__name__)

#: How long ``close`` waits, in all, for the threads to end.
JOIN_TIMEOUT_S = 30.0


class Lifecycle:
    """Starts, stops and joins threads, then closes what they used; ``close`` is idempotent."""

    def __init__(self, join_timeout_s: float = JOIN_TIMEOUT_S) -> None:
        self.join_timeout_s = join_timeout_s
        #: Set by ``close``: every thread body returns when it sees it.
        self.stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._wakers: list[Callable[[], None]] = []
        self._closers: list[tuple[str, Callable[[], None]]] = []
        self._lock = threading.Lock()
        self._closed = False

    @property
    def closed(self) -> bool:
        """Whether ``close`` has run (or is running)."""
        return self._closed

    def spawn(
        self,
        name: str,
        body: Callable[[threading.Event], object],
        *,
        wake: Callable[[], None] | None = None,
    ) -> threading.Thread:
        """Run ``body(stop)`` on a daemon thread owned here; ``wake`` rouses it on close."""
        thread = threading.Thread(target=body, args=(self.stop,), name=name, daemon=True)
        with self._lock:
            if self._closed:
                raise RuntimeError(f"cannot start {name!r}: the platform is closed")
            self._threads.append(thread)
            if wake is not None:
                self._wakers.append(wake)
        thread.start()
        return thread

    def on_close(self, name: str, close: Callable[[], None]) -> None:
        """Call ``close`` when the owner closes, after its threads have stopped."""
        with self._lock:
            self._closers.append((name, close))

    def threads(self) -> list[threading.Thread]:
        """The threads started here that still run."""
        with self._lock:
            return [t for t in self._threads if t.is_alive()]

    def close(self) -> list[str]:
        """Stop and join the threads, then run the closers; the names of threads still running
        (logged) after the bounded wait. A second call does nothing."""
        with self._lock:
            if self._closed:
                return []
            self._closed = True
            threads, wakers, closers = self._threads, self._wakers, self._closers
        self.stop.set()
        for wake in wakers:
            wake()
        deadline = time.monotonic() + self.join_timeout_s
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        stuck = [t.name for t in threads if t.is_alive()]
        if stuck:
            log.warning(
                "threads still running %g s after close: %s", self.join_timeout_s, ", ".join(stuck)
            )
        for name, close in reversed(closers):
            try:
                close()
            except Exception:
                # One part failing to close must not keep the others open.
                log.exception("closing %s failed", name)
        return stuck

    def __enter__(self) -> Lifecycle:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
