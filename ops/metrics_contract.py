"""The metrics Tsunagu's processes export: the one list that the alert rules
(``ops/prometheus/alerts.yml``) and dashboards (``ops/grafana/dashboards/``) are written
against, and that a test scraping the processes can hold them to.

Names are as they appear in ``/metrics`` and in PromQL: a counter with its ``_total``; a
histogram by its base name, queried as ``_bucket`` (label ``le``), ``_sum`` and ``_count``.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Kind(StrEnum):
    """Prometheus metric types, as PromQL must treat them."""

    COUNTER = "counter"
    GAUGE = "gauge"
    HISTOGRAM = "histogram"


@dataclass(frozen=True, slots=True)
class Metric:
    """One metric family of the contract."""

    name: str
    kind: Kind
    labels: tuple[str, ...] = ()

    def series(self) -> dict[str, tuple[str, ...]]:
        """The sample names PromQL may query, each with its labels."""
        if self.kind is Kind.HISTOGRAM:
            return {
                f"{self.name}_bucket": (*self.labels, "le"),
                f"{self.name}_sum": self.labels,
                f"{self.name}_count": self.labels,
            }
        return {self.name: self.labels}


C, G, H = Kind.COUNTER, Kind.GAUGE, Kind.HISTOGRAM

CONTRACT: tuple[Metric, ...] = (
    # ingest (`tsunagu worker`, and the worker inside `tsunagu up`)
    Metric("tsunagu_ingest_events_total", C, ("topic", "type")),
    Metric("tsunagu_ingest_duplicates_total", C, ("topic",)),
    Metric("tsunagu_dead_letters_total", C, ("topic", "reason")),
    Metric("tsunagu_ingest_batch_seconds", H),
    Metric("tsunagu_consumer_lag", G, ("group", "topic", "partition")),
    # consent and the API (`tsunagu up`)
    Metric("tsunagu_consent_decisions_total", C, ("result", "reason")),
    Metric("tsunagu_http_requests_total", C, ("route", "method", "status")),
    Metric("tsunagu_http_request_seconds", H, ("route", "method")),
    # connectors (`tsunagu connector run ... --metrics-port N`)
    Metric("tsunagu_connector_outbox_depth", G, ("connector",)),
    Metric("tsunagu_connector_sent_total", C, ("connector",)),
    Metric("tsunagu_connector_failed_total", C, ("connector",)),
    Metric("tsunagu_connector_retries_total", C, ("connector",)),
    # the audit log
    Metric("tsunagu_audit_entries_total", C, ("kind",)),
    Metric("tsunagu_audit_checkpoint_age_seconds", G),
    Metric("tsunagu_audit_unsigned_entries", G),
    Metric("tsunagu_audit_chain_ok", G),
    Metric("tsunagu_audit_last_verified_timestamp_seconds", G),
    # partner webhooks (revocations, expiries)
    Metric("tsunagu_consent_notifications_failed_total", C, ("kind",)),
)

#: Every queryable sample name of the contract, with its labels.
SERIES: dict[str, tuple[str, ...]] = {
    name: labels for metric in CONTRACT for name, labels in metric.series().items()
}
#: Metric families by name.
BY_NAME: dict[str, Metric] = {metric.name: metric for metric in CONTRACT}


def family_of(series: str) -> Metric | None:
    """The metric a sample name belongs to (``x_bucket`` -> histogram ``x``), if any."""
    for metric in CONTRACT:
        if series in metric.series():
            return metric
    return None
