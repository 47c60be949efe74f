"""Erasure by crypto-shredding, on SQLite and PostgreSQL stores with a vault on each: the rows
go, every copy taken before can no longer be opened nor tied to the person, the erasure is
recorded without saying whose, and the platform keeps running for everyone else."""

from __future__ import annotations

import shutil
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
import pytest
from prometheus_client import REGISTRY
from sqlalchemy import Engine, select, text

import consent.erasure
from broker.bus.sqlite_log import SqliteLog
from broker.store.database import make_engine
from broker.store.projections import LISTINGS
from consent.changes import ChangeScope, ConsentChange
from consent.decisions import DecisionPoint, DecisionReason
from consent.erasure import BY_SUBJECT, ErasureRecord, erase, erasure_records
from consent.listener import ConsentChangeListener
from consent.service import ConsentService
from consent.vault import SealedDataError, SubjectErasedError, SubjectVault, subject_keys
from tests.consent.world import BUS_FIRM, OPERATION, PLANNING, TRIPS, days, now
from tests.fixtures.databases import PG_ADMIN_DSN
from tests.store.world import (
    ALICE,
    ALICES_HOUSE,
    BOB,
    event_about,
    ingest,
    listing_of,
    personal_rows,
    residents_events,
    vault,
    vault_url,
)

__all__ = ["vault", "vault_url"]  # the fixtures this module uses

OPERATOR = "ops-mitoyo-city-1"


@pytest.fixture
def world(engine: Engine, vault: SubjectVault, sqlite_bus: SqliteLog) -> Engine:
    """The store with Alice's and Bob's events of every kind and Alice's house ingested."""
    docs = [*residents_events(ALICE), *residents_events(BOB), listing_of(ALICE)]
    assert ingest(sqlite_bus, engine, vault, docs).projected == len(docs)
    return engine


def _count(rows: dict[str, list[dict[str, Any]]]) -> int:
    return sum(len(r) for r in rows.values())


def _refs(rows: dict[str, list[dict[str, Any]]]) -> set[str]:
    return {r["subject_ref"] for rs in rows.values() for r in rs if "subject_ref" in r}


def test_erasure_deletes_the_subjects_rows_and_nobody_elses(
    world: Engine, vault: SubjectVault
) -> None:
    bobs_ref = vault.ref(BOB)
    before = personal_rows(world)
    record = erase(ALICE, vault=vault, store=world, requested_by=ALICE)
    after = personal_rows(world)
    assert _refs(after) == {bobs_ref}
    assert [r["listing_id"] for r in after[LISTINGS.name]] == ["prop-house0001"]  # OWNER's
    assert sum(record.rows_deleted.values()) == _count(before) - _count(after) == 9
    assert record.rows_deleted[LISTINGS.name] == 1
    assert record.key_destroyed
    assert vault.ref(ALICE) is None


def test_erased_subject_ciphertext_cannot_be_decrypted(
    world: Engine, vault: SubjectVault, vault_url: str
) -> None:
    alices_ref = vault.ref(ALICE)
    alices: list[bytes] = [
        row["sealed"]
        for rows in personal_rows(world).values()
        for row in rows
        if row.get("subject_ref") == alices_ref
    ]
    with world.connect() as conn:
        house = conn.execute(
            select(LISTINGS.c.owner_details_sealed).where(LISTINGS.c.listing_id == ALICES_HOUSE)
        ).scalar_one()
    assert len(alices) == 8
    assert vault.open(ALICE, alices[0])  # readable until the erasure

    erase(ALICE, vault=vault, store=world, requested_by=OPERATOR)

    elsewhere = SubjectVault.open_url(vault_url)  # another process, nothing cached
    try:
        for v in (vault, elsewhere):
            for sealed in [*alices, house]:
                with pytest.raises(SubjectErasedError):
                    v.open(ALICE, sealed)
            assert v.ref(ALICE) is None  # the reference cannot be recomputed either
            assert v.keys_for([ALICE], create=True) == {}
    finally:
        elsewhere.close()
    with vault.engine.connect() as conn:
        keys = conn.execute(select(subject_keys.c.subject_id, subject_keys.c.key)).all()
    assert ALICE not in dict(keys)  # nothing left in the vault to try, not even the id
    assert None in dict(keys).values()  # a tombstone under a digest keeps Alice erased


