"""Projections keep personal data sealed: rows name people by blind reference, precise fields
are encrypted under each person's key, and views still find a person's rows (both backends)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, select, text

from broker.bus.sqlite_log import SqliteLog
from broker.store.database import make_engine
from broker.store.projections import LISTINGS, project, subject_tables
from broker.store.projections.health import HealthPoints
from broker.store.projections.transport import TransportStop, Trip
from consent.vault import SubjectVault
from contract.cloudevents import CloudEvent
from tests.store.world import (
    ALICE,
    ALICES_HOUSE,
    BOB,
    MERCHANT_NAME,
    MESSAGE,
    OWNER_NAME,
    event_about,
    ingest,
    listing_of,
    personal_rows,
    residents_events,
    vault,
    vault_url,
)

__all__ = ["vault", "vault_url"]  # the fixtures this module uses

_trips = Trip.__table__  # type: ignore[attr-defined]
_stops = TransportStop.__table__  # type: ignore[attr-defined]
_health = HealthPoints.__table__  # type: ignore[attr-defined]


@pytest.fixture
def store(store_url: str) -> Iterator[Engine]:
    engine = make_engine(store_url)
    yield engine
    engine.dispose()


@pytest.fixture
def docs(store: Engine, vault: SubjectVault, sqlite_bus: SqliteLog) -> list[dict[str, Any]]:
    """Alice's and Bob's events of every personal type, and Alice's house, ingested."""
    docs = [*residents_events(ALICE), *residents_events(BOB), listing_of(ALICE)]
    outcome = ingest(sqlite_bus, store, vault, docs)
    assert (outcome.projected, outcome.rejected) == (len(docs), 0)
    return docs


def _coordinates(docs: list[dict[str, Any]]) -> set[float]:
    places = [d["data"][p] for d in docs for p in ("origin", "destination") if p in d["data"]]
    return {place[c] for place in places for c in ("lat", "lon")}


def test_personal_tables_name_no_resident(store: Engine, docs: list[dict[str, Any]]) -> None:
    for table, rows in personal_rows(store).items():
        if table == LISTINGS.name:
            continue  # the property rule needs a listing's owner_id in clear
        assert rows, table
        for row in rows:
            assert not {ALICE, BOB} & {str(v) for v in row.values()}, (table, row)
            assert "resident_id" not in row
    with store.connect() as conn:
        ledger = conn.execute(text("SELECT * FROM ingested_events")).all()
    assert all(ALICE not in str(tuple(r)) for r in ledger)  # event ids would link it back


def test_precise_and_identifying_fields_are_not_in_clear(
    store: Engine, docs: list[dict[str, Any]]
) -> None:
    coordinates = _coordinates(docs)
    for table, rows in personal_rows(store).items():
        for row in rows:
            values = {v for v in row.values() if not isinstance(v, bytes)}
            shown = " ".join(map(str, values))
            assert not coordinates & {v for v in values if isinstance(v, float)}, table
            for secret in (MERCHANT_NAME, OWNER_NAME, MESSAGE, "veh-", "w-00012873"):
                assert secret not in shown, (table, secret)
            sealed = row.get("sealed") or row.get("owner_details_sealed")
            assert sealed and OWNER_NAME.encode() not in sealed


# A file-level check: SQLite only (the row checks cover PostgreSQL).
@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
def test_the_sqlite_store_file_holds_none_of_it_in_clear(
    store: Engine, docs: list[dict[str, Any]], store_url: str
) -> None:
    store.dispose()
    path = Path(store_url.split("///", 1)[1])
    content = b"".join(p.read_bytes() for p in path.parent.glob(path.name + "*"))
    # Alice's id is there only as her house's owner_id, which the property rule reads.
    for secret in (BOB, MERCHANT_NAME, OWNER_NAME, MESSAGE):
        assert secret.encode() not in content, secret


