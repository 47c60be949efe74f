"""The open data catalogue's datasets: what the platform publishes to anyone, and its rows.

Only what may be public is here, each from the one place that decides it:

- **bus stops and routes**: the stops trips used and the routes vehicles report, never a
  person's place (a door-to-door pick-up has no stop id and is not a stop), with GTFS-JP's
  column names;
- **vacant houses**: the public part of each listing the property rule shows to the public
  (``consent.property_rule.shown_to_public``: only 一般へ公開, never 管理者のみ閲覧 nor a
  withdrawn one). A standard (v2) listing publishes, under the Digital Agency's 空き家バンク
  names and in its order, exactly the standard fields the property rule lets anyone see
  (``public_listing_fields``: never one that identifies the owner); a v1 listing its
  ``PUBLIC_FIELDS``, named after the model's attribute where a field maps to one;
- **people flow and ridership** (``broker.views.flows``): 人流データ in the Digital Agency
  model's column names, and 乗降実績 per stop, over the default period, only the cells of at
  least k residents (a smaller cell is in no row);
- **statistics**: the k-anonymous statistics as published (``broker.views.statistics``: every
  published cell counts at least k residents, smaller ones listed as suppressed with no
  measures), over the default period of the statistics API.

Everything is published under PDL1.0 with the publisher's attribution.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from types import MappingProxyType
from typing import Any

from sqlalchemy import Engine, Table, select

from broker.store.projections.transport import TransportStop, VehiclePosition
from broker.store.projections.vacant_house import LISTED_FOR_PUBLIC, PUBLIC_FIELDS, Listing
from broker.views.flows import people_flow, ridership
from broker.views.statistics import (
    StatisticsRuleError,
    complete_months,
    points_by_age_band,
    spending_by_merchant_category,
    town_flows,
    trips_by_town_month,
)
from consent.catalogue import Catalogue
from consent.property_rule import public_listing_fields, shown_to_public
from contract.vacant_house_bank import STANDARD_NAMES

_stops: Table = TransportStop.__table__  # type: ignore[attr-defined]
_positions: Table = VehiclePosition.__table__  # type: ignore[attr-defined]
_listings: Table = Listing.__table__  # type: ignore[attr-defined]

#: 公共データ利用規約（第1.0版）: the licence of every dataset.
PDL_URL = "https://www.digital.go.jp/resources/open_data/public_data_license_v1.0"
PDL_TITLE = "公共データ利用規約（第1.0版） / Public Data License (Version 1.0)"
PDL_ID = "PDL-1.0"

#: The standards the datasets' columns follow.
GTFS_JP = "https://www.mlit.go.jp/commmmons/document/007/"
AREA_DATA_MODELS = "https://github.com/digital-go-jp/area-data-coordination"

#: The attribution the Digital Agency's model asks for where its names are used (PDL1.0 §1.1).
MODEL_ATTRIBUTION = (
    "列名の出典：「エリアデータ活用のためのデータモデル」（デジタル庁、2026年9月4日）"
    f"（{AREA_DATA_MODELS}）、PDL1.0（{PDL_URL}）を加工して作成（加工：Tsunagu 開発チーム）"
)

#: The column holding a listing's 空き家バンクへの掲載 (vacantHouseListing), from the listing
#: schema's standard version (v2); listings of schema v1 have none.
LISTING_MARK_COLUMN = "publication"

#: The published name of each public listing field: the 空き家バンク model's attribute where
#: the field is one of them, our own name where the model has none.
LISTING_COLUMNS: Mapping[str, str] = MappingProxyType(
    {
        "town": "town",  # the former town (旧町); the model has only the city
        "district": "streetAddress",  # 所在地_町字 (the ōaza, never the lot number)
        "building_type": "building_type",
        "layout": "floorPlan",
        "floor_area_m2": "totalFloorArea_MTK",
        "land_area_m2": "landArea_MTK",
        "year_built": "year_built",  # the model has a full date (dateOfConstruction)
        "offer_type": "transactionType",
        "rent_band": "rent_band",  # bands, not the model's exact prices
        "price_band": "price_band",
        "renovated": "renovated",
        "parking": "parking",
        "nearest_stop_id": "nearest_stop_id",
        "walk_minutes_to_stop": "walk_minutes_to_stop",
        "status": "status",
    }
)

# The shipped catalogue alone (the property categories are the platform's own): reading the
# plug-ins' at import would fail `tsunagu up` before it can refuse a bad plug-in clearly.
_SEEN_BY_ANYONE = frozenset(public_listing_fields(Catalogue.load(domains=())))
#: The standard's fields a standard (v2) listing publishes: those the property rule lets anyone
#: see under the shipped catalogue (never one that identifies the owner), in the standard's order.
STANDARD_LISTING_COLUMNS: tuple[str, ...] = tuple(n for n in STANDARD_NAMES if n in _SEEN_BY_ANYONE)
#: The vacant-house dataset's columns: the standard's public fields, then v1's own.
VACANT_HOUSE_COLUMNS: tuple[str, ...] = (
    *STANDARD_LISTING_COLUMNS,
    *(c for c in LISTING_COLUMNS.values() if c not in STANDARD_LISTING_COLUMNS),
)

#: The model's values for the fields whose values map one to one.
_TRANSACTION_TYPES = {"sale": "売買", "rent": "賃貸", "rent_or_sale": "売買・賃貸"}
_PRESENCE = {True: "あり", False: "なし"}

#: GTFS route_type of each transport mode (3: bus; 715: demand and response bus service).
_ROUTE_TYPES = {"fixed_route_bus": 3, "on_demand": 715}


class UnknownDatasetError(LookupError):
    """A dataset name the catalogue does not publish."""


@dataclass(frozen=True, slots=True)
class Moment:
    """What the rows are computed at: the store, the platform's k and settling delay, now."""

    engine: Engine
    k: int
    settle_days: int
    now: datetime


