"""Tampering with the stored log is caught by ``tsunagu audit verify``, naming the first bad
seq and why (exit 1); an untouched log verifies (exit 0)."""

from __future__ import annotations

import json
from pathlib import Path

import jwt
import pytest
from sqlalchemy import Engine, text

from broker.audit import AuditLog, ProblemKind, verify_store
from broker.audit.checkpoints import ISSUER, MEDIA_TYPE
from consent.keys import KeyRing, SigningKey
from tests.audit.conftest import run_cli, sample_entries


@pytest.fixture
def filled(audit: AuditLog, engine: Engine) -> Engine:
    """35 entries; checkpoints at 10, 20 and 30."""
    audit.append_many(sample_entries(35))
    return engine


def _sql(engine: Engine, *statements: str) -> None:
    with engine.begin() as conn:
        for statement in statements:
            conn.execute(text(statement))


def _verify(engine: Engine, data_dir: Path, *extra: str) -> tuple[int, str]:
    url = engine.url.render_as_string(hide_password=False)
    done = run_cli("verify", "--store", url, *extra, data_dir=data_dir)
    return done.returncode, done.stdout + done.stderr


def test_an_untouched_log_verifies(filled: Engine, data_dir: Path) -> None:
    code, out = _verify(filled, data_dir)

    assert code == 0, out
    assert "35 entries" in out and "3 checkpoints" in out


def test_an_edited_entry_is_caught(filled: Engine, data_dir: Path) -> None:
    _sql(
        filled,
        """UPDATE audit_entries SET fields = '{"action":"nothing","target":"x"}' WHERE seq = 12""",
    )

    code, out = _verify(filled, data_dir)

    assert code == 1
    assert "seq 12: edited" in out


def test_an_edited_actor_is_caught(filled: Engine, data_dir: Path) -> None:
    _sql(filled, "UPDATE audit_entries SET actor = 'someone-else' WHERE seq = 5")

    code, out = _verify(filled, data_dir)

    assert (code, "seq 5: edited" in out) == (1, True), out


def test_an_entry_edited_and_rehashed_breaks_the_next_link(filled: Engine, keys: KeyRing) -> None:
    # Recomputing the edited entry's hash is not enough: the next entry names the old one.
    from broker.audit.entries import entry_hash

    fields = '{"action":"nothing","target":"x"}'
    with filled.connect() as conn:
        row = conn.execute(text("SELECT * FROM audit_entries WHERE seq = 12")).one()
    digest = entry_hash(12, row.at, row.kind, row.actor, row.subject_ref, fields, row.prev_hash)
    _sql(filled, f"UPDATE audit_entries SET fields = '{fields}', hash = '{digest}' WHERE seq = 12")

    problem = verify_store(filled, keys.jwks()).problem

    assert problem is not None and (problem.seq, problem.kind) == (13, ProblemKind.REORDERED)


def test_a_deleted_entry_is_caught(filled: Engine, data_dir: Path) -> None:
    _sql(filled, "DELETE FROM audit_entries WHERE seq = 17")

    code, out = _verify(filled, data_dir)

    assert code == 1
    assert "seq 17: missing" in out


def test_a_reordered_pair_is_caught(filled: Engine, data_dir: Path) -> None:
    _sql(
        filled,
        "UPDATE audit_entries SET seq = -1 WHERE seq = 14",
        "UPDATE audit_entries SET seq = 14 WHERE seq = 15",
        "UPDATE audit_entries SET seq = 15 WHERE seq = -1",
    )

    code, out = _verify(filled, data_dir)

    assert code == 1
    assert "seq 14: reordered" in out


def test_a_tail_truncated_below_a_checkpoint_is_caught(filled: Engine, data_dir: Path) -> None:
    # Even with the head moved back, checkpoint 30 still covers the deleted entries.
    _sql(
        filled,
        "DELETE FROM audit_entries WHERE seq > 24",
        "UPDATE audit_head SET seq = 24, hash = (SELECT hash FROM audit_entries WHERE seq = 24)",
    )

    code, out = _verify(filled, data_dir)

    assert code == 1
    assert "seq 25: truncated" in out and "checkpoint 30" in out


