"""The people of the synthetic region: residents (id, town, age band, what they use), property
owners (some live elsewhere) and prospective dual residents who send inquiries.

Residents carry no names: the platform knows them by id only. Owners do have names and
contacts, because the vacant-house bank publishes them as ``owner_details``.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from connectors.region.places import DISTRICTS, STOPS, town_ja
from contract.towns import TOWN_CODES

__all__ = [
    "AGE_BANDS",
    "AGE_SHARES",
    "TOWN_WEIGHTS",
    "Owner",
    "Prospect",
    "Resident",
    "make_owner",
    "make_prospects",
    "make_residents",
    "platform_id",
]

AGE_BANDS: tuple[str, ...] = ("0-14", "15-39", "40-64", "65-74", "75+")
#: Mitoyo is ageing: about 37% of its people are 65 or older.
AGE_SHARES: tuple[float, ...] = (0.11, 0.22, 0.30, 0.16, 0.21)
#: Relative population of the former towns (thousands, rounded).
TOWN_WEIGHTS: dict[str, int] = {
    "takase": 14,
    "yamamoto": 7,
    "mino": 7,
    "toyonaka": 11,
    "takuma": 13,
    "nio": 6,
    "saita": 5,
}
# Who joins the health-points programme, and who holds a local-currency wallet, by age band.
_HEALTH_SHARE = {"0-14": 0.0, "15-39": 0.15, "40-64": 0.30, "65-74": 0.45, "75+": 0.35}
_WALLET_SHARE = {"0-14": 0.0, "15-39": 0.55, "40-64": 0.60, "65-74": 0.55, "75+": 0.45}

_ID_ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyz"

# (kanji, katakana, romaji)
_SURNAMES = (
    ("大西", "オオニシ", "onishi"),
    ("真鍋", "マナベ", "manabe"),
    ("合田", "ゴウダ", "goda"),
    ("三好", "ミヨシ", "miyoshi"),
    ("宮武", "ミヤタケ", "miyatake"),
    ("香川", "カガワ", "kagawa"),
    ("藤田", "フジタ", "fujita"),
    ("山下", "ヤマシタ", "yamashita"),
    ("十河", "ソゴウ", "sogo"),
    ("大平", "オオヒラ", "ohira"),
    ("詫間", "タクマ", "takuma"),
    ("森", "モリ", "mori"),
    ("石川", "イシカワ", "ishikawa"),
    ("白川", "シラカワ", "shirakawa"),
    ("安藤", "アンドウ", "ando"),
    ("高木", "タカギ", "takagi"),
)
_GIVEN_NAMES = (
    ("花子", "ハナコ", "hanako"),
    ("和子", "カズコ", "kazuko"),
    ("幸子", "サチコ", "sachiko"),
    ("節子", "セツコ", "setsuko"),
    ("美智子", "ミチコ", "michiko"),
    ("恵子", "ケイコ", "keiko"),
    ("太郎", "タロウ", "taro"),
    ("一郎", "イチロウ", "ichiro"),
    ("博", "ヒロシ", "hiroshi"),
    ("清", "キヨシ", "kiyoshi"),
    ("誠", "マコト", "makoto"),
    ("茂", "シゲル", "shigeru"),
    ("健二", "ケンジ", "kenji"),
    ("直美", "ナオミ", "naomi"),
)
# Where owners who left the region live: (address prefix, phone prefix).
_ELSEWHERE = (
    ("大阪府大阪市北区梅田", "06-0000"),
    ("大阪府堺市堺区南瓦町", "072-000"),
    ("東京都世田谷区三軒茶屋", "03-0000"),
    ("東京都練馬区豊玉北", "03-0000"),
    ("香川県高松市番町", "087-000"),
    ("岡山県岡山市北区表町", "086-000"),
    ("兵庫県神戸市中央区元町通", "078-000"),
    ("広島県広島市中区大手町", "082-000"),
    ("愛媛県松山市一番町", "089-000"),
)
_PROSPECT_HOMES = ("東京都", "神奈川県", "大阪府", "兵庫県", "愛知県", "福岡県", "岡山県", "広島県")


@dataclass(frozen=True, slots=True)
class Resident:
    """A resident: platform id, former town, age band, home stop, and the services used."""

    resident_id: str
    town: str
    age_band: str
    home_stop_id: str
    health_member: bool  # enrolled in the health-points programme
    wallet_id: str | None  # local-currency wallet, if any


@dataclass(frozen=True, slots=True)
class Owner:
    """A vacant house's owner: a platform subject even when living outside the region."""

    owner_id: str
    name: str
    name_kana: str
    address: str
    phone: str
    email: str | None
    in_region: bool  # lives in Mitoyo; then owner_id is also a resident's id


