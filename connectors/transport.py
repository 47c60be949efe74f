"""The on-demand transport connector's readers: trips and ride requests from the operator's CSV
exports, stops from its GTFS(-JP) static feed, vehicle positions from its GTFS-Realtime feed.

    stops = read_gtfs_stops("gtfs.zip")
    drafts = read_trips_csv("trips.csv", stops, encoding="cp932")

Column formats: ``connectors/samples/README.md``.
"""

from __future__ import annotations

import io
import os
import re
import struct
import zipfile
import zlib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from google.protobuf.message import DecodeError
from google.transit import gtfs_realtime_pb2

from connectors.readers import (
    JST,
    CsvSource,
    FieldError,
    Fields,
    Row,
    Seen,
    carried_id,
    iso,
    map_rows,
    numbered,
    read_csv,
)
from connectors.sdk.rows import EventDraft, RowError
from contract.towns import REGION_RADIUS_KM, town_at, town_code

__all__ = [
    "EVENT_TYPES",
    "RIDE_REQUESTED",
    "SOURCE",
    "TRIP_COMPLETED",
    "VEHICLE_POSITION",
    "GtfsError",
    "Operator",
    "OutsideStop",
    "Stop",
    "Stops",
    "read_gtfs_stops",
    "read_ride_requests_csv",
    "read_trips_csv",
    "read_vehicle_positions",
    "ride_request_drafts",
    "stops_from_rows",
    "trip_drafts",
    "vehicle_position_drafts",
]

SOURCE = "urn:tsunagu:connector:mitoyo-ondemand"
RIDE_REQUESTED = "transport.ride.requested"
TRIP_COMPLETED = "transport.trip.completed"
VEHICLE_POSITION = "transport.vehicle.position"
EVENT_TYPES: tuple[str, ...] = (RIDE_REQUESTED, TRIP_COMPLETED, VEHICLE_POSITION)

MODES = ("on_demand", "fixed_route_bus")
CHANNELS = ("app", "phone", "web", "line", "kiosk")

#: Columns every trips export must have (the others may be absent).
TRIP_REQUIRED = (
    "trip_id",
    "resident_id",
    "vehicle_id",
    "pickup_at",
    "dropoff_at",
    "fare_jpy",
    "passengers",
)
#: Every column the trips reader reads, in the documented order.
TRIP_COLUMNS = (
    "trip_id",
    "request_id",
    "resident_id",
    "mode",
    "vehicle_id",
    "route_id",
    "origin_stop_id",
    "origin_lat",
    "origin_lon",
    "destination_stop_id",
    "destination_lat",
    "destination_lon",
    "requested_at",
    "pickup_at",
    "dropoff_at",
    "fare_jpy",
    "passengers",
    "distance_m",
)
#: Columns every ride-requests export must have.
REQUEST_REQUIRED = ("request_id", "resident_id", "requested_at", "passengers", "channel")
#: Every column the ride-requests reader reads, in the documented order.
REQUEST_COLUMNS = (
    "request_id",
    "resident_id",
    "mode",
    "origin_stop_id",
    "origin_lat",
    "origin_lon",
    "destination_stop_id",
    "destination_lat",
    "destination_lon",
    "requested_at",
    "desired_pickup_at",
    "desired_arrival_at",
    "passengers",
    "channel",
    "wheelchair",
)
#: Columns ``stops.txt`` must have (GTFS requires more; these are the ones we read).
STOP_COLUMNS = ("stop_id", "stop_name", "stop_lat", "stop_lon")
#: The longest GTFS id (stop_id, route_id) a reader takes: GTFS allows any text, and events
#: carry ``carried_id`` of it, so only a sanity bound remains.
GTFS_ID_MAX_LENGTH = 1000


@dataclass(frozen=True, slots=True)
class Operator:
    """Who runs the service: fills ``operator_id``/``operator_name`` and the default mode."""

    operator_id: str
    name: str
    mode: str = "on_demand"


DEFAULT_OPERATOR = Operator("mitoyo-ondemand", "三豊つなぐ交通株式会社")


@dataclass(frozen=True, slots=True)
class Stop:
    """A stop or meeting point of the static feed, with the former town it is in."""

    stop_id: str
    stop_name: str
    lat: float
    lon: float
    town: str

    def place(self) -> dict[str, Any]:
        """The stop as a trip's ``origin``/``destination`` (its id as events carry ids)."""
        return {
            "stop_id": carried_id(self.stop_id),
            "stop_name": self.stop_name,
            "lat": self.lat,
            "lon": self.lon,
            "town": self.town,
        }


