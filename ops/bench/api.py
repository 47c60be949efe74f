"""Partner-view API throughput and latency, against a trivial endpoint measured in the same run.

Starts the embedded platform (`python -m broker.cli up`) as a subprocess, registers a partner
and approves its purpose through the admin API, and has a set of residents grant it consent
through the resident API, so every read is decided for real. The stored events are written
straight into the projection tables (sealed with each resident's real key from the vault)
while the server is stopped: going through ingest for a million events would take minutes.

Each measured resident has the same events at every size (a typical 50, over the three
personal tables); the other residents only grow the tables. So the view does the same work
per request at 100k and at 1M stored events, and any slow-down is the store's.

Then, per size, for ``--duration`` seconds after ``--warmup`` seconds, ``--clients``
concurrent HTTP/1.1 keep-alive connections from a separate load-generator process (asyncio)
request:
  - the baseline:  GET /healthz
  - the view:      GET /v1/partner/residents/{pseudonym}/activity?purpose&from&to&limit=50,
                   cycling over the consenting residents' pseudonyms
and the view once more from one client, for its latency without queueing.

Prints requests/s, p50 and p99 latency and the ratio to the baseline; the view's latency at
each size and the ratio between the largest and the smallest; the server's memory (RSS); and
each target with PASS/FAIL. Targets on the 2-core dev machine: the view at least 1,500
requests/s with p99 at most 35 ms at 32 clients, and its latency at 1M stored events within
1.5 times its latency at 100k. Client and server share the machine's cores.

    python -m ops.bench.api [--events 100000,1000000] [--duration 15] [--clients 32]
                            [--warmup 3] [--residents 100] [--keep DIR] [--quick]
    python -m ops.bench.api --again DIR     # measure a --keep run's store again, no loading
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import os
import random
import resource
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
from sqlalchemy import Table, text

from broker.auth.issuer import EmbeddedIssuer
from broker.auth.principals import Role
from broker.settings import Settings
from broker.store.bulk import insert_many
from broker.store.database import make_engine
from broker.store.projections.currency import CurrencyTransaction
from broker.store.projections.health import HealthPoints
from broker.store.projections.timestamps import JST
from broker.store.projections.transport import RideRequest, Trip
from consent.vault import SubjectKey, SubjectVault
from ops.kafka.broker import free_port

PURPOSE = "transport.planning"
CATEGORIES = ["transport.trips", "health.points", "currency.transactions"]
PARTNER = "ptn-benchview"
#: The stored events cover one year; the view is asked for all of it.
YEAR_START = datetime(2025, 1, 1, tzinfo=JST)
YEAR_S = 365 * 24 * 3600
PERIOD = {"from": YEAR_START.isoformat(), "to": YEAR_START.replace(year=2026).isoformat()}
#: Events per resident: the measured residents have exactly this many.
PER_RESIDENT = 50
#: How a resident's events spread over the three personal tables (trips also ride requests).
MIX = (("trips", 15), ("rides", 5), ("points", 15), ("money", 15))
PAGE = 50
CHUNK = 50_000
#: In a view's answer: a category left out. Every measured resident consented to all three, so
#: this only appears when the decision point could not decide (it fails closed).
WITHHELD = b'"included":false'

TOWNS = ("takuma", "mino", "nio", "takase", "yamamoto", "toyonaka", "saita")
TARGET_RPS = 1500.0
TARGET_P99_MS = 35.0
TARGET_SCALING = 1.5

_tables: dict[str, Table] = {
    "trips": Trip.__table__,  # type: ignore[attr-defined]
    "rides": RideRequest.__table__,  # type: ignore[attr-defined]
    "points": HealthPoints.__table__,  # type: ignore[attr-defined]
    "money": CurrencyTransaction.__table__,  # type: ignore[attr-defined]
}


# -- the server ---------------------------------------------------------------------------------


@dataclass
class Server:
    """A running `tsunagu up` and where it answers."""

    process: subprocess.Popen[bytes]
    host: str
    port: int

    @property
    def base_url(self) -> str:
        """The API's root."""
        return f"http://{self.host}:{self.port}"

    def cpu_s(self) -> float:
        """CPU time (user and system) the server and its API processes have used so far."""
        tick = os.sysconf("SC_CLK_TCK")
        total = 0.0
        for pid in _process_tree(self.process.pid):
            try:
                with open(f"/proc/{pid}/stat") as stat:
                    # The fields after the command's closing parenthesis; utime, stime: 14, 15.
                    fields = stat.read().rsplit(")", 1)[1].split()
            except FileNotFoundError:
                continue  # a process that just ended
            total += (int(fields[11]) + int(fields[12])) / tick
        return total

    def rss_mb(self) -> tuple[float, float]:
        """(current, peak) resident set size of the server and its API processes, in MB."""
        total = [0.0, 0.0]
        for pid in _process_tree(self.process.pid):
            try:
                with open(f"/proc/{pid}/status") as status:
                    for line in status:
                        name, _, value = line.partition(":")
                        if name in ("VmRSS", "VmHWM"):
                            total[name == "VmHWM"] += int(value.split()[0]) / 1024
            except FileNotFoundError:
                continue  # a process that just ended
        return total[0], total[1]