def test_a_tail_truncated_after_the_last_checkpoint_is_caught_by_the_head(
    filled: Engine, data_dir: Path
) -> None:
    _sql(filled, "DELETE FROM audit_entries WHERE seq > 32")

    code, out = _verify(filled, data_dir)

    assert code == 1
    assert "seq 33: truncated" in out


def test_a_tail_cut_with_its_checkpoints_and_head_needs_outside_knowledge(
    filled: Engine, data_dir: Path
) -> None:
    # The documented limit: someone who rewrites the head and deletes the checkpoints after
    # the cut leaves a consistent shorter log. Only a seq the auditor remembers shows it.
    _sql(
        filled,
        "DELETE FROM audit_entries WHERE seq > 22",
        "DELETE FROM audit_checkpoints WHERE seq > 22",
        "UPDATE audit_head SET seq = 22, hash = (SELECT hash FROM audit_entries WHERE seq = 22),"
        " checkpoint_seq = 20,"
        " checkpoint_hash = (SELECT hash FROM audit_entries WHERE seq = 20)",
    )

    assert _verify(filled, data_dir)[0] == 0
    code, out = _verify(filled, data_dir, "--expect-seq", "35")
    assert code == 1
    assert "seq 23: truncated" in out


def _forged(key: SigningKey, seq: int, hash_: str, *, kid: str | None = None) -> str:
    claims = {"iss": ISSUER, "iat": 0, "seq": seq, "hash": hash_, "at": "x", "prev_seq": 10}
    claims["prev_hash"] = "0" * 64
    headers = {"kid": kid or key.kid, "typ": MEDIA_TYPE}
    return jwt.encode(claims, key.private_key, algorithm="EdDSA", headers=headers)


@pytest.mark.parametrize("spoof_kid", [False, True], ids=["other-kid", "platform-kid"])
def test_a_checkpoint_signed_by_another_key_is_caught(
    filled: Engine, data_dir: Path, keys: KeyRing, spoof_kid: bool
) -> None:
    with filled.connect() as conn:
        hash_ = conn.execute(text("SELECT hash FROM audit_entries WHERE seq = 20")).scalar_one()
    attacker = SigningKey.generate()
    forged = _forged(attacker, 20, hash_, kid=keys.signing_key.kid if spoof_kid else None)
    _sql(filled, f"UPDATE audit_checkpoints SET signature = '{forged}' WHERE seq = 20")

    code, out = _verify(filled, data_dir)

    assert code == 1
    assert "seq 20: forged_checkpoint" in out


def test_a_checkpoint_moved_to_another_entry_is_caught(filled: Engine, data_dir: Path) -> None:
    # A genuine signature, but over another position of the chain.
    _sql(filled, "UPDATE audit_checkpoints SET seq = 21 WHERE seq = 20")

    code, out = _verify(filled, data_dir)

    assert code == 1
    assert "seq 21: forged_checkpoint" in out


def test_a_deleted_checkpoint_is_caught_at_the_next(filled: Engine, data_dir: Path) -> None:
    _sql(filled, "DELETE FROM audit_checkpoints WHERE seq = 20")

    code, out = _verify(filled, data_dir)

    assert code == 1
    assert "seq 30: forged_checkpoint" in out


def test_a_jwks_without_the_platform_key_fails_every_checkpoint(
    filled: Engine, data_dir: Path, tmp_path: Path
) -> None:
    other = tmp_path / "other-jwks.json"
    other.write_text(json.dumps({"keys": [SigningKey.generate().public_jwk()]}))

    code, out = _verify(filled, data_dir, "--jwks", str(other))

    assert code == 1
    assert "seq 10: forged_checkpoint" in out


def test_usage_errors_exit_2(data_dir: Path, tmp_path: Path, keys: KeyRing) -> None:
    empty = f"sqlite:///{tmp_path / 'empty.db'}"

    assert run_cli("verify", "--store", empty, data_dir=data_dir).returncode == 2
    assert run_cli("verify", "--export", str(tmp_path / "nope"), data_dir=data_dir).returncode == 2
    assert run_cli("verify", "--bogus", data_dir=data_dir).returncode == 2


def test_a_deleted_head_row_is_reported(filled: Engine, data_dir: Path) -> None:
    _sql(filled, "DELETE FROM audit_head")

    code, out = _verify(filled, data_dir)

    assert code == 1
    assert "head_mismatch" in out and "audit_head row is missing" in out