@dataclass(frozen=True, slots=True)
class OutsideStop:
    """A stop of the feed that lies outside the region: reported, never given a town."""

    stop_id: str
    stop_name: str
    lat: float
    lon: float
    line: int

    def __str__(self) -> str:
        return f"{self.stop_id} {self.stop_name} ({self.lat:g}, {self.lon:g}; line {self.line})"


class Stops(dict[str, Stop]):
    """The region's stops by their GTFS ``stop_id``, and the feed's stops outside it."""

    def __init__(self, stops: Mapping[str, Stop], outside: Mapping[str, OutsideStop]) -> None:
        super().__init__(stops)
        self.outside: dict[str, OutsideStop] = dict(outside)

    def summary(self, examples: int = 3) -> str:
        """One line for a run's report: how many stops, and which lie outside the region."""
        head = f"stops.txt: {len(self)} stops in the region"
        if not self.outside:
            return head
        shown = "; ".join(str(s) for s in list(self.outside.values())[:examples])
        more = f"; and {len(self.outside) - examples} more" if len(self.outside) > examples else ""
        return (
            f"{head}, {len(self.outside)} outside it (farther than {REGION_RADIUS_KM:g} km"
            f" from every town), not used: {shown}{more}"
        )


class GtfsError(ValueError):
    """A static feed that cannot be used; the message names the file, the line and the field."""


# --- GTFS static: stops ---------------------------------------------------------------------

# GTFS location_type: 0/empty stop, 1 station, 2 entrance, 3 generic node, 4 boarding area.
# Riders are picked up at stops and stations; the others are parts of a station.
_RIDER_LOCATIONS = frozenset({"", "0", "1"})


def stops_from_rows(rows: Iterable[Row]) -> Stops:
    """Stops from ``stops.txt`` rows (first row = line 2); raises ``GtfsError`` naming the line.

    The town is the ``zone_id`` when it names one of the seven towns (``takuma``, ``詫間``,
    ``詫間町``); otherwise the town with the nearest centroid. A stop farther than
    ``REGION_RADIUS_KM`` from every town is outside the region: listed in ``outside``, not
    a stop trips may use, whatever its ``zone_id`` says.
    """
    return _stops(numbered(rows), "stops.txt")


def _stops(rows: Iterable[tuple[int, Row] | RowError], name: str) -> Stops:
    stops: dict[str, Stop] = {}
    outside: dict[str, OutsideStop] = {}
    carried: dict[str, tuple[str, int]] = {}  # id in events → (GTFS id, line)
    for item in rows:
        if isinstance(item, RowError):
            raise GtfsError(f"{name} line {item.line}: {item.reason}")
        line, row = item
        f = Fields(row)
        if f.raw("location_type") not in _RIDER_LOCATIONS:
            continue
        try:
            # GTFS ids are any text; events carry ``carried_id`` of it (the same when safe).
            stop_id = f.text("stop_id", max_length=GTFS_ID_MAX_LENGTH)
            if stop_id in stops or stop_id in outside:
                raise f.fail("stop_id", f"{stop_id!r} appears twice")
            safe = carried_id(stop_id)
            other, other_line = carried.setdefault(safe, (stop_id, line))
            if other != stop_id:
                raise f.fail(
                    "stop_id", f"{stop_id!r} and {other!r} (line {other_line}) both map to {safe!r}"
                )
            lat = f.number("stop_lat", -90, 90)
            lon = f.number("stop_lon", -180, 180)
            stop_name = f.text("stop_name")
            town = town_at(lat, lon)
            if town is None:
                outside[stop_id] = OutsideStop(stop_id, stop_name, lat, lon, line)
                continue
            code = town_code(f.raw("zone_id")) or town.code
            stops[stop_id] = Stop(stop_id, stop_name, lat, lon, code)
        except FieldError as e:
            raise GtfsError(f"{name} line {line}: {e}") from None
    return Stops(stops, outside)


def _feed_text_encoding(raw: bytes, encoding: str) -> str:
    """The encoding to read a feed file in: GTFS's own (UTF-8) when the bytes are valid UTF-8,
    else ``encoding``. Shift_JIS text is never valid UTF-8, and a UTF-8 feed read as cp932
    would not fail but turn every name into mojibake, so one ``--encoding cp932`` for a run
    reads a Shift_JIS export and a UTF-8 feed both right."""
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return encoding
    return "utf-8-sig"


