"""Transport projections: completed trips, ride requests, latest vehicle positions."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Index, select
from sqlmodel import Field, SQLModel

from broker.cloudevents import CloudEvent
from broker.store.bulk import insert_many
from broker.store.projections.timestamps import UtcDateTime, parse_time


class Trip(SQLModel, table=True):
    """One completed on-demand or bus trip of a resident."""

    __tablename__ = "transport_trips"
    __table_args__ = (Index("ix_trips_resident_pickup", "resident_id", "pickup_at"),)

    event_id: str = Field(primary_key=True, max_length=128)
    trip_id: str = Field(index=True, max_length=64)
    resident_id: str = Field(max_length=64)
    mode: str = Field(max_length=32)
    operator_id: str = Field(max_length=64)
    vehicle_id: str = Field(max_length=64)
    origin_stop_id: str | None = Field(default=None, max_length=64)
    origin_town: str | None = Field(default=None, max_length=32)
    origin_lat: float | None = None
    origin_lon: float | None = None
    destination_stop_id: str | None = Field(default=None, max_length=64)
    destination_town: str | None = Field(default=None, max_length=32)
    destination_lat: float | None = None
    destination_lon: float | None = None
    pickup_at: datetime = Field(sa_type=UtcDateTime)
    dropoff_at: datetime = Field(sa_type=UtcDateTime)
    fare_jpy: int
    passengers: int
    distance_m: int | None = None


class RideRequest(SQLModel, table=True):
    """A resident's request for an on-demand ride."""

    __tablename__ = "transport_ride_requests"
    __table_args__ = (Index("ix_rides_resident_requested", "resident_id", "requested_at"),)

    event_id: str = Field(primary_key=True, max_length=128)
    request_id: str = Field(index=True, max_length=64)
    resident_id: str = Field(max_length=64)
    mode: str = Field(max_length=32)
    operator_id: str = Field(max_length=64)
    origin_town: str | None = Field(default=None, max_length=32)
    destination_town: str | None = Field(default=None, max_length=32)
    requested_at: datetime = Field(sa_type=UtcDateTime)
    passengers: int
    channel: str = Field(max_length=32)


class VehiclePosition(SQLModel, table=True):
    """The latest known position of each vehicle (not personal data)."""

    __tablename__ = "transport_vehicle_positions"

    vehicle_id: str = Field(primary_key=True, max_length=64)
    operator_id: str = Field(max_length=64)
    mode: str = Field(max_length=32)
    lat: float
    lon: float
    bearing: float | None = None
    speed_kmh: float | None = None
    route_id: str | None = Field(default=None, max_length=64)
    occupancy: str | None = Field(default=None, max_length=32)
    recorded_at: datetime = Field(sa_type=UtcDateTime)


_trips = Trip.__table__  # type: ignore[attr-defined]
_rides = RideRequest.__table__  # type: ignore[attr-defined]
_positions = VehiclePosition.__table__  # type: ignore[attr-defined]


def _place(prefix: str, place: dict[str, Any]) -> dict[str, Any]:
    return {
        f"{prefix}_stop_id": place.get("stop_id"),
        f"{prefix}_town": place.get("town"),
        f"{prefix}_lat": place.get("lat"),
        f"{prefix}_lon": place.get("lon"),
    }


def _trip_row(e: CloudEvent) -> dict[str, Any]:
    d = e.data
    return {
        "event_id": e.id,
        "trip_id": d["trip_id"],
        "resident_id": d["resident_id"],
        "mode": d["mode"],
        "operator_id": d["operator_id"],
        "vehicle_id": d["vehicle_id"],
        **_place("origin", d["origin"]),
        **_place("destination", d["destination"]),
        "pickup_at": parse_time(d["pickup_at"]),
        "dropoff_at": parse_time(d["dropoff_at"]),
        "fare_jpy": d["fare_jpy"],
        "passengers": d["passengers"],
        "distance_m": d.get("distance_m"),
    }


def _ride_row(e: CloudEvent) -> dict[str, Any]:
    d = e.data
    return {
        "event_id": e.id,
        "request_id": d["request_id"],
        "resident_id": d["resident_id"],
        "mode": d["mode"],
        "operator_id": d["operator_id"],
        "origin_town": d["origin"].get("town"),
        "destination_town": d["destination"].get("town"),
        "requested_at": parse_time(d["requested_at"]),
        "passengers": d["passengers"],
        "channel": d["channel"],
    }


def _position_row(e: CloudEvent) -> dict[str, Any]:
    d = e.data
    return {
        "vehicle_id": d["vehicle_id"],
        "operator_id": d["operator_id"],
        "mode": d["mode"],
        "lat": d["lat"],
        "lon": d["lon"],
        "bearing": d.get("bearing"),
        "speed_kmh": d.get("speed_kmh"),
        "route_id": d.get("route_id"),
        "occupancy": d.get("occupancy"),
        "recorded_at": parse_time(d["recorded_at"]),
    }


def project_transport(conn: Connection, events: Sequence[CloudEvent]) -> None:
    """Write transport events (ledger-fresh, in partition order) to their tables."""
    trips = [_trip_row(e) for e in events if e.type == "transport.trip.completed"]
    rides = [_ride_row(e) for e in events if e.type == "transport.ride.requested"]
    if trips:
        insert_many(conn, _trips, trips)
    if rides:
        insert_many(conn, _rides, rides)
    latest: dict[str, dict[str, Any]] = {}
    for e in events:
        if e.type == "transport.vehicle.position":
            row = _position_row(e)
            seen = latest.get(row["vehicle_id"])
            if seen is None or row["recorded_at"] >= seen["recorded_at"]:
                latest[row["vehicle_id"]] = row
    if latest:
        _upsert_positions(conn, list(latest.values()))


def _upsert_positions(conn: Connection, rows: list[dict[str, Any]]) -> None:
    # Positions arrive out of order across feeds: only a newer fix replaces the stored one.
    ids = [r["vehicle_id"] for r in rows]
    stored: dict[str, Any] = dict(
        conn.execute(
            select(_positions.c.vehicle_id, _positions.c.recorded_at).where(
                _positions.c.vehicle_id.in_(ids)
            )
        ).all()
    )
    new = [r for r in rows if r["vehicle_id"] not in stored]
    newer = [
        r for r in rows if r["vehicle_id"] in stored and r["recorded_at"] >= stored[r["vehicle_id"]]
    ]
    if new:
        insert_many(conn, _positions, new)
    for r in newer:
        conn.execute(
            _positions.update().where(_positions.c.vehicle_id == r["vehicle_id"]).values(**r)
        )
