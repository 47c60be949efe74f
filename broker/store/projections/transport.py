"""Transport projections: completed trips, ride requests, the stops they use, vehicle positions.

Trips and ride requests are about a resident: they keep in clear what views and statistics
group by (mode, operator, stops, towns, times, fare, passengers) and seal the precise part
(coordinates, vehicle, distance) under the resident's key. Stops and vehicles are not
personal: their tables are in clear.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Index, LargeBinary, String, case
from sqlmodel import Field, SQLModel

from broker.store.bulk import insert_many
from broker.store.projections.projection import Projection
from broker.store.projections.sealing import REF_LENGTH, BatchKeys
from broker.store.projections.timestamps import UtcDateTime, parse_time
from broker.store.projections.upsert import Columns, upsert_many
from contract.cloudevents import CloudEvent

TRIP = "transport.trip.completed"
RIDE = "transport.ride.requested"
POSITION = "transport.vehicle.position"


class Trip(SQLModel, table=True):
    """One completed on-demand or bus trip of a resident.

    Sealed: vehicle_id, origin_lat/lon, destination_lat/lon, distance_m.
    """

    __tablename__ = "transport_trips"
    __table_args__ = (
        Index("ix_trips_subject_pickup", "subject_ref", "pickup_at"),
        Index("ix_trips_origin_stop", "origin_stop_id"),
        Index("ix_trips_destination_stop", "destination_stop_id"),
    )

    event_id: str = Field(primary_key=True, max_length=128)
    trip_id: str = Field(index=True, max_length=64)
    subject_ref: str = Field(sa_type=String(REF_LENGTH))
    mode: str = Field(max_length=32)
    operator_id: str = Field(max_length=64)
    origin_stop_id: str | None = Field(default=None, max_length=64)
    origin_town: str | None = Field(default=None, max_length=32)
    destination_stop_id: str | None = Field(default=None, max_length=64)
    destination_town: str | None = Field(default=None, max_length=32)
    pickup_at: datetime = Field(sa_type=UtcDateTime)
    dropoff_at: datetime = Field(sa_type=UtcDateTime)
    fare_jpy: int
    passengers: int
    sealed: bytes = Field(sa_type=LargeBinary)


class RideRequest(SQLModel, table=True):
    """A resident's request for an on-demand ride.

    Sealed: origin_lat/lon, destination_lat/lon.
    """

    __tablename__ = "transport_ride_requests"
    __table_args__ = (Index("ix_rides_subject_requested", "subject_ref", "requested_at"),)

    event_id: str = Field(primary_key=True, max_length=128)
    request_id: str = Field(index=True, max_length=64)
    subject_ref: str = Field(sa_type=String(REF_LENGTH))
    mode: str = Field(max_length=32)
    operator_id: str = Field(max_length=64)
    origin_stop_id: str | None = Field(default=None, max_length=64)
    origin_town: str | None = Field(default=None, max_length=32)
    destination_stop_id: str | None = Field(default=None, max_length=64)
    destination_town: str | None = Field(default=None, max_length=32)
    requested_at: datetime = Field(sa_type=UtcDateTime)
    passengers: int
    channel: str = Field(max_length=32)
    sealed: bytes = Field(sa_type=LargeBinary)


class TransportStop(SQLModel, table=True):
    """A stop or meeting point trips used (a public place), with what serves it."""

    __tablename__ = "transport_stops"
    __table_args__ = (Index("ix_stops_town", "town"),)

    stop_id: str = Field(primary_key=True, max_length=64)
    stop_name: str | None = Field(default=None, max_length=100)  # GTFS stop_name, as trips give it
    town: str | None = Field(default=None, max_length=32)
    lat: float | None = None
    lon: float | None = None
    on_demand: bool = False
    bus: bool = False
    first_seen: datetime = Field(sa_type=UtcDateTime)
    last_seen: datetime = Field(sa_type=UtcDateTime)


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
_stops = TransportStop.__table__  # type: ignore[attr-defined]
_positions = VehiclePosition.__table__  # type: ignore[attr-defined]


def _trip_row(e: CloudEvent, keys: BatchKeys) -> dict[str, Any]:
    d = e.data
    origin, destination = d["origin"], d["destination"]
    key = keys[d["resident_id"]]
    return {
        "event_id": e.id,
        "trip_id": d["trip_id"],
        "subject_ref": key.ref,
        "mode": d["mode"],
        "operator_id": d["operator_id"],
        "origin_stop_id": origin.get("stop_id"),
        "origin_town": origin.get("town"),
        "destination_stop_id": destination.get("stop_id"),
        "destination_town": destination.get("town"),
        "pickup_at": parse_time(d["pickup_at"]),
        "dropoff_at": parse_time(d["dropoff_at"]),
        "fare_jpy": d["fare_jpy"],
        "passengers": d["passengers"],
        "sealed": key.seal(
            {
                "vehicle_id": d["vehicle_id"],
                "origin_lat": origin.get("lat"),
                "origin_lon": origin.get("lon"),
                "destination_lat": destination.get("lat"),
                "destination_lon": destination.get("lon"),
                "distance_m": d.get("distance_m"),
            }
        ),
    }


def _ride_row(e: CloudEvent, keys: BatchKeys) -> dict[str, Any]:
    d = e.data
    origin, destination = d["origin"], d["destination"]
    key = keys[d["resident_id"]]
    return {
        "event_id": e.id,
        "request_id": d["request_id"],
        "subject_ref": key.ref,
        "mode": d["mode"],
        "operator_id": d["operator_id"],
        "origin_stop_id": origin.get("stop_id"),
        "origin_town": origin.get("town"),
        "destination_stop_id": destination.get("stop_id"),
        "destination_town": destination.get("town"),
        "requested_at": parse_time(d["requested_at"]),
        "passengers": d["passengers"],
        "channel": d["channel"],
        "sealed": key.seal(
            {
                "origin_lat": origin.get("lat"),
                "origin_lon": origin.get("lon"),
                "destination_lat": destination.get("lat"),
                "destination_lon": destination.get("lon"),
            }
        ),
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


def project_transport(conn: Connection, events: Sequence[CloudEvent], keys: BatchKeys) -> None:
    """Write transport events (ledger-fresh, in partition order) to their tables."""
    trip_events = [e for e in events if e.type == TRIP]
    trips = [_trip_row(e, keys) for e in trip_events]
    rides = [_ride_row(e, keys) for e in events if e.type == RIDE]
    if trips:
        insert_many(conn, _trips, trips)
        stops = _stop_rows(trip_events, trips)
        upsert_many(conn, _stops, stops, key="stop_id", merge=_merge_stop, name="stops")
    if rides:
        insert_many(conn, _rides, rides)
    latest: dict[str, dict[str, Any]] = {}
    for e in events:
        if e.type == POSITION:
            row = _position_row(e)
            seen = latest.get(row["vehicle_id"])
            if seen is None or row["recorded_at"] >= seen["recorded_at"]:
                latest[row["vehicle_id"]] = row
    upsert_many(
        conn,
        _positions,
        list(latest.values()),
        key="vehicle_id",
        merge=_merge_position,
        name="positions",
    )


def _stop_rows(
    events: Sequence[CloudEvent], trips: Sequence[dict[str, Any]]
) -> list[dict[str, Any]]:
    """One row per stop the trips used, merged over the batch (name, town, place: first seen)."""
    stops: dict[str, list[Any]] = {}  # stop id -> [place, on_demand, bus, first, last]
    for e, trip in zip(events, trips, strict=True):
        d = e.data
        mode = d["mode"]
        on_demand, bus = "on_demand" in mode, "bus" in mode  # on_demand | fixed_route_bus
        for place, seen in (
            (d["origin"], trip["pickup_at"]),
            (d["destination"], trip["dropoff_at"]),
        ):
            stop_id = place.get("stop_id")
            if stop_id is None:
                continue  # a door-to-door pick-up: a person's place, not a stop
            stop = stops.get(stop_id)
            if stop is None:
                stops[stop_id] = [place, on_demand, bus, seen, seen]
                continue
            stop[1] |= on_demand
            stop[2] |= bus
            if seen < stop[3]:
                stop[3] = seen
            elif seen > stop[4]:
                stop[4] = seen
    return [
        {
            "stop_id": stop_id,
            "stop_name": place.get("stop_name"),
            "town": place.get("town"),
            "lat": place.get("lat"),
            "lon": place.get("lon"),
            "on_demand": on_demand,
            "bus": bus,
            "first_seen": first,
            "last_seen": last,
        }
        for stop_id, (place, on_demand, bus, first, last) in stops.items()
    ]


def _merge_stop(new: Columns, old: Columns) -> tuple[dict[str, Any], None]:
    # A stop keeps the first coordinates, town and name it was seen with (a stop does not
    # move); it gains modes and widens its seen range, whatever order batches come in.
    keep_first = old.lat.is_(None)
    return {
        "stop_name": case((old.stop_name.is_(None), new.stop_name), else_=old.stop_name),
        "town": case((old.town.is_(None), new.town), else_=old.town),
        "lat": case((keep_first, new.lat), else_=old.lat),
        "lon": case((keep_first, new.lon), else_=old.lon),
        "on_demand": old.on_demand | new.on_demand,
        "bus": old.bus | new.bus,
        "first_seen": case((new.first_seen < old.first_seen, new.first_seen), else_=old.first_seen),
        "last_seen": case((new.last_seen > old.last_seen, new.last_seen), else_=old.last_seen),
    }, None


def _merge_position(new: Columns, old: Columns) -> tuple[dict[str, Any], Any]:
    # Positions arrive out of order across feeds: only a newer fix replaces the stored one.
    changed = [c.key for c in _positions.columns if c.key != "vehicle_id"]
    return {k: new[k] for k in changed}, new.recorded_at >= old.recorded_at


#: Named by the domain's declaration (``contract.domains``).
PROJECTION = Projection(
    project_transport, tables=(_trips, _rides, _stops, _positions), subject_tables=(_trips, _rides)
)