def test_a_store_backup_taken_before_erasure_can_no_longer_be_read_or_linked(
    world: Engine, vault: SubjectVault, store_url: str, tmp_path: Path
) -> None:
    with _backup(world, store_url, tmp_path) as backup:
        alices_ref = vault.ref(ALICE)

        erase(ALICE, vault=vault, store=world, requested_by=OPERATOR)

        old = personal_rows(backup)
    assert alices_ref in _refs(old)  # the backup still has her rows...
    assert alices_ref not in {vault.ref(ALICE), vault.ref(BOB)}  # ...nobody's ref leads there
    for rows in old.values():
        for row in rows:
            if row.get("subject_ref") == alices_ref:
                assert ALICE not in {str(v) for v in row.values()}
                with pytest.raises(SubjectErasedError):
                    vault.open(ALICE, row["sealed"])


@contextmanager
def _backup(store: Engine, store_url: str, tmp_path: Path) -> Iterator[Engine]:
    """A copy of the store as an operator would take it, dropped afterwards."""
    if store_url.startswith("sqlite"):
        target = tmp_path / "backup.db"
        source = sqlite3.connect(store_url.split("///", 1)[1])
        with sqlite3.connect(target) as copy:
            source.backup(copy)
        source.close()
        backup = make_engine(f"sqlite:///{target}")
        yield backup
        backup.dispose()
        return
    name = store_url.rsplit("/", 1)[1]
    store.dispose()  # CREATE DATABASE ... TEMPLATE needs its source idle
    with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}_backup" TEMPLATE "{name}"')
    backup = make_engine(f"{store_url}_backup")
    try:
        yield backup
    finally:
        backup.dispose()
        with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}_backup" WITH (FORCE)')


def test_the_erasure_record_names_no_subject(world: Engine, vault: SubjectVault) -> None:
    record = erase(ALICE, vault=vault, store=world, requested_by=ALICE)
    (stored,) = erasure_records(world)
    assert ALICE not in repr(stored) and ALICE not in repr(record.rows_deleted)
    assert stored["requested_by"] == record.requested_by == BY_SUBJECT
    assert stored["subject_digest"] == record.subject_digest
    assert stored["completed_at"] is not None and stored["pending_ref"] is None
    assert stored["rows_deleted"] == record.rows_deleted
    assert record.is_of(ALICE) and not record.is_of(BOB)  # only with the receipt's salt


def test_erasing_again_is_harmless(world: Engine, vault: SubjectVault) -> None:
    first = erase(ALICE, vault=vault, store=world, requested_by=OPERATOR)
    again = erase(ALICE, vault=vault, store=world, requested_by=OPERATOR)
    assert sum(first.rows_deleted.values()) == 9
    assert set(again.rows_deleted) == set(first.rows_deleted)
    assert sum(again.rows_deleted.values()) == 0 and not again.key_destroyed
    assert len(erasure_records(world)) == 2
    assert vault.ref(BOB) is not None


def test_an_event_about_an_erased_subject_is_taken_in_but_projected_nowhere(
    world: Engine, vault: SubjectVault, sqlite_bus: SqliteLog
) -> None:
    erase(ALICE, vault=vault, store=world, requested_by=OPERATOR)
    counted = {"topic": "transport", "type": "transport.trip.completed"}
    before = REGISTRY.get_sample_value("tsunagu_ingest_erased_subject_events_total", counted)
    late = event_about("transport.trip.completed", ALICE, trip_id="late-1")
    bobs = event_about("transport.trip.completed", BOB, trip_id="bob-2")

    outcome = ingest(sqlite_bus, world, vault, [late, bobs])

    assert (outcome.projected, outcome.erased, outcome.duplicates) == (1, 1, 0)
    after = REGISTRY.get_sample_value("tsunagu_ingest_erased_subject_events_total", counted)
    assert (after or 0) - (before or 0) == 1
    assert _refs(personal_rows(world)) == {vault.ref(BOB)}
    with world.connect() as conn:
        ids = set(conn.execute(text("SELECT id FROM ingested_events")).scalars())
    assert late["id"] in ids  # in the ledger, so redelivery does not try again
    assert ingest(sqlite_bus, world, vault, [late]).duplicates == 1


def test_a_listing_event_of_an_erased_owner_projects_nothing(
    world: Engine, vault: SubjectVault, sqlite_bus: SqliteLog
) -> None:
    erase(ALICE, vault=vault, store=world, requested_by=OPERATOR)
    outcome = ingest(sqlite_bus, world, vault, [listing_of(ALICE, "prop-alice002")])
    assert (outcome.projected, outcome.erased) == (0, 1)
    with world.connect() as conn:
        owners = set(conn.execute(select(LISTINGS.c.owner_id)).scalars())
    assert ALICE not in owners


