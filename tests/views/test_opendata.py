"""The open datasets' rows, on both stores: only what the rules let anyone see."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, insert, select

from broker.bus.sqlite_log import SqliteLog
from broker.store.database import make_engine
from broker.store.projections.transport import Trip
from broker.store.projections.vacant_house import (
    LISTED_FOR_ADMINS_ONLY,
    LISTED_FOR_PUBLIC,
    PUBLIC_FIELDS,
    Listing,
)
from broker.views.opendata import (
    DATASETS,
    LISTING_COLUMNS,
    LISTING_MARK_COLUMN,
    STANDARD_LISTING_COLUMNS,
    Moment,
    UnknownDatasetError,
    dataset,
    public_listing_rows,
)
from broker.views.statistics import add_months, jst_month_start
from consent.vault import SubjectVault
from tests.events import example_data, make_event
from tests.store.world import ingest

_listings = Listing.__table__  # type: ignore[attr-defined]
_trips = Trip.__table__  # type: ignore[attr-defined]

NOW = datetime.now(UTC)
#: A month the default period (the last twelve published months) holds.
MONTH = add_months(jst_month_start(NOW), -2)


@pytest.fixture
def engine(store_url: str) -> Iterator[Engine]:
    e = make_engine(store_url)
    yield e
    e.dispose()


def _listing(listing_id: str, status: str = "available") -> dict[str, object]:
    return {
        "listing_id": listing_id,
        "owner_id": "res-owner0001",
        "town": "takuma",
        "district": "粟島",
        "building_type": "kominka",
        "layout": "5DK",
        "floor_area_m2": 98.5,
        "offer_type": "rent",
        "rent_band": "20k_to_40k",
        "parking": True,
        "status": status,
        "owner_details_sealed": b"sealed owner details",
        "registered_at": NOW,
        "updated_at": NOW,
    }


def _stored_listings(engine: Engine) -> list[dict[str, object]]:
    with engine.connect() as conn:
        query = select(_listings).order_by(_listings.c.listing_id)
        return [dict(r) for r in conn.execute(query).mappings()]


def test_an_admin_only_listing_is_never_published(engine: Engine) -> None:
    with engine.begin() as conn:
        conn.execute(insert(_listings), [_listing("prop-open0001"), _listing("prop-admn0001")])
    rows = _stored_listings(engine)
    # The mark as the standard's listing schema records it (v1 listings carry none).
    marks = {"prop-open0001": LISTED_FOR_PUBLIC, "prop-admn0001": LISTED_FOR_ADMINS_ONLY}
    for row in rows:
        row[LISTING_MARK_COLUMN] = marks[str(row["listing_id"])]
    published = public_listing_rows(rows)
    assert [r["identifier"] for r in published] == ["prop-open0001"]


def test_a_published_listing_is_its_public_part_under_the_standards_names(
    engine: Engine,
) -> None:
    with engine.begin() as conn:
        conn.execute(insert(_listings), [_listing("prop-open0002")])
    [row] = public_listing_rows(_stored_listings(engine))
    assert set(row) == {"identifier", *LISTING_COLUMNS.values(), "vacantHouseListing"}
    assert len(LISTING_COLUMNS) == len(PUBLIC_FIELDS)
    assert row["streetAddress"] == "粟島"
    assert row["floorPlan"] == "5DK"
    assert row["totalFloorArea_MTK"] == 98.5
    assert row["transactionType"] == "賃貸"
    assert row["parking"] == "あり"
    assert row["vacantHouseListing"] == LISTED_FOR_PUBLIC
    assert "res-owner0001" not in repr(row)
    assert "sealed" not in repr(row)


def test_a_withdrawn_listing_is_not_published(engine: Engine) -> None:
    with engine.begin() as conn:
        conn.execute(insert(_listings), [_listing("prop-gone0001", status="withdrawn")])
    assert public_listing_rows(_stored_listings(engine)) == []


@pytest.fixture
def vault(tmp_path: Path) -> Iterator[SubjectVault]:
    opened = SubjectVault.open_url(f"sqlite:///{tmp_path / 'keys' / 'vault.db'}")
    yield opened
    opened.close()


def _standard_listing(listing_id: str, listed: str = LISTED_FOR_PUBLIC) -> dict[str, Any]:
    """A bank's listing in the standard model (v2): the schema's example, under ``listing_id``."""
    data = example_data("vacant_house.listing.registered", 2)
    data["listing_id"] = listing_id
    data["public"] = {
        **data["public"],
        "identifier": listing_id.upper(),
        "vacantHouseListing": listed,
    }
    return make_event("vacant_house.listing.registered", data=data, subject=listing_id, version=2)


def _vacant_houses(
    engine: Engine, sqlite_bus: SqliteLog, vault: SubjectVault, events: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """The vacant-house dataset's rows once ``events`` went through the real ingest."""
    outcome = ingest(sqlite_bus, engine, vault, events)
    assert outcome.rejected == 0
    return dataset("vacant-houses").rows(Moment(engine=engine, k=10, settle_days=7, now=NOW))


