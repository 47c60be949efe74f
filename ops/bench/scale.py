"""Horizontal scale of ingest: events/s with one, two and three `tsunagu worker` processes in one
consumer group, on Apache Kafka and PostgreSQL; and a worker's memory over a long
run.

Every run gets fresh topics (``TSUNAGU_TOPIC_PREFIX``), a fresh consumer group and fresh
PostgreSQL databases for the store and the subject-key vault, so runs never see each other's
events. The workers are real `python -m broker.cli worker` processes with the platform's
settings (connector tokens checked, subjects sealed, every batch audited). Once they have split
the 16 domain partitions between them, a publisher process (its events built beforehand, as
in ``ops.bench.ingest``) publishes ``--events`` events as a connector would, and the clock
runs until the store's ledger holds every one of them.

Prints, per worker count, events/s and the ratio to one worker (2 / 1, 3 / 1), with how
many partitions each worker owned and the workers' own CPU time per event (target for two
workers: no slower than one, CPU per event within 1.2 times one worker's); then one worker's
resident memory (RSS, from /proc, sampled every half second) while it ingests ``--rss-events``
events published in chunks: the peak, the figure at the end, and samples along the way.
Target: bounded, under 300 MB.

On the 2-core dev machine Kafka, PostgreSQL, the publisher and every worker share the same two
cores, so more workers cannot add CPU and may not scale at all; the figures show what the
group's coordination costs rather than what more machines would give. The number of cores
is printed with the figures. PostgreSQL must be running (``--pg``, trust auth).

    python -m ops.bench.scale [--events 100000] [--workers 1,2,3] [--rss-events 1000000]
                              [--pg "host=127.0.0.1 port=5432 dbname=test user=postgres"]
                              [--keep DIR] [--quick]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
from psycopg.conninfo import conninfo_to_dict
from sqlalchemy import Engine, text

from broker.auth.issuer import EmbeddedIssuer
from broker.auth.origin import connector_key, master_key_of
from broker.auth.principals import Role
from broker.bus import open_bus
from broker.registry.catalogue import SchemaRegistry
from broker.runtime import topic_specs
from broker.settings import REPO_SCHEMAS, Settings
from broker.store.database import make_engine
from contract.domains import DOMAINS
from contract.origin import OriginSigner
from ops.bench.events import SOURCE, make_records
from ops.kafka.broker import KafkaBroker

REPO = Path(__file__).resolve().parents[2]
PG_ADMIN = "host=127.0.0.1 port=5432 dbname=test user=postgres"
PARTITIONS = 4  # per domain topic, the platform's default: 16 partitions to share
PUBLISH_CHUNK = 2000
RSS_CHUNK = 50_000  # the long run's publisher builds and sends this many at a time
RSS_TARGET_MB = 300.0
_ASSIGNED = re.compile(r"group (\S+) member \S+ now reads (.*)$")


# -- the publisher process ------------------------------------------------------------------


def _publisher(
    bus_url: str,
    prefix: str,
    n: int,
    token: str,
    key: bytes,
    chunk: int,
    ready: mp.Event,  # type: ignore[valid-type]
    go: mp.Event,  # type: ignore[valid-type]
) -> None:
    """Publish ``n`` valid events as the bench connector, ``chunk`` built at a time."""
    registry = SchemaRegistry.from_directory(REPO_SCHEMAS)
    signer = OriginSigner(token, key)
    bus = open_bus(bus_url)
    # Distinct seeds make distinct event ids (``bench-<seed>-<i>``) in every chunk and run.
    seed = (hash(prefix) & 0xFFFF) * 1000
    pending = make_records(registry, min(chunk, n), seed=seed, signer=signer)
    ready.set()  # type: ignore[attr-defined]
    go.wait()  # type: ignore[attr-defined]
    sent = 0
    while True:
        for topic, records in pending.items():
            for i in range(0, len(records), PUBLISH_CHUNK):
                bus.publish(prefix + topic, records[i : i + PUBLISH_CHUNK])
        sent += sum(len(r) for r in pending.values())
        if sent >= n:
            break
        seed += 1
        pending = make_records(registry, min(chunk, n - sent), seed=seed, signer=signer)
    bus.close()


# -- one deployment: fresh databases, topics, group; worker processes -------------------------


@dataclass
class Deployment:
    """The shared parts of one run and the workers started on them."""

    bus_url: str
    store_url: str
    vault_url: str
    data_dir: Path
    prefix: str
    group: str
    store: Engine
    workers: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def env(self) -> dict[str, str]:
        """The settings of every worker of this run."""
        return {
            **os.environ,
            "TSUNAGU_BUS": self.bus_url,
            "TSUNAGU_DATABASE_URL": self.store_url,
            "TSUNAGU_VAULT_URL": self.vault_url,
            "TSUNAGU_DATA_DIR": str(self.data_dir),
            "TSUNAGU_TOPIC_PREFIX": self.prefix,
            "TSUNAGU_INGEST_GROUP": self.group,
            "TSUNAGU_TOPIC_PARTITIONS": str(PARTITIONS),
            "TSUNAGU_INGEST_REQUIRE_TOKEN": "true",
        }

    def start_worker(self) -> subprocess.Popen[bytes]:
        """One more `tsunagu worker` in the group, logging to the data directory."""
        log = self.data_dir / f"worker-{len(self.workers) + 1}.log"
        with log.open("wb") as out:
            worker = subprocess.Popen(
                [sys.executable, "-m", "broker.cli", "worker"],
                cwd=REPO,
                env=self.env(),
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        self.workers.append(worker)
        return worker

    def shares(self) -> list[set[str]]:
        """Each worker's last logged assignment in the ingest group."""
        found = []
        for i in range(len(self.workers)):
            last: set[str] = set()
            log = self.data_dir / f"worker-{i + 1}.log"
            for line in log.read_text(errors="replace").splitlines():
                match = _ASSIGNED.search(line)
                if match and match.group(1) == self.group:
                    listed = match.group(2).strip()
                    last = set() if listed == "nothing" else set(listed.split(", "))
            found.append(last)
        return found

    def wait_until_shared(self, timeout_s: float = 120) -> list[set[str]]:
        """Wait until the workers have split every domain partition, each owning some."""
        everything = {f"{self.prefix}{t}[{p}]" for t in DOMAINS.topics() for p in range(PARTITIONS)}
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            self.check_alive()
            shares = self.shares()
            # Every partition owned, and by one worker only (the sizes add up).
            split = sum(map(len, shares)) == len(everything) and set().union(*shares) == everything
            if all(shares) and split:
                return shares
            time.sleep(0.2)
        raise RuntimeError(f"the workers did not share the partitions in {timeout_s} s")

    def check_alive(self) -> None:
        """Raise, with the end of its log, if a worker has exited."""
        for i, worker in enumerate(self.workers):
            if worker.poll() is not None:
                log = (self.data_dir / f"worker-{i + 1}.log").read_text(errors="replace")
                raise RuntimeError(
                    f"worker {i + 1} exited with {worker.returncode}:\n{log[-3000:]}"
                )

    def events_per_partition(self) -> dict[str, int]:
        """Events published on each domain partition (``topic[p]``: as the workers log it)."""
        bus = open_bus(self.bus_url)
        try:
            return {
                f"{self.prefix}{t}[{p}]": end
                for t in DOMAINS.topics()
                for p, end in bus.end_offsets(self.prefix + t).items()
            }
        finally:
            bus.close()

    def ingested(self) -> int:
        """Events in the store's ledger."""
        with self.store.connect() as conn:
            return int(conn.execute(text("SELECT count(*) FROM ingested_events")).scalar_one())

    def stop(self) -> None:
        """Stop every worker (SIGTERM, then SIGKILL)."""
        for worker in self.workers:
            if worker.poll() is None:
                worker.send_signal(signal.SIGTERM)
        for worker in self.workers:
            try:
                worker.wait(30)
            except subprocess.TimeoutExpired:
                worker.kill()
                worker.wait()


