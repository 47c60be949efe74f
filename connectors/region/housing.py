"""Vacant houses of the synthetic region and their life in the bank: registered (some still
being renovated), offered, negotiated, contracted or withdrawn, with the odd price cut and
change of the owner's contact. Every change is planned when the region is made, so the
listing rows of any day follow from the seed alone.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta

from connectors.readers import JST
from connectors.region.people import Owner, Resident, make_owner, platform_id
from connectors.region.places import DISTRICTS, KOAZA, STOPS, town_ja
from contract.towns import TOWN_BY_CODE, TOWN_CODES

__all__ = ["House", "make_houses"]

# Houses empty most where people left most: the coast, the islands and the hills.
_TOWN_WEIGHTS = {
    "takase": 1.0,
    "yamamoto": 1.5,
    "mino": 1.0,
    "toyonaka": 1.0,
    "takuma": 3.0,
    "nio": 2.0,
    "saita": 2.0,
}
_TYPES = {"detached_house": 5, "kominka": 3, "row_house": 1, "shop_house": 1, "apartment": 0.5}
_LAYOUTS = ("2DK", "3DK", "3LDK", "4DK", "4LDK", "5DK", "6DK")
_RENT_BANDS = ("under_20k", "20k_to_40k", "40k_to_60k", "60k_to_80k")
_PRICE_BANDS = ("free", "under_1m", "1m_to_3m", "3m_to_5m", "5m_to_10m")


@dataclass(frozen=True, slots=True)
class House:
    """A vacant house in the bank: its registration row and its later changes (cells only)."""

    listing_id: str
    owner: Owner
    town: str
    offer_type: str
    registered_at: datetime
    cells: dict[str, str]  # the registration row, every column of the listings format
    changes: tuple[tuple[datetime, dict[str, str]], ...]  # later rows: changed cells only
    statuses: tuple[tuple[datetime, str], ...]  # (since, status), oldest first

    def status_at(self, moment: datetime) -> str | None:
        """The listing's status at ``moment`` (None before it is registered)."""
        current = None
        for since, status in self.statuses:
            if since > moment:
                break
            current = status
        return current


def _at(rng: random.Random, day: date) -> datetime:
    return datetime.combine(day, time(rng.randint(9, 16), rng.randint(0, 59)), JST)


def _nearest_stop(town: str, lat: float, lon: float) -> tuple[str, int]:
    k = math.cos(math.radians(lat))
    stop = min(
        (s for s in STOPS if s.town == town),
        key=lambda s: (s.lat - lat) ** 2 + ((s.lon - lon) * k) ** 2,
    )
    metres = 111_000 * math.hypot(stop.lat - lat, (stop.lon - lon) * k)
    return stop.stop_id, max(1, min(60, round(metres * 1.3 / 80)))  # 80 m a minute on foot


def make_houses(
    rng: random.Random,
    count: int,
    start: date,
    residents: list[Resident],
    taken: set[str],
) -> list[House]:
    """``count`` houses; about 40% of owners still live in the region (they are residents)."""
    elders = [r for r in residents if r.age_band in ("65-74", "75+")] or residents
    houses = []
    for _ in range(count):
        town = rng.choices(TOWN_CODES, weights=[_TOWN_WEIGHTS[t] for t in TOWN_CODES])[0]
        owner = make_owner(rng, rng.choice(elders) if rng.random() < 0.4 else None, taken)
        houses.append(_house(rng, platform_id(rng, "prop", taken), town, owner, start))
    return houses


