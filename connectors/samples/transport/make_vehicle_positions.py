"""Write ``vehicle_positions.pb``: a small GTFS-Realtime VehiclePositions feed, as the on-demand
operator's AVL system would serve it. Run from anywhere:

    .venv/bin/python connectors/samples/transport/make_vehicle_positions.py

Three on-demand cars on 2025-06-12 around 09:45 JST: one under way, one boarding at a station,
one waiting empty at a stop; plus a trip update of the community bus, which a
VehiclePositions reader skips. The output is deterministic, so the committed file can be
checked against this script.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

from google.transit import gtfs_realtime_pb2

OUTPUT = Path(__file__).with_name("vehicle_positions.pb")
FEED_TIME = datetime(2025, 6, 12, 9, 45, 0, tzinfo=timezone(timedelta(hours=9)))

_VP = gtfs_realtime_pb2.VehiclePosition


def build_feed() -> gtfs_realtime_pb2.FeedMessage:
    """The sample feed."""
    feed = gtfs_realtime_pb2.FeedMessage()
    feed.header.gtfs_realtime_version = "2.0"
    feed.header.incrementality = gtfs_realtime_pb2.FeedHeader.FULL_DATASET
    feed.header.timestamp = int(FEED_TIME.timestamp())

    car = feed.entity.add()
    car.id = "od07"
    car.vehicle.vehicle.id = "od07"
    car.vehicle.vehicle.label = "オンデマンド 7号車"
    car.vehicle.position.latitude = 34.2051
    car.vehicle.position.longitude = 133.6812
    car.vehicle.position.bearing = 112.5
    car.vehicle.position.speed = 9.0  # m/s: 32.4 km/h
    car.vehicle.current_status = _VP.IN_TRANSIT_TO
    car.vehicle.stop_id = "jr-takase-eki"
    car.vehicle.occupancy_status = _VP.MANY_SEATS_AVAILABLE
    car.vehicle.timestamp = int(FEED_TIME.timestamp()) - 4

    boarding = feed.entity.add()
    boarding.id = "od05"
    boarding.vehicle.vehicle.id = "OD-05"  # the platform id is veh-od05
    boarding.vehicle.position.latitude = 34.2275
    boarding.vehicle.position.longitude = 133.6431
    boarding.vehicle.position.bearing = 87.5
    boarding.vehicle.position.speed = 0.0
    boarding.vehicle.current_status = _VP.STOPPED_AT
    boarding.vehicle.stop_id = "jr-takuma-eki"
    boarding.vehicle.occupancy_status = _VP.FEW_SEATS_AVAILABLE
    boarding.vehicle.timestamp = int(FEED_TIME.timestamp()) - 10

    waiting = feed.entity.add()
    waiting.id = "od02"
    waiting.vehicle.vehicle.id = "veh-od02"
    waiting.vehicle.position.latitude = 34.1051
    waiting.vehicle.position.longitude = 133.7868
    waiting.vehicle.current_status = _VP.STOPPED_AT
    waiting.vehicle.stop_id = "saita-shisho"
    waiting.vehicle.occupancy_status = _VP.EMPTY  # no timestamp: the header's time applies

    update = feed.entity.add()
    update.id = "tu-nio-takuma-wd-0815"
    update.trip_update.trip.trip_id = "nio-takuma-wd-0815"
    stop = update.trip_update.stop_time_update.add()
    stop.stop_sequence = 4
    stop.arrival.delay = 60
    return feed


def main() -> None:
    """Write the sample feed next to this script."""
    OUTPUT.write_bytes(build_feed().SerializeToString(deterministic=True))
    print(f"wrote {OUTPUT}")


if __name__ == "__main__":
    main()
