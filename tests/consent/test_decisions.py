"""The decision point: default deny, one reason per refusal, the consent id, every decision
recorded, answers from a cache that every change invalidates, expiry without any job."""

from __future__ import annotations

import time
from datetime import datetime
from pathlib import Path

from prometheus_client import REGISTRY
from sqlalchemy import create_engine

from consent.decisions import Decision, DecisionPoint, DecisionReason, Outcome
from consent.service import ConsentService
from tests.consent.world import (
    ALICE,
    BOB,
    BUS_FIRM,
    CATALOGUE,
    DUAL_RESIDENCE,
    HEALTH,
    HEALTH_POINTS,
    HOUSING,
    INQUIRIES,
    OPERATION,
    PLANNING,
    STRANGER,
    TRIPS,
    VEHICLES,
    days,
    now,
)


def _grant_trips(
    service: ConsentService,
    *,
    expires_at: datetime | None = None,
    valid_from: datetime | None = None,
    data_from: datetime | None = None,
    data_to: datetime | None = None,
) -> str:
    """ALICE lets the bus firm use her trips for transport planning; returns the consent id."""
    return service.grant(
        ALICE,
        BUS_FIRM,
        PLANNING,
        [TRIPS],
        expires_at=expires_at or now() + days(30),
        valid_from=valid_from,
        data_from=data_from,
        data_to=data_to,
    ).id


def test_an_active_consent_covering_the_read_allows_it_and_names_the_consent(
    service: ConsentService, decision_point: DecisionPoint, recorded: list[Decision]
) -> None:
    consent_id = _grant_trips(service)
    decision = decision_point.decide(BUS_FIRM, PLANNING, TRIPS, ALICE)
    assert decision.allowed
    assert decision.reason is DecisionReason.ALLOWED
    assert decision.consent_id == consent_id
    assert (decision.partner, decision.purpose, decision.category, decision.subject) == (
        BUS_FIRM,
        PLANNING,
        TRIPS,
        ALICE,
    )
    assert recorded == [decision]


def test_without_any_consent_the_read_is_denied(
    service: ConsentService, decision_point: DecisionPoint
) -> None:
    decision = decision_point.decide(BUS_FIRM, PLANNING, TRIPS, ALICE)
    assert not decision.allowed
    assert decision.reason is DecisionReason.NO_CONSENT
    assert decision.consent_id is None


def test_one_residents_consent_says_nothing_about_another_resident(
    service: ConsentService, decision_point: DecisionPoint
) -> None:
    _grant_trips(service)
    assert decision_point.decide(BUS_FIRM, PLANNING, TRIPS, BOB).reason is DecisionReason.NO_CONSENT


def test_a_consent_for_one_purpose_does_not_allow_another_approved_purpose(
    service: ConsentService, decision_point: DecisionPoint
) -> None:
    _grant_trips(service)
    decision = decision_point.decide(BUS_FIRM, OPERATION, TRIPS, ALICE)
    assert decision.reason is DecisionReason.NO_CONSENT


def test_a_revoked_consent_is_refused_on_the_next_request(
    service: ConsentService, decision_point: DecisionPoint
) -> None:
    consent_id = _grant_trips(service)
    assert decision_point.decide(BUS_FIRM, PLANNING, TRIPS, ALICE).allowed  # now cached
    revoked = service.revoke(ALICE, consent_id)
    decision = decision_point.decide(BUS_FIRM, PLANNING, TRIPS, ALICE)
    assert not decision.allowed
    assert decision.reason is DecisionReason.REVOKED
    assert decision.consent_id == revoked.id


def test_a_consent_past_its_expiry_is_refused(
    service: ConsentService, decision_point: DecisionPoint
) -> None:
    consent_id = _grant_trips(service, expires_at=now() + days(30))
    decision = decision_point.decide(BUS_FIRM, PLANNING, TRIPS, ALICE, at=now() + days(31))
    assert not decision.allowed
    assert decision.reason is DecisionReason.EXPIRED
    assert decision.consent_id == consent_id


