"""Reading a process's /metrics over HTTP, and waiting for a condition on it."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import httpx
import pytest
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

#: Upper bound of every wait here; processes usually answer well within it.
WAIT_S = 60.0


@dataclass(frozen=True)
class Scrape:
    """One scrape: the exposition text, its metric families and their samples."""

    text: str
    families: list[Metric]

    @property
    def samples(self) -> list[tuple[str, dict[str, str], float]]:
        """Every sample as (name, labels, value)."""
        return [(s.name, dict(s.labels), s.value) for f in self.families for s in f.samples]

    def series(self, name: str, **labels: str) -> list[tuple[dict[str, str], float]]:
        """The samples of ``name`` whose labels include ``labels``."""
        return [
            (have, value)
            for sample, have, value in self.samples
            if sample == name and labels.items() <= have.items()
        ]

    def value(self, name: str, **labels: str) -> float | None:
        """The one sample of ``name`` with exactly ``labels``; None when there is none."""
        found = [v for s, have, v in self.samples if s == name and have == labels]
        assert len(found) <= 1, (name, labels, found)
        return found[0] if found else None


def scrape(url: str) -> Scrape:
    """GET ``url`` (a /metrics endpoint) and parse it as Prometheus text."""
    response = httpx.get(url, timeout=10)
    response.raise_for_status()
    assert response.headers["content-type"].startswith("text/plain")
    return Scrape(response.text, list(text_string_to_metric_families(response.text)))


def scrape_until(url: str, ready: Callable[[Scrape], bool], what: str) -> Scrape:
    """Scrape ``url`` until ``ready`` holds (the process may still be starting)."""
    deadline = time.monotonic() + WAIT_S
    last: Scrape | None = None
    while time.monotonic() < deadline:
        try:
            last = scrape(url)
        except httpx.HTTPError:
            last = None
        if last is not None and ready(last):
            return last
        time.sleep(0.2)
    tail = "" if last is None else last.text[-3000:]
    pytest.fail(f"{url}: {what} not seen within {WAIT_S} s\n{tail}")