@contextmanager
def deployment(bus_url: str, pg_admin: str, keep: Path | None) -> Iterator[Deployment]:
    """Fresh store and vault databases, topics, group and data directory; dropped after."""
    tag = uuid.uuid4().hex[:8]
    names = [f"tsunagu_bench_scale_{tag}_store", f"tsunagu_bench_scale_{tag}_vault"]
    info = conninfo_to_dict(pg_admin)
    base = (
        f"postgresql+psycopg://{info.get('user', 'postgres')}@{info.get('host', '127.0.0.1')}"
        f":{info.get('port', 5432)}"
    )
    with psycopg.connect(pg_admin, autocommit=True) as admin:
        for name in names:
            admin.execute(f'CREATE DATABASE "{name}"')
    data_dir = (keep / tag) if keep else Path(tempfile.mkdtemp(prefix="bench-scale-"))
    data_dir.mkdir(parents=True, exist_ok=True)
    prefix = f"sc{tag}."
    store = None
    running = None
    try:
        bus = open_bus(bus_url)
        bus.create_topics(topic_specs(Settings(topic_prefix=prefix, topic_partitions=PARTITIONS)))
        bus.close()
        # Tables made once before the workers start: workers creating them at the same moment
        # on PostgreSQL can fail with a unique violation in pg_type.
        store = make_engine(f"{base}/{names[0]}")
        running = Deployment(
            bus_url, f"{base}/{names[0]}", f"{base}/{names[1]}", data_dir, prefix, tag, store
        )
        yield running
    finally:
        if running is not None:
            running.stop()
        if store is not None:
            store.dispose()
        with psycopg.connect(pg_admin, autocommit=True) as admin:
            for name in names:
                admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        if keep is None:
            shutil.rmtree(data_dir, ignore_errors=True)