def test_expiry_needs_no_background_job_even_for_a_cached_consent(
    service: ConsentService, decision_point: DecisionPoint
) -> None:
    expires_at = now() + days(1 / 86400)  # one second
    _grant_trips(service, expires_at=expires_at)
    assert decision_point.decide(BUS_FIRM, PLANNING, TRIPS, ALICE).allowed
    loads = decision_point.cache.loads
    time.sleep(max(0.0, (expires_at - now()).total_seconds()) + 0.05)
    # No job ran, nothing was invalidated: the cached consent itself is judged by the clock.
    assert decision_point.decide(BUS_FIRM, PLANNING, TRIPS, ALICE).reason is DecisionReason.EXPIRED
    assert decision_point.cache.loads == loads


def test_a_paused_consent_is_refused_until_resumed(
    service: ConsentService, decision_point: DecisionPoint
) -> None:
    consent_id = _grant_trips(service)
    paused = service.pause(ALICE, consent_id)
    decision = decision_point.decide(BUS_FIRM, PLANNING, TRIPS, ALICE)
    assert (decision.allowed, decision.reason, decision.consent_id) == (
        False,
        DecisionReason.PAUSED,
        paused.id,
    )
    resumed = service.resume(ALICE, paused.id)
    decision = decision_point.decide(BUS_FIRM, PLANNING, TRIPS, ALICE)
    assert (decision.allowed, decision.consent_id) == (True, resumed.id)


def test_a_consent_before_its_valid_from_is_refused(
    service: ConsentService, decision_point: DecisionPoint
) -> None:
    start = now() + days(7)
    _grant_trips(service, valid_from=start, expires_at=start + days(30))
    decision = decision_point.decide(BUS_FIRM, PLANNING, TRIPS, ALICE)
    assert decision.reason is DecisionReason.NOT_YET_VALID
    assert decision_point.decide(BUS_FIRM, PLANNING, TRIPS, ALICE, at=start + days(1)).allowed


def test_a_purpose_the_partner_is_not_approved_for_is_refused(
    service: ConsentService, decision_point: DecisionPoint
) -> None:
    decision = decision_point.decide(BUS_FIRM, HEALTH, HEALTH_POINTS, ALICE)
    assert decision.reason is DecisionReason.PURPOSE_NOT_APPROVED


def test_withdrawing_the_approval_refuses_reads_under_existing_consents(
    service: ConsentService, decision_point: DecisionPoint
) -> None:
    _grant_trips(service)
    assert decision_point.decide(BUS_FIRM, PLANNING, TRIPS, ALICE).allowed
    service.withdraw_purpose(BUS_FIRM, PLANNING, withdrawn_by="mitoyo-city/kikaku-1")
    decision = decision_point.decide(BUS_FIRM, PLANNING, TRIPS, ALICE)
    assert decision.reason is DecisionReason.PURPOSE_NOT_APPROVED
    service.approve_purpose(BUS_FIRM, PLANNING, approved_by="mitoyo-city/kikaku-2")
    assert decision_point.decide(BUS_FIRM, PLANNING, TRIPS, ALICE).allowed


def test_an_unknown_partner_is_refused(
    service: ConsentService, decision_point: DecisionPoint
) -> None:
    decision = decision_point.decide(STRANGER, PLANNING, TRIPS, ALICE)
    assert decision.reason is DecisionReason.PARTNER_UNKNOWN


def test_a_category_the_consent_does_not_cover_is_refused(
    service: ConsentService, decision_point: DecisionPoint
) -> None:
    service.grant(ALICE, HOUSING, DUAL_RESIDENCE, [INQUIRIES], expires_at=now() + days(30))
    decision = decision_point.decide(HOUSING, DUAL_RESIDENCE, TRIPS, ALICE)
    assert decision.reason is DecisionReason.CATEGORY_NOT_COVERED


def test_a_category_not_asked_for_and_not_covered_is_withheld_not_refused(
    service: ConsentService, decision_point: DecisionPoint, recorded: list[Decision]
) -> None:
    consent_id = _grant_trips(service)
    unasked = decision_point.decide(BUS_FIRM, PLANNING, HEALTH_POINTS, ALICE, asked=False)
    assert not unasked.allowed
    assert unasked.reason is DecisionReason.CATEGORY_NOT_COVERED
    assert unasked.outcome is Outcome.WITHHELD and unasked.withheld
    assert unasked.consent_id == consent_id
    assert recorded == [unasked]
    # What the consent covers is allowed, asked for or not.
    covered = decision_point.decide(BUS_FIRM, PLANNING, TRIPS, ALICE, asked=False)
    assert covered.outcome is Outcome.ALLOWED


