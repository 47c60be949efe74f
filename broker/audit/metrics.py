"""The audit log's Prometheus metrics: entries written, checkpoint age, the chain's verification.

The checkpoint's age is read from the ``audit_head`` row at scrape time, so every process
that watches the store (``watch_store``) reports the same, current value whoever appended
last. The verification gauges report this process's last full verification, and appear only
once there has been one: a 0 before the first would read as a broken chain.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Iterable, Iterator
from typing import Any

from prometheus_client import Counter
from prometheus_client.core import REGISTRY, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import Engine, select
from sqlalchemy.exc import SQLAlchemyError

from broker.audit import tables

log = logging.getLogger(__name__)

ENTRIES = Counter(
    "tsunagu_audit_entries_total", "Audit entries chained into the store by this process", ["kind"]
)
_entries_of: dict[str, Any] = {}  # kind -> its child of ENTRIES (labels() costs ~1 µs)


def count_entries(kinds: Iterable[str]) -> None:
    """Count entries just chained, by kind."""
    for kind, n in collections.Counter(kinds).items():
        child = _entries_of.get(kind)
        if child is None:
            child = _entries_of[kind] = ENTRIES.labels(kind)
        child.inc(n)


class _AuditCollector(Collector):
    """Checkpoint age from the store; the last verification's result and time."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._engine: Engine | None = None
        self._verified: tuple[bool, float] | None = None

    def watch(self, engine: Engine) -> None:
        """Read the checkpoint's age from this store at each scrape."""
        with self._lock:
            self._engine = engine

    def unwatch(self, engine: Engine) -> None:
        """Stop reading ``engine`` (it is being closed), if it is the one watched."""
        with self._lock:
            if self._engine is engine:
                self._engine = None

    def verified(self, ok: bool, at: float) -> None:
        """Note a full verification: its result and when it finished (POSIX seconds)."""
        with self._lock:
            self._verified = (ok, at)

    def collect(self) -> Iterator[Metric]:
        """The series that have a value now (none before the store is watched or verified)."""
        with self._lock:
            engine, verified = self._engine, self._verified
        if engine is not None:
            yield from _head_metrics(engine)
        if verified is not None:
            ok, at = verified
            yield GaugeMetricFamily(
                "tsunagu_audit_chain_ok",
                "1 when this process's last full verification of the audit chain passed, else 0",
                value=1.0 if ok else 0.0,
            )
            yield GaugeMetricFamily(
                "tsunagu_audit_last_verified_timestamp_seconds",
                "When this process's last full verification of the audit chain finished",
                value=at,
            )


def _head_metrics(engine: Engine) -> Iterator[Metric]:
    h = tables.head.c
    try:
        with engine.connect() as conn:
            head = conn.execute(select(h.seq, h.checkpoint_seq, h.checkpoint_time)).one_or_none()
    except SQLAlchemyError as exc:
        # A scrape must not fail with the store: the series go missing, which alerts.
        log.warning("audit metrics: the audit head could not be read: %s", exc)
        return
    if head is None:
        return
    yield GaugeMetricFamily(
        "tsunagu_audit_checkpoint_age_seconds",
        "Seconds since the last signed checkpoint of the audit log (grows while it is idle)",
        value=max(0.0, time.time() - float(head.checkpoint_time)),
    )
    yield GaugeMetricFamily(
        "tsunagu_audit_unsigned_entries",
        "Audit entries chained after the last signed checkpoint",
        value=float(head.seq - head.checkpoint_seq),
    )


AUDIT = _AuditCollector()
REGISTRY.register(AUDIT)


def watch_store(engine: Engine) -> None:
    """Report the audit head of this store (the platform's) at each scrape."""
    AUDIT.watch(engine)


def unwatch_store(engine: Engine) -> None:
    """Stop reporting ``engine``'s audit head (it is closing)."""
    AUDIT.unwatch(engine)


def record_verification(ok: bool, at: float) -> None:
    """Publish a full verification's result and when it finished (POSIX seconds)."""
    AUDIT.verified(ok, at)
