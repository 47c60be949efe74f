"""Appending: a linear hash chain, signed checkpoints, fields checked, no personal data."""

from __future__ import annotations

import time
from pathlib import Path

import orjson
import pytest
from sqlalchemy import Connection, Engine, select, text

from broker.audit import AuditLog, EntryFieldError, EntryKind, NewEntry, verify_store
from broker.audit import tables as t
from broker.audit.entries import GENESIS, SubjectRefs, entry_hash
from consent.keys import KeyRing
from tests.audit.conftest import RESIDENT, sample_entries


def test_appended_entries_verify(audit: AuditLog, engine: Engine, keys: KeyRing) -> None:
    audit.append_many(sample_entries(35))

    result = verify_store(engine, keys.jwks())

    assert result.ok, result.problem
    assert (result.entries, result.last_seq) == (35, 35)
    assert result.checkpoints == 3  # at 10, 20 and 30
    assert result.unsigned_tail == 5


def test_each_entry_hashes_its_contents_and_the_previous_hash(
    audit: AuditLog, engine: Engine
) -> None:
    audit.append_many(sample_entries(3))

    with engine.connect() as conn:
        rows = conn.execute(select(t.entries).order_by(t.entries.c.seq)).all()
    assert [r.seq for r in rows] == [1, 2, 3]
    assert rows[0].prev_hash == GENESIS
    assert rows[1].prev_hash == rows[0].hash and rows[2].prev_hash == rows[1].hash
    for r in rows:  # anyone can recompute it from the row alone
        assert r.hash == entry_hash(
            r.seq, r.at, r.kind, r.actor, r.subject_ref, r.fields, r.prev_hash
        )


def test_a_checkpoint_is_signed_exactly_every_n_entries(audit: AuditLog, engine: Engine) -> None:
    audit.append_many(sample_entries(7))
    audit.append_many(sample_entries(18))  # crosses 10 and 20 within one batch

    with engine.connect() as conn:
        cps = conn.execute(select(t.checkpoints.c.seq).order_by(t.checkpoints.c.seq)).scalars()
        assert list(cps) == [10, 20]


def test_checkpoint_signs_the_head_once(audit: AuditLog, engine: Engine, keys: KeyRing) -> None:
    audit.append_many(sample_entries(4))

    made = audit.checkpoint()

    assert made is not None and made.seq == 4
    assert audit.checkpoint() is None  # nothing new to sign
    assert verify_store(engine, keys.jwks()).unsigned_tail == 0


def test_an_old_checkpoint_is_renewed_at_the_end_of_the_next_batch(
    engine: Engine, keys: KeyRing
) -> None:
    with AuditLog(engine, keys, checkpoint_interval_s=0.0, background=False) as audit:
        audit.append_many(sample_entries(3))

    result = verify_store(engine, keys.jwks())
    assert result.last_checkpoint_seq == 3


def test_queued_entries_are_written_by_the_flusher(engine: Engine, keys: KeyRing) -> None:
    with AuditLog(engine, keys, flush_interval_s=0.01) as audit:
        audit.append(EntryKind.ADMIN_CHANGE, actor="ops", action="schema_registered", target="x")
        deadline = time.monotonic() + 30
        while _count(engine) == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert _count(engine) == 1


def test_closing_writes_what_is_queued(engine: Engine, keys: KeyRing) -> None:
    audit = AuditLog(engine, keys, flush_interval_s=3600)
    for i in range(5):
        audit.append(EntryKind.ADMIN_CHANGE, actor="ops", action="rotate", target=str(i))

    audit.close()

    assert _count(engine) == 5


def test_append_now_writes_the_queue_before_its_entry(audit: AuditLog, engine: Engine) -> None:
    audit.append(EntryKind.ADMIN_CHANGE, actor="ops", action="first", target="a")

    seq = audit.append_now(
        EntryKind.PARTNER_READ,
        actor="ptn-mitoyobus01",
        partner="ptn-mitoyobus01",
        purpose="transport.planning",
        categories=["transport.trips"],
    )

    assert seq == 2
    with engine.connect() as conn:
        kinds = conn.execute(select(t.entries.c.kind).order_by(t.entries.c.seq)).scalars()
        assert list(kinds) == ["admin_change", "partner_read"]


def test_entries_keep_when_they_happened(audit: AuditLog, engine: Engine) -> None:
    from datetime import UTC, datetime

    moment = datetime(2026, 4, 1, 9, 30, 0, 123456, tzinfo=UTC)
    audit.append_many(
        [NewEntry(EntryKind.ADMIN_CHANGE, "ops", {"action": "a", "target": "b"}, at=moment)]
    )

    with engine.connect() as conn:
        assert conn.execute(select(t.entries.c.at)).scalar() == "2026-04-01T09:30:00.123456Z"


@pytest.mark.parametrize(
    ("kind", "fields", "subject", "complaint"),
    [
        (EntryKind.ADMIN_CHANGE, {"action": "a", "target": "b", "name": "山田"}, None, "unknown"),
        (EntryKind.PUBLISH_BATCH, {"topic": "transport"}, None, "missing"),
        (EntryKind.ERASURE, {"erasure_id": "era-1"}, RESIDENT, "never name a subject"),
        (
            EntryKind.DECISION,
            {"allowed": True, "reason": "allowed", "partner": "p", "purpose": "x", "category": "y"},
            None,
            "subject is required",
        ),
        (EntryKind.TOKEN_ISSUED, {"role": "resident", "sub": RESIDENT}, None, "personal"),
    ],
)
def test_fields_outside_the_kinds_list_are_refused(
    audit: AuditLog,
    kind: EntryKind,
    fields: dict[str, object],
    subject: str | None,
    complaint: str,
) -> None:
    with pytest.raises(EntryFieldError, match=complaint):
        audit.append(kind, actor="ops", subject=subject, **fields)
    with pytest.raises(EntryFieldError, match=complaint):
        audit.append_many([NewEntry(kind, "ops", fields, subject)])


