"""Applies ``consent.changes`` to this process's decision point, from a background thread.

Each process reads the topic in a consumer group of its own, so every process sees every
change. Until the listener has caught up, the decision point does not cache (every decision
reads the store, which is always right): on start the listener publishes a marker and turns
caching on when the marker comes back, which proves it is a member of its group and has read
everything published before (the topic has one partition). If polling fails, caching is off
again until a new marker comes back.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

from consent.changes import (
    CONSENT_CHANGES_TOPIC,
    MARKER_KEY,
    ChangeScope,
    ConsentChange,
    changes_topic,
)
from consent.decisions import DecisionPoint
from contract.bus import Bus, BusError, Consumer

log = logging.getLogger(__name__)


class ConsentChangeListener:
    """Consumes ``consent.changes`` and invalidates a ``DecisionPoint``'s cache."""

    def __init__(
        self,
        bus: Bus,
        decision_point: DecisionPoint,
        *,
        topic: str = CONSENT_CHANGES_TOPIC,
        group: str | None = None,
        poll_timeout_s: float = 0.2,
        also: Sequence[Callable[[ConsentChange], None]] = (),
    ) -> None:
        self.bus = bus
        self.decision_point = decision_point
        #: Other caches of this process that a change invalidates (the subject-key vault).
        self.also = tuple(also)
        self.topic = topic
        # One group per process: a shared group would split the changes between processes.
        self.group = group or (
            f"consent-cache-{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        )
        self.poll_timeout_s = poll_timeout_s
        self.applied = 0
        self._marker: str | None = None
        self._ready = threading.Event()
        self._stop = threading.Event()
        self._consumer: Consumer | None = None
        self._thread: threading.Thread | None = None

    @property
    def ready(self) -> bool:
        """Whether the listener has caught up (and the decision point caches)."""
        return self._ready.is_set()

    def start(self) -> None:
        """Join the topic and start applying changes in a daemon thread of its own."""
        if self._thread is not None:
            return
        self.subscribe()
        self._thread = threading.Thread(
            target=self.run, args=(self._stop,), name=f"consent-changes-{self.group}", daemon=True
        )
        self._thread.start()

    def subscribe(self) -> None:
        """Join the topic's group and ask to be told when caught up (before ``run``)."""
        if self._consumer is not None:
            return
        self.decision_point.cache.suspend()
        self.bus.create_topics([changes_topic(self.topic)])
        self._consumer = self.bus.consumer(self.group, [self.topic])
        self._send_marker()

    def wait_ready(self, timeout_s: float = 30.0) -> bool:
        """Block until caught up; False on timeout."""
        return self._ready.wait(timeout_s)

    def stop(self) -> None:
        """Stop the thread ``start`` made and leave the group."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=15)
        self.leave()

    def leave(self) -> None:
        """Leave the group once ``run`` has returned; the decision point stops caching."""
        if self._consumer is not None:
            self._consumer.close()
            self._consumer = None
        self._ready.clear()
        self.decision_point.cache.suspend()

    def _send_marker(self) -> None:
        self._marker = uuid.uuid4().hex
        marker = ConsentChange(
            scope=ChangeScope.MARKER,
            key=MARKER_KEY,
            event="marker",
            at=datetime.now(UTC).isoformat(),
            consent_id=f"{self.group}/{self._marker}",
        )
        self.bus.publish(self.topic, [marker.to_record()])

    def run(self, stop: threading.Event) -> None:
        """Apply changes until ``stop`` is set (a thread's body, after ``subscribe``)."""
        consumer = self._consumer
        if consumer is None:
            raise RuntimeError("subscribe to the topic before running the listener")
        failing = False
        while not (stop.is_set() or self._stop.is_set()):
            try:
                if failing:
                    self._send_marker()
                records = consumer.poll(max_records=1000, timeout_s=self.poll_timeout_s)
                failing = False
            except BusError as exc:
                if not failing:
                    log.warning("consent.changes: polling failed, not caching until back: %s", exc)
                    self._ready.clear()
                    self.decision_point.cache.suspend()
                failing = True
                stop.wait(0.5)
                continue
            for record in records:
                try:
                    change = ConsentChange.from_record(record)
                except (ValueError, KeyError) as exc:
                    # Not understood: forget everything rather than risk a stale answer.
                    log.warning("consent.changes: unreadable record at %d: %s", record.offset, exc)
                    self.decision_point.cache.clear()
                    continue
                if change.scope is ChangeScope.MARKER:
                    if change.consent_id == f"{self.group}/{self._marker}" and not self.ready:
                        self.decision_point.cache.resume()
                        self._ready.set()
                        log.info("consent.changes: caught up; caching decisions")
                    continue
                self.decision_point.cache.apply(change)
                for apply in self.also:
                    apply(change)
                self.applied += 1