def test_a_residents_rows_are_found_by_their_reference_and_open_with_their_key(
    store: Engine, vault: SubjectVault, docs: list[dict[str, Any]]
) -> None:
    ref = vault.ref(ALICE)
    assert ref is not None and ref != vault.ref(BOB)
    trip_doc = next(d for d in docs if d["subject"] == ALICE and d["type"].endswith("completed"))
    with store.connect() as conn:
        for table in subject_tables():
            found = conn.execute(select(table).where(table.c.subject_ref == ref)).all()
            assert len(found) == sum(
                1 for d in docs if d["subject"] == ALICE and _table_of(d) == table.name
            ), table.name
        trip = conn.execute(select(_trips).where(_trips.c.subject_ref == ref)).one()
    opened = vault.open(ALICE, trip.sealed)
    assert opened == {
        "vehicle_id": trip_doc["data"]["vehicle_id"],
        "origin_lat": trip_doc["data"]["origin"]["lat"],
        "origin_lon": trip_doc["data"]["origin"]["lon"],
        "destination_lat": trip_doc["data"]["destination"]["lat"],
        "destination_lon": trip_doc["data"]["destination"]["lon"],
        "distance_m": trip_doc["data"]["distance_m"],
    }
    assert (trip.origin_stop_id, trip.fare_jpy) == (
        trip_doc["data"]["origin"]["stop_id"],
        trip_doc["data"]["fare_jpy"],
    )


def _table_of(doc: dict[str, Any]) -> str:
    domain, kind = doc["type"].split(".")[:2]
    return {
        "transport.trip": "transport_trips",
        "transport.ride": "transport_ride_requests",
        "vacant_house.inquiry": "vacant_house_inquiries",
        "health.points": "health_points",
    }.get(f"{domain}.{kind}", "currency_transactions" if domain == "currency" else "")


def test_owner_details_are_sealed_under_the_owners_key(
    store: Engine, vault: SubjectVault, docs: list[dict[str, Any]]
) -> None:
    with store.connect() as conn:
        listing = conn.execute(select(LISTINGS)).one()
    assert (listing.listing_id, listing.owner_id, listing.district) == (ALICES_HOUSE, ALICE, "粟島")
    details = vault.open(listing.owner_id, listing.owner_details_sealed)
    assert details["owner_name"] == OWNER_NAME


def test_a_listing_update_merges_the_same_owners_details(
    store: Engine, vault: SubjectVault, sqlite_bus: SqliteLog
) -> None:
    ingest(sqlite_bus, store, vault, [listing_of(ALICE)])
    update = event_about(
        "vacant_house.listing.updated",
        ALICE,
        listing_id=ALICES_HOUSE,
        updated_at="2025-07-01T09:00:00+09:00",
        owner_details={"owner_contact": {"phone": "090-0000-0000"}},
    )
    del update["data"]["public"]
    assert ingest(sqlite_bus, store, vault, [update]).projected == 1
    with store.connect() as conn:
        listing = conn.execute(select(LISTINGS)).one()
    details = vault.open(ALICE, listing.owner_details_sealed)
    assert details["owner_contact"] == {"phone": "090-0000-0000"}
    assert details["owner_name"] == OWNER_NAME


def test_a_new_owner_never_takes_over_the_previous_owners_details(
    store: Engine, vault: SubjectVault, sqlite_bus: SqliteLog
) -> None:
    ingest(sqlite_bus, store, vault, [listing_of(ALICE)])
    sale = event_about(
        "vacant_house.listing.updated",
        BOB,
        listing_id=ALICES_HOUSE,
        updated_at="2025-07-01T09:00:00+09:00",
    )
    del sale["data"]["owner_details"]
    assert ingest(sqlite_bus, store, vault, [sale]).projected == 1
    with store.connect() as conn:
        sold = conn.execute(select(LISTINGS)).one()
    assert (sold.owner_id, sold.owner_details_sealed) == (BOB, None)
    bobs = event_about(
        "vacant_house.listing.updated",
        BOB,
        listing_id=ALICES_HOUSE,
        updated_at="2025-07-02T09:00:00+09:00",
        owner_details={"owner_name": "佐藤 一郎"},
    )
    del bobs["data"]["public"]
    assert ingest(sqlite_bus, store, vault, [bobs]).projected == 1
    with store.connect() as conn:
        listing = conn.execute(select(LISTINGS)).one()
    assert vault.open(BOB, listing.owner_details_sealed) == {"owner_name": "佐藤 一郎"}