def test_no_subject_id_is_stored_only_its_keyed_reference(
    audit: AuditLog, engine: Engine, data_dir: Path
) -> None:
    audit.append_many(sample_entries(8))
    audit.append_now(EntryKind.TOKEN_ISSUED, actor="issuer", subject=RESIDENT, role="resident")

    with engine.connect() as conn:
        everything = [
            orjson.dumps([list(r) for r in conn.execute(select(table)).all()]).decode()
            for table in (t.entries, t.checkpoints, t.head)
        ]
    assert not any(RESIDENT in dump for dump in everything)
    # The reference is the HMAC under the audit key, kept beside the platform keys (0600).
    key_file = data_dir / "keys" / "audit.key"
    assert key_file.stat().st_mode & 0o077 == 0
    ref = SubjectRefs(key_file.read_bytes()).of(RESIDENT)
    assert ref != SubjectRefs(b"k" * 32).of(RESIDENT)  # meaningless without the key
    assert [e.kind for e in audit.entries_of(RESIDENT)] == ["partner_read"] * 2 + ["token_issued"]
    assert {e.subject_ref for e in audit.entries_of(RESIDENT)} == {ref}


def test_erasing_a_resident_leaves_the_chain_verifiable(
    audit: AuditLog, engine: Engine, keys: KeyRing
) -> None:
    audit.append_many(sample_entries(12))

    audit.append_now(
        EntryKind.ERASURE,
        actor="subject",
        erasure_id="era-0001",
        consents_revoked=2,
        key_destroyed=True,
        rows_deleted={"trips": 40},
    )

    assert verify_store(engine, keys.jwks()).ok


def test_a_lookup_by_subject_ref_alone_is_indexed(engine: Engine, audit: AuditLog) -> None:
    # The tracker's index leads with subject_ref (its pages: tests/audit/test_tracker.py).
    with engine.connect() as conn:
        if engine.dialect.name == "sqlite":
            plan = conn.execute(
                text("EXPLAIN QUERY PLAN SELECT seq FROM audit_entries WHERE subject_ref = 'x'")
            ).all()
            assert "ix_audit_entries_tracker" in str(plan)
        else:
            names = conn.execute(
                text("SELECT indexname FROM pg_indexes WHERE tablename = 'audit_entries'")
            ).scalars()
            assert "ix_audit_entries_tracker" in set(names)


def _count(engine: Engine) -> int:
    with engine.connect() as conn:
        return len(conn.execute(select(t.entries.c.seq)).all())


def test_a_failed_flush_keeps_the_queue_in_order(
    audit: AuditLog, engine: Engine, keys: KeyRing, monkeypatch: pytest.MonkeyPatch
) -> None:
    for i in range(3):
        audit.append(EntryKind.ADMIN_CHANGE, actor="ops", action="a", target=str(i))
    real_write = audit._write

    def store_down(batch: object, wait: bool = True) -> int:
        raise OSError("the store is down")

    monkeypatch.setattr(audit, "_write", store_down)
    with pytest.raises(OSError):
        audit.flush()
    monkeypatch.setattr(audit, "_write", real_write)
    audit.append(EntryKind.ADMIN_CHANGE, actor="ops", action="a", target="3")

    audit.flush()

    with engine.connect() as conn:
        targets = conn.execute(select(t.entries.c.fields).order_by(t.entries.c.seq)).scalars()
        assert [orjson.loads(f)["target"] for f in targets] == ["0", "1", "2", "3"]
    assert verify_store(engine, keys.jwks()).ok


def _hold_the_head(conn: Connection, engine: Engine) -> None:
    """Take the audit head as another appender would, until ``conn`` ends its transaction."""
    if engine.dialect.name == "sqlite":
        conn.exec_driver_sql("BEGIN IMMEDIATE")
    else:
        conn.execute(select(t.head).with_for_update()).one()


def test_try_flush_writes_what_is_queued_when_no_one_holds_the_log(
    audit: AuditLog, engine: Engine, keys: KeyRing
) -> None:
    tickets = [
        audit.append_durable(
            EntryKind.ADMIN_CHANGE, actor="ops", action="a", target=str(i), wake=False
        )
        for i in range(3)
    ]

    assert audit.try_flush() is True

    assert [ticket.result(timeout=0) for ticket in tickets] == [1, 2, 3]
    assert verify_store(engine, keys.jwks()).entries == 3


def test_try_flush_gives_way_to_another_writer_and_loses_nothing(
    audit: AuditLog, engine: Engine, keys: KeyRing
) -> None:
    ticket = audit.append_durable(
        EntryKind.ADMIN_CHANGE, actor="ops", action="a", target="x", wake=False
    )
    with engine.connect() as other:
        _hold_the_head(other, engine)
        # Refused at once rather than waiting out the busy timeout (30 s on SQLite).
        assert audit.try_flush() is False
        assert not ticket.done()
        other.rollback()

    audit.flush()  # the ordinary writer, which waits for the lock

    assert ticket.result(timeout=0) == 1
    result = verify_store(engine, keys.jwks())
    assert result.ok and result.entries == 1