def _process_tree(pid: int) -> list[int]:
    """``pid`` and its descendants (uvicorn's API worker processes)."""
    found = [pid]
    for known in found:
        try:
            with open(f"/proc/{known}/task/{known}/children") as children:
                found += [int(c) for c in children.read().split()]
        except FileNotFoundError:
            continue
    return found


@contextmanager
def running_server(data_dir: Path) -> Iterator[Server]:
    """`python -m broker.cli up` on a free port, with partner rate limits out of the way."""
    port = free_port()
    env = {
        **os.environ,
        "TSUNAGU_DATA_DIR": str(data_dir),
        "TSUNAGU_PORT": str(port),
        "TSUNAGU_PARTNER_RATE_PER_S": "1000000000",
        "TSUNAGU_PARTNER_BURST": "1000000000",
    }
    log = (data_dir / "server.log").open("ab")
    process = subprocess.Popen(
        [sys.executable, "-m", "broker.cli", "up"], env=env, stdout=log, stderr=log
    )
    server = Server(process, "127.0.0.1", port)
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                tail = (data_dir / "server.log").read_text(errors="replace")[-3000:]
                raise RuntimeError(f"tsunagu up exited:\n{tail}")
            try:
                if httpx.get(f"{server.base_url}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("tsunagu up not ready in 60 s")
            time.sleep(0.1)
        yield server
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


# -- consents, through the API ------------------------------------------------------------------


def _auth(issuer: EmbeddedIssuer, role: Role, subject: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {issuer.issue(subject, role, ttl_s=24 * 3600)}"}


def grant_consents(server: Server, data_dir: Path, residents: list[str]) -> list[str]:
    """Register the partner, approve its purpose, have ``residents`` consent to it; the
    partner's pseudonyms of them."""
    issuer = EmbeddedIssuer.in_data_dir(data_dir, audience=Settings().oidc_audience)
    admin = _auth(issuer, Role.ADMIN, "bench-ops")
    expires = (datetime.now(UTC) + timedelta(days=365)).isoformat()
    with httpx.Client(base_url=server.base_url, timeout=30) as http:
        r = http.post(
            "/v1/partners",
            json={"id": PARTNER, "name_ja": "ベンチ交通", "name_en": "Bench Transport"},
            headers=admin,
        )
        r.raise_for_status()
        http.post(
            f"/v1/partners/{PARTNER}/purposes", json={"purpose": PURPOSE}, headers=admin
        ).raise_for_status()
        for resident in residents:
            http.post(
                "/v1/me/consents",
                json={
                    "partner_id": PARTNER,
                    "purpose": PURPOSE,
                    "categories": CATEGORIES,
                    "expires_at": expires,
                },
                headers=_auth(issuer, Role.RESIDENT, resident),
            ).raise_for_status()
        r = http.get(
            "/v1/partner/residents",
            params={"purpose": PURPOSE, "limit": 1000},
            headers=_auth(issuer, Role.PARTNER, PARTNER),
        )
        r.raise_for_status()
    pseudonyms = [x["resident"] for x in r.json()["residents"]]
    if len(pseudonyms) != len(residents):
        raise RuntimeError(f"{len(residents)} consents granted, {len(pseudonyms)} listed")
    return pseudonyms


# -- stored events, written straight into the projections ---------------------------------------


class Loader:
    """Writes sealed projection rows as the ingest pipeline would, in big batches."""

    def __init__(self, data_dir: Path, seed: int = 7) -> None:
        settings = Settings(data_dir=data_dir)
        self.engine = make_engine(settings.store_url)
        self.vault = SubjectVault.open_url(settings.vault_store_url, max_age_s=None)
        self.rng = random.Random(seed)
        self.serial = 0

    def close(self) -> None:
        """Release the store and the vault."""
        self.engine.dispose()
        self.vault.close()

    def stored(self) -> int:
        """Rows in the three personal tables (trips and ride requests both count)."""
        with self.engine.connect() as conn:
            return sum(
                int(conn.execute(text(f"SELECT count(*) FROM {t.name}")).scalar_one())
                for t in _tables.values()
            )

    def add(self, residents: list[str], events_each: int) -> int:
        """``events_each`` events for each of ``residents``, interleaved as they would arrive."""
        plan = [
            (resident, table)
            for resident in residents
            for table, share in _scaled(events_each)
            for _ in range(share)
        ]
        self.rng.shuffle(plan)
        for start in range(0, len(plan), CHUNK):
            chunk = plan[start : start + CHUNK]
            keys = self.vault.keys_for({r for r, _ in chunk}, create=True)
            rows: dict[str, list[dict[str, Any]]] = {t: [] for t in _tables}
            for resident, table in chunk:
                rows[table].append(self._row(table, keys[resident]))
            with self.engine.begin() as conn:
                for table, batch in rows.items():
                    insert_many(conn, _tables[table], batch)
        return len(plan)

    def _row(self, table: str, key: SubjectKey) -> dict[str, Any]:
        rng = self.rng
        self.serial += 1
        event_id = f"bench-{table}-{self.serial:010d}"
        at = YEAR_START + timedelta(seconds=rng.randrange(YEAR_S))
        origin, destination = rng.choice(TOWNS), rng.choice(TOWNS)
        if table == "trips":
            return {
                "event_id": event_id,
                "trip_id": f"odt-{self.serial:010d}",
                "subject_ref": key.ref,
                "mode": "on_demand",
                "operator_id": "mitoyo-ondemand",
                "origin_stop_id": f"{origin}-{rng.randrange(20):02d}",
                "origin_town": origin,
                "destination_stop_id": f"{destination}-{rng.randrange(20):02d}",
                "destination_town": destination,
                "pickup_at": at,
                "dropoff_at": at + timedelta(minutes=rng.randrange(5, 40)),
                "fare_jpy": rng.choice((300, 500, 600, 800)),
                "passengers": rng.randrange(1, 4),
                "sealed": key.seal(
                    {
                        "vehicle_id": f"veh-od{rng.randrange(40):02d}",
                        "origin_lat": 34.2 + rng.random() / 10,
                        "origin_lon": 133.6 + rng.random() / 10,
                        "destination_lat": 34.2 + rng.random() / 10,
                        "destination_lon": 133.6 + rng.random() / 10,
                        "distance_m": rng.randrange(500, 15_000),
                    }
                ),
            }
        if table == "rides":
            return {
                "event_id": event_id,
                "request_id": f"req-{self.serial:010d}",
                "subject_ref": key.ref,
                "mode": "on_demand",
                "operator_id": "mitoyo-ondemand",
                "origin_stop_id": f"{origin}-{rng.randrange(20):02d}",
                "origin_town": origin,
                "destination_stop_id": f"{destination}-{rng.randrange(20):02d}",
                "destination_town": destination,
                "requested_at": at,
                "passengers": rng.randrange(1, 4),
                "channel": rng.choice(("phone", "app", "line")),
                "sealed": key.seal(
                    {
                        "origin_lat": 34.2 + rng.random() / 10,
                        "origin_lon": 133.6 + rng.random() / 10,
                        "destination_lat": 34.2 + rng.random() / 10,
                        "destination_lon": 133.6 + rng.random() / 10,
                    }
                ),
            }
        if table == "points":
            awarded = rng.random() < 0.9
            return {
                "event_id": event_id,
                "subject_ref": key.ref,
                "programme_id": "mitoyo-kenko-2025",
                "kind": "awarded" if awarded else "redeemed",
                "points": rng.choice((10, 20, 50)) * (1 if awarded else -1),
                "reason": "walking" if awarded else None,
                "age_band": rng.choice(("40-64", "65-74", "75+")),
                "occurred_at": at,
                "sealed": key.seal(
                    {
                        "rule_id": "walk-8000-steps" if awarded else None,
                        "steps": rng.randrange(8000, 15000) if awarded else None,
                        "checkup_kind": None,
                        "reward": None if awarded else "udon-coupon",
                    }
                ),
            }
        kind = rng.choice(("payment", "payment", "payment", "topped_up"))
        return {
            "event_id": event_id,
            "subject_ref": key.ref,
            "kind": kind,
            "amount_jpy": rng.randrange(100, 5000),
            "merchant_category": rng.choice(("grocery", "restaurant", "taxi"))
            if kind == "payment"
            else None,
            "town": origin,
            "points": None,
            "occurred_at": at,
            "sealed": key.seal(
                {
                    "wallet_id": f"w-{rng.randrange(10**8):08d}",
                    "merchant_id": f"mer-{rng.randrange(500):04d}" if kind == "payment" else None,
                    "merchant_name": "仁尾うどん本舗" if kind == "payment" else None,
                }
            ),
        }


def _scaled(events_each: int) -> list[tuple[str, int]]:
    """MIX scaled to ``events_each`` events (the remainder goes to trips)."""
    total = sum(share for _, share in MIX)
    shares = [(table, share * events_each // total) for table, share in MIX]
    missing = events_each - sum(n for _, n in shares)
    return [(t, n + (missing if t == "trips" else 0)) for t, n in shares]


# -- the load generator (its own process) -------------------------------------------------------


@dataclass
class Measured:
    """One measurement: completed requests, their latencies, errors, the client's CPU."""

    requests: int
    seconds: float
    latencies_ms: list[float]
    #: Answers that were not a complete 200: "503", "200 withheld" (a category refused), ...
    errors: dict[str, int]
    client_cpu_s: float
    #: The server's CPU time over the whole measurement (warm-up included), and the requests
    #: completed in it: on a shared machine, CPU per request moves far less than requests/s.
    server_cpu_s: float = 0.0
    all_requests: int = 0

    @property
    def server_cpu_ms(self) -> float:
        """The server's CPU time per request, in ms."""
        return self.server_cpu_s / self.all_requests * 1000 if self.all_requests else float("nan")

    @property
    def rps(self) -> float:
        """Completed requests per second."""
        return self.requests / self.seconds

    def percentile(self, q: float) -> float:
        """The ``q``-th percentile latency in ms (nearest rank)."""
        ordered = sorted(self.latencies_ms)
        if not ordered:
            return float("nan")
        return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))]


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split(b" ", 2)[1])
    length = 0
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        lowered = name.strip().lower()
        if lowered == b"content-length":
            length = int(value)
        elif lowered == b"transfer-encoding":
            raise RuntimeError("chunked responses are not handled by this load generator")
    return status, await reader.readexactly(length)