@dataclass(frozen=True, slots=True)
class Dataset:
    """One published dataset: how it is described, its columns and how its rows are read."""

    name: str
    title_ja: str
    title_en: str
    description: str
    keywords: tuple[str, ...]
    conforms_to: str
    columns: tuple[str, ...]
    read: Callable[[Moment], list[dict[str, Any]]]

    def rows(self, at: Moment) -> list[dict[str, Any]]:
        """The dataset's rows, each with exactly its columns."""
        return [{c: row.get(c) for c in self.columns} for row in self.read(at)]


# -- transport -----------------------------------------------------------------------------------


def _stop_rows(at: Moment) -> list[dict[str, Any]]:
    query = select(_stops).order_by(_stops.c.stop_id)
    with at.engine.connect() as conn:
        rows = conn.execute(query).mappings().all()
    return [
        {
            "stop_id": r["stop_id"],
            "stop_name": r["stop_name"],
            "stop_lat": r["lat"],
            "stop_lon": r["lon"],
            "town": r["town"],
            "on_demand": r["on_demand"],
            "bus": r["bus"],
        }
        for r in rows
    ]


def _route_rows(at: Moment) -> list[dict[str, Any]]:
    p = _positions.c
    query = (
        select(p.route_id, p.operator_id, p.mode)
        .where(p.route_id.is_not(None))
        .distinct()
        .order_by(p.route_id, p.operator_id, p.mode)
    )
    with at.engine.connect() as conn:
        rows = conn.execute(query).all()
    return [
        {"route_id": route, "agency_id": agency, "route_type": _ROUTE_TYPES.get(mode, 3)}
        for route, agency, mode in rows
    ]


# -- vacant houses -------------------------------------------------------------------------------