def test_a_category_asked_for_by_name_and_not_covered_is_refused(
    service: ConsentService, decision_point: DecisionPoint
) -> None:
    _grant_trips(service)
    asked = decision_point.decide(BUS_FIRM, PLANNING, HEALTH_POINTS, ALICE)
    assert asked.reason is DecisionReason.CATEGORY_NOT_COVERED
    assert asked.outcome is Outcome.REFUSED and not asked.withheld


def test_a_revoked_consent_refuses_what_it_covered_and_withholds_the_rest(
    service: ConsentService, decision_point: DecisionPoint
) -> None:
    consent_id = _grant_trips(service)
    service.revoke(ALICE, consent_id)
    covered = decision_point.decide(BUS_FIRM, PLANNING, TRIPS, ALICE, asked=False)
    assert (covered.reason, covered.outcome) == (DecisionReason.REVOKED, Outcome.REFUSED)
    never = decision_point.decide(BUS_FIRM, PLANNING, HEALTH_POINTS, ALICE, asked=False)
    assert (never.reason, never.outcome) == (
        DecisionReason.CATEGORY_NOT_COVERED,
        Outcome.WITHHELD,
    )
    named = decision_point.decide(BUS_FIRM, PLANNING, HEALTH_POINTS, ALICE)
    assert (named.reason, named.outcome) == (DecisionReason.REVOKED, Outcome.REFUSED)


def test_a_paused_consent_refuses_what_it_covered_even_when_not_asked_by_name(
    service: ConsentService, decision_point: DecisionPoint
) -> None:
    consent_id = _grant_trips(service)
    service.pause(ALICE, consent_id)
    paused = decision_point.decide(BUS_FIRM, PLANNING, TRIPS, ALICE, asked=False)
    assert (paused.reason, paused.outcome) == (DecisionReason.PAUSED, Outcome.REFUSED)


def test_without_any_consent_even_an_unasked_category_is_refused(
    service: ConsentService, decision_point: DecisionPoint
) -> None:
    decision = decision_point.decide(BUS_FIRM, PLANNING, HEALTH_POINTS, ALICE, asked=False)
    assert (decision.reason, decision.outcome) == (DecisionReason.NO_CONSENT, Outcome.REFUSED)
    unapproved = decision_point.decide(BUS_FIRM, HEALTH, HEALTH_POINTS, ALICE, asked=False)
    assert unapproved.reason is DecisionReason.PURPOSE_NOT_APPROVED
    assert unapproved.outcome is Outcome.REFUSED


def _counted(result: str, reason: str) -> float:
    sample = {"result": result, "reason": reason}
    return REGISTRY.get_sample_value("tsunagu_consent_decisions_total", sample) or 0.0


def test_the_decision_metric_counts_withheld_apart_from_refused(
    service: ConsentService, decision_point: DecisionPoint
) -> None:
    _grant_trips(service)
    labels = [("withhold", "category_not_covered"), ("deny", "category_not_covered")]
    before = [_counted(*label) for label in labels]
    for _ in range(3):
        decision_point.decide(BUS_FIRM, PLANNING, HEALTH_POINTS, ALICE, asked=False)
    decision_point.decide(BUS_FIRM, PLANNING, HEALTH_POINTS, ALICE)
    after = [_counted(*label) for label in labels]
    assert [a - b for a, b in zip(after, before, strict=True)] == [3, 1]
    # Only "not covered" is ever withheld: no other withhold series exists.
    assert _counted("withhold", "revoked") == 0.0
    assert (
        REGISTRY.get_sample_value(
            "tsunagu_consent_decisions_total", {"result": "withhold", "reason": "revoked"}
        )
        is None
    )


def test_unknown_purpose_and_category_codes_are_refused(
    service: ConsentService, decision_point: DecisionPoint
) -> None:
    _grant_trips(service)
    unknown_purpose = decision_point.decide(BUS_FIRM, "marketing.everything", TRIPS, ALICE)
    assert unknown_purpose.reason is DecisionReason.PURPOSE_UNKNOWN
    unknown_category = decision_point.decide(BUS_FIRM, PLANNING, "transport.everything", ALICE)
    assert unknown_category.reason is DecisionReason.CATEGORY_UNKNOWN