async def _connection(
    host: str,
    port: int,
    requests: list[bytes],
    offset: int,
    warm_until: float,
    stop_at: float,
    latencies: list[float],
    errors: dict[str, int],
) -> tuple[int, int]:
    """(requests completed after the warm-up, all requests completed)."""
    reader, writer = await asyncio.open_connection(host, port)
    done = everything = 0
    i = offset
    try:
        while True:
            started = time.perf_counter()
            if started >= stop_at:
                return done, everything
            writer.write(requests[i % len(requests)])
            i += 1
            status, body = await _read_response(reader)
            everything += 1
            if started >= warm_until:
                latencies.append((time.perf_counter() - started) * 1000)
                done += 1
                problem = str(status) if status != 200 else ""
                if not problem and WITHHELD in body:
                    problem = "200 withheld"  # the decision point failed closed, or a refusal
                if problem:
                    errors[problem] = errors.get(problem, 0) + 1
    finally:
        writer.close()


async def _load(
    host: str, port: int, requests: list[bytes], clients: int, warmup: float, duration: float
) -> tuple[int, int, float, list[float], dict[str, int]]:
    latencies: list[float] = []
    errors: dict[str, int] = {}
    begin = time.perf_counter()
    warm_until = begin + warmup
    stop_at = warm_until + duration
    counts = await asyncio.gather(
        *(
            _connection(host, port, requests, n, warm_until, stop_at, latencies, errors)
            for n in range(clients)
        )
    )
    # Requests in flight at stop_at end a little later: count the time they took.
    done, everything = (sum(c[i] for c in counts) for i in (0, 1))
    return done, everything, max(time.perf_counter(), stop_at) - warm_until, latencies, errors