def public_listing_rows(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The published rows of stored listings: the public part of those the property rule
    shows to the public, nothing of the others."""
    return [
        _standard_listing_row(row) if row.get("standard") is not None else _v1_listing_row(row)
        for row in rows
        if shown_to_public(row.get(LISTING_MARK_COLUMN), row.get("status"))
    ]


def _standard_listing_row(row: Mapping[str, Any]) -> dict[str, Any]:
    """A standard (v2) listing's published row: the standard fields anyone may see, as the
    bank gave them, with the town and status the projection derived from them."""
    standard: Mapping[str, Any] = row["standard"]
    out = {name: standard.get(name) for name in STANDARD_LISTING_COLUMNS}
    out.update(town=row.get("town"), status=row.get("status"))
    return out


def _v1_listing_row(row: Mapping[str, Any]) -> dict[str, Any]:
    """A v1 listing's published row: its public fields, by the model's names where it has one."""
    out: dict[str, Any] = {"identifier": row["listing_id"]}
    for field in PUBLIC_FIELDS:
        out[LISTING_COLUMNS[field]] = row[field]
    out["transactionType"] = _TRANSACTION_TYPES.get(out["transactionType"])
    parking = out["parking"]
    out["parking"] = None if parking is None else _PRESENCE[bool(parking)]
    out["vacantHouseListing"] = LISTED_FOR_PUBLIC
    return out


def _listing_rows(at: Moment) -> list[dict[str, Any]]:
    query = (
        select(_listings)
        .where(_listings.c.registered_at.is_not(None))
        .order_by(_listings.c.listing_id)
    )
    with at.engine.connect() as conn:
        rows = [dict(r) for r in conn.execute(query).mappings()]
    return public_listing_rows(rows)


# -- statistics ------------------------------------------------------------------------------


def _statistic(
    compute: Callable[..., Any], dimensions: Sequence[str], measures: Sequence[str]
) -> Callable[[Moment], list[dict[str, Any]]]:
    """Rows of a statistic over its default period (the last twelve published months): one
    per cell, a suppressed cell with no measures."""

    def read(at: Moment) -> list[dict[str, Any]]:
        try:
            start, end = complete_months(None, None, at.now, at.settle_days)
            figures = compute(at.engine, start, end, k=at.k, settle_days=at.settle_days, now=at.now)
        except StatisticsRuleError:
            return []  # no month published yet: nothing to publish
        rows = []
        for cell in figures.cells:
            row: dict[str, Any] = {"month": cell.month}
            row.update({d: getattr(cell, d) for d in dimensions})
            row["suppressed"] = cell.suppressed
            m = cell.measures
            row.update({name: None if m is None else getattr(m, name) for name in measures})
            rows.append(row)
        return rows

    return read


def _stat_columns(dimensions: Sequence[str], measures: Sequence[str]) -> tuple[str, ...]:
    return ("month", *dimensions, "suppressed", *measures)


_K_NOTE = (
    "毎月（日本時間）の集計。各セルは k 人以上（既定 k=10）の住民を数え、それ未満のセルは秘匿"
    "（suppressed=true、値なし）。 / Monthly (Japan time); every published cell counts at "
    "least k residents (k=10 by default), smaller cells are suppressed (no figures)."
)

_STATS: tuple[tuple[str, str, str, Callable[..., Any], tuple[str, ...], tuple[str, ...]], ...] = (
    (
        "trips-by-town-month",
        "出発町別・月別の移動回数",
        "Trips by origin town and month",
        trips_by_town_month,
        ("town",),
        ("trips", "subjects"),
    ),
    (
        "town-flows",
        "町間の移動回数（月別）",
        "Trips between towns by month",
        town_flows,
        ("origin_town", "destination_town"),
        ("trips", "subjects"),
    ),
    (
        "points-by-age-band",
        "年齢層別の健康ポイント（月別）",
        "Health points by age band and month",
        points_by_age_band,
        ("age_band",),
        ("points_awarded", "points_redeemed", "subjects"),
    ),
    (
        "spending-by-merchant-category",
        "業種別の地域通貨支払（月別）",
        "Local-currency payments by merchant category and month",
        spending_by_merchant_category,
        ("merchant_category",),
        ("amount_jpy", "payments", "subjects"),
    ),
)


def _flow_read(
    compute: Callable[..., Any],
) -> Callable[[Moment], list[dict[str, Any]]]:
    """Rows of people flow or ridership over the default period: the published cells only."""

    def read(at: Moment) -> list[dict[str, Any]]:
        try:
            start, end = complete_months(None, None, at.now, at.settle_days)
            figures = compute(at.engine, start, end, k=at.k, settle_days=at.settle_days, now=at.now)
        except StatisticsRuleError:
            return []  # no month published yet: nothing to publish
        return [cell.model_dump() for cell in figures.cells]

    return read


#: The 人流データ model's attribute names, in its order (people-flow.md, PDL1.0).
PEOPLE_FLOW_COLUMNS = (
    "areaCode",
    "locationName",
    "measurementDate",
    "startTime",
    "endTime",
    "dayOfWeek",
    "peopleCount",
)
#: Ours: the COMmmmONS 乗降実績 specification's names could not be checked.
RIDERSHIP_COLUMNS = ("stop_id", "date", "startTime", "endTime", "boardings", "alightings")

#: Every dataset the catalogue publishes, in its order.
DATASETS: tuple[Dataset, ...] = (
    Dataset(
        name="bus-stops",
        title_ja="バス停・乗降ポイント",
        title_en="Bus stops and on-demand meeting points",
        description="運行で使われた停留所・乗降ポイント（GTFS-JP の列名）。"
        " / Stops and meeting points trips used (GTFS-JP column names).",
        keywords=("交通", "バス停", "GTFS-JP", "transport"),
        conforms_to=GTFS_JP,
        columns=("stop_id", "stop_name", "stop_lat", "stop_lon", "town", "on_demand", "bus"),
        read=_stop_rows,
    ),
    Dataset(
        name="bus-routes",
        title_ja="バス路線",
        title_en="Bus routes",
        description="車両が運行を報告した路線（GTFS-JP の列名; route_type 3=バス, "
        "715=デマンド交通）。 / Routes vehicles reported (GTFS-JP column names).",
        keywords=("交通", "バス路線", "GTFS-JP", "transport"),
        conforms_to=GTFS_JP,
        columns=("route_id", "agency_id", "route_type"),
        read=_route_rows,
    ),
    Dataset(
        name="vacant-houses",
        title_ja="空き家バンク物件（一般公開分）",
        title_en="Vacant-house bank listings (public part)",
        description="一般へ公開の物件の公開情報のみ（所有者を特定できる情報・管理者のみ閲覧の"
        "物件は含まない）。列名はデジタル庁「空き家バンク」データモデルの英字名（その順）、"
        "続いてモデルにない独自の列。"
        " / The public part of listings open to the public, in the 空き家バンク model's column "
        "names and order, then our own columns; never the owner's details nor an admin-only "
        "listing. " + MODEL_ATTRIBUTION,
        keywords=("空き家", "空き家バンク", "住まい", "housing"),
        conforms_to=AREA_DATA_MODELS,
        columns=VACANT_HOUSE_COLUMNS,
        read=_listing_rows,
    ),
    Dataset(
        name="people-flow",
        title_ja="人流データ（3次メッシュ・時間帯別）",
        title_en="People flow by mesh and hourly band",
        description="停留所で乗車・降車した住民の人数（JIS X 0410 3次メッシュ・日・1時間帯、"
        "日本時間）。k 人未満のセルは掲載しない。"
        "列名はデジタル庁「人流データ」データモデルの英字名。"
        " / Distinct residents boarding or alighting at stops per mesh, day and hour (JST); "
        "cells under k residents are left out. " + MODEL_ATTRIBUTION,
        keywords=("人流", "人流データ", "地域メッシュ", "統計", "k-匿名", "people flow"),
        conforms_to=AREA_DATA_MODELS,
        columns=PEOPLE_FLOW_COLUMNS,
        read=_flow_read(people_flow),
    ),
    Dataset(
        name="ridership",
        title_ja="停留所別の乗降実績（時間帯別）",
        title_en="Boardings and alightings per stop and hourly band",
        description="停留所・日・1時間帯（日本時間）ごとの乗車数と降車数。k 人未満のセルは掲載"
        "しない。列名は独自（国土交通省 COMmmmONS 乗降実績データ標準仕様書の項目名は未確認）。"
        " / Boardings and alightings per stop, day and hour (JST); cells under k residents "
        "are left out. Column names are ours: the COMmmmONS ridership specification's field "
        "names could not be checked.",
        keywords=("交通", "乗降実績", "統計", "k-匿名", "ridership"),
        conforms_to="",
        columns=RIDERSHIP_COLUMNS,
        read=_flow_read(ridership),
    ),
    *(
        Dataset(
            name=name,
            title_ja=title_ja,
            title_en=title_en,
            description=_K_NOTE,
            keywords=("統計", "k-匿名", "statistics"),
            conforms_to="",
            columns=_stat_columns(dims, measures),
            read=_statistic(compute, dims, measures),
        )
        for name, title_ja, title_en, compute, dims, measures in _STATS
    ),
)

_BY_NAME: Mapping[str, Dataset] = MappingProxyType({d.name: d for d in DATASETS})


def dataset(name: str) -> Dataset:
    """The published dataset called ``name``; refused, naming those there are, when none is."""
    found = _BY_NAME.get(name)
    if found is None:
        raise UnknownDatasetError(
            f"no dataset {name!r}: the catalogue publishes {', '.join(_BY_NAME)}"
        )
    return found