def test_data_outside_the_consents_data_range_is_refused(
    service: ConsentService, decision_point: DecisionPoint
) -> None:
    data_from, data_to = now() - days(90), now() - days(30)
    _grant_trips(service, data_from=data_from, data_to=data_to)
    inside = decision_point.decide(BUS_FIRM, PLANNING, TRIPS, ALICE, data_at=now() - days(60))
    assert inside.allowed
    # Allowed reads carry the range, so a view without one data time restricts its query.
    assert (inside.data_from, inside.data_to) == (data_from, data_to)
    for data_at in (now() - days(91), data_to, now()):
        decision = decision_point.decide(BUS_FIRM, PLANNING, TRIPS, ALICE, data_at=data_at)
        assert decision.reason is DecisionReason.OUTSIDE_DATA_RANGE


def test_data_that_is_not_personal_needs_no_consent_but_an_approved_purpose(
    service: ConsentService, decision_point: DecisionPoint
) -> None:
    allowed = decision_point.decide(BUS_FIRM, OPERATION, VEHICLES, ALICE)
    assert (allowed.allowed, allowed.reason, allowed.consent_id) == (
        True,
        DecisionReason.NOT_PERSONAL,
        None,
    )
    refused = decision_point.decide(BUS_FIRM, HEALTH, VEHICLES, ALICE)
    assert refused.reason is DecisionReason.PURPOSE_NOT_APPROVED


def test_new_categories_take_effect_through_the_superseding_consent(
    service: ConsentService, decision_point: DecisionPoint
) -> None:
    first = _grant_trips(service)
    assert decision_point.decide(BUS_FIRM, PLANNING, TRIPS, ALICE).consent_id == first
    service.approve_purpose(BUS_FIRM, HEALTH, approved_by="mitoyo-city/kikaku-1")
    assert decision_point.decide(BUS_FIRM, HEALTH, HEALTH_POINTS, ALICE).reason is (
        DecisionReason.NO_CONSENT
    )
    second = service.grant(
        ALICE, BUS_FIRM, PLANNING, [TRIPS, HEALTH_POINTS], expires_at=now() + days(60)
    )
    decision = decision_point.decide(BUS_FIRM, PLANNING, HEALTH_POINTS, ALICE)
    assert (decision.allowed, decision.consent_id) == (True, second.id)


def test_repeated_decisions_are_served_from_the_cache(
    service: ConsentService, decision_point: DecisionPoint
) -> None:
    _grant_trips(service)
    decision_point.decide(BUS_FIRM, PLANNING, TRIPS, ALICE)
    loads = decision_point.cache.loads
    for _ in range(100):
        assert decision_point.decide(BUS_FIRM, PLANNING, TRIPS, ALICE).allowed
    assert decision_point.cache.loads == loads


def test_every_decision_is_recorded_with_its_reason(
    service: ConsentService, decision_point: DecisionPoint, recorded: list[Decision]
) -> None:
    consent_id = _grant_trips(service)
    decision_point.decide(BUS_FIRM, PLANNING, TRIPS, ALICE)
    decision_point.decide(BUS_FIRM, PLANNING, TRIPS, BOB)
    decision_point.decide(STRANGER, PLANNING, TRIPS, ALICE)
    assert [(d.subject, d.reason, d.consent_id) for d in recorded] == [
        (ALICE, DecisionReason.ALLOWED, consent_id),
        (BOB, DecisionReason.NO_CONSENT, None),
        (ALICE, DecisionReason.PARTNER_UNKNOWN, None),
    ]


def test_a_store_that_cannot_be_read_means_deny(tmp_path: Path) -> None:
    # An empty database: no consent tables, so every read fails.
    broken = DecisionPoint(create_engine(f"sqlite:///{tmp_path / 'empty.db'}"), CATALOGUE)
    decision = broken.decide(BUS_FIRM, PLANNING, TRIPS, ALICE)
    assert (decision.allowed, decision.reason) == (False, DecisionReason.UNAVAILABLE)