def _connector_token(data_dir: Path) -> str:
    """A token of the deployment's embedded issuer for the bench connector's source."""
    issuer = EmbeddedIssuer.in_data_dir(data_dir, audience="tsunagu")
    return issuer.issue(
        "bench",
        Role.CONNECTOR,
        sources=[SOURCE],
        event_types=[f"{d}.*" for d in DOMAINS.names()],
        ttl_s=24 * 3600,
    )


def _run_publisher(
    run: Deployment, n: int, chunk: int
) -> tuple[mp.process.BaseProcess, Callable[[], None]]:
    """A publisher process with its events built and waiting; and the function that starts it."""
    ctx = mp.get_context("spawn")
    ready, go = ctx.Event(), ctx.Event()
    token = _connector_token(run.data_dir)
    master = master_key_of(Settings(data_dir=run.data_dir, connector_master_key=None))
    key = connector_key(master, "bench")
    publisher = ctx.Process(
        target=_publisher, args=(run.bus_url, run.prefix, n, token, key, chunk, ready, go)
    )
    publisher.start()
    if not ready.wait(300):
        raise RuntimeError("the publisher did not get ready")
    return publisher, go.set


# -- the measurements -------------------------------------------------------------------------


@dataclass(frozen=True)
class Throughput:
    """One run with ``workers`` workers."""

    workers: int
    events: int
    seconds: float
    partitions: list[int]
    #: Each worker's share of the events, from the events on the partitions it owned.
    loads: list[float]
    #: The workers' own CPU time (user + system) over the run, summed: what the events cost,
    #: whatever else shares the cores.
    cpu_seconds: float

    @property
    def rate(self) -> float:
        """Events per second."""
        return self.events / self.seconds

    @property
    def cpu_us_per_event(self) -> float:
        """The workers' CPU time per event, in microseconds."""
        return self.cpu_seconds / self.events * 1e6


