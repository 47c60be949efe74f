"""Ingest records every batch and every rejection in the audit log: counts and ids only, in
the batch's own transaction, each exactly once."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from sqlalchemy import Engine, select, text

from broker.audit import AuditLog, EntryKind, verify_store
from broker.audit import tables as audit_tables
from broker.auth.principals import Principal, Role
from broker.bus import open_bus
from broker.ingest import pipeline
from broker.ingest.gateway import IngestGateway, Outcome
from broker.ingest.pipeline import IngestWorker
from consent.keys import KeyRing
from consent.vault import SubjectVault
from contract.bus import Bus, OutRecord, Record
from contract.deadletter import H_ORIGIN, H_REASON, DeadLetterReason
from contract.domains import DOMAINS
from tests.events import encode, make_event, registry
from tests.ingest.conftest import TOPICS

ODT = "urn:tsunagu:connector:mitoyo-ondemand"
BUS = "urn:tsunagu:connector:mitoyo-bus"
#: A value only a bad event carries: it must not reach the log.
SECRET = "山田花子-090-1234-5678"


@pytest.fixture
def keys(tmp_path: Path) -> KeyRing:
    return KeyRing.in_data_dir(tmp_path / "data")


@pytest.fixture
def audit(engine: Engine, keys: KeyRing) -> Iterator[AuditLog]:
    log = AuditLog(engine, keys, checkpoint_every=5, checkpoint_interval_s=3600, background=False)
    yield log
    log.close()


@pytest.fixture
def worker(bus: Bus, engine: Engine, audit: AuditLog, vault: SubjectVault) -> IngestWorker:
    return IngestWorker(bus, engine, registry(), vault, topics=TOPICS, audit=audit)


def _records(
    bus: Bus, docs: list[dict[str, Any]], raw: tuple[tuple[str, bytes], ...] = ()
) -> list[Record]:
    for doc in docs:
        bus.publish(doc["type"].split(".")[0], [OutRecord(doc["subject"].encode(), encode(doc))])
    for topic, value in raw:
        bus.publish(topic, [OutRecord(None, value)])
    consumer = bus.consumer("reader", TOPICS)
    try:
        return consumer.poll(1000, 2.0)
    finally:
        consumer.close()


def _entries(engine: Engine, kind: EntryKind) -> list[dict[str, Any]]:
    e = audit_tables.entries
    with engine.connect() as conn:
        rows = conn.execute(select(e.c.actor, e.c.fields).where(e.c.kind == kind)).all()
    return [{**orjson.loads(fields), "_actor": actor} for actor, fields in rows]


def _trip(source: str) -> dict[str, Any]:
    return make_event("transport.trip.completed", source=source)


def test_a_batch_is_recorded_per_topic_with_its_sources_types_and_offsets(
    bus: Bus, engine: Engine, worker: IngestWorker
) -> None:
    docs = [_trip(ODT), _trip(ODT), _trip(BUS), make_event("health.points.awarded", source=BUS)]
    records = _records(bus, docs)
    outcome = worker.process(records)
    assert outcome.projected == 4
    batches = {b["topic"]: b for b in _entries(engine, EntryKind.PUBLISH_BATCH)}
    assert set(batches) == {"transport", "health"}
    transport = batches["transport"]
    assert transport["events"] == 3
    assert transport["duplicates"] == 0 and transport["dead_letters"] == 0
    assert transport["sources"] == {ODT: 2, BUS: 1}
    assert transport["types"] == {"transport.trip.completed": 3}
    # Every transport record's offset lies in the one span recorded for its partition.
    for record in (r for r in records if r.topic == "transport"):
        (span,) = [s for s in transport["offsets"] if s.startswith(f"{record.partition}:")]
        low, high = map(int, span.split(":")[1].split("-"))
        assert low <= record.offset <= high
    assert batches["health"]["sources"] == {BUS: 1}
    assert {b["_actor"] for b in batches.values()} == {"ingest"}


def test_a_rejected_event_is_recorded_with_its_reason_and_none_of_its_data(
    bus: Bus, engine: Engine, worker: IngestWorker
) -> None:
    bad = _trip(ODT)
    bad["data"]["fare_jpy"] = SECRET  # a schema violation quoting personal data
    records = _records(bus, [bad, _trip(ODT)], raw=(("transport", b"not json " + SECRET.encode()),))
    outcome = worker.process(records)
    assert (outcome.projected, outcome.rejected) == (1, 2)
    dead = sorted(_entries(engine, EntryKind.DEAD_LETTER), key=lambda d: d["reason"])
    assert [d["reason"] for d in dead] == ["not_json", "schema_violation"]
    violation = dead[1]
    assert violation["topic"] == "transport"
    assert violation["event_id"] == bad["id"] and violation["source"] == ODT
    assert violation["path"] == "/data/fare_jpy"
    assert violation["origin"].startswith("transport/")
    (batch,) = _entries(engine, EntryKind.PUBLISH_BATCH)
    assert batch["events"] == 1 and batch["dead_letters"] == 2
    with engine.connect() as conn:
        stored = conn.execute(select(audit_tables.entries.c.fields)).scalars().all()
    assert not any(SECRET in text for text in stored)


def test_a_redelivered_batch_is_recorded_as_duplicates_not_counted_twice(
    bus: Bus, engine: Engine, worker: IngestWorker
) -> None:
    records = _records(bus, [_trip(ODT), _trip(ODT)])
    worker.process(records)
    worker.process(records)  # the offset commit was lost: the same batch comes again
    first, second = _entries(engine, EntryKind.PUBLISH_BATCH)
    assert (first["events"], first["duplicates"]) == (2, 0)
    assert (second["events"], second["duplicates"]) == (0, 2)
    assert second["sources"] == {}


def test_a_batch_whose_projection_fails_leaves_no_record(
    bus: Bus, engine: Engine, worker: IngestWorker, monkeypatch: pytest.MonkeyPatch
) -> None:
    records = _records(bus, [_trip(ODT)])

    def broken(*_: object) -> None:
        raise RuntimeError("the store went away mid-batch")

    with monkeypatch.context() as patch:
        patch.setattr(pipeline, "project", broken)
        with pytest.raises(RuntimeError):
            worker.process(records)
    assert _entries(engine, EntryKind.PUBLISH_BATCH) == []
    worker.process(records)  # the retry projects it, and records it once, as new
    (batch,) = _entries(engine, EntryKind.PUBLISH_BATCH)
    assert batch["events"] == 1


def test_the_chain_verifies_after_ingest_and_queued_entries(
    bus: Bus, engine: Engine, worker: IngestWorker, audit: AuditLog, keys: KeyRing
) -> None:
    for round_ in range(4):
        audit.append(
            EntryKind.ADMIN_CHANGE, actor="city-ops", action="partner.register", target=f"p{round_}"
        )
        worker.process(_records(bus, [_trip(ODT), _trip(BUS)]))
    audit.flush()
    result = verify_store(engine, keys.jwks())
    assert result.ok, result.problem
    assert result.entries == 8 and result.checkpoints >= 1


def test_http_rejections_are_recorded_naming_the_caller(
    tmp_path: Path, engine: Engine, audit: AuditLog
) -> None:
    bus = open_bus(f"sqlite:///{tmp_path / 'http-bus.db'}")
    try:
        gateway = IngestGateway(bus, engine, registry(), domains=DOMAINS.topics(), audit=audit)
        ok, other = make_event(source=ODT), make_event(source=BUS)
        odt = Principal(
            "odt-connector",
            Role.CONNECTOR,
            "urn:tsunagu:issuer:embedded",
            datetime.now(UTC),
            sources=frozenset({ODT}),
            event_types=frozenset({"transport.*"}),
        )
        results = gateway.submit([ok, other], "req1", odt)
        assert [r.status for r in results] == [Outcome.ACCEPTED, Outcome.REJECTED]
        gateway.reject_body(b"{", DeadLetterReason.NOT_JSON, "not JSON", "req2", "odt-connector")
    finally:
        bus.close()
    dead = _entries(engine, EntryKind.DEAD_LETTER)
    assert [(d["reason"], d["_actor"]) for d in dead] == [
        ("source_not_allowed", "odt-connector"),
        ("not_json", "odt-connector"),
    ]
    assert dead[0]["event_id"] == other["id"] and dead[0]["origin"] == "http/req1/1"
    assert (dead[0]["source"], dead[0]["sender"]) == (BUS, "odt-connector")
    assert dead[1]["topic"] == "unrouted"
    # Accepted events are the worker's to record, once projected: nothing yet.
    assert _entries(engine, EntryKind.PUBLISH_BATCH) == []


def test_http_poison_events_are_rejected_and_recorded_on_both_stores(
    tmp_path: Path, engine: Engine, audit: AuditLog
) -> None:
    bus = open_bus(f"sqlite:///{tmp_path / 'http-bus.db'}")
    nul_source = make_event(source="urn:tsunagu:connector:x\x00y")
    nul_subject = make_event(subject="res-\x00")
    nul_type = make_event(type="transport.trip.\x00")
    year_1 = make_event(time="0001-01-01T00:00:00+09:00")
    try:
        gateway = IngestGateway(bus, engine, registry(), domains=DOMAINS.topics(), audit=audit)
        results = gateway.submit([nul_source, nul_subject, nul_type, year_1], "req-poison")
    finally:
        bus.close()
    assert [r.status for r in results] == [Outcome.REJECTED] * 4
    assert [r.reason for r in results] == [DeadLetterReason.INVALID_ENVELOPE] * 4
    audit.flush()
    dead = _entries(engine, EntryKind.DEAD_LETTER)
    assert len(dead) == 4
    assert all(d["reason"] == "invalid_envelope" for d in dead)


def test_a_record_whose_dead_letter_cannot_be_recorded_still_leaves_its_partition(
    bus: Bus, engine: Engine, worker: IngestWorker, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Two faults at once: projecting the record fails, and so does recording its dead letter.
    real_project, real_entries = pipeline.project, pipeline.batch_entries  # type: ignore[attr-defined]

    def project(conn: Any, events: Any, vault: Any) -> Any:
        if any(e.id == "cursed" for e in events):
            raise KeyError(SECRET)
        return real_project(conn, events, vault)

    def entries(records: Any, accepted: Any, rejections: Any, *rest: Any) -> Any:
        if any(r.reason is DeadLetterReason.INTERNAL_ERROR for _, r in rejections):
            raise ValueError(SECRET)
        return real_entries(records, accepted, rejections, *rest)

    monkeypatch.setattr(pipeline, "project", project)
    monkeypatch.setattr(pipeline, "batch_entries", entries)
    docs = [_trip(ODT), make_event(event_id="cursed", source=ODT), _trip(ODT)]
    for doc in docs:
        bus.publish("transport", [OutRecord(b"same", encode(doc))])
    stop = threading.Event()
    thread = threading.Thread(target=worker.run, args=(stop, 0.05))
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while sum(bus.committed(worker.group, "transport").values()) < 3:
            assert thread.is_alive() and time.monotonic() < deadline
            time.sleep(0.05)
    finally:
        stop.set()
        thread.join(10)
    reader = bus.consumer("dlq-reader", ["transport.dlq"])
    letters = reader.poll(10, 2.0)
    reader.close()
    # One dead letter (a repeat, from the failed attempt, carries the same origin).
    assert len({dict(r.headers)[H_ORIGIN] for r in letters}) == 1
    assert {dict(r.headers)[H_REASON] for r in letters} == {b"internal_error"}
    assert SECRET.encode() not in b"".join(v for r in letters for _, v in r.headers)
    with engine.connect() as conn:
        ids = set(conn.execute(text("SELECT id FROM ingested_events")).scalars())
    assert ids == {docs[0]["id"], docs[2]["id"]}
