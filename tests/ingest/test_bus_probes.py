"""Background probes of the bus (the ingest group's lag, /readyz's bus check) read a real Kafka
at most once per TSUNAGU_BUS_PROBE_INTERVAL_S, however often they are asked: counted through
a wrapper of the real kafka-python admin client."""

from __future__ import annotations

import collections
import math
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaAdminClient

import broker.bus.kafka as kafka_module
from broker.bus.kafka import KafkaBus
from broker.bus.probe import OK, BusProbe
from broker.ingest.pipeline import IngestWorker
from broker.store.database import make_engine
from consent.vault import SubjectVault
from contract.bus import TopicSpec
from ops.kafka.broker import KafkaBroker
from tests.events import registry
from tests.fixtures.kafka import unique_topic

INTERVAL_S = 1.0
RUN_S = 4.0
#: The admin requests one reading of the lag makes per topic: ends, then committed offsets.
LAG_REQUESTS = ("list_partition_offsets", "list_group_offsets")


class CountingAdmin:
    """The real admin client, counting the calls made of each of its methods."""

    def __init__(self, real: Any, calls: collections.Counter[str]) -> None:
        self._real = real
        self._calls = calls

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._real, name)
        if not callable(attribute):
            return attribute

        def counted(*args: Any, **kwargs: Any) -> Any:
            self._calls[name] += 1
            return attribute(*args, **kwargs)

        return counted


@pytest.fixture
def admin_calls(monkeypatch: pytest.MonkeyPatch) -> collections.Counter[str]:
    """Calls of every admin client a KafkaBus makes from now on, by method."""
    calls: collections.Counter[str] = collections.Counter()

    def counting(*args: Any, **kwargs: Any) -> CountingAdmin:
        return CountingAdmin(KafkaAdminClient(*args, **kwargs), calls)

    monkeypatch.setattr(kafka_module, "KafkaAdminClient", counting)
    return calls


@pytest.fixture
def counted_bus(
    kafka_broker: KafkaBroker, admin_calls: collections.Counter[str]
) -> Iterator[KafkaBus]:
    """A KafkaBus on the session's broker whose admin requests are counted."""
    kafka_broker.start()
    bus = KafkaBus([kafka_broker.bootstrap], client_id="tsunagu-probes", publish_timeout_s=15.0)
    try:
        yield bus
    finally:
        bus.close()


def _readings_within(run_s: float) -> int:
    """The most readings one per INTERVAL_S can make in ``run_s`` (one at the start)."""
    return math.floor(run_s / INTERVAL_S) + 1


def _for(run_s: float, action: Callable[[], None]) -> None:
    deadline = time.monotonic() + run_s
    while time.monotonic() < deadline:
        action()


def test_readiness_reads_the_bus_once_per_interval_however_often_it_is_asked(
    counted_bus: KafkaBus, admin_calls: collections.Counter[str]
) -> None:
    topic = unique_topic("probe")
    counted_bus.create_topics([TopicSpec(topic, 2)])
    admin_calls.clear()
    probe = BusProbe(counted_bus, topic, INTERVAL_S)
    asked = 0

    def ask() -> None:
        nonlocal asked
        asked += 1
        answer = probe.check()
        assert answer.result == OK
        assert 0 <= answer.age_s < INTERVAL_S  # the answer says how old it is

    started = time.monotonic()
    _for(RUN_S, ask)
    elapsed = time.monotonic() - started
    reads = admin_calls["list_partition_offsets"]
    assert asked > 10 * reads  # asked far more often than read...
    assert 1 <= reads <= _readings_within(elapsed)  # ...and read once per interval at most


def test_a_failing_bus_is_reported_with_the_age_of_the_reading(tmp_path: Path) -> None:
    clock = [0.0]
    bus = KafkaBus(["127.0.0.1:1"], client_id="nowhere", request_timeout_ms=1000)
    try:
        probe = BusProbe(bus, "transport", 30.0, clock=lambda: clock[0])
        first = probe.check()
        assert first.result.startswith("failing: ")
        clock[0] = 12.0
        assert probe.check() == type(first)(first.result, 12.0)  # reused, with its age
    finally:
        bus.close()


def test_the_lag_reporter_reads_the_bus_once_per_interval(
    counted_bus: KafkaBus, admin_calls: collections.Counter[str], tmp_path: Path
) -> None:
    topics = [unique_topic("lag"), unique_topic("lag")]
    counted_bus.create_topics([TopicSpec(t, 2) for t in topics])
    engine = make_engine(f"sqlite:///{tmp_path / 'store.db'}")
    vault = SubjectVault.open_url(f"sqlite:///{tmp_path / 'vault.db'}")
    worker = IngestWorker(
        counted_bus,
        engine,
        registry(),
        vault,
        group=unique_topic("group"),
        topics=topics,
        lag_interval_s=INTERVAL_S,
    )
    admin_calls.clear()
    stop = threading.Event()
    thread = threading.Thread(target=worker.run, args=(stop, 0.1))
    started = time.monotonic()
    thread.start()
    try:
        time.sleep(RUN_S)
    finally:
        stop.set()
        thread.join(30)
        elapsed = time.monotonic() - started
        vault.close()
        engine.dispose()
    # Each reading asks for every topic's ends and the group's committed offsets once.
    most = _readings_within(elapsed) * len(topics)
    for request in LAG_REQUESTS:
        assert 1 <= admin_calls[request] <= most, (request, admin_calls)
