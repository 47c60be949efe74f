"""The region's seven former towns (Mitoyo, merged in 2006): their codes, names and centroids,
and how a place, an export's cell or a listing's address is told to be in one of them.

Connectors and the store both need them (a trip's stop, a listing's address), so they live in
the contract: connectors → contract ← broker.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = [
    "MUNICIPALITY_CODE",
    "REGION_RADIUS_KM",
    "TOWNS",
    "TOWN_BY_CODE",
    "TOWN_CODES",
    "Town",
    "nearest_town",
    "town_at",
    "town_code",
    "town_of_address",
]

#: 全国地方公共団体コード of 三豊市 (37208 and its check digit), the region's municipality.
MUNICIPALITY_CODE = "372081"


@dataclass(frozen=True, slots=True)
class Town:
    """One of the seven former towns of Mitoyo (merged in 2006) with a plausible centroid."""

    code: str
    name_ja: str
    lat: float
    lon: float


TOWNS: tuple[Town, ...] = (
    Town("takase", "高瀬", 34.1790, 133.7230),
    Town("yamamoto", "山本", 34.1370, 133.7560),
    Town("mino", "三野", 34.2120, 133.7050),
    Town("toyonaka", "豊中", 34.1520, 133.6880),
    Town("takuma", "詫間", 34.2360, 133.6420),
    Town("nio", "仁尾", 34.1960, 133.6330),
    Town("saita", "財田", 34.1040, 133.7900),
)
TOWN_CODES: tuple[str, ...] = tuple(t.code for t in TOWNS)
TOWN_BY_CODE: dict[str, Town] = {t.code: t for t in TOWNS}

# Exports write a town as "takuma", "Takuma", "詫間" or "詫間町"; all mean the same town.
_TOWN_ALIASES: dict[str, str] = {}
for _t in TOWNS:
    _TOWN_ALIASES.update({_t.code: _t.code, _t.name_ja: _t.code, _t.name_ja + "町": _t.code})


def town_code(value: str) -> str | None:
    """The town code for ``takuma`` / ``Takuma`` / ``詫間`` / ``詫間町``, or None."""
    value = value.strip()
    return _TOWN_ALIASES.get(value) or _TOWN_ALIASES.get(value.lower())


#: A point farther than this from every town's centroid is outside the region. The seven
#: towns span about 222 km²; 6 km from a centroid covers each town, Takuma's islands near the
#: coast included, and leaves out Tadotsu, Marugame, Takamatsu and the rest of Japan. It is a
#: circle, not the city's boundary: the edge of Kan'onji, next door, still falls inside.
REGION_RADIUS_KM = 6.0
_KM_PER_DEGREE = 111.2


def _km2(town: Town, lat: float, lon: float) -> float:
    """Squared distance in km² (equirectangular: fine at this scale)."""
    k = math.cos(math.radians(lat))
    return ((town.lat - lat) ** 2 + ((town.lon - lon) * k) ** 2) * _KM_PER_DEGREE**2


def nearest_town(lat: float, lon: float) -> Town:
    """The town whose centroid is nearest, however far (see ``town_at``)."""
    return min(TOWNS, key=lambda t: _km2(t, lat, lon))


def town_at(lat: float, lon: float) -> Town | None:
    """The town a point is in: the nearest centroid within ``REGION_RADIUS_KM``, else None
    (outside the region: never given a town it is not in)."""
    town = nearest_town(lat, lon)
    return town if _km2(town, lat, lon) <= REGION_RADIUS_KM**2 else None


def town_of_address(local_government_code: str | None, street_address: str | None) -> str | None:
    """The town of an address in the standard's parts (空き家バンク: 全国地方公共団体コード and
    所在地_町字), or None: in 三豊市 a 町字 begins with its former town's name and 町
    (``詫間町粟島`` is in ``takuma``); an address of another municipality is in none of ours."""
    if local_government_code != MUNICIPALITY_CODE or not street_address:
        return None
    for town in TOWNS:
        if street_address.startswith(town.name_ja + "町"):
            return town.code
    return None
