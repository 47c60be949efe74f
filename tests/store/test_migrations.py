"""The store's schema is made by its migrations only: an empty store is created at the head, a
store of the release before migrations is upgraded with every row and the audit chain intact
(or refused, naming the command, by a process that may not upgrade it), and a newer store is
refused naming both revisions. The baseline matches the models on SQLite and PostgreSQL."""

from __future__ import annotations

import gzip
import json
import os
import sqlite3
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Column, Engine, Integer, MetaData, Table, inspect, text
from sqlalchemy.engine import make_url
from sqlmodel import SQLModel

import broker.regionid.tables
import broker.registry.stored
import broker.store.tables
import consent.erasure
import consent.model
import consent.notifications
from broker.audit import tables as audit_tables
from broker.audit.verify import verify_store
from broker.store.database import connect, make_engine
from broker.store.migrate import (
    STORE,
    UPGRADE_COMMAND,
    VAULT,
    Chain,
    StoreAheadError,
    StoreBehindError,
    StoreState,
    _config,
    head_revision,
    open_schema,
    revisions,
    upgrade,
)
from broker.store.projections.vacant_house import Listing
from consent import vault as vault_module
from consent.vault import SubjectVault, vault_engine
from tests.store.world import vault_url

__all__ = ["vault_url"]  # the fixture the vault tests use

# Every module declaring tables of the store, so that the metadata below knows them all.
MODEL_MODULES = (broker.store.tables, broker.registry.stored, consent.model, consent.erasure,
                 consent.notifications, audit_tables, broker.regionid.tables)  # fmt: skip

LEGACY = Path(__file__).parent / "legacy"
RELEASE = "2b55de9"


def models() -> MetaData:
    """Every table the code declares, in one metadata (the audit log keeps its own)."""
    assert MODEL_MODULES
    merged = MetaData()
    for table in [*SQLModel.metadata.tables.values(), *audit_tables.metadata.tables.values()]:
        table.to_metadata(merged)
    return merged


def differences(engine: Engine, metadata: MetaData, chain: Chain = STORE) -> list[Any]:
    """What Alembic's autogenerate would change to make the database match ``metadata``."""
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"version_table": chain.version_table})
        return list(compare_metadata(context, metadata))


def load_legacy_store(url: str) -> None:
    """Fill the empty store at ``url`` with the release before migrations' store and data."""
    dialect = "sqlite" if url.startswith("sqlite") else "postgresql"
    dump = gzip.decompress((LEGACY / f"store-{RELEASE}.{dialect}.sql.gz").read_bytes()).decode()
    if dialect == "sqlite":
        with sqlite3.connect(make_url(url).database or "") as conn:
            conn.executescript(dump)
        return
    # pg_dump's psql meta-commands (\restrict) are not SQL; the rest runs as one script.
    script = "\n".join(line for line in dump.splitlines() if not line.startswith("\\"))
    dsn = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(script.encode())


#: Columns later revisions added to tables of the release before migrations: (table, column).
ADDED_COLUMNS = {
    ("vacant_house_listings", "publication"),  # 0003: listings in the standard model
    ("vacant_house_listings", "standard"),
    ("transport_stops", "stop_name"),  # 0006: stops keep their GTFS name
    ("regionid_clients", "connector"),  # 0007: the connector of each service
}
#: Tables later revisions created (empty after an upgrade).
ADDED_TABLES = frozenset({"regionid_accounts", "regionid_clients", "regionid_codes",
                          "regionid_tokens",  # 0004: the region ID
                          "regionid_links", "regionid_link_codes",  # 0007: ID link
                          "held_events"})  # fmt: skip


