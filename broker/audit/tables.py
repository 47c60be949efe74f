"""The audit log's tables (SQLAlchemy Core, on their own metadata: the log is not a projection;
created, with the head row, by the store's migrations).

* ``audit_entries``     one row per entry, append-only; ``seq`` 1, 2, 3, … without gaps
* ``audit_checkpoints`` a signed (seq, hash) every N entries or T seconds
* ``audit_head``        one row: the last entry and the last checkpoint. Appenders lock it
                        (PostgreSQL ``FOR UPDATE``; SQLite ``BEGIN IMMEDIATE`` locks the file)
                        so the chain stays linear across processes, and verification compares
                        the entries with it to see a truncated tail.
"""

from __future__ import annotations

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
    # The resident's tracker: one range scan per page, newest first, within a period
    # (broker/audit/tracker.py); it also serves every lookup by subject_ref alone.
    Index("ix_audit_entries_tracker", "subject_ref", "kind", "at", "seq"),
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


def has_tables(engine: Engine) -> bool:
    """Whether the store holds an audit log."""
    names = set(inspect(engine).get_table_names())
    return {entries.name, checkpoints.name, head.name} <= names
