"""End-to-end ingest throughput (publish → validate → project) on each bus backend.

Prints, per backend, in one run:
  - raw validation:  events/s through the validator alone (no bus, no store)
  - MAC check:       events/s through the proof-of-origin check alone, and its share of the
                     worker's time per event end to end
  - raw bus:         events/s published, and consumed by a bare consumer group
  - end to end:      events/s from a publisher process through one ingest worker into the store
                     (connector tokens checked, subjects sealed, each batch audited)
  - ID-linked:       the same with every resident named by the connector's pairwise subject,
                     resolved at ingest through the residents' links (issue 19)
and the end-to-end figure as a ratio to each baseline. Targets on the 2-core dev machine:
embedded ≥ 20,000 events/s; Kafka ≥ 15,000 events/s and ≥ 0.6 of the raw consume rate;
resolving subjects costs at most 10% (ID-linked / resident ≥ 0.90).

    python -m ops.bench.ingest [--events 100000] [--backends sqlite,kafka]
                               [--quick]
                               [--store URL] [--vault URL]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import resource
import secrets
import tempfile
import threading
import time
import uuid
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import Engine, text
from sqlmodel import Session

from broker.audit import AuditLog
from broker.auth.issuer import EmbeddedIssuer
from broker.auth.origin import connector_key, mac_matches
from broker.auth.principals import Role
from broker.auth.verifier import StaticKeys, TokenVerifier
from broker.bus import open_bus
from broker.ingest.held import HeldEvents
from broker.ingest.pipeline import IngestWorker
from broker.ingest.provenance import SourceAuthenticator
from broker.regionid.tables import RegionClient, RegionLink
from broker.registry.catalogue import SchemaRegistry
from broker.settings import REPO_SCHEMAS
from broker.store.database import make_engine
from connectors.sdk.schemas import Identity
from consent.keys import KeyRing
from consent.vault import SubjectVault
from contract.bus import Bus, Record, TopicSpec
from contract.domains import DOMAINS
from contract.origin import OriginSigner
from contract.validation import EventValidator
from ops.bench.events import RESIDENTS, SOURCE, make_records, resident, service_subject
from ops.kafka.broker import KafkaBroker

PUBLISH_CHUNK = 2000
#: The region ID client the bench connector publishes for, in ID-linked runs.
BENCH_CLIENT = "bench"


def _create_topics(bus: Bus, prefix: str) -> None:
    specs = [TopicSpec(prefix + d, 4) for d in DOMAINS.topics()]
    bus.create_topics(specs + [TopicSpec(prefix + d + ".dlq", 1) for d in DOMAINS.topics()])


def _publish(bus: Bus, prefix: str, by_topic: dict[str, list]) -> None:  # type: ignore[type-arg]
    for topic, records in by_topic.items():
        for i in range(0, len(records), PUBLISH_CHUNK):
            bus.publish(prefix + topic, records[i : i + PUBLISH_CHUNK])


def _publisher(
    bus_url: str,
    prefix: str,
    n: int,
    ready: mp.Event,  # type: ignore[valid-type]
    go: mp.Event,  # type: ignore[valid-type]
    token: str = "",
    key: bytes = b"",
    identity: Identity = "resident_id",
) -> None:
    registry = SchemaRegistry.from_directory(REPO_SCHEMAS)
    signer = OriginSigner(token, key) if token else None
    seed = hash(prefix) & 0xFFFF
    by_topic = make_records(registry, n, seed=seed, signer=signer, identity=identity)
    bus = open_bus(bus_url)
    ready.set()  # type: ignore[attr-defined]
    go.wait()  # type: ignore[attr-defined]
    _publish(bus, prefix, by_topic)
    bus.close()


def bench_validation(registry: SchemaRegistry, n: int) -> float:
    """Events/s through the validator alone."""
    by_topic = make_records(registry, n)
    records = [
        Record(topic, 0, i, r.key, r.value)
        for topic, rs in by_topic.items()
        for i, r in enumerate(rs)
    ]
    validator = EventValidator(registry, 1024 * 1024)
    started = time.perf_counter()
    for record in records:
        validator.check_record(record)
    return n / (time.perf_counter() - started)


def bench_mac(registry: SchemaRegistry, n: int) -> float:
    """Events/s through the proof-of-origin check alone (each record's MAC recomputed and
    compared, as ingest does for every record)."""
    key = connector_key(secrets.token_bytes(32), "bench")
    by_topic = make_records(registry, n, signer=OriginSigner("token", key))
    records = [r for rs in by_topic.values() for r in rs]
    started = time.perf_counter()
    matched = sum(mac_matches(key, r.key, r.value, r.headers) for r in records)
    elapsed = time.perf_counter() - started
    if matched != n:
        raise RuntimeError(f"{n - matched} of {n} MACs did not match")
    return n / elapsed


def bench_raw_bus(bus_url: str, registry: SchemaRegistry, n: int) -> tuple[float, float]:
    """(publish events/s, consume events/s) with no validation and no store."""
    prefix = f"raw{uuid.uuid4().hex[:6]}."
    bus = open_bus(bus_url)
    _create_topics(bus, prefix)
    by_topic = make_records(registry, n, seed=1)
    started = time.perf_counter()
    _publish(bus, prefix, by_topic)
    publish_rate = n / (time.perf_counter() - started)
    consumer = bus.consumer(f"raw-{prefix}", [prefix + d for d in DOMAINS.topics()])
    seen = 0
    first_poll = time.perf_counter()
    started = 0.0
    while seen < n and time.perf_counter() - first_poll < 300:
        got = consumer.poll(2000, 0.5)
        if got and not started:
            started = time.perf_counter()  # group join time is not throughput
        seen += len(got)
    consume_rate = seen / (time.perf_counter() - started)
    consumer.close()
    bus.close()
    return publish_rate, consume_rate


def _link_residents(engine: Engine) -> None:
    """The bench connector registered as a service of the region ID, every bench resident
    linked with it under ``service_subject`` (as if each had signed in once)."""
    now = datetime.now(UTC)
    with Session(engine) as session:
        if session.get(RegionClient, BENCH_CLIENT) is not None:
            return  # a shared store linked them in an earlier run
        session.add(
            RegionClient(
                client_id=BENCH_CLIENT,
                name="bench",
                redirect_uris=["https://bench.example.jp/cb"],
                sector="bench.example.jp",
                created_at=now,
                connector="bench",
            )
        )
        for i in range(RESIDENTS):
            session.add(
                RegionLink(
                    id=uuid.uuid4().hex,
                    client_id=BENCH_CLIENT,
                    account_id=resident(i),
                    subject=service_subject(resident(i)),
                    how="sign_in",
                    linked_at=now,
                )
            )
        session.commit()


def bench_end_to_end(
    bus_url: str, store_url: str, n: int, vault_url: str, identity: Identity = "resident_id"
) -> float:
    """Events/s from a publisher process through one worker into the store.

    The vault starts empty: the worker makes every resident's key on the way, as a new
    region's first hour would. With ``identity="subject"`` every event names its resident by
    the connector's pairwise subject, resolved at ingest through the residents' links.
    """
    prefix = f"e2e{uuid.uuid4().hex[:6]}."
    bus = open_bus(bus_url)
    _create_topics(bus, prefix)
    engine = make_engine(store_url)
    if identity == "subject":
        _link_residents(engine)
    registry = SchemaRegistry.from_directory(REPO_SCHEMAS)
    vault = SubjectVault.open_url(vault_url)
    # As the platform runs it: every record's connector token checked against its source.
    keys_dir = Path(tempfile.mkdtemp(prefix="bench-keys-"))
    issuer = EmbeddedIssuer(keys_dir / "issuer.pem", audience="tsunagu")
    # Each batch's audit entries are chained in the batch's own transaction, as in the platform.
    audit = AuditLog(engine, KeyRing.in_data_dir(keys_dir))
    verifier = TokenVerifier(StaticKeys(issuer.jwks()), issuer=issuer.issuer, audience="tsunagu")
    master = secrets.token_bytes(32)
    worker = IngestWorker(
        bus,
        engine,
        registry,
        vault,
        group=f"e2e-{prefix}",
        topic_prefix=prefix,
        batch_size=2000,
        authenticate=SourceAuthenticator(verifier, master),
        audit=audit,
        held=HeldEvents.in_keys_dir(keys_dir, retention_s=30 * 24 * 3600),
    )
    token = issuer.issue(
        "bench", Role.CONNECTOR, sources=[SOURCE], event_types=[f"{d}.*" for d in DOMAINS.names()]
    )
    ctx = mp.get_context("spawn")
    ready, go = ctx.Event(), ctx.Event()
    publisher = ctx.Process(
        target=_publisher,
        args=(bus_url, prefix, n, ready, go, token, connector_key(master, "bench"), identity),
    )
    publisher.start()
    ready.wait(120)
    stop = threading.Event()
    thread = threading.Thread(target=worker.run, args=(stop, 0.2))
    thread.start()
    time.sleep(0.5 if bus_url.startswith("sqlite") else 4.0)  # let the group form first
    count = text("SELECT count(*) FROM ingested_events")
    with engine.connect() as conn:
        before = int(conn.execute(count).scalar_one())  # a shared store may hold earlier runs
    started = time.perf_counter()
    go.set()
    with engine.connect() as conn:
        while True:
            done = int(conn.execute(count).scalar_one()) - before
            if done >= n or time.perf_counter() - started > 600:
                break
            time.sleep(0.05)
    elapsed = time.perf_counter() - started
    stop.set()
    thread.join()
    publisher.join()
    audit.close()
    bus.close()
    engine.dispose()
    vault.close()
    return done / elapsed


def main() -> None:
    """Run the benchmark and print its figures."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, help="events per run (100,000)")
    parser.add_argument("--quick", action="store_true", help="a tiny run: 3,000 events")
    parser.add_argument("--backends", default="sqlite,kafka")
    parser.add_argument("--store", default="", help="store URL (default: a temp SQLite file)")
    parser.add_argument("--vault", default="", help="vault URL (default: a temp SQLite file)")
    args = parser.parse_args()
    registry = SchemaRegistry.from_directory(REPO_SCHEMAS)
    n = args.events or (3000 if args.quick else 100_000)
    validation = bench_validation(registry, n)
    mac = bench_mac(registry, n)
    print(f"raw validation                {validation:>10,.0f} events/s")
    print(f"MAC check alone               {mac:>10,.0f} events/s  ({1e6 / mac:,.1f} us/event)")
    with ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        for backend in args.backends.split(","):
            store = args.store or f"sqlite:///{tmp / f'store-{backend}.db'}"
            vault = args.vault or f"sqlite:///{tmp / 'keys' / f'vault-{backend}.db'}"
            if backend == "kafka":
                bus_url = stack.enter_context(KafkaBroker()).url
            else:
                bus_url = f"sqlite:///{tmp / 'bus.db'}"
            publish, consume = bench_raw_bus(bus_url, registry, n)
            e2e = bench_end_to_end(bus_url, store, n, vault)
            # Its own store and vault: both runs start with no resident's key made.
            linked = bench_end_to_end(
                bus_url,
                args.store or f"sqlite:///{tmp / f'store-{backend}-linked.db'}",
                n,
                args.vault or f"sqlite:///{tmp / 'keys' / f'vault-{backend}-linked.db'}",
                identity="subject",
            )
            raw = 1 / (1 / publish + 1 / consume)
            print(f"\n[{backend}] {n:,} events, store {store.split(':')[0]}")
            print(f"  raw bus publish             {publish:>10,.0f} events/s")
            print(f"  raw bus consume             {consume:>10,.0f} events/s")
            print(f"  raw bus round trip          {raw:>10,.0f} events/s  (1/(1/pub+1/con))")
            print(f"  end to end, one worker      {e2e:>10,.0f} events/s")
            print(f"  ratio to raw bus publish    {e2e / publish:>10.2f}")
            print(f"  ratio to raw bus consume    {e2e / consume:>10.2f}")
            print(f"  ratio to raw validation     {e2e / validation:>10.2f}")
            print(f"  MAC share of the worker     {e2e / mac:>10.1%}  (its time per event)")
            print(f"  end to end, ID-linked       {linked:>10,.0f} events/s  (subjects resolved)")
            print(f"  ratio ID-linked / resident  {linked / e2e:>10.2f}  (target >= 0.90)")
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"\npeak RSS of the benchmark process (worker side): {rss_mb:,.0f} MB")


if __name__ == "__main__":
    main()
