"""The audit log's tables (SQLAlchemy Core, on their own metadata: the log is not a projection).

* ``audit_entries``     one row per entry, append-only; ``seq`` 1, 2, 3, … without gaps
* ``audit_checkpoints`` a signed (seq, hash) every N entries or T seconds
* ``audit_head``        one row: the last entry and the last checkpoint. Appenders lock it
                        (PostgreSQL ``FOR UPDATE``; SQLite ``BEGIN IMMEDIATE`` locks the file)
                        so the chain stays linear across processes, and verification compares
                        the entries with it to see a truncated tail.
"""

from __future__ import annotations

import time

from sqlalchemy import (
    BigInteger,
    Column,
    Engine,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    inspect,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from broker.audit.entries import GENESIS
from broker.store.database import create_all_racing

metadata = MetaData()

entries = Table(
    "audit_entries",
    metadata,
    Column("seq", BigInteger, primary_key=True, autoincrement=False),
    Column("at", String(32), nullable=False),
    Column("kind", String(32), nullable=False),
    Column("actor", String(200), nullable=False),
    Column("subject_ref", String(64), nullable=True),
    # Canonical JSON text, not a JSON column: PostgreSQL's jsonb would re-encode numbers and
    # keys, and the hash is over these exact fields.
    Column("fields", Text, nullable=False),
    Column("prev_hash", String(64), nullable=False),
    Column("hash", String(64), nullable=False),
    Index("ix_audit_entries_subject_ref", "subject_ref"),
    Index("ix_audit_entries_kind_at", "kind", "at"),
)

checkpoints = Table(
    "audit_checkpoints",
    metadata,
    Column("seq", BigInteger, primary_key=True, autoincrement=False),
    Column("hash", String(64), nullable=False),
    Column("at", String(32), nullable=False),
    Column("signature", Text, nullable=False),  # compact JWS, EdDSA, kid in the header
)

head = Table(
    "audit_head",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("seq", BigInteger, nullable=False),
    Column("hash", String(64), nullable=False),
    Column("checkpoint_seq", BigInteger, nullable=False),
    Column("checkpoint_hash", String(64), nullable=False),
    Column("checkpoint_time", Float, nullable=False),  # POSIX seconds, for the T-second rule
)

HEAD_ID = 1


def create_tables(engine: Engine) -> None:
    """Create the audit tables and the head row if they are missing (safe to race)."""
    create_all_racing(engine, metadata)
    row = {
        "id": HEAD_ID,
        "seq": 0,
        "hash": GENESIS,
        "checkpoint_seq": 0,
        "checkpoint_hash": GENESIS,
        "checkpoint_time": time.time(),
    }
    # ON CONFLICT DO NOTHING: another process may insert the head row at the same moment.
    stmt = (
        sqlite_insert(head).values(row).on_conflict_do_nothing()
        if engine.dialect.name == "sqlite"
        else pg_insert(head).values(row).on_conflict_do_nothing()
    )
    with engine.begin() as conn:
        conn.execute(stmt)


def has_tables(engine: Engine) -> bool:
    """Whether the store holds an audit log."""
    names = set(inspect(engine).get_table_names())
    return {entries.name, checkpoints.name, head.name} <= names