def read_gtfs_stops(feed: str | os.PathLike[str] | bytes, *, encoding: str = "utf-8-sig") -> Stops:
    """Stops of a GTFS or GTFS-JP static feed: a .zip (path or bytes) or an unzipped folder.

    Only ``stops.txt`` is read; ``agency_jp.txt``, ``office_jp.txt`` and the rest may be
    there. A zip whose files sit in one sub-folder is accepted too. GTFS is UTF-8; an old
    feed in Shift_JIS is read with ``encoding="cp932"``. Every failure is a ``GtfsError``
    naming the file and, for a bad stop, the line and the column.
    """
    where = "" if isinstance(feed, bytes) else f"{os.fspath(feed)}: "
    if not isinstance(feed, bytes) and Path(feed).is_dir():
        path = Path(feed) / "stops.txt"
        if not path.exists():
            raise GtfsError(f"{where}no stops.txt")
        raw = path.read_bytes()
        name = str(path)
    else:
        try:
            archive = zipfile.ZipFile(io.BytesIO(feed) if isinstance(feed, bytes) else feed)
        except (zipfile.BadZipFile, OSError) as e:
            raise GtfsError(f"{where}not a GTFS zip: {e}") from None
        with archive:
            names = [n for n in archive.namelist() if n.rsplit("/", 1)[-1] == "stops.txt"]
            if not names:
                raise GtfsError(f"{where}the feed has no stops.txt")
            member = min(names, key=len)  # the top-most stops.txt
            try:
                raw = archive.read(member)
            except (zipfile.BadZipFile, zlib.error, EOFError, OSError) as e:
                raise GtfsError(f"{where}{member} cannot be read (a damaged zip?): {e}") from None
        name = f"{where}{member}"
    rows = read_csv(raw, STOP_COLUMNS, encoding=_feed_text_encoding(raw, encoding))
    return _stops(rows, name)


# --- trips and ride requests ----------------------------------------------------------------


def _place(f: Fields, prefix: str, stops: Mapping[str, Stop]) -> dict[str, Any]:
    column = f"{prefix}_stop_id"
    if f.has(column):
        stop_id = f.text(column, max_length=1000)  # the GTFS stop_id, any text
        stop = stops.get(stop_id)
        if stop is not None:
            return stop.place()
        outside = stops.outside.get(stop_id) if isinstance(stops, Stops) else None
        if outside is not None:
            raise f.fail(column, f"stop {stop_id!r} is outside the region ({outside})")
        raise f.fail(column, f"unknown stop {stop_id!r} (not in the GTFS stops)")
    if f.has(f"{prefix}_lat") or f.has(f"{prefix}_lon"):
        # Door-to-door pick-up without a stop: the coordinates, and the town they fall in.
        lat = f.number(f"{prefix}_lat", -90, 90)
        lon = f.number(f"{prefix}_lon", -180, 180)
        town = town_at(lat, lon)
        if town is None:
            raise f.fail(
                f"{prefix}_lat",
                f"{lat:g}, {lon:g} is outside the region"
                f" (farther than {REGION_RADIUS_KM:g} km from every town)",
            )
        return {"lat": lat, "lon": lon, "town": town.code}
    raise f.fail(column, f"required (or {prefix}_lat and {prefix}_lon)")


def _mode(f: Fields, operator: Operator) -> str:
    return f.choice("mode", MODES) if f.has("mode") else operator.mode


def trip_drafts(
    rows: Iterable[Row], stops: Mapping[str, Stop], *, operator: Operator = DEFAULT_OPERATOR
) -> Iterator[EventDraft | RowError]:
    """``transport.trip.completed`` drafts from trip rows (first row = line 2)."""
    return _trips(numbered(rows), stops, operator)


def read_trips_csv(
    source: CsvSource,
    stops: Mapping[str, Stop],
    *,
    operator: Operator = DEFAULT_OPERATOR,
    encoding: str = "utf-8-sig",
) -> Iterator[EventDraft | RowError]:
    """``transport.trip.completed`` drafts from the operator's trips CSV."""
    return _trips(read_csv(source, TRIP_REQUIRED, encoding=encoding), stops, operator)


