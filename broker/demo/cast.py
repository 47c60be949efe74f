"""Who takes part in the demo: the partner firms, the residents and owners who consent to
them, and the one demo resident whose page `make run` prints. All of it follows from the
region's seed, so every run on the same data chooses the same people."""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Literal

from connectors.region import Region, Resident

#: Share of the eligible residents (and of the owners) who consent to each partner.
CONSENT_SHARE = 0.3
#: The cross-service view's categories (``/v1/partner/residents/{psn}/activity``).
ACTIVITY_CATEGORIES = frozenset({"transport.trips", "health.points", "currency.transactions"})


@dataclass(frozen=True, slots=True)
class DemoPartner:
    """A partner firm of the demo, the purpose it is approved for and what it reads."""

    partner_id: str
    name_ja: str
    name_en: str
    purpose: str
    subjects: Literal["residents", "owners"]  # whose consents it asks for
    statistic: str  # the `/v1/statistics/...` table it reads each round
    reads_houses: bool  # whether it reads `/v1/partner/vacant-houses`


TRANSPORT = DemoPartner(
    "ptn-tsunagukotsu",
    "三豊つなぐ交通株式会社",
    "Mitoyo Tsunagu Transport Co., Ltd.",
    "transport.planning",
    "residents",
    "trips-by-town-month",
    reads_houses=False,
)
HEALTH = DemoPartner(
    "ptn-kenkopoint",
    "みとよ健康ポイント事業",
    "Mitoyo Health Points Programme",
    "health.incentive",
    "residents",
    "points-by-age-band",
    reads_houses=False,
)
HOUSING = DemoPartner(
    "ptn-sumaitsunagi",
    "一般社団法人みとよ住まいつなぎ",
    "Mitoyo Homes Link",
    "housing.dual_residence_support",
    "owners",
    "town-flows",
    reads_houses=True,
)
PARTNERS: tuple[DemoPartner, ...] = (TRANSPORT, HEALTH, HOUSING)


@dataclass(frozen=True, slots=True)
class PlannedGrant:
    """A consent someone in the demo gives: subject, partner (and its purpose), categories."""

    subject: str
    partner: DemoPartner
    categories: tuple[str, ...]


def demo_resident(region: Region) -> Resident:
    """The resident whose page is printed: an older resident in the health programme with a
    wallet, so trips, points and payments all stream in for them."""
    for resident in region.residents:
        if (
            resident.age_band in ("65-74", "75+")
            and resident.health_member
            and resident.wallet_id is not None
        ):
            return resident
    return region.residents[0]  # a tiny region may have no one like that


def _categories(partner: DemoPartner, resident: Resident) -> tuple[str, ...] | None:
    """What ``resident`` shares with ``partner``, or None when they do not use its service."""
    if partner is TRANSPORT:
        return ("transport.trips",) if resident.age_band != "0-14" else None
    if partner is HEALTH:
        if not resident.health_member:
            return None
        if resident.wallet_id is None:
            return ("health.points",)
        # Points turn into local currency: the programme sees the conversions in the wallet.
        return ("health.points", "currency.transactions")
    return None


def planned_grants(region: Region) -> list[PlannedGrant]:
    """Every consent of the demo: the demo resident's first, then a share of each partner's
    residents (or owners), drawn from a generator seeded by the region's seed."""
    star = demo_resident(region)
    grants = [
        PlannedGrant(star.resident_id, TRANSPORT, ("transport.trips",)),
        PlannedGrant(star.resident_id, HEALTH, ("health.points", "currency.transactions")),
    ]
    for partner in PARTNERS:
        rng = random.Random(f"tsunagu-demo/{region.seed}/{partner.partner_id}")
        if partner.subjects == "owners":
            grants += [
                PlannedGrant(owner.owner_id, partner, ("property.details",))
                for owner in region.owners
                if rng.random() < CONSENT_SHARE
            ]
            continue
        for resident in region.residents:
            categories = _categories(partner, resident)
            chosen = rng.random() < CONSENT_SHARE  # drawn for everyone: stable choices
            if categories and chosen and resident.resident_id != star.resident_id:
                grants.append(PlannedGrant(resident.resident_id, partner, categories))
    return grants