def test_erasure_revokes_live_consents_so_partners_are_told(
    world: Engine,
    vault: SubjectVault,
    service: ConsentService,
    decision_point: DecisionPoint,
) -> None:
    consent = service.grant(ALICE, BUS_FIRM, PLANNING, [TRIPS], expires_at=now() + days(30))
    second = service.grant(ALICE, BUS_FIRM, OPERATION, [TRIPS], expires_at=now() + days(30))
    paused = service.pause(ALICE, second.id)
    assert decision_point.decide(BUS_FIRM, PLANNING, TRIPS, ALICE).allowed

    record = erase(ALICE, vault=vault, store=world, requested_by=OPERATOR, consent_service=service)

    assert record.consents_revoked == 2
    # The partner's record stays, revoked, but names the erasure instead of Alice.
    assert service.current(ALICE) == service.history(ALICE) == []
    scrubbed = service.current(record.id)
    assert {c.status for c in scrubbed} == {"revoked"}
    assert {c.supersedes for c in scrubbed} == {consent.id, paused.id}
    assert {c.receipt for c in service.history(record.id)} == {""}
    refusal = decision_point.decide(BUS_FIRM, PLANNING, TRIPS, ALICE)
    assert (refusal.allowed, refusal.reason) == (False, DecisionReason.NO_CONSENT)


def test_an_interrupted_erasure_is_finished_by_erasing_again(
    world: Engine, vault: SubjectVault, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = consent.erasure._delete_rows
    calls = {"n": 0}

    def crash_once(conn: Any, ref: str | None) -> dict[str, int]:
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("the process died after destroying the key")
        return real(conn, ref)

    monkeypatch.setattr(consent.erasure, "_delete_rows", crash_once)
    with pytest.raises(RuntimeError):
        erase(ALICE, vault=vault, store=world, requested_by=OPERATOR)
    assert vault.ref(ALICE) is None
    assert len(_refs(personal_rows(world))) == 2  # her rows outlived the key

    record = erase(ALICE, vault=vault, store=world, requested_by=OPERATOR)

    assert _refs(personal_rows(world)) == {vault.ref(BOB)}
    first, second = erasure_records(world)
    assert sum(first["rows_deleted"].values()) == 8  # finished on the second request
    assert first["completed_at"] is not None and first["pending_ref"] is None
    assert isinstance(record, ErasureRecord) and second["id"] == record.id


# A file-level check: SQLite only (the row checks cover PostgreSQL).
@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
def test_a_sqlite_store_copied_as_a_file_before_erasure_is_unreadable_after(
    world: Engine, vault: SubjectVault, store_url: str, tmp_path: Path
) -> None:
    path = Path(store_url.split("///", 1)[1])
    world.dispose()  # checkpoint the WAL, as a file-level backup tool would see it
    copy = tmp_path / "copied"
    copy.mkdir()
    for f in path.parent.glob(path.name + "*"):
        shutil.copy(f, copy / f.name)
    erase(ALICE, vault=vault, store=world, requested_by=OPERATOR)
    copied = make_engine(f"sqlite:///{copy / path.name}")
    rows = [r for rs in personal_rows(copied).values() for r in rs if r.get("sealed")]
    copied.dispose()
    assert len(rows) == 16
    opened = 0
    for row in rows:
        for subject in (ALICE, BOB):
            try:
                vault.open(subject, row["sealed"])
                opened += 1
            except SubjectErasedError:
                assert subject == ALICE
            except SealedDataError:
                assert subject == BOB  # his key does not open the rows that were hers
    assert opened == 8  # Bob's eight rows; none of Alice's


def test_an_erasure_evicts_the_subjects_key_from_other_processes_at_once(
    world: Engine,
    vault: SubjectVault,
    vault_url: str,
    service: ConsentService,
    decision_point: DecisionPoint,
    sqlite_bus: SqliteLog,
) -> None:
    # Another process: its own vault cache (holding Alice's key) and its change listener.
    other = SubjectVault.open_url(vault_url, max_age_s=3600)
    assert ALICE in other.keys_for([ALICE], create=False)

    def evict(change: ConsentChange) -> None:
        # As the platform does (broker.runtime): the topic never says whom, so all go.
        if change.scope is ChangeScope.ERASURE:
            other.evict_all()

    listener = ConsentChangeListener(sqlite_bus, decision_point, also=[evict])
    listener.start()
    try:
        assert listener.wait_ready(10)
        erase(ALICE, vault=vault, store=world, requested_by=OPERATOR, consent_service=service)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and other.keys_for([ALICE], create=False):
            time.sleep(0.02)
        # Without the announcement the other process would seal with the key for an hour.
        assert other.keys_for([ALICE], create=False) == {}
        assert other.keys_for([ALICE], create=True) == {}  # and never makes a new one
    finally:
        listener.stop()
        other.close()
