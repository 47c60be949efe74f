"""A multi-process deployment for the scale tests: `tsunagu worker` and `tsunagu up` processes
sharing one Apache Kafka bus, one PostgreSQL store and one PostgreSQL vault.

Every process of a deployment has the same data directory (the platform's keys: the issuer
that signs connector tokens, the audit signing key), as machines given the same key files
would; nothing else of theirs is local, so they meet only through the bus and the databases.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx
import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import Engine, text

from broker.bus.kafka import KafkaBus
from contract.bus import OutRecord
from contract.domains import DOMAINS
from contract.origin import OriginSigner
from ops.kafka.broker import KafkaBroker, free_port
from tests.events import connector_signer, example_data, make_event
from tests.fixtures.platform import RunningPlatform

REPO = Path(__file__).resolve().parents[2]
PARTITIONS = 4  # TSUNAGU_TOPIC_PARTITIONS' default: 16 domain partitions in all

#: The event types the tests publish, one per domain, and the projection each one fills with
#: exactly one row per event (keyed by the event id).
PROJECTED_BY: dict[str, str] = {
    "transport.trip.completed": "transport_trips",
    "health.points.awarded": "health_points",
    "currency.payment.settled": "currency_transactions",
    "vacant_house.inquiry.received": "vacant_house_inquiries",
}

T = TypeVar("T")

_ASSIGNED = re.compile(r"group (\S+) member \S+ now reads (.*)$")


def region_events(n: int, tag: str, residents: int = 400) -> list[dict[str, Any]]:
    """``n`` valid events over the four domains, about ``residents`` residents (so one
    resident's events are on several topics, which different workers may own)."""
    types = list(PROJECTED_BY)
    examples = {t: example_data(t) for t in types}
    docs = []
    for i in range(n):
        event_type = types[i % len(types)]
        resident = f"res-{(i * 7) % residents:05d}"
        data = {**examples[event_type], "resident_id": resident}
        docs.append(make_event(event_type, event_id=f"{tag}-{i:06d}", data=data, subject=resident))
    return docs


def domain_partitions(prefix: str) -> frozenset[str]:
    """Every domain partition of a deployment, as ``topic[p]`` (how the workers log them)."""
    return frozenset(f"{prefix}{t}[{p}]" for t in DOMAINS.topics() for p in range(PARTITIONS))


@dataclass
class WorkerProcess:
    """One `tsunagu worker` subprocess and its log."""

    name: str
    process: subprocess.Popen[bytes]
    log: Path
    group: str
    metrics_url: str

    @property
    def alive(self) -> bool:
        """Whether the process is still running."""
        return self.process.poll() is None

    def assignments(self) -> list[frozenset[str]]:
        """Every assignment of the ingest group this worker has logged, oldest first."""
        found = []
        for line in self.log.read_text(errors="replace").splitlines():
            match = _ASSIGNED.search(line)
            if match and match.group(1) == self.group:
                listed = match.group(2).strip()
                found.append(frozenset() if listed == "nothing" else frozenset(listed.split(", ")))
        return found

    def current(self) -> frozenset[str]:
        """The partitions this worker last said it reads (empty before it joined)."""
        logged = self.assignments()
        return logged[-1] if logged else frozenset()

    def projected(self) -> int:
        """Events this worker has projected, from its /metrics."""
        body = httpx.get(self.metrics_url, timeout=10).text
        return int(
            sum(
                sample.value
                for family in text_string_to_metric_families(body)
                if family.name == "tsunagu_ingest_events"
                for sample in family.samples
                if sample.name == "tsunagu_ingest_events_total"
            )
        )

    def dump_threads(self) -> None:
        """Have a live worker write every thread's stack to its log, and end it
        (``PYTHONFAULTHANDLER``: SIGABRT): what it was stuck on, for a failure message."""
        if self.alive:
            self.process.send_signal(signal.SIGABRT)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()

    def tail(self, chars: int = 5000) -> str:
        """The end of its log, for failure messages (without kafka-python's chatter)."""
        lines = self.log.read_text(errors="replace").splitlines()
        kept = "\n".join(line for line in lines if " INFO kafka." not in line)
        return f"--- {self.name} (exit {self.process.poll()}) ---\n{kept[-chars:]}"

    def signal(self, sig: signal.Signals) -> None:
        """Send ``sig`` to the process."""
        self.process.send_signal(sig)

    def wait(self, timeout_s: float) -> int:
        """Wait for the process to exit; its exit code."""
        return self.process.wait(timeout_s)

    def kill(self) -> None:
        """Make sure the process is gone."""
        if self.alive:
            self.process.kill()
        self.process.wait(30)


@dataclass
class Deployment:
    """The shared parts of one test's deployment, and the processes started on them."""

    kafka_broker: KafkaBroker
    bus: KafkaBus
    store: Engine
    store_url: str
    vault_url: str
    data_dir: Path
    prefix: str
    group: str
    workers: list[WorkerProcess] = field(default_factory=list)
    platforms: list[RunningPlatform] = field(default_factory=list)
    #: Settings every process started from now on gets besides the deployment's own.
    extra_env: dict[str, str] = field(default_factory=dict)

    def env(self, **extra: str) -> dict[str, str]:
        """The environment every process of this deployment runs with."""
        return {
            **os.environ,
            "TSUNAGU_BUS": self.kafka_broker.url,
            "TSUNAGU_DATABASE_URL": self.store_url,
            "TSUNAGU_VAULT_URL": self.vault_url,
            "TSUNAGU_DATA_DIR": str(self.data_dir),
            "TSUNAGU_TOPIC_PREFIX": self.prefix,
            # A group of its own: a worker killed by an earlier test stays a member of a
            # shared group until its session times out.
            "TSUNAGU_INGEST_GROUP": self.group,
            "TSUNAGU_INGEST_REQUIRE_TOKEN": "true",  # as deployed: every record's token checked
            **self.extra_env,
            **extra,
        }

    # -- workers -------------------------------------------------------------------------------

    def start_worker(self, batch_size: int = 500) -> WorkerProcess:
        """Start one more `tsunagu worker` in the group."""
        name = f"worker-{len(self.workers) + 1}"
        log = self.data_dir / f"{name}.log"
        port = free_port()  # each its own, as on machines of their own
        env = self.env(
            TSUNAGU_INGEST_BATCH_SIZE=str(batch_size),
            TSUNAGU_METRICS_PORT=str(port),
            PYTHONFAULTHANDLER="1",  # SIGABRT dumps every thread: see dump_threads()
        )
        with log.open("wb") as out:
            process = subprocess.Popen(
                [sys.executable, "-m", "broker.cli", "worker"],
                cwd=REPO,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        worker = WorkerProcess(name, process, log, self.group, f"http://127.0.0.1:{port}/metrics")
        self.workers.append(worker)
        return worker

    def live_workers(self) -> list[WorkerProcess]:
        """The workers still running."""
        return [w for w in self.workers if w.alive]

    def logs(self) -> str:
        """The end of every process's log, for failure messages."""
        tails = [w.tail() for w in self.workers]
        tails += [f"--- tsunagu up ---\n{p.output.read_text()[-3000:]}" for p in self.platforms]
        return "\n".join(tails)

    def wait_until_shared(
        self, among: Sequence[WorkerProcess], timeout_s: float = 90
    ) -> dict[str, frozenset[str]]:
        """Wait until ``among`` (and no other live worker) split every domain partition
        between them, each owning some; their assignments."""
        everything = domain_partitions(self.prefix)

        def split() -> dict[str, frozenset[str]] | None:
            owned = {w.name: w.current() for w in self.live_workers()}
            if set(owned) != {w.name for w in among} or not all(owned.values()):
                return None
            if sum(len(p) for p in owned.values()) != len(everything):
                return None  # overlapping: someone has not logged its new share yet
            return owned if frozenset().union(*owned.values()) == everything else None

        return self.wait_for(split, timeout_s, "the workers to share every partition")

    # -- the stream -----------------------------------------------------------------------------

    def signer(self, source: str = "urn:tsunagu:connector:test") -> OriginSigner:
        """A connector's token for ``source`` and its key, made with the deployment's keys."""
        return connector_signer(self.data_dir, source)

    def publish(self, docs: Iterable[dict[str, Any]]) -> None:
        """Publish events as their connector would: on their domain's topic, keyed by subject."""
        signer = self.signer()
        by_topic: dict[str, list[OutRecord]] = {}
        for doc in docs:
            record = signer.sign(OutRecord(doc["subject"].encode(), orjson.dumps(doc)))
            by_topic.setdefault(self.prefix + doc["type"].split(".", 1)[0], []).append(record)
        for topic, records in by_topic.items():
            self.bus.publish(topic, records)

    def ingested(self) -> int:
        """Events in the ledger."""
        with self.store.connect() as conn:
            return int(conn.execute(text("SELECT count(*) FROM ingested_events")).scalar_one())

    def wait_for_ingested(self, n: int, timeout_s: float = 120) -> None:
        """Wait until the ledger holds ``n`` events."""
        self.wait_for(
            lambda: self.ingested() >= n or None, timeout_s, f"{n} events to be projected"
        )

    def committed_on(self, partitions: Iterable[str]) -> dict[str, int]:
        """The group's committed offset of each of ``partitions`` (``topic[p]``)."""
        out = {}
        for name in partitions:
            topic, p = name.rstrip("]").split("[")
            out[name] = self.bus.committed(self.group, topic)[int(p)]
        return out

    def caught_up(self) -> bool:
        """Whether the group has committed the end of every domain partition."""
        for domain in DOMAINS.topics():
            topic = self.prefix + domain
            if self.bus.committed(self.group, topic) != self.bus.end_offsets(topic):
                return False
        return True

    def wait_for(self, check: Callable[[], T | None], timeout_s: float, what: str) -> T:
        """Poll ``check`` until it returns something; fail, with the logs, at the deadline or
        once every process has died."""
        deadline = time.monotonic() + timeout_s
        while True:
            found = check()
            if found is not None and found is not False:
                return found
            if self.workers and not self.live_workers() and not self.platforms:
                pytest.fail(f"every worker exited while waiting for {what}\n{self.logs()}")
            if time.monotonic() > deadline:
                for worker in self.live_workers():
                    worker.dump_threads()
                pytest.fail(f"no {what} within {timeout_s} s\n{self.logs()}")
            time.sleep(0.1)

    # -- API processes --------------------------------------------------------------------------

    def start_platform(self, name: str) -> RunningPlatform:
        """Start `tsunagu up` (API and its worker thread) on this deployment; ready when
        /readyz says so."""
        port = free_port()
        output = self.data_dir / f"{name}.log"
        with output.open("wb") as out:
            process = subprocess.Popen(
                [sys.executable, "-m", "broker.cli", "up"],
                cwd=REPO,
                env=self.env(TSUNAGU_PORT=str(port)),
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        running = RunningPlatform(f"http://127.0.0.1:{port}", self.data_dir, process, output)
        self.platforms.append(running)

        def ready() -> bool:
            if process.poll() is not None:
                pytest.fail(f"tsunagu up exited with {process.returncode}\n{self.logs()}")
            try:
                return httpx.get(f"{running.base_url}/readyz", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        self.wait_for(ready, 90, f"{name} to be ready")
        return running

    # -- teardown -------------------------------------------------------------------------------

    def stop_everything(self) -> None:
        """Kill every process this deployment started."""
        for worker in self.workers:
            worker.kill()
        for platform in self.platforms:
            if platform.process.poll() is None:
                platform.process.terminate()
                try:
                    platform.process.wait(15)
                except subprocess.TimeoutExpired:
                    platform.process.kill()
                    platform.process.wait(15)


class Stream:
    """Connectors publishing ``docs`` in chunks from a background thread, never more than
    ``ahead`` events ahead of the store's ledger (as an outbox drains no faster than the
    platform takes events in): so the stream is still going when a worker is stopped, on a
    fast machine or a slow one, and waits while the group rebalances."""

    def __init__(
        self, deployment: Deployment, docs: Sequence[dict[str, Any]], chunk: int, ahead: int
    ) -> None:
        self.deployment = deployment
        self.docs = docs
        self.chunk = chunk
        self.ahead = ahead
        self.published = 0
        self._failure: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="stream", daemon=True)

    def start(self) -> Stream:
        """Start publishing."""
        self._thread.start()
        return self

    def _run(self) -> None:
        try:
            for i in range(0, len(self.docs), self.chunk):
                while self.published - self.deployment.ingested() >= self.ahead:
                    if self._stop.wait(0.05):
                        return
                self.deployment.publish(self.docs[i : i + self.chunk])
                self.published = min(i + self.chunk, len(self.docs))
        except BaseException as exc:  # re-raised in the test's thread by join()
            self._failure = exc

    def join(self, timeout_s: float = 120) -> None:
        """Wait until everything is published; raise what publishing raised."""
        self._thread.join(timeout_s)
        if self._thread.is_alive():
            self._stop.set()
            pytest.fail(f"publishing did not finish in {timeout_s} s\n{self.deployment.logs()}")
        if self._failure is not None:
            raise self._failure