def test_stops_used_by_trips_are_kept_with_what_serves_them(
    store: Engine, docs: list[dict[str, Any]]
) -> None:
    with store.connect() as conn:
        stops = {r.stop_id: r for r in conn.execute(select(_stops))}
    trip = next(d["data"] for d in docs if d["type"] == "transport.trip.completed")
    origin = stops[trip["origin"]["stop_id"]]
    assert (origin.town, origin.lat, origin.lon) == (
        trip["origin"]["town"],
        trip["origin"]["lat"],
        trip["origin"]["lon"],
    )
    assert (origin.on_demand, origin.bus) == (True, False)  # the example is an on-demand trip
    assert origin.first_seen == datetime.fromisoformat(trip["pickup_at"])
    assert stops[trip["destination"]["stop_id"]].last_seen == datetime.fromisoformat(
        trip["dropoff_at"]
    )


def test_a_stop_served_by_a_bus_later_is_marked_for_both(
    store: Engine, vault: SubjectVault, docs: list[dict[str, Any]], sqlite_bus: SqliteLog
) -> None:
    first = next(d["data"] for d in docs if d["type"] == "transport.trip.completed")
    bus_trip = event_about(
        "transport.trip.completed",
        BOB,
        mode="fixed_route_bus",
        trip_id="bus-later-1",
        pickup_at="2025-07-01T08:00:00+09:00",
        dropoff_at="2025-07-01T08:20:00+09:00",
    )
    ingest(sqlite_bus, store, vault, [bus_trip])
    with store.connect() as conn:
        stop = conn.execute(
            select(_stops).where(_stops.c.stop_id == first["origin"]["stop_id"])
        ).one()
    assert (stop.on_demand, stop.bus) == (True, True)
    assert stop.first_seen == datetime.fromisoformat(first["pickup_at"])
    assert stop.last_seen == datetime(2025, 6, 30, 23, 0, tzinfo=UTC)


def test_door_to_door_places_are_not_stops(
    store: Engine, vault: SubjectVault, sqlite_bus: SqliteLog
) -> None:
    doc = event_about("transport.trip.completed", ALICE)
    doc["data"]["origin"] = {"lat": 34.2001, "lon": 133.7002, "town": "takase"}
    ingest(sqlite_bus, store, vault, [doc])
    with store.connect() as conn:
        stops = conn.execute(select(_stops.c.stop_id, _stops.c.lat)).all()
    assert [s.stop_id for s in stops] == [doc["data"]["destination"]["stop_id"]]
    assert 34.2001 not in {s.lat for s in stops}


def test_the_age_band_stays_in_clear_when_an_event_has_one(
    store: Engine, vault: SubjectVault
) -> None:
    data = {**event_about("health.points.awarded", ALICE)["data"], "age_band": "70-74"}
    award = CloudEvent("ev-age-1", "urn:test", "health.points.awarded", ALICE, _now(), data)
    plain = CloudEvent(
        "ev-age-2", "urn:test", "health.points.awarded", BOB, _now(), {**data, "resident_id": BOB}
    )
    del plain.data["age_band"]
    with store.begin() as conn:
        assert project(conn, [award, plain], vault) == []
    with store.connect() as conn:
        bands: dict[str, str | None] = {
            r.event_id: r.age_band for r in conn.execute(select(_health))
        }
    assert bands == {"ev-age-1": "70-74", "ev-age-2": None}


def _now() -> datetime:
    return datetime.now(UTC)
