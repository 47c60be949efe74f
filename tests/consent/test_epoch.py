"""The consent epoch: a revocation committed by one process holds in another from its next
read, before the bus has told that process which cached consent it made stale."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine

from consent.changes import ChangeScope, ConsentChange
from consent.decisions import DecisionPoint, DecisionReason
from consent.errors import PartnerNotRegisteredError, ReadNotApprovedError, UnknownPurposeError
from consent.service import ConsentService
from tests.consent.world import (
    ALICE,
    BUS_FIRM,
    CATALOGUE,
    PLANNING,
    STRANGER,
    TRIPS,
    days,
    now,
)


def _grant(service: ConsentService) -> str:
    return service.grant(ALICE, BUS_FIRM, PLANNING, [TRIPS], expires_at=now() + days(30)).id


def _change(epoch: int) -> ConsentChange:
    return ConsentChange(
        ChangeScope.SUBJECT, "res-someone", "revoked", now().isoformat(), epoch=epoch
    )


def test_another_processs_revocation_holds_from_the_next_synced_read(
    engine: Engine, service: ConsentService
) -> None:
    consent = _grant(service)
    elsewhere = DecisionPoint(engine, CATALOGUE)  # another process: no bus, no hooks
    assert elsewhere.decide(BUS_FIRM, PLANNING, TRIPS, ALICE).allowed  # now cached there
    service.revoke(ALICE, consent)
    # Without the epoch the cache would still allow (the bus has not arrived): the race.
    assert elsewhere.decide(BUS_FIRM, PLANNING, TRIPS, ALICE).allowed
    elsewhere.cache.sync()
    refused = elsewhere.decide(BUS_FIRM, PLANNING, TRIPS, ALICE)
    assert not refused.allowed and refused.reason is DecisionReason.REVOKED
    assert elsewhere.cache.resyncs == 1


def test_a_process_that_heard_every_change_keeps_its_cache(
    engine: Engine, service: ConsentService, decision_point: DecisionPoint
) -> None:
    consent = _grant(service)
    service.revoke(ALICE, consent)  # applied here synchronously, with its epoch
    decision_point.decide(BUS_FIRM, PLANNING, TRIPS, ALICE)
    loads = decision_point.cache.loads
    decision_point.cache.sync()
    decision_point.decide(BUS_FIRM, PLANNING, TRIPS, ALICE)
    assert decision_point.cache.resyncs == 0 and decision_point.cache.loads == loads


def test_changes_heard_out_of_order_count_only_once_the_gap_is_filled(engine: Engine) -> None:
    point = DecisionPoint(engine, CATALOGUE)
    start = point.cache.applied_epoch
    point.cache.apply(_change(start + 2))
    point.cache.apply(_change(start + 3))
    assert point.cache.applied_epoch == start  # start + 1 has not arrived: still behind
    point.cache.apply(_change(start + 1))
    assert point.cache.applied_epoch == start + 3


def test_changes_carry_their_epoch_over_the_bus(service: ConsentService) -> None:
    consent = _grant(service)
    revoked = ConsentChange.from_value(
        {
            "scope": "subject",
            "key": ALICE,
            "event": "revoked",
            "at": now().isoformat(),
            "consent_id": consent,
            "epoch": 7,
        }
    )
    assert revoked.epoch == 7
    assert ConsentChange.from_value({**revoked.to_value(), "epoch": None}).epoch is None


def test_a_store_that_cannot_be_read_drops_the_cache_and_the_read_is_denied(
    tmp_path: Path,
) -> None:
    broken = DecisionPoint(create_engine(f"sqlite:///{tmp_path / 'empty.db'}"), CATALOGUE)
    broken.cache.sync()  # no epoch to read: no error, and nothing cached is trusted
    decision = broken.decide(BUS_FIRM, PLANNING, TRIPS, ALICE)
    assert (decision.allowed, decision.reason) == (False, DecisionReason.UNAVAILABLE)
    assert broken.cache.resyncs == 1


# -- the one purpose check of every read path --------------------------------------------------


def test_a_purpose_withdrawn_by_another_process_refuses_the_next_read_check(
    engine: Engine, service: ConsentService
) -> None:
    elsewhere = DecisionPoint(engine, CATALOGUE)  # another process: no bus, no hooks
    elsewhere.check_purpose(BUS_FIRM, PLANNING)  # approved, and now cached there
    service.withdraw_purpose(BUS_FIRM, PLANNING, withdrawn_by="city-ops")
    with pytest.raises(ReadNotApprovedError, match="not approved for purpose"):
        elsewhere.check_purpose(BUS_FIRM, PLANNING)


def test_the_purpose_check_refuses_an_unknown_purpose_and_an_unregistered_partner(
    decision_point: DecisionPoint,
) -> None:
    with pytest.raises(UnknownPurposeError, match="not in the purpose catalogue"):
        decision_point.check_purpose(BUS_FIRM, "spying")
    with pytest.raises(PartnerNotRegisteredError, match="not registered"):
        decision_point.check_purpose(STRANGER, PLANNING)