def _client_process(
    host: str,
    port: int,
    requests: list[bytes],
    clients: int,
    warmup: float,
    duration: float,
    out: Any,
) -> None:
    try:
        import uvloop

        uvloop.install()
    except ImportError:  # the standard loop is slower, and still far lighter than the server
        pass
    before = resource.getrusage(resource.RUSAGE_SELF)
    done, everything, seconds, latencies, errors = asyncio.run(
        _load(host, port, requests, clients, warmup, duration)
    )
    after = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    client_cpu = cpu * duration / (warmup + duration)
    out.send((done, everything, seconds, latencies, errors, client_cpu))
    out.close()


def measure(
    server: Server,
    paths: list[str],
    headers: dict[str, str],
    clients: int,
    warmup: float,
    duration: float,
) -> Measured:
    """``clients`` keep-alive connections from another process, cycling over ``paths``."""
    extra = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    requests = [
        f"GET {p} HTTP/1.1\r\nHost: {server.host}:{server.port}\r\n{extra}\r\n".encode()
        for p in paths
    ]
    ctx = mp.get_context("spawn")
    receive, send = ctx.Pipe(duplex=False)
    process = ctx.Process(
        target=_client_process,
        args=(server.host, server.port, requests, clients, warmup, duration, send),
    )
    server_cpu = server.cpu_s()
    process.start()
    send.close()
    done, everything, seconds, latencies, errors, cpu = receive.recv()
    server_cpu = server.cpu_s() - server_cpu
    process.join()
    if process.exitcode:
        raise RuntimeError(f"the load generator failed (exit code {process.exitcode})")
    return Measured(done, seconds, latencies, errors, cpu, server_cpu, everything)


