"""The subject-key vault on SQLite and PostgreSQL: one key per subject, sealing, destruction."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from sqlalchemy import select

from consent.vault import (
    SealedDataError,
    SubjectErasedError,
    SubjectVault,
    blind_ref,
    subject_keys,
)
from tests.store.world import ALICE, BOB, vault, vault_url

__all__ = ["vault", "vault_url"]  # the fixtures this module uses


def test_a_subject_has_one_key_whoever_asks_first(vault_url: str) -> None:
    vaults = [SubjectVault.open_url(vault_url) for _ in range(4)]
    try:
        with ThreadPoolExecutor(4) as pool:
            refs = list(pool.map(lambda v: v.keys_for([ALICE], create=True)[ALICE].ref, vaults))
    finally:
        for v in vaults:
            v.close()
    assert len(set(refs)) == 1


def test_the_row_reference_is_an_hmac_of_the_key_not_of_the_id(vault: SubjectVault) -> None:
    ref = vault.keys_for([ALICE], create=True)[ALICE].ref
    with vault.engine.connect() as conn:
        key = conn.execute(select(subject_keys.c.key)).scalar_one()
    assert ref == blind_ref(bytes(key))
    assert len(ref) == 32 and ALICE not in ref
    assert vault.ref(ALICE) == ref
    assert vault.ref(BOB) is None  # no key is made by asking for a reference


def test_sealed_fields_open_only_under_their_subjects_key(vault: SubjectVault) -> None:
    sealed = vault.seal(ALICE, {"merchant_name": "仁尾うどん本舗", "lat": 34.2313})
    assert vault.open(ALICE, sealed) == {"merchant_name": "仁尾うどん本舗", "lat": 34.2313}
    assert "仁尾うどん本舗".encode() not in sealed
    vault.seal(BOB, {})
    with pytest.raises(SealedDataError):
        vault.open(BOB, sealed)  # moved to another subject's row: does not authenticate
    tampered = sealed[:-1] + bytes([sealed[-1] ^ 1])
    with pytest.raises(SealedDataError):
        vault.open(ALICE, tampered)


def test_sealing_twice_gives_different_bytes(vault: SubjectVault) -> None:
    assert vault.seal(ALICE, {"steps": 9120}) != vault.seal(ALICE, {"steps": 9120})


def test_a_destroyed_key_is_never_made_again(vault: SubjectVault) -> None:
    sealed = vault.seal(ALICE, {"steps": 9120})
    assert vault.destroy(ALICE) is True
    assert vault.keys_for([ALICE, BOB], create=True).keys() == {BOB}
    with pytest.raises(SubjectErasedError) as raised:
        vault.seal(ALICE, {"steps": 1})
    assert raised.value.code == "subject_erased"
    with pytest.raises(SubjectErasedError):
        vault.open(ALICE, sealed)
    assert vault.destroy(ALICE) is False  # already gone
    with vault.engine.connect() as conn:
        rows = conn.execute(select(subject_keys)).all()
    assert ALICE not in {r.subject_id for r in rows}  # the vault keeps no erased id in clear
    (tombstone,) = [r for r in rows if r.subject_id.startswith("erased-")]
    assert tombstone.key is None and tombstone.destroyed_at is not None


def test_a_subject_erased_before_ever_having_a_key_never_gets_one(vault: SubjectVault) -> None:
    assert vault.destroy(ALICE) is False
    assert vault.keys_for([ALICE], create=True) == {}


def test_another_process_stops_using_a_destroyed_key_within_its_max_age(vault_url: str) -> None:
    now = [0.0]
    other = SubjectVault.open_url(vault_url, max_age_s=60.0, clock=lambda: now[0])
    here = SubjectVault.open_url(vault_url)
    try:
        assert ALICE in other.keys_for([ALICE], create=True)
        here.destroy(ALICE)
        now[0] = 59.0
        assert ALICE in other.keys_for([ALICE], create=True)  # its cached copy, still trusted
        now[0] = 60.0
        assert other.keys_for([ALICE], create=True) == {}
    finally:
        other.close()
        here.close()


def test_keys_come_from_the_cache_until_evicted(vault: SubjectVault) -> None:
    vault.keys_for([ALICE, BOB], create=True)
    loads = vault.loads
    vault.keys_for([ALICE, BOB], create=True)
    assert vault.loads == loads
    vault.evict(ALICE)
    vault.keys_for([ALICE, BOB], create=True)
    assert vault.loads == loads + 1


def test_destroying_a_key_waits_for_a_batch_sealing_with_it(vault: SubjectVault) -> None:
    key = vault.keys_for([ALICE], create=True)[ALICE]
    destroyed = threading.Event()

    def erase() -> None:
        vault.destroy(ALICE)
        destroyed.set()

    with vault.sealing():
        eraser = threading.Thread(target=erase)
        eraser.start()
        eraser.join(0.3)
        assert not destroyed.is_set()  # the batch that holds the key commits first
        key.seal({"steps": 1})
    eraser.join(10)
    assert destroyed.is_set()
    assert vault.ref(ALICE) is None


def test_the_sqlite_vault_file_keeps_no_trace_of_a_destroyed_key(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "vault.db"
    vault = SubjectVault.open_url(f"sqlite:///{path}")
    try:
        vault.keys_for([ALICE, BOB], create=True)
        with vault.engine.connect() as conn:
            key = bytes(
                conn.execute(
                    select(subject_keys.c.key).where(subject_keys.c.subject_id == ALICE)
                ).scalar_one()
            )
        assert key in path.read_bytes()
        vault.destroy(ALICE)
    finally:
        vault.close()
    files = list(path.parent.iterdir())
    assert all(key not in f.read_bytes() for f in files), files
    assert path.stat().st_mode & 0o077 == 0  # the file is the owner's only
