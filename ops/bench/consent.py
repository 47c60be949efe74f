"""Consent decision point: decisions/s in process, and revocation-to-refusal delay across
processes.

Prints, in one run:
  - baseline:        a bare dict lookup loop (the floor of any cache), operations/s
  - cache hits:      decide() on subjects whose consents are cached, decisions/s, and the
                     ratio to the baseline (target ≥ 100,000 decisions/s on one core)
  - mix with misses: decide() where a share of subjects was just invalidated (store reads)
  - per bus backend: a second process holds its own decision point and change listener on
                     the same store and bus; this process revokes a consent the other has
                     cached and asks it again until refused. p50/p99 of the delay over
                     ``--revocations`` revocations (target < 1 s), next to the bare
                     ask round trip.

    python -m ops.bench.consent [--decisions 300000] [--revocations 20]
                                [--backends sqlite[,kafka]] [--store URL]

``python -m ops.bench.consent child STORE_URL BUS_URL TOPIC`` is the other process: it answers
``D partner purpose category subject`` lines on stdin with ``reason consent_id`` lines.
"""

from __future__ import annotations

import argparse
import collections
import os
import select
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from contextlib import ExitStack
from pathlib import Path

from broker.bus import open_bus
from broker.store.database import make_engine
from consent.catalogue import Catalogue
from consent.decisions import DecisionPoint
from consent.keys import KeyRing
from consent.listener import ConsentChangeListener
from consent.service import ConsentService, utc_now
from ops.kafka.broker import KafkaBroker

PARTNER = "ptn-benchbus01"
PURPOSE = "transport.planning"
CATEGORY = "transport.trips"
REPO = Path(__file__).resolve().parents[2]


# -- the other process ------------------------------------------------------------------------


def child(store_url: str, bus_url: str, topic: str) -> None:
    """Serve decisions over stdin/stdout from a decision point fed by its own listener."""
    engine = make_engine(store_url)
    bus = open_bus(bus_url)
    decision_point = DecisionPoint(engine)
    listener = ConsentChangeListener(bus, decision_point, topic=topic)
    listener.start()
    if not listener.wait_ready(60):
        print("not-ready", flush=True)
        return
    print(f"ready {listener.group}", flush=True)
    for line in sys.stdin:
        parts = line.split()
        if not parts or parts[0] == "Q":
            break
        if parts[0] == "D" and len(parts) == 5:
            d = decision_point.decide(parts[1], parts[2], parts[3], parts[4])
            print(f"{d.reason} {d.consent_id or '-'}", flush=True)
        elif parts[0] == "L":
            print(f"loads {decision_point.cache.loads}", flush=True)
        else:
            print("error bad-request", flush=True)
    listener.stop()
    bus.close()
    engine.dispose()


class RemoteDecider:
    """A decision point in another Python process, asked line by line over a pipe."""

    def __init__(self, store_url: str, bus_url: str, topic: str, ready_timeout_s: float = 90):
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "ops.bench.consent", "child", store_url, bus_url, topic],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            cwd=REPO,
            env=env,
        )
        self._buffer = b""
        status = self._line(ready_timeout_s)
        if not status.startswith("ready"):
            self.close()
            raise RuntimeError(f"the other process did not get ready: {status!r}")

    def _line(self, timeout_s: float) -> str:
        assert self.process.stdout is not None
        fd = self.process.stdout.fileno()
        deadline = time.monotonic() + timeout_s
        while b"\n" not in self._buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or self.process.poll() is not None:
                raise RuntimeError("the other process did not answer")
            readable, _, _ = select.select([fd], [], [], remaining)
            if readable:
                chunk = os.read(fd, 65536)
                if not chunk:
                    raise RuntimeError("the other process closed its output")
                self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        return line.decode()

    def decide(self, partner: str, purpose: str, category: str, subject: str) -> tuple[str, str]:
        """(reason, consent id or "-") from the other process's decision point."""
        assert self.process.stdin is not None
        self.process.stdin.write(f"D {partner} {purpose} {category} {subject}\n".encode())
        self.process.stdin.flush()
        reason, consent_id = self._line(30).split(" ", 1)
        return reason, consent_id

    def loads(self) -> int:
        """How often the other process's decision point has read the store (cache misses)."""
        assert self.process.stdin is not None
        self.process.stdin.write(b"L\n")
        self.process.stdin.flush()
        return int(self._line(30).split()[1])

    def close(self) -> None:
        """Ask the process to quit, and make sure it does."""
        try:
            if self.process.stdin is not None and self.process.poll() is None:
                self.process.stdin.write(b"Q\n")
                self.process.stdin.close()
            self.process.wait(20)
        except (OSError, subprocess.TimeoutExpired):
            self.process.kill()
            self.process.wait()