# -- the run ------------------------------------------------------------------------------------


@dataclass
class SizeResult:
    """What was measured at one number of stored events."""

    events: int
    baseline: Measured
    view: Measured
    view_alone: Measured
    rss_mb: tuple[float, float]
    #: The machine's 1-minute load average when measuring started (others' work shares it).
    load_before: float


def view_paths(pseudonyms: list[str]) -> list[str]:
    """One activity request per consenting resident."""
    query = urlencode({"purpose": PURPOSE, **PERIOD, "limit": PAGE})
    return [f"/v1/partner/residents/{p}/activity?{query}" for p in pseudonyms]


def prime(server: Server, paths: list[str], headers: dict[str, str]) -> None:
    """Each view once, one at a time, so the server's pseudonym index and decision cache are
    filled before the clients start. With a cold cache, concurrent views can exhaust the
    store's connection pool: `activity()` holds a connection while a decision that misses
    its cache waits for another (then fails closed: "200 withheld", or a 500 after 30 s)."""
    with httpx.Client(base_url=server.base_url, headers=headers, timeout=60) as http:
        for path in paths:
            r = http.get(path)
            r.raise_for_status()
            if WITHHELD in r.content:
                raise RuntimeError(f"a category was withheld from {path}: {r.text[:500]}")


def listed_pseudonyms(server: Server, partner: dict[str, str]) -> list[str]:
    """The partner's pseudonyms of the residents who consented to it."""
    r = httpx.get(
        f"{server.base_url}/v1/partner/residents",
        params={"purpose": PURPOSE, "limit": 1000},
        headers=partner,
        timeout=30,
    )
    r.raise_for_status()
    return [x["resident"] for x in r.json()["residents"]]