@dataclass(frozen=True, slots=True)
class Prospect:
    """Someone living elsewhere who may move in, or live here part-time (二地域居住)."""

    resident_id: str
    home: str  # prefecture
    household_size: int


def platform_id(rng: random.Random, prefix: str, taken: set[str], length: int = 8) -> str:
    """A fresh ``<prefix>-xxxxxxxx`` id not in ``taken`` (which it joins)."""
    while True:
        candidate = prefix + "-" + "".join(rng.choices(_ID_ALPHABET, k=length))
        if candidate not in taken:
            taken.add(candidate)
            return candidate


def make_residents(rng: random.Random, population: int, taken: set[str]) -> list[Resident]:
    """``population`` residents spread over the towns and age bands like Mitoyo's."""
    towns = rng.choices(TOWN_CODES, weights=[TOWN_WEIGHTS[t] for t in TOWN_CODES], k=population)
    bands = rng.choices(AGE_BANDS, weights=AGE_SHARES, k=population)
    stops = {t: [s.stop_id for s in STOPS if s.town == t] for t in TOWN_CODES}
    residents = []
    wallets = 0
    for town, band in zip(towns, bands, strict=True):
        wallet = None
        if rng.random() < _WALLET_SHARE[band]:
            wallets += 1
            wallet = f"w-{wallets:08d}"
        residents.append(
            Resident(
                platform_id(rng, "res", taken),
                town,
                band,
                rng.choice(stops[town]),
                rng.random() < _HEALTH_SHARE[band],
                wallet,
            )
        )
    return residents


def _address_in(rng: random.Random, town: str) -> str:
    return f"香川県三豊市{town_ja(town)}{rng.choice(DISTRICTS[town])}{rng.randint(1, 3999)}番地"


def make_owner(rng: random.Random, resident: Resident | None, taken: set[str]) -> Owner:
    """An owner: ``resident`` when they live here, else someone who moved away."""
    surname, given = rng.choice(_SURNAMES), rng.choice(_GIVEN_NAMES)
    name, kana = f"{surname[0]} {given[0]}", f"{surname[1]} {given[1]}"
    # Contacts are fictional: the 00 exchanges are not in service.
    email = f"{given[2]}.{surname[2]}{rng.randint(1, 99)}@example.jp"
    has_email = rng.random() < 0.6
    if resident is not None:
        return Owner(
            resident.resident_id,
            name,
            kana,
            _address_in(rng, resident.town),
            f"0875-00-{rng.randint(0, 9999):04d}",
            email if has_email else None,
            True,
        )
    prefix, phone = rng.choice(_ELSEWHERE)
    address = f"{prefix}{rng.randint(1, 5)}丁目{rng.randint(1, 30)}番{rng.randint(1, 20)}号"
    if rng.random() < 0.5:
        phone = "090-0000"
    return Owner(
        platform_id(rng, "res", taken),
        name,
        kana,
        address,
        f"{phone}-{rng.randint(0, 9999):04d}",
        email,  # far-away owners are always reached by mail too
        False,
    )


def make_prospects(rng: random.Random, count: int, taken: set[str]) -> list[Prospect]:
    """People elsewhere who look at the vacant-house bank."""
    return [
        Prospect(
            platform_id(rng, "res", taken),
            rng.choice(_PROSPECT_HOMES),
            rng.choices((1, 2, 3, 4), weights=(3, 4, 2, 1))[0],
        )
        for _ in range(count)
    ]