def _trips(
    rows: Iterable[tuple[int, Row] | RowError], stops: Mapping[str, Stop], operator: Operator
) -> Iterator[EventDraft | RowError]:
    seen = Seen()

    def convert(line: int, f: Fields) -> EventDraft:
        trip_id = f.record_id("trip_id")
        seen.once(f, "trip_id", trip_id, line)
        resident_id = f.resident_id("resident_id")
        mode = _mode(f, operator)
        data: dict[str, Any] = {"trip_id": trip_id}
        if f.has("request_id"):
            data["request_id"] = f.record_id("request_id")
        data |= {
            "resident_id": resident_id,
            "mode": mode,
            "operator_id": operator.operator_id,
            "operator_name": operator.name,
            "vehicle_id": f.vehicle_id("vehicle_id"),
        }
        if f.has("route_id"):
            # A GTFS route_id, any text: carried as a safe id, like the stops'.
            data["route_id"] = carried_id(f.text("route_id", max_length=GTFS_ID_MAX_LENGTH))
        data["origin"] = _place(f, "origin", stops)
        data["destination"] = _place(f, "destination", stops)
        pickup, dropoff = f.timestamp("pickup_at"), f.timestamp("dropoff_at")
        if dropoff < pickup:
            raise f.fail("dropoff_at", f"{iso(dropoff)} is before pickup_at {iso(pickup)}")
        if mode == "on_demand" or f.has("requested_at"):  # an on-demand trip is always booked
            requested = f.timestamp("requested_at")
            if requested > pickup:
                raise f.fail("requested_at", f"{iso(requested)} is after pickup_at {iso(pickup)}")
            data["requested_at"] = iso(requested)
        data["pickup_at"] = iso(pickup)
        data["dropoff_at"] = iso(dropoff)
        data["fare_jpy"] = f.integer("fare_jpy", 0, 100_000)
        data["passengers"] = f.integer("passengers", 1, 60)
        if f.has("distance_m"):
            data["distance_m"] = f.integer("distance_m", 0, 500_000)
        return EventDraft(TRIP_COMPLETED, resident_id, data, trip_id, dropoff, line)

    return map_rows(rows, convert)


def ride_request_drafts(
    rows: Iterable[Row], stops: Mapping[str, Stop], *, operator: Operator = DEFAULT_OPERATOR
) -> Iterator[EventDraft | RowError]:
    """``transport.ride.requested`` drafts from ride-request rows (first row = line 2)."""
    return _requests(numbered(rows), stops, operator)


def read_ride_requests_csv(
    source: CsvSource,
    stops: Mapping[str, Stop],
    *,
    operator: Operator = DEFAULT_OPERATOR,
    encoding: str = "utf-8-sig",
) -> Iterator[EventDraft | RowError]:
    """``transport.ride.requested`` drafts from the operator's ride-requests CSV."""
    return _requests(read_csv(source, REQUEST_REQUIRED, encoding=encoding), stops, operator)


def _requests(
    rows: Iterable[tuple[int, Row] | RowError], stops: Mapping[str, Stop], operator: Operator
) -> Iterator[EventDraft | RowError]:
    seen = Seen()

    def convert(line: int, f: Fields) -> EventDraft:
        request_id = f.record_id("request_id")
        seen.once(f, "request_id", request_id, line)
        resident_id = f.resident_id("resident_id")
        requested = f.timestamp("requested_at")
        data: dict[str, Any] = {
            "request_id": request_id,
            "resident_id": resident_id,
            "mode": _mode(f, operator),
            "operator_id": operator.operator_id,
            "origin": _place(f, "origin", stops),
            "destination": _place(f, "destination", stops),
            "requested_at": iso(requested),
        }
        for column in ("desired_pickup_at", "desired_arrival_at"):
            if f.has(column):
                data[column] = iso(f.timestamp(column))
        data["passengers"] = f.integer("passengers", 1, 9)
        data["channel"] = f.choice("channel", CHANNELS)
        if f.has("wheelchair"):
            data["wheelchair"] = f.boolean("wheelchair")
        return EventDraft(RIDE_REQUESTED, resident_id, data, request_id, requested, line)

    return map_rows(rows, convert)


# --- GTFS-Realtime: vehicle positions -------------------------------------------------------

_OCCUPANCY = {
    gtfs_realtime_pb2.VehiclePosition.EMPTY: "empty",
    gtfs_realtime_pb2.VehiclePosition.MANY_SEATS_AVAILABLE: "many_seats_available",
    gtfs_realtime_pb2.VehiclePosition.FEW_SEATS_AVAILABLE: "few_seats_available",
    gtfs_realtime_pb2.VehiclePosition.STANDING_ROOM_ONLY: "standing_room_only",
    gtfs_realtime_pb2.VehiclePosition.CRUSHED_STANDING_ROOM_ONLY: "standing_room_only",
    gtfs_realtime_pb2.VehiclePosition.FULL: "full",
    gtfs_realtime_pb2.VehiclePosition.NOT_ACCEPTING_PASSENGERS: "not_in_service",
    gtfs_realtime_pb2.VehiclePosition.NOT_BOARDABLE: "not_in_service",
    # NO_DATA_AVAILABLE: no occupancy in the event
}
_ID_SEPARATORS = re.compile(r"[-_. ]")
_BARE_VEHICLE = re.compile(r"[0-9a-z]{2,40}")