def snapshot(engine: Engine) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table, in primary-key order; columns added by later revisions are
    left out when they are empty (they must be, on rows written before them)."""
    found: dict[str, list[tuple[Any, ...]]] = {}
    names = [n for n in inspect(engine).get_table_names() if n != "alembic_version"]
    with engine.connect() as conn:
        for name in names:
            keys = inspect(engine).get_pk_constraint(name)["constrained_columns"]
            order = ", ".join(f'"{k}"' for k in keys)
            rows = conn.execute(text(f'SELECT * FROM "{name}" ORDER BY {order}')).mappings()
            found[name] = [
                tuple(v for k, v in r.items() if (name, k) not in ADDED_COLUMNS or v is not None)
                for r in rows
            ]
    return found


def legacy_jwks() -> Any:
    return json.loads((LEGACY / f"jwks-{RELEASE}.json").read_text())


# -- the baseline is the models ---------------------------------------------------------------


def test_a_store_created_by_the_migrations_matches_every_model(store_url: str) -> None:
    engine = make_engine(store_url)
    try:
        assert differences(engine, models()) == []
        assert revisions(engine).state is StoreState.CURRENT
    finally:
        engine.dispose()


def test_a_model_changed_without_a_migration_is_found(store_url: str) -> None:
    changed = models()
    Table(
        "consent_epoch", changed, Column("added_without_a_migration", Integer), extend_existing=True
    )
    engine = make_engine(store_url)
    try:
        found = differences(engine, changed)
    finally:
        engine.dispose()
    assert [(d[0], d[2], d[3].name) for d in found] == [
        ("add_column", "consent_epoch", "added_without_a_migration")
    ]


# -- the release before migrations ------------------------------------------------------------


def test_a_store_of_the_release_before_migrations_is_upgraded_with_every_row_and_chain_intact(
    store_url: str,
) -> None:
    load_legacy_store(store_url)
    plain = connect(store_url)
    try:
        assert revisions(plain).state is StoreState.LEGACY
        before = snapshot(plain)
    finally:
        plain.dispose()
    assert len(before["audit_entries"]) > 100 and len(before["ingested_events"]) > 100
    assert all(before[t] for t in ("consents", "partners", "partner_purposes", "transport_trips"))

    engine = make_engine(store_url, upgrade=True)
    try:
        after = snapshot(engine)
        assert revisions(engine).current == head_revision()
        assert differences(engine, models()) == []
        verification = verify_store(engine, legacy_jwks())
    finally:
        engine.dispose()
    assert all(after.pop(t) == [] for t in ADDED_TABLES)
    assert after == before  # every table, every row, every value
    assert verification.ok, verification.problem
    assert verification.entries == len(before["audit_entries"])
    assert verification.checkpoints == len(before["audit_checkpoints"]) > 0


def test_a_process_that_may_not_upgrade_refuses_an_older_store_naming_the_command(
    store_url: str,
) -> None:
    load_legacy_store(store_url)
    with pytest.raises(StoreBehindError) as refused:
        make_engine(store_url, upgrade=False)
    assert f"`{UPGRADE_COMMAND}`" in str(refused.value)
    assert head_revision() in str(refused.value)
    assert "release before migrations" in str(refused.value)
    plain = connect(store_url)
    try:
        assert revisions(plain).state is StoreState.LEGACY  # refused, and left as it was
    finally:
        plain.dispose()


def test_an_empty_store_is_created_even_by_a_process_that_may_not_upgrade(store_url: str) -> None:
    engine = make_engine(store_url, upgrade=False)
    try:
        assert revisions(engine).state is StoreState.CURRENT
    finally:
        engine.dispose()


def test_a_store_newer_than_the_code_is_refused_naming_both_revisions(store_url: str) -> None:
    make_engine(store_url).dispose()
    plain = connect(store_url)
    with plain.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '0099_from_the_future'"))
    try:
        with pytest.raises(StoreAheadError) as refused:
            make_engine(store_url, upgrade=True)
        assert revisions(plain).current == "0099_from_the_future"  # untouched
    finally:
        plain.dispose()
    assert "0099_from_the_future" in str(refused.value)
    assert f"newest is {head_revision()}" in str(refused.value)


# -- a store at an older revision (a toy chain of two) -----------------------------------------

TOY = Chain("toy", "tests.store:toy_migrations", "toy_alembic_version", frozenset({"toy"}), 7)


def test_a_store_at_an_older_revision_is_upgraded_only_where_the_process_may(
    store_url: str,
) -> None:
    engine = connect(store_url)
    try:
        with engine.begin() as conn:  # the store as the release with t0001 left it
            conn.execute(text("CREATE TABLE toy (id INTEGER PRIMARY KEY)"))
            conn.execute(text("CREATE TABLE toy_alembic_version (version_num VARCHAR(32))"))
            conn.execute(text("INSERT INTO toy_alembic_version VALUES ('t0001')"))
        assert revisions(engine, TOY).state is StoreState.BEHIND

        with pytest.raises(StoreBehindError) as refused:
            open_schema(engine, may_upgrade=False, chain=TOY)
        assert "at revision t0001" in str(refused.value)
        assert "needs revision t0002" in str(refused.value)
        assert f"`{UPGRADE_COMMAND}`" in str(refused.value)
        assert revisions(engine, TOY).current == "t0001"

        was = open_schema(engine, may_upgrade=True, chain=TOY)
        assert (was.state, was.current) == (StoreState.BEHIND, "t0001")
        assert revisions(engine, TOY).state is StoreState.CURRENT
        assert "name" in {c["name"] for c in inspect(engine).get_columns("toy")}
    finally:
        engine.dispose()


# -- the commands -----------------------------------------------------------------------------


def tsunagu(
    data_dir: Path, database_url: str, *args: str, **env: str
) -> subprocess.CompletedProcess[str]:
    """Run ``tsunagu args`` with its own data directory and the given store."""
    environment = {**os.environ, "TSUNAGU_DATA_DIR": str(data_dir),
                   "TSUNAGU_DATABASE_URL": database_url, "TSUNAGU_PORT": "1", **env}  # fmt: skip
    code = "import sys; from broker.cli import app; sys.argv[0] = 'tsunagu'; app()"
    return subprocess.run([sys.executable, "-c", code, *args], env=environment,
                          capture_output=True, text=True, timeout=120)  # fmt: skip


def test_up_refuses_an_older_postgresql_store_until_db_upgrade_runs(
    postgres_url: str, tmp_path: Path
) -> None:
    from tests.fixtures.databases import fresh_postgres_database

    url = fresh_postgres_database(postgres_url)
    load_legacy_store(url)
    refused = tsunagu(tmp_path, url, "up")
    assert refused.returncode == 2, refused.stderr[-2000:]
    assert f"`{UPGRADE_COMMAND}`" in refused.stderr
    current = tsunagu(tmp_path, url, "db", "current")
    assert current.returncode == 1
    assert "store at none (the release before migrations)" in current.stdout

    upgraded = tsunagu(tmp_path, url, "db", "upgrade")
    assert upgraded.returncode == 0, upgraded.stderr[-2000:]
    assert f"upgraded from the release before migrations to {head_revision()}" in upgraded.stdout
    assert f"upgraded from empty to {head_revision(VAULT)}" in upgraded.stdout  # the vault's
    current = tsunagu(tmp_path, url, "db", "current")
    assert current.returncode == 0, current.stdout
    assert f"store at {head_revision()}, this release at {head_revision()} (current)" in (
        current.stdout
    )
    again = tsunagu(tmp_path, url, "db", "upgrade")
    assert f"already at revision {head_revision()}" in again.stdout


# -- the subject-key vault, a database of its own ---------------------------------------------


def vault_tables() -> MetaData:
    """The vault's tables as the code declares them."""
    return vault_module.subject_keys.metadata


