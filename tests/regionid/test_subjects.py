"""Pairwise subjects, password hashes and proofing statements, each rule with its refusal."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from broker.regionid.passwords import check_password, hash_password
from broker.regionid.proofing import ProofedIdentity, Proofing, wants_verified_claims
from broker.regionid.subjects import PairwiseSubjects

SECRET = b"k" * 32


def test_a_subject_is_stable_per_sector_and_differs_between_sectors() -> None:
    subjects = PairwiseSubjects(SECRET)
    assert subjects.subject("bus.example.jp", "acct-1") == subjects.subject(
        "bus.example.jp", "acct-1"
    )
    assert subjects.subject("bus.example.jp", "acct-1") != subjects.subject(
        "super.example.jp", "acct-1"
    )
    assert subjects.subject("bus.example.jp", "acct-1") != subjects.subject(
        "bus.example.jp", "acct-2"
    )


def test_the_sector_and_account_cannot_be_shifted_into_each_other() -> None:
    subjects = PairwiseSubjects(SECRET)
    assert subjects.subject("a.b", "c") != subjects.subject("a", "b.c")


def test_another_secret_gives_other_subjects_and_a_short_one_is_refused() -> None:
    assert PairwiseSubjects(SECRET).subject("s", "a") != PairwiseSubjects(b"j" * 32).subject(
        "s", "a"
    )
    with pytest.raises(ValueError, match="32 bytes"):
        PairwiseSubjects(b"short")


def test_a_password_checks_against_its_hash_and_no_other() -> None:
    stored = hash_password("correct horse")
    assert stored.startswith("scrypt$") and "correct horse" not in stored
    assert check_password("correct horse", stored)
    assert not check_password("wrong horse", stored)
    assert not check_password("correct horse", "md5$x")


def test_a_proofed_resident_has_verified_claims_and_a_self_asserted_one_none() -> None:
    at = datetime(2026, 4, 1, tzinfo=UTC)
    card = ProofedIdentity(Proofing.MYNUMBER_CARD, at, "三豊 花子", "1956-04-01")
    verified = card.verified_claims()
    assert verified is not None
    assert verified["verification"]["evidence"][0]["type"] == "electronic_signature"
    counter = ProofedIdentity(Proofing.COUNTER, at, "三豊 花子", None).verified_claims()
    assert counter is not None and counter["verification"]["evidence"][0]["type"] == "document"
    assert (
        ProofedIdentity(Proofing.SELF_ASSERTED, None, "三豊 花子", None).verified_claims() is None
    )
    assert card.acr != ProofedIdentity(Proofing.SELF_ASSERTED, None, None, None).acr


def test_verified_claims_are_wanted_only_where_the_claims_parameter_asks() -> None:
    asked = {"userinfo": {"verified_claims": None}}
    assert wants_verified_claims(asked, "userinfo")
    assert not wants_verified_claims(asked, "id_token")
    assert not wants_verified_claims(None, "userinfo")