def bench_workers(
    bus_url: str, pg_admin: str, n: int, workers: int, keep: Path | None
) -> Throughput:
    """Events/s from a publisher through ``workers`` worker processes into PostgreSQL."""
    with deployment(bus_url, pg_admin, keep) as run:
        publisher, go = _run_publisher(run, n, chunk=n)
        for _ in range(workers):
            run.start_worker()
        shares = run.wait_until_shared()
        cpu_before = sum(_cpu_seconds(w.pid) for w in run.workers)
        started = time.perf_counter()
        go()
        while (done := run.ingested()) < n:
            run.check_alive()
            if time.perf_counter() - started > 1800:
                raise RuntimeError(f"only {done:,} of {n:,} events projected in 30 minutes")
            time.sleep(0.1)
        elapsed = time.perf_counter() - started
        cpu = sum(_cpu_seconds(w.pid) for w in run.workers) - cpu_before
        publisher.join()
        if done != n:
            raise RuntimeError(f"{done:,} events in the ledger, {n:,} published")
        if run.shares() != shares:
            raise RuntimeError("the group rebalanced during the run; its figure would mislead")
        per_partition = run.events_per_partition()
        loads = [sum(per_partition[p] for p in share) / n for share in shares]
        return Throughput(workers, n, elapsed, [len(s) for s in shares], loads, cpu)


def _cpu_seconds(pid: int) -> float:
    """A live process's own CPU time so far (user + system), from /proc."""
    with open(f"/proc/{pid}/stat") as stat:
        # Fields after the command (which may hold spaces) start at state: utime, stime are
        # fields 14 and 15 of the whole line.
        after = stat.read().rsplit(")", 1)[1].split()
    return (int(after[11]) + int(after[12])) / os.sysconf("SC_CLK_TCK")


def _rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


@dataclass
class Memory:
    """One worker's RSS over a long run."""

    events: int
    seconds: float
    samples: list[tuple[int, float]]  # (events projected, RSS MB)
    at_end: float

    @property
    def peak(self) -> float:
        """The highest RSS sampled."""
        return max(mb for _, mb in self.samples)


def bench_memory(bus_url: str, pg_admin: str, n: int, keep: Path | None) -> Memory:
    """One worker's RSS, sampled every half second while it ingests ``n`` events."""
    with deployment(bus_url, pg_admin, keep) as run:
        publisher, go = _run_publisher(run, n, chunk=min(n, RSS_CHUNK))
        worker = run.start_worker()
        run.wait_until_shared()
        samples: list[tuple[int, float]] = []
        done = 0
        stop = threading.Event()

        def sample() -> None:
            # RSS every half second; the ledger count (slow at a million rows) less often.
            while not stop.wait(0.5):
                samples.append((done, _rss_mb(worker.pid)))

        sampler = threading.Thread(target=sample, daemon=True)
        samples.append((0, _rss_mb(worker.pid)))
        sampler.start()
        started = time.perf_counter()
        go()
        while done < n:
            run.check_alive()
            if time.perf_counter() - started > 3600:
                raise RuntimeError(f"only {done:,} of {n:,} events projected in an hour")
            time.sleep(1.0)
            done = run.ingested()
        elapsed = time.perf_counter() - started
        stop.set()
        sampler.join()
        time.sleep(2.0)  # idle now: what it keeps, not what a batch in flight needs
        at_end = _rss_mb(worker.pid)
        samples.append((done, at_end))
        publisher.join()
        return Memory(done, elapsed, samples, at_end)


# -- output -----------------------------------------------------------------------------------


def _cores() -> str:
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return f"{usable} usable (os.cpu_count() {os.cpu_count()})"