def test_a_vault_created_by_its_migrations_matches_its_tables(vault_url: str) -> None:
    vault = SubjectVault.open_url(vault_url)
    try:
        assert differences(vault.engine, vault_tables(), VAULT) == []
        assert revisions(vault.engine, VAULT).state is StoreState.CURRENT
    finally:
        vault.close()


def test_a_vault_of_the_release_before_migrations_keeps_its_keys(vault_url: str) -> None:
    # That release's SubjectVault made exactly these tables itself (vault.py's tables are
    # unchanged since), then its secret row and a key per subject.
    plain = vault_engine(vault_url)
    vault_tables().create_all(plain)
    with plain.begin() as conn:
        conn.execute(vault_module.vault_secret.insert().values(id="tombstones", secret=b"s" * 32))
        conn.execute(
            vault_module.subject_keys.insert().values(
                subject_id="res-alice001", key=b"k" * 32, created_at=datetime.now(UTC)
            )
        )
    assert revisions(plain, VAULT).state is StoreState.LEGACY
    with pytest.raises(StoreBehindError, match=UPGRADE_COMMAND):
        SubjectVault.open_url(vault_url, upgrade=False)
    plain.dispose()

    vault = SubjectVault.open_url(vault_url)
    try:
        assert revisions(vault.engine, VAULT).current == head_revision(VAULT)
        key = vault.keys_for(["res-alice001"], create=False)["res-alice001"]
        assert key.ref == vault_module.blind_ref(b"k" * 32)  # the release's key, unchanged
        with vault.engine.connect() as conn:
            secret = conn.execute(text("SELECT secret FROM vault_secret")).scalar_one()
        assert bytes(secret) == b"s" * 32  # and its secret, not a new one
    finally:
        vault.close()


# -- data revisions -----------------------------------------------------------------------------


def test_standard_listings_stored_before_0005_get_their_town_and_status(store_url: str) -> None:
    listings = Listing.__table__  # type: ignore[attr-defined]
    engine = connect(store_url)
    try:
        with engine.begin() as conn:  # the store as the release with 0004 left it
            command.upgrade(_config(STORE, conn), "0004")
        now = datetime.now(UTC)
        standard = {"localGovernmentCode": "372081", "streetAddress": "仁尾町家の浦"}
        with engine.begin() as conn:  # two v2 listings as 0004's projection left them
            conn.execute(
                listings.insert(),
                [
                    {"listing_id": "prop-shown0001", "owner_id": "res-owner0001",
                     "publication": "一般へ公開", "updated_at": now,
                     "standard": {**standard, "vacantHouseListing": "一般へ公開"}},
                    {"listing_id": "prop-admin0001", "owner_id": "res-owner0001",
                     "publication": "管理者のみ閲覧", "updated_at": now,
                     "standard": {**standard, "vacantHouseListing": "管理者のみ閲覧"}},
                ],
            )  # fmt: skip
        assert revisions(engine).state is StoreState.BEHIND
        upgrade(engine)
        with engine.connect() as conn:
            rows = conn.execute(
                listings.select().with_only_columns(
                    listings.c.listing_id, listings.c.town, listings.c.status
                )
            ).all()
        assert sorted(map(tuple, rows)) == [
            ("prop-admin0001", "nio", "withdrawn"),
            ("prop-shown0001", "nio", "available"),
        ]
    finally:
        engine.dispose()