def measure_at(
    server: Server,
    stored: int,
    pseudonyms: list[str],
    partner: dict[str, str],
    clients: int,
    warmup: float,
    duration: float,
) -> SizeResult:
    """The baseline, the view at ``clients`` and the view alone, on a running server."""
    load = os.getloadavg()[0]
    baseline = measure(server, ["/healthz"], {}, clients, warmup, duration)
    paths = view_paths(pseudonyms)
    prime(server, paths, partner)
    view = measure(server, paths, partner, clients, warmup, duration)
    alone = measure(server, paths, partner, 1, warmup / 2, duration / 2)
    return SizeResult(stored, baseline, view, alone, server.rss_mb(), load)


def rerun(
    *, duration: float, warmup: float, clients: int, data_dir: Path, say: Callable[[str], None]
) -> list[SizeResult]:
    """Measure again the store a ``--keep`` run left in ``data_dir``, as it is (no loading)."""
    loader = Loader(data_dir)
    try:
        stored = loader.stored()
    finally:
        loader.close()
    issuer = EmbeddedIssuer.in_data_dir(data_dir, audience=Settings().oidc_audience)
    partner = _auth(issuer, Role.PARTNER, PARTNER)
    with running_server(data_dir) as server:
        pseudonyms = listed_pseudonyms(server, partner)
        say(f"  {stored:,} stored events; {len(pseudonyms)} consenting residents")
        return [measure_at(server, stored, pseudonyms, partner, clients, warmup, duration)]