def print_throughput(runs: list[Throughput]) -> None:
    """The table of events/s per worker count, and the scaling ratios."""
    one = next((r for r in runs if r.workers == 1), runs[0])
    base, base_cpu = one.rate, one.cpu_us_per_event
    print(
        f"\n  {'workers':>7}  {'events':>9}  {'seconds':>8}  {'events/s':>9}  {'ratio to 1':>10}"
        f"  {'partitions':>10}  {'events per worker':>17}  {'bound':>5}"
        f"  {'CPU us/event':>12}  {'CPU ratio':>9}"
    )
    for r in runs:
        print(
            f"  {r.workers:>7}  {r.events:>9,}  {r.seconds:>8.1f}  {r.rate:>9,.0f}"
            f"  {r.rate / base:>10.2f}  {'/'.join(map(str, r.partitions)):>10}"
            f"  {'/'.join(f'{x:.0%}' for x in r.loads):>17}  {1 / max(r.loads):>5.2f}"
            f"  {r.cpu_us_per_event:>12,.0f}  {r.cpu_us_per_event / base_cpu:>9.2f}"
        )
    print(
        "  (bound: the ratio to one worker that the busiest worker's share allows, were every"
        "\n  worker on cores of its own)"
    )
    print(
        "  (CPU: the workers' own user + system time over the run, per event; target for two"
        "\n  workers: events/s no lower than one's, CPU per event within 1.2 times one's)"
    )
    for r in runs:
        if r.workers > 1:
            print(
                f"  scaling {r.workers} workers / 1: {r.rate / base:.2f},"
                f" CPU per event {r.cpu_us_per_event / base_cpu:.2f} of one worker's"
            )


def print_memory(mem: Memory) -> None:
    """Samples of one worker's RSS along the run, its peak and its final figure."""
    print(
        f"\none worker's memory over {mem.events:,} events ({mem.seconds:.0f} s,"
        f" {mem.events / mem.seconds:,.0f} events/s), RSS sampled every 0.5 s"
    )
    print(f"  {'events projected':>16}  {'RSS MB':>7}")
    # About ten rows along the run, whatever its length.
    step = max(1, len(mem.samples) // 10)
    shown = mem.samples[::step]
    if shown[-1] is not mem.samples[-1]:
        shown.append(mem.samples[-1])
    for events, mb in shown:
        print(f"  {events:>16,}  {mb:>7.0f}")
    verdict = "PASS" if mem.peak < RSS_TARGET_MB else "FAIL"
    print(
        f"  peak {mem.peak:,.0f} MB, at the end {mem.at_end:,.0f} MB"
        f"  (target: under {RSS_TARGET_MB:.0f} MB)  {verdict}"
    )


def main() -> None:
    """Run the benchmark and print its figures."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, help="events per throughput run (100,000)")
    parser.add_argument("--workers", default="1,2,3", help="worker counts to measure")
    parser.add_argument(
        "--rss-events", type=int, help="events of the memory run (1,000,000; 0 skips it)"
    )
    parser.add_argument("--pg", default=PG_ADMIN, help="libpq DSN of a database to admin from")
    parser.add_argument("--keep", type=Path, help="keep the workers' logs under this directory")
    parser.add_argument("--quick", action="store_true", help="a tiny run: 3,000 and 5,000 events")
    args = parser.parse_args()
    if args.events is None:
        args.events = 3000 if args.quick else 100_000
    if args.rss_events is None:
        args.rss_events = 5000 if args.quick else 1_000_000
    counts = [int(c) for c in args.workers.split(",")]
    print(
        "Horizontal scale of ingest: `tsunagu worker` processes in one consumer group on a\n"
        f"Kafka bus (Apache Kafka, {len(DOMAINS.topics()) * PARTITIONS} domain partitions) with a"
        " PostgreSQL store and vault.\n"
        f"Cores: {_cores()}. Kafka, PostgreSQL, the publisher and every worker share them:\n"
        "more workers add no CPU here, so they may not scale on this machine."
    )
    with KafkaBroker() as kafka_broker:
        runs = []
        for k in counts:
            runs.append(bench_workers(kafka_broker.url, args.pg, args.events, k, args.keep))
            print(f"  ... {k} worker(s): {runs[-1].rate:,.0f} events/s", flush=True)
        print_throughput(runs)
        if args.rss_events:
            print_memory(bench_memory(kafka_broker.url, args.pg, args.rss_events, args.keep))


if __name__ == "__main__":
    main()
