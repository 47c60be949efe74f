"""The property rule: a vacant house's owner details go to a partner only with an active
consent of that house's owner for that partner and purpose; otherwise the public listing only.
"""

from __future__ import annotations

import inspect

import pytest

from consent.decisions import DecisionPoint, DecisionReason
from consent.errors import NotPropertyOwnerError
from consent.property_rule import PROPERTY_DETAILS, PROPERTY_LISTING, property_details_allowed
from consent.service import ConsentService
from tests.consent.world import (
    BOB,
    BUS_FIRM,
    DUAL_RESIDENCE,
    HOUSING,
    INQUIRIES,
    OPERATION,
    OWNER,
    days,
    now,
)


def _owner_consents(service: ConsentService) -> str:
    """The owner lets the housing corporation see the details for dual-residence support."""
    return service.grant(
        OWNER, HOUSING, DUAL_RESIDENCE, [PROPERTY_DETAILS], expires_at=now() + days(180)
    ).id


def test_the_partner_gets_the_details_with_the_owners_consent(
    service: ConsentService, decision_point: DecisionPoint
) -> None:
    consent_id = _owner_consents(service)
    decision = property_details_allowed(decision_point, HOUSING, DUAL_RESIDENCE, OWNER)
    assert (decision.allowed, decision.reason, decision.consent_id) == (
        True,
        DecisionReason.ALLOWED,
        consent_id,
    )
    assert (decision.category, decision.subject) == (PROPERTY_DETAILS, OWNER)


def test_without_the_owners_consent_the_partner_gets_the_public_listing_only(
    service: ConsentService, decision_point: DecisionPoint
) -> None:
    details = property_details_allowed(decision_point, HOUSING, DUAL_RESIDENCE, OWNER)
    assert (details.allowed, details.reason) == (False, DecisionReason.OWNER_CONSENT_MISSING)
    listing = decision_point.decide(HOUSING, DUAL_RESIDENCE, PROPERTY_LISTING, OWNER)
    assert (listing.allowed, listing.reason) == (True, DecisionReason.NOT_PERSONAL)


def test_a_consent_from_someone_who_is_not_the_owner_does_not_count(
    service: ConsentService, decision_point: DecisionPoint
) -> None:
    # BOB, who owns nothing, cannot consent to owner details at all ...
    with pytest.raises(NotPropertyOwnerError):
        service.grant(BOB, HOUSING, DUAL_RESIDENCE, [PROPERTY_DETAILS], expires_at=now() + days(9))
    # ... and his consent as a resident says nothing about the owner's house.
    service.grant(BOB, HOUSING, DUAL_RESIDENCE, [INQUIRIES], expires_at=now() + days(30))
    decision = property_details_allowed(decision_point, HOUSING, DUAL_RESIDENCE, OWNER)
    assert decision.reason is DecisionReason.OWNER_CONSENT_MISSING


def test_the_owners_consent_for_one_partner_and_purpose_does_not_extend_to_others(
    service: ConsentService, decision_point: DecisionPoint
) -> None:
    _owner_consents(service)
    service.approve_purpose(HOUSING, OPERATION, approved_by="mitoyo-city/jutaku-1")
    other_purpose = property_details_allowed(decision_point, HOUSING, OPERATION, OWNER)
    assert other_purpose.reason is DecisionReason.OWNER_CONSENT_MISSING
    service.approve_purpose(BUS_FIRM, DUAL_RESIDENCE, approved_by="mitoyo-city/jutaku-1")
    other_partner = property_details_allowed(decision_point, BUS_FIRM, DUAL_RESIDENCE, OWNER)
    assert other_partner.reason is DecisionReason.OWNER_CONSENT_MISSING


def test_an_owner_consent_not_covering_the_details_does_not_count(
    service: ConsentService, decision_point: DecisionPoint
) -> None:
    service.grant(OWNER, HOUSING, DUAL_RESIDENCE, [INQUIRIES], expires_at=now() + days(30))
    decision = property_details_allowed(decision_point, HOUSING, DUAL_RESIDENCE, OWNER)
    assert (decision.allowed, decision.reason) == (False, DecisionReason.OWNER_CONSENT_MISSING)


def test_a_revoked_or_expired_owner_consent_is_refused(
    service: ConsentService, decision_point: DecisionPoint
) -> None:
    consent_id = _owner_consents(service)
    later = now() + days(181)
    expired = property_details_allowed(decision_point, HOUSING, DUAL_RESIDENCE, OWNER, at=later)
    assert expired.reason is DecisionReason.EXPIRED
    service.revoke(OWNER, consent_id)
    revoked = property_details_allowed(decision_point, HOUSING, DUAL_RESIDENCE, OWNER)
    assert (revoked.allowed, revoked.reason) == (False, DecisionReason.REVOKED)


def test_a_partner_not_approved_for_the_purpose_is_refused_even_with_the_owners_consent(
    service: ConsentService, decision_point: DecisionPoint
) -> None:
    _owner_consents(service)
    service.withdraw_purpose(HOUSING, DUAL_RESIDENCE, withdrawn_by="mitoyo-city/jutaku-1")
    decision = property_details_allowed(decision_point, HOUSING, DUAL_RESIDENCE, OWNER)
    assert (decision.allowed, decision.reason) == (False, DecisionReason.PURPOSE_NOT_APPROVED)


def test_nothing_can_override_the_rule() -> None:
    # No role, scope or admin token: the rule and the decision point take none.
    for function in (property_details_allowed, DecisionPoint.decide):
        parameters = set(inspect.signature(function).parameters)
        assert not parameters & {"role", "roles", "scope", "scopes", "admin", "override", "token"}


def test_only_an_owner_is_offered_the_owner_details_and_a_non_owner_is_refused_them(
    service: ConsentService,
) -> None:
    # What the resident's page offers is what grant() allows: one rule, both answers.
    assert PROPERTY_DETAILS in service.grantable_categories(OWNER)
    assert PROPERTY_DETAILS not in service.grantable_categories(BOB)
    assert INQUIRIES in service.grantable_categories(BOB)
    # Public categories need no consent: offered to nobody.
    assert PROPERTY_LISTING not in service.grantable_categories(OWNER)
    with pytest.raises(NotPropertyOwnerError, match=r"property\.details; leave it out"):
        service.grant(
            BOB, HOUSING, DUAL_RESIDENCE, [INQUIRIES, PROPERTY_DETAILS], expires_at=now() + days(9)
        )
    for subject in (OWNER, BOB):
        offered = service.grantable_categories(subject)
        granted = service.grant(
            subject, HOUSING, DUAL_RESIDENCE, sorted(offered), expires_at=now() + days(9)
        )
        assert set(granted.categories) == offered


def test_an_admin_only_listing_is_never_shown_and_a_public_one_is() -> None:
    from consent.property_rule import listing_shown

    assert not listing_shown("管理者のみ閲覧")
    assert listing_shown("一般へ公開")
    assert listing_shown(None)  # a v1 listing, published before the standard's status existed