def wait_until_refused(
    remote: RemoteDecider,
    partner: str,
    purpose: str,
    category: str,
    subject: str,
    timeout_s: float = 30,
) -> tuple[str, str]:
    """Ask ``remote`` until it stops allowing; returns (reason, consent id) of the refusal."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        reason, consent_id = remote.decide(partner, purpose, category, subject)
        if reason != "allowed":
            return reason, consent_id
    raise RuntimeError(f"{subject} still allowed {timeout_s} s after the revocation")


# -- in process -------------------------------------------------------------------------------


def _subjects(n: int) -> list[str]:
    return [f"res-bench{i:06d}" for i in range(n)]


def setup(store_url: str, bus_url: str, topic: str, keys_dir: Path, subjects: int) -> None:
    """A partner approved for the purpose, and ``subjects`` residents' consents."""
    engine = make_engine(store_url)
    bus = open_bus(bus_url)
    service = ConsentService(engine, KeyRing.open(keys_dir), bus, topic=topic)
    if PARTNER not in {p.id for p in service.partners()}:
        service.register_partner("ベンチ交通", "Bench transport", partner_id=PARTNER)
        service.approve_purpose(PARTNER, PURPOSE, approved_by="bench")
    expires = utc_now().replace(year=utc_now().year + 1)
    for subject in _subjects(subjects):
        if not service.current(subject):
            service.grant(subject, PARTNER, PURPOSE, [CATEGORY], expires_at=expires)
    bus.close()
    engine.dispose()


def bench_baseline(keys: list[tuple[str, str, str]], n: int) -> float:
    """Lookups/s of a bare dict keyed like the decision cache."""
    table = {k: True for k in keys}
    m = len(keys)
    started = time.perf_counter()
    for i in range(n):
        table.get(keys[i % m])
    return n / (time.perf_counter() - started)


def bench_decisions(store_url: str, subjects: list[str], n: int, miss_every: int) -> float:
    """decisions/s; every ``miss_every``-th decision (0: none) is for a just-invalidated subject."""
    engine = make_engine(store_url)
    audit: collections.deque[object] = collections.deque(maxlen=10_000)
    decision_point = DecisionPoint(engine, Catalogue.load(), on_decision=audit.append)
    for subject in subjects:  # warm the cache
        assert decision_point.decide(PARTNER, PURPOSE, CATEGORY, subject).allowed
    m = len(subjects)
    decide = decision_point.decide
    invalidate = decision_point.cache.invalidate_subject
    started = time.perf_counter()
    for i in range(n):
        subject = subjects[i % m]
        if miss_every and i % miss_every == 0:
            invalidate(subject)
        decide(PARTNER, PURPOSE, CATEGORY, subject)
    elapsed = time.perf_counter() - started
    engine.dispose()
    return n / elapsed