def test_a_standard_listing_publishes_its_public_fields_under_the_standards_names(
    engine: Engine, sqlite_bus: SqliteLog, vault: SubjectVault
) -> None:
    event = _standard_listing("prop-std00001")
    [row] = _vacant_houses(engine, sqlite_bus, vault, [event])
    public = event["data"]["public"]
    assert {name: row[name] for name in STANDARD_LISTING_COLUMNS} == {
        name: public[name] for name in STANDARD_LISTING_COLUMNS
    }
    # Every public field of the standard is published, not only those v1 also had.
    assert set(STANDARD_LISTING_COLUMNS) == set(public)
    assert row["identifier"] == "PROP-STD00001"
    assert row["gas"] == "プロパンガス（LPG）"
    assert row["vacantHouseListing"] == LISTED_FOR_PUBLIC
    # What the projection derived from them, as v1 listings have it.
    assert (row["town"], row["status"]) == ("takuma", "available")


def test_no_field_that_identifies_a_standard_listings_owner_is_published(
    engine: Engine, sqlite_bus: SqliteLog, vault: SubjectVault
) -> None:
    event = _standard_listing("prop-std00002")
    owner_details = event["data"]["owner_details"]
    rows = _vacant_houses(engine, sqlite_bus, vault, [event])
    assert rows
    columns = dataset("vacant-houses").columns
    assert set(owner_details).isdisjoint(columns)  # fullAddress, cityBlock, latitude, ...
    published = repr(rows)
    leaks = [v for v in owner_details.values() if v is not None and str(v) in published]
    assert leaks == []
    assert event["data"]["owner_id"] not in published


def test_an_admin_only_standard_listing_is_never_published(
    engine: Engine, sqlite_bus: SqliteLog, vault: SubjectVault
) -> None:
    events = [
        _standard_listing("prop-std00003"),
        _standard_listing("prop-std00004", listed=LISTED_FOR_ADMINS_ONLY),
    ]
    rows = _vacant_houses(engine, sqlite_bus, vault, events)
    assert [r["identifier"] for r in rows] == ["PROP-STD00003"]


def test_v1_and_standard_listings_share_one_dataset(
    engine: Engine, sqlite_bus: SqliteLog, vault: SubjectVault
) -> None:
    with engine.begin() as conn:
        conn.execute(insert(_listings), [_listing("prop-open0003")])
    rows = _vacant_houses(engine, sqlite_bus, vault, [_standard_listing("prop-std00005")])
    by_id = {r["identifier"]: r for r in rows}
    assert set(by_id) == {"prop-open0003", "PROP-STD00005"}
    assert by_id["prop-open0003"]["floorPlan"] == "5DK"
    assert by_id["prop-open0003"]["rent_band"] == "20k_to_40k"
    assert by_id["PROP-STD00005"]["floorPlan"] == "5DK"
    assert by_id["PROP-STD00005"]["propertyRent_JPY"] == 30000
    assert by_id["PROP-STD00005"]["rent_band"] is None  # a v1 field the standard has not


def _trips_of(town: str, subjects: int) -> list[dict[str, object]]:
    at = MONTH + timedelta(days=3, hours=5)
    return [
        {
            "event_id": f"evt-{uuid.uuid4().hex}",
            "trip_id": f"trip-{uuid.uuid4().hex[:8]}",
            "subject_ref": uuid.uuid5(uuid.NAMESPACE_OID, f"{town}/{s}").hex,
            "mode": "on_demand",
            "operator_id": "op-1",
            "origin_town": town,
            "destination_town": "mino",
            "pickup_at": at,
            "dropoff_at": at + timedelta(minutes=20),
            "fare_jpy": 300,
            "passengers": 1,
            "sealed": b"x",
        }
        for s in range(subjects)
    ]


def test_a_statistics_dataset_publishes_cells_of_k_residents_and_suppresses_smaller(
    engine: Engine,
) -> None:
    with engine.begin() as conn:
        conn.execute(insert(_trips), _trips_of("takuma", 12) + _trips_of("nio", 3))
    at = Moment(engine=engine, k=10, settle_days=7, now=NOW)
    rows = dataset("trips-by-town-month").rows(at)
    by_town = {r["town"]: r for r in rows}
    assert by_town["takuma"]["trips"] == 12
    assert by_town["takuma"]["subjects"] == 12
    assert by_town["takuma"]["suppressed"] is False
    assert by_town["nio"]["suppressed"] is True
    assert by_town["nio"]["trips"] is None
    assert by_town["nio"]["subjects"] is None


def test_every_dataset_of_an_empty_store_is_empty(engine: Engine) -> None:
    at = Moment(engine=engine, k=10, settle_days=7, now=NOW)
    assert {ds.name: ds.rows(at) for ds in DATASETS} == {ds.name: [] for ds in DATASETS}


def test_an_unknown_dataset_is_refused_naming_those_published() -> None:
    with pytest.raises(UnknownDatasetError, match="bus-stops"):
        dataset("residents")
