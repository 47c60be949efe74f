"""Drain the outbox to a sink in batches, retrying with exponential backoff until it works.

An event leaves the outbox only after the sink took it, so a crash at any point repeats at
most the batch in flight; the platform drops the repeat by event id (nothing lost, nothing
doubled). Batches go in outbox order and a failed batch is retried before any later one, so
one subject's events stay in order.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from dataclasses import dataclass

from connectors.sdk.metrics import FAILED, OUTBOX_DEPTH, RETRIES, SENT
from connectors.sdk.outbox import Outbox
from connectors.sdk.sinks import Sink, SinkUnavailable

__all__ = ["Backoff", "DrainReport", "Sender"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Backoff:
    """Exponential backoff: ``base_s * factor**n`` capped at ``cap_s``, with jitter."""

    base_s: float = 0.1
    factor: float = 2.0
    cap_s: float = 30.0
    jitter: float = 0.5  # the delay is drawn from [1 - jitter, 1] of the nominal value

    def delay(self, failures: int) -> float:
        """Seconds to wait after ``failures`` consecutive failures (1 for the first)."""
        # The exponent is bounded: 2.0 ** 1024 overflows, and a day-long outage gets there.
        nominal = min(self.cap_s, self.base_s * self.factor ** min(max(0, failures - 1), 64))
        # Jitter spreads the retries of many connectors after one shared outage.
        return nominal * random.uniform(1.0 - self.jitter, 1.0)


@dataclass(slots=True)
class DrainReport:
    """What one drain did."""

    sent: int = 0
    duplicates: int = 0  # of ``sent``: events the platform already had
    failed: int = 0
    retries: int = 0
    remaining: int = 0
    #: Set when the drain stopped because the platform refused the credentials.
    refused_credentials: str | None = None


class Sender:
    """Moves events from an outbox to a sink; use ``drain()`` or the background thread."""

    def __init__(
        self,
        outbox: Outbox,
        sink: Sink,
        *,
        connector: str,
        batch_size: int = 500,
        backoff: Backoff | None = None,
        idle_poll_s: float = 1.0,
    ) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        self.outbox = outbox
        self.sink = sink
        self.connector = connector
        self.batch_size = batch_size
        self.backoff = backoff or Backoff()
        self.idle_poll_s = idle_poll_s
        # One batch at a time: two drainers peeking together would send the same rows twice.
        self._batch_lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._sent = SENT.labels(connector)
        self._failed = FAILED.labels(connector)
        self._retries = RETRIES.labels(connector)
        # The outbox reports every change of its depth: added, delivered, failed.
        outbox.on_depth(OUTBOX_DEPTH.labels(connector).set)

    def drain(
        self,
        until_empty: bool = True,
        stop: threading.Event | None = None,
        timeout_s: float | None = None,
        *,
        give_up_on_credentials: bool = False,
    ) -> DrainReport:
        """Send batches until the outbox is empty (or, with ``until_empty=False``, until
        ``stop`` is set), retrying failures with backoff; ``timeout_s`` bounds the wait.

        With ``give_up_on_credentials`` a 401/403 ends the drain (a one-shot command should
        say so at once); the events stay in the outbox for the next run.
        """
        stop = stop or threading.Event()
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        report = DrainReport()
        failures = 0
        while not stop.is_set():
            if deadline is not None and time.monotonic() >= deadline:
                break
            try:
                moved = self._send_batch(report)
            except Exception as exc:
                # SinkUnavailable, or anything unexpected from a sink: the events are safe in
                # the outbox, so a connector keeps trying rather than dying.
                if give_up_on_credentials and getattr(exc, "credentials", False):
                    report.refused_credentials = str(exc)
                    break
                failures += 1
                delay = self._after_failure(exc, failures)
                report.retries += 1
                if deadline is not None:
                    delay = min(delay, max(0.0, deadline - time.monotonic()))
                stop.wait(delay)
                continue
            failures = 0
            if moved:
                continue
            self.outbox.maybe_prune()  # idle: a good time to forget old delivered ids
            if until_empty:
                break
            self._wake.wait(self.idle_poll_s)
            self._wake.clear()
        report.remaining = self.outbox.depth()
        return report

    def _send_batch(self, report: DrainReport) -> int:
        """Send the oldest batch; how many events left the outbox (0 when it was empty)."""
        with self._batch_lock:
            rows = self.outbox.peek(self.batch_size)
            if not rows:
                return 0
            try:
                result = self.sink.send(rows)
            except Exception as exc:
                self.outbox.record_attempt([r.seq for r in rows], _describe(exc))
                raise
            rejected = result.rejected if result else {}
            if rejected:
                self.outbox.fail(rejected)
                for row in rows:
                    if row.seq in rejected:
                        log.error(
                            "%s: event %s%s was refused for good: %s",
                            self.connector,
                            row.event_id,
                            f" ({row.origin})" if row.origin else "",
                            rejected[row.seq],
                        )
            self.outbox.ack(rows[-1].seq)
        delivered = len(rows) - len(rejected)
        report.sent += delivered
        report.duplicates += result.duplicates if result else 0
        report.failed += len(rejected)
        self._sent.inc(delivered)
        self._failed.inc(len(rejected))
        return len(rows)

    def _after_failure(self, exc: Exception, failures: int) -> float:
        self._retries.inc()
        delay = self.backoff.delay(failures)
        if isinstance(exc, SinkUnavailable) and exc.retry_after_s is not None:
            delay = max(delay, min(exc.retry_after_s, self.backoff.cap_s))
        if isinstance(exc, SinkUnavailable):
            log.warning(
                "%s: delivery failed (attempt %d), retrying in %.1f s: %s",
                self.connector,
                failures,
                delay,
                exc,
            )
        else:
            log.exception(
                "%s: the sink failed unexpectedly, retrying in %.1f s", self.connector, delay
            )
        return delay

    # -- background mode ------------------------------------------------------------------

    def wake(self) -> None:
        """Tell a background sender that new events are queued."""
        self._wake.set()

    @property
    def running(self) -> bool:
        """Whether the background thread is alive."""
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        """Drain in a background thread until ``stop()``."""
        if self.running:
            return
        self._stop.clear()
        self._thread = threading.Thread(
            target=self.drain,
            kwargs={"until_empty": False, "stop": self._stop},
            name=f"tsunagu-sender-{self.connector}",
            daemon=True,  # the outbox keeps whatever it had not sent yet
        )
        self._thread.start()

    def stop(self, timeout_s: float = 30.0) -> None:
        """Stop the background thread after its current batch."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
            self._thread = None


def _describe(exc: Exception) -> str:
    return str(exc) if isinstance(exc, SinkUnavailable) else f"{type(exc).__name__}: {exc}"