def bench_revocations(
    store_url: str, bus_url: str, topic: str, keys_dir: Path, count: int
) -> tuple[list[float], list[float], float]:
    """(delays from revoke() called, delays from revoke() returned, ask round trip), seconds."""
    engine = make_engine(store_url)
    bus = open_bus(bus_url)
    service = ConsentService(engine, KeyRing.open(keys_dir), bus, topic=topic)
    remote = RemoteDecider(store_url, bus_url, topic)
    from_call: list[float] = []
    from_return: list[float] = []
    try:
        expires = utc_now().replace(year=utc_now().year + 1)
        started = time.perf_counter()
        for _ in range(200):
            remote.decide(PARTNER, PURPOSE, CATEGORY, "res-nobody0001")
        round_trip = (time.perf_counter() - started) / 200
        for i in range(count):
            subject = f"res-revoke{uuid.uuid4().hex[:8]}{i:03d}"
            consent = service.grant(subject, PARTNER, PURPOSE, [CATEGORY], expires_at=expires)
            time.sleep(0.05)  # let the grant's own change pass, so the next answer is cached
            if remote.decide(PARTNER, PURPOSE, CATEGORY, subject)[0] != "allowed":
                raise RuntimeError("the other process did not allow a granted consent")
            called = time.perf_counter()
            service.revoke(subject, consent.id)
            returned = time.perf_counter()
            reason, _ = wait_until_refused(remote, PARTNER, PURPOSE, CATEGORY, subject)
            refused = time.perf_counter()
            if reason != "revoked":
                raise RuntimeError(f"refused for {reason}, not revoked")
            from_call.append(refused - called)
            from_return.append(refused - returned)
    finally:
        remote.close()
        bus.close()
        engine.dispose()
    return from_call, from_return, round_trip


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main(argv: list[str] | None = None) -> None:
    """Run the benchmark and print its figures."""
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["child"]:
        child(*argv[1:4])
        return
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--decisions", type=int, default=300_000)
    parser.add_argument("--subjects", type=int, default=1_000)
    parser.add_argument("--revocations", type=int, default=20)
    parser.add_argument("--backends", default="sqlite")
    parser.add_argument("--store", default="", help="store URL (default: a temp SQLite file)")
    args = parser.parse_args(argv)
    n, subjects = args.decisions, _subjects(args.subjects)
    with ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        store = args.store or f"sqlite:///{tmp / 'store.db'}"
        keys_dir = tmp / "keys"
        setup(
            store, f"sqlite:///{tmp / 'setup-bus.db'}", "consent.changes", keys_dir, len(subjects)
        )
        baseline = bench_baseline([(PARTNER, PURPOSE, s) for s in subjects], n)
        hits = bench_decisions(store, subjects, n, 0)
        mix = bench_decisions(store, subjects, n // 10, 10)
        print(f"in process, {len(subjects):,} subjects, store {store.split(':')[0]}")
        print(f"  baseline: dict lookup        {baseline:>12,.0f} lookups/s")
        print(f"  decide, cache hits           {hits:>12,.0f} decisions/s  (target >= 100,000)")
        print(f"  decide, 10% misses           {mix:>12,.0f} decisions/s")
        print(f"  ratio hits / baseline        {hits / baseline:>12.3f}")
        for backend in args.backends.split(","):
            if backend == "kafka":
                bus_url = stack.enter_context(KafkaBroker()).url
            else:
                bus_url = f"sqlite:///{tmp / f'bus-{backend}.db'}"
            topic = f"consent.changes.bench{uuid.uuid4().hex[:6]}"
            from_call, from_return, round_trip = bench_revocations(
                store, bus_url, topic, keys_dir, args.revocations
            )
            print(f"\n[{backend}] revocation to refusal in another process, {len(from_call)} runs")
            print(f"  ask round trip (baseline)    {round_trip * 1000:>9.2f} ms")
            for name, values in (("from revoke()", from_call), ("after revoke()", from_return)):
                p50 = _percentile(values, 0.5) * 1000
                p99 = _percentile(values, 0.99) * 1000
                mean = statistics.fmean(values) * 1000
                print(
                    f"  {name:<15} p50 {p50:>8.1f} ms  p99 {p99:>8.1f} ms"
                    f"  mean {mean:>8.1f} ms  (target < 1000)"
                )


if __name__ == "__main__":
    main()