def _house(rng: random.Random, listing_id: str, town: str, owner: Owner, start: date) -> House:
    centre = TOWN_BY_CODE[town]
    lat = centre.lat + rng.uniform(-0.012, 0.012)
    lon = centre.lon + rng.uniform(-0.012, 0.012)
    stop_id, walk = _nearest_stop(town, lat, lon)
    district = rng.choice(DISTRICTS[town])
    number = rng.randint(1, 3999)
    building = rng.choices(list(_TYPES), weights=list(_TYPES.values()))[0]
    offer = rng.choices(("rent", "sale", "rent_or_sale"), weights=(5, 3, 2))[0]
    area = {"apartment": (40, 70), "row_house": (45, 80), "kominka": (90, 220)}.get(
        building, (60, 150)
    )
    preparing = rng.random() < 0.3
    registered = _at(rng, start if rng.random() < 0.4 else start + timedelta(rng.randint(1, 150)))
    rent_band = rng.choices(_RENT_BANDS, weights=(4, 5, 2, 1))[0]
    price_band = rng.choices(_PRICE_BANDS, weights=(2, 4, 3, 1, 1))[0]
    cells = {
        "listing_id": listing_id,
        "action": "register",
        "owner_id": owner.owner_id,
        "recorded_at": registered.isoformat(),
        "town": town,
        "district": district,
        "building_type": building,
        "layout": rng.choice(_LAYOUTS),
        "floor_area_m2": f"{rng.uniform(*area):.1f}",
        "land_area_m2": "" if building == "apartment" else f"{rng.uniform(100, 500):.1f}",
        "year_built": str(rng.randint(1935, 1998)),
        "offer_type": offer,
        "rent_band": rent_band if offer != "sale" else "",
        "price_band": price_band if offer != "rent" else "",
        "renovated": "false" if preparing else rng.choice(("true", "false")),
        "parking": "true" if rng.random() < 0.7 else "false",
        "nearest_stop_id": stop_id,
        "walk_minutes_to_stop": str(walk),
        "status": "preparing" if preparing else "available",
        "exact_address": f"香川県三豊市{town_ja(town)}{district}{number}番地",
        "lot_number": f"{town_ja(town)}{district}字{rng.choice(KOAZA)}{number}番",
        "owner_name": owner.name,
        "owner_name_kana": owner.name_kana,
        "owner_address": owner.address,
        "owner_phone": owner.phone,
        "owner_email": owner.email or "",
    }
    statuses = [(registered, cells["status"])]
    changes: list[tuple[datetime, dict[str, str]]] = []

    def change(after: datetime, low: int, high: int, new: dict[str, str]) -> datetime:
        moment = _at(rng, after.date() + timedelta(rng.randint(low, high)))
        changes.append((moment, new))
        if "status" in new:
            statuses.append((moment, new["status"]))
        return moment

    moment = registered
    if preparing:
        moment = change(moment, 20, 60, {"status": "available", "renovated": "true"})
    fate = rng.random()
    if fate < 0.5:
        moment = change(moment, 15, 120, {"status": "under_negotiation"})
        if rng.random() < 0.7:
            change(moment, 10, 40, {"status": "contracted"})
        else:
            change(moment, 7, 20, {"status": "available"})
    elif fate < 0.58:
        change(moment, 30, 200, {"status": "withdrawn"})
    if offer != "sale" and rent_band != "under_20k" and rng.random() < 0.15:
        cheaper = _RENT_BANDS[_RENT_BANDS.index(rent_band) - 1]
        change(registered, 10, 90, {"rent_band": cheaper})  # a price cut
    if rng.random() < 0.1:
        change(registered, 5, 150, {"owner_phone": f"090-0000-{rng.randint(0, 9999):04d}"})
    changes.sort(key=lambda c: c[0])
    statuses.sort(key=lambda s: s[0])
    return House(
        listing_id,
        owner,
        town,
        offer,
        registered,
        cells,
        tuple(_distinct(changes)),
        tuple(statuses),
    )


def _distinct(
    changes: list[tuple[datetime, dict[str, str]]],
) -> list[tuple[datetime, dict[str, str]]]:
    # An update is keyed by its listing and time: two changes in one minute become one row.
    merged: dict[datetime, dict[str, str]] = {}
    for moment, cells in changes:
        merged.setdefault(moment, {}).update(cells)
    return list(merged.items())