def run(
    sizes: list[int],
    *,
    duration: float,
    warmup: float,
    clients: int,
    residents: int,
    data_dir: Path,
    say: Callable[[str], None],
) -> list[SizeResult]:
    """Load each size in turn and measure it; sizes ascending."""
    measured = [f"res-view{i:05d}" for i in range(residents)]
    with running_server(data_dir) as server:
        pseudonyms = grant_consents(server, data_dir, measured)
        issuer = EmbeddedIssuer.in_data_dir(data_dir, audience=Settings().oidc_audience)
        partner = _auth(issuer, Role.PARTNER, PARTNER)
    loader = Loader(data_dir)
    results: list[SizeResult] = []
    background = 0
    try:
        started = time.perf_counter()
        loader.add(measured, PER_RESIDENT)
        for size in sizes:
            missing = size - loader.stored()
            if missing > 0:
                count = max(1, missing // PER_RESIDENT)
                fresh = [f"res-bg{background + i:07d}" for i in range(count)]
                background += count
                loader.add(fresh[:-1], PER_RESIDENT)
                loader.add(fresh[-1:], missing - PER_RESIDENT * (count - 1))
            stored = loader.stored()
            say(
                f"  loaded {stored:,} stored events over {residents + background:,} residents "
                f"({time.perf_counter() - started:.0f} s so far)"
            )
            with running_server(data_dir) as server:
                m = measure_at(server, stored, pseudonyms, partner, clients, warmup, duration)
                results.append(m)
            view = m.view
            say(
                f"  measured at {stored:,}: view {view.rps:,.0f} requests/s, "
                f"p99 {view.percentile(99):.1f} ms"
            )
    finally:
        loader.close()
    return results


def _verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def report(results: list[SizeResult], clients: int, duration: float, warmup: float) -> None:
    """Print the table, the scaling, the memory and the targets."""
    cores = os.cpu_count() or 1
    print(
        f"\nTsunagu API benchmark: {clients} concurrent clients, {duration:g} s per measurement "
        f"after {warmup:g} s of warm-up"
    )
    print(
        f"load generator: one asyncio process, {clients} HTTP/1.1 keep-alive connections; "
        f"client and server share this machine's {cores} cores"
    )
    print(
        f"\n{'stored events':>13}  {'endpoint':<34}{'requests/s':>11}{'p50 ms':>9}{'p99 ms':>9}"
        f"{'vs baseline':>13}{'client CPU':>12}{'server CPU/req':>16}"
    )
    for r in results:
        rows = [
            ("GET /healthz (baseline)", r.baseline),
            ("GET .../activity (view)", r.view),
            ("GET .../activity (1 client)", r.view_alone),
        ]
        for name, m in rows:
            versus = m.rps / r.baseline.rps if r.baseline.rps else float("nan")
            cpu = m.client_cpu_s / m.seconds
            print(
                f"{r.events:>13,}  {name:<34}{m.rps:>11,.0f}{m.percentile(50):>9.1f}"
                f"{m.percentile(99):>9.1f}{versus:>13.3f}{cpu:>11.0%}"
                f"{m.server_cpu_ms:>13.2f} ms"
            )
            if m.errors:
                print(f"{'':>15}not a complete 200: {dict(sorted(m.errors.items()))}")
    first, last = results[0], results[-1]
    print("\nview latency by stored events (ms)")
    many = f"({clients})"
    print(
        f"{'stored events':>13}  {'p50 ' + many:>9}{'p99 ' + many:>9}{'p50 (1)':>9}{'p99 (1)':>9}"
    )
    for r in results:
        print(
            f"{r.events:>13,}  {r.view.percentile(50):>9.1f}{r.view.percentile(99):>9.1f}"
            f"{r.view_alone.percentile(50):>9.1f}{r.view_alone.percentile(99):>9.1f}"
        )

    def ratio(pick: Callable[[SizeResult], float]) -> float:
        return pick(last) / pick(first)

    scale = {
        "p50": ratio(lambda r: r.view.percentile(50)),
        "p99": ratio(lambda r: r.view.percentile(99)),
        "p50 (1 client)": ratio(lambda r: r.view_alone.percentile(50)),
        "p99 (1 client)": ratio(lambda r: r.view_alone.percentile(99)),
    }
    print(
        f"{'ratio':>13}  {scale['p50']:>9.2f}{scale['p99']:>9.2f}"
        f"{scale['p50 (1 client)']:>9.2f}{scale['p99 (1 client)']:>9.2f}"
        f"   ({last.events:,} / {first.events:,})"
    )
    print("\nserver memory (RSS, MB); the machine's 1-minute load average before measuring")
    for r in results:
        print(
            f"{r.events:>13,}  now {r.rss_mb[0]:,.0f}, peak {r.rss_mb[1]:,.0f}; "
            f"load {r.load_before:.1f}"
        )
    errors = sum(sum(m.errors.values()) for r in results for m in (r.baseline, r.view))
    view = last.view
    worst = max(scale["p50"], scale["p99"])
    targets = [
        (f"view requests/s >= {TARGET_RPS:,.0f}", f"{view.rps:,.0f}", view.rps >= TARGET_RPS),
        (
            f"view p99 <= {TARGET_P99_MS:.0f} ms",
            f"{view.percentile(99):.1f} ms",
            view.percentile(99) <= TARGET_P99_MS,
        ),
        (
            f"view p50/p99 at {last.events:,} within {TARGET_SCALING}x of {first.events:,}",
            f"{scale['p50']:.2f}x / {scale['p99']:.2f}x",
            len(results) > 1 and worst <= TARGET_SCALING,
        ),
        ("every answer a complete 200", f"{errors:,} not", errors == 0),
    ]
    if len(results) == 1:
        del targets[2]  # one size measured (--again): no scaling to judge
    print(f"\ntargets (at {last.events:,} stored events, {clients} clients)")
    for name, figure, ok in targets:
        print(f"  {name:<52}{figure:>16}   {_verdict(ok)}")


def main() -> None:
    """Run the benchmark and print its figures."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", default="100000,1000000", help="stored-event sizes")
    parser.add_argument("--duration", type=float, default=15.0, help="seconds per measurement")
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds before each")
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--residents", type=int, default=100, help="consenting residents read")
    parser.add_argument("--keep", type=Path, help="data directory to use and keep")
    parser.add_argument(
        "--again",
        type=Path,
        metavar="DIR",
        help="measure again the store a --keep run left in DIR (one size: what it holds)",
    )
    parser.add_argument("--quick", action="store_true", help="a small run: 2k,10k events, 3 s")
    parser.add_argument(
        "--api-processes",
        type=int,
        default=int(os.environ.get("TSUNAGU_API_PROCESSES", "2")),
        help="API server processes (TSUNAGU_API_PROCESSES of the server)",
    )
    args = parser.parse_args()
    os.environ["TSUNAGU_API_PROCESSES"] = str(args.api_processes)
    if args.quick:
        args.events, args.duration, args.warmup, args.residents = "2000,10000", 3.0, 1.0, 20
    sizes = sorted(int(n) for n in args.events.split(","))
    if sizes[0] < args.residents * PER_RESIDENT:
        parser.error(f"the smallest size must hold {args.residents} x {PER_RESIDENT} events")

    def say(line: str) -> None:
        print(line, flush=True)

    inline = Settings().inline_reads  # the server's setting: same environment, same store
    say(
        f"sizes {', '.join(f'{n:,}' for n in sizes)}; {args.residents} consenting residents; "
        f"{args.api_processes} API process(es); the view reads the store "
        + ("on the event loop" if inline else "in worker threads")
    )
    if args.again:
        results = rerun(
            duration=args.duration,
            warmup=args.warmup,
            clients=args.clients,
            data_dir=args.again,
            say=say,
        )
    elif args.keep:
        if args.keep.exists() and any(args.keep.iterdir()):
            parser.error(f"--keep {args.keep}: give a new or empty directory")
        args.keep.mkdir(parents=True, exist_ok=True)
        results = run(
            sizes,
            duration=args.duration,
            warmup=args.warmup,
            clients=args.clients,
            residents=args.residents,
            data_dir=args.keep,
            say=say,
        )
    else:
        with tempfile.TemporaryDirectory(prefix="tsunagu-bench-api-") as tmp:
            results = run(
                sizes,
                duration=args.duration,
                warmup=args.warmup,
                clients=args.clients,
                residents=args.residents,
                data_dir=Path(tmp),
                say=say,
            )
    report(results, args.clients, args.duration, args.warmup)


if __name__ == "__main__":
    main()