def _vehicle_id(raw: str) -> str:
    # Feeds name vehicles "OD07", "od-07" or "veh-od07"; the platform id is "veh-od07".
    plain = raw.strip().lower()
    if plain.startswith("veh-"):
        plain = plain[4:]
    plain = _ID_SEPARATORS.sub("", plain)
    if not _BARE_VEHICLE.fullmatch(plain):
        raise FieldError(f"vehicle.id {raw!r} cannot be a platform vehicle id (veh- and a-z 0-9)")
    return "veh-" + plain


def vehicle_position_drafts(
    feed: gtfs_realtime_pb2.FeedMessage, *, operator: Operator = DEFAULT_OPERATOR
) -> Iterator[EventDraft | RowError]:
    """``transport.vehicle.position`` drafts from a GTFS-Realtime FeedMessage.

    Each ``RowError.line`` is the entity's place in the feed (1-based). Entities without a
    VehiclePosition (trip updates, alerts) and deleted ones are not ours and are skipped.
    """
    header_time = feed.header.timestamp if feed.header.HasField("timestamp") else 0
    for index, entity in enumerate(feed.entity, start=1):
        if entity.is_deleted or not entity.HasField("vehicle"):
            continue
        try:
            yield _position(entity.vehicle, header_time, operator, index)
        except FieldError as e:
            yield RowError(index, f"entity {entity.id!r}: {e}")


def _position(
    vp: gtfs_realtime_pb2.VehiclePosition, header_time: int, operator: Operator, index: int
) -> EventDraft:
    if not vp.vehicle.id:
        raise FieldError("no vehicle.id")
    vehicle_id = _vehicle_id(vp.vehicle.id)
    if not vp.HasField("position"):
        raise FieldError("no position")
    pos = vp.position
    lat, lon = _float32(pos.latitude), _float32(pos.longitude)
    if not (-90 <= lat <= 90 and -180 <= lon <= 180):
        raise FieldError(f"position {lat},{lon} is not on Earth")
    if lat == 0 and lon == 0:
        raise FieldError("position 0,0 (no GPS fix)")
    stamp = vp.timestamp if vp.HasField("timestamp") else header_time
    if stamp <= 0:
        raise FieldError("no timestamp (neither the vehicle nor the feed header has one)")
    recorded = datetime.fromtimestamp(stamp, JST)
    data: dict[str, Any] = {
        "vehicle_id": vehicle_id,
        "operator_id": operator.operator_id,
        "mode": operator.mode,
        "lat": lat,
        "lon": lon,
    }
    if pos.HasField("bearing"):
        data["bearing"] = _float32(pos.bearing) % 360.0
    if pos.HasField("speed"):
        data["speed_kmh"] = min(round(max(pos.speed, 0.0) * 3.6, 1), 200.0)  # m/s on the wire
    # GTFS ids are any text: carried as safe ids, the same as the static feed's.
    if vp.trip.route_id:
        data["route_id"] = carried_id(vp.trip.route_id)
    if vp.trip.trip_id:
        data["service_trip_id"] = carried_id(vp.trip.trip_id)
    if vp.HasField("occupancy_status") and vp.occupancy_status in _OCCUPANCY:
        data["occupancy"] = _OCCUPANCY[vp.occupancy_status]
    data["recorded_at"] = iso(recorded)
    return EventDraft(VEHICLE_POSITION, vehicle_id, data, f"{vehicle_id}@{stamp}", recorded, index)


def _float32(value: float) -> float:
    # Positions are float32 on the wire: 133.6262 arrives as 133.62620544…. The shortest
    # decimal with the same float32 is what the producer wrote.
    packed = struct.pack("<f", value)
    # Six significant digits never overshoot a shorter exact decimal ("%g" drops zeros),
    # and nine always round-trip a float32.
    for digits in range(6, 10):
        candidate = float(f"{value:.{digits}g}")
        if struct.pack("<f", candidate) == packed:
            return candidate
    return value


def read_vehicle_positions(
    source: str | os.PathLike[str] | bytes, *, operator: Operator = DEFAULT_OPERATOR
) -> Iterator[EventDraft | RowError]:
    """Vehicle-position drafts from a GTFS-Realtime feed: the protobuf bytes or a file path.

    A body that is not a FeedMessage is one ``RowError`` on line 0 (the file as a whole).
    """
    raw = source if isinstance(source, bytes) else Path(source).read_bytes()
    feed = gtfs_realtime_pb2.FeedMessage()
    try:
        feed.ParseFromString(raw)
    except DecodeError as e:
        return iter([RowError(0, f"not a GTFS-Realtime FeedMessage: {e}")])
    return vehicle_position_drafts(feed, operator=operator)
