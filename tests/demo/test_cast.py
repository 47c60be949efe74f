"""Who takes part in the demo follows from the region's seed: the same people every run."""

from __future__ import annotations

from broker.demo import PARTNERS, demo_resident, planned_grants
from broker.demo.cast import CONSENT_SHARE, HEALTH, HOUSING, TRANSPORT
from connectors.region import Region


def test_the_same_seed_plans_the_same_consents_and_another_seed_others() -> None:
    first = planned_grants(Region(seed=7, population=600))
    assert first == planned_grants(Region(seed=7, population=600))
    assert first != planned_grants(Region(seed=8, population=600))


def test_the_demo_resident_consents_to_two_partners_and_uses_their_services() -> None:
    region = Region(seed=7, population=2000)
    star = demo_resident(region)
    grants = planned_grants(region)
    theirs = {g.partner: g.categories for g in grants if g.subject == star.resident_id}
    assert theirs == {
        TRANSPORT: ("transport.trips",),
        HEALTH: ("health.points", "currency.transactions"),
    }
    # Their trips, points and payments are all in the stream.
    assert star.health_member and star.wallet_id is not None
    assert star.age_band in ("65-74", "75+")


def test_about_a_share_of_each_partners_people_consent_once() -> None:
    region = Region(seed=7, population=2000)
    grants = planned_grants(region)
    for partner in PARTNERS:
        subjects = [g.subject for g in grants if g.partner is partner]
        assert len(subjects) == len(set(subjects)), f"{partner.partner_id}: a chain twice"
    riders = [g for g in grants if g.partner is TRANSPORT]
    adults = [r for r in region.residents if r.age_band != "0-14"]
    assert abs(len(riders) / len(adults) - CONSENT_SHARE) < 0.05
    members = {r.resident_id for r in region.residents if r.health_member}
    assert {g.subject for g in grants if g.partner is HEALTH} <= members
    owners = {o.owner_id for o in region.owners}
    housing = [g for g in grants if g.partner is HOUSING]
    assert housing and {g.subject for g in housing} <= owners
    assert all(g.categories == ("property.details",) for g in housing)
