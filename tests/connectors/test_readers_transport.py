"""The transport connector's readers: a GTFS(-JP) static feed gives the stops and their towns;
trip and ride-request exports become events with places filled in from the stops; a
GTFS-Realtime feed becomes vehicle positions.
"""

from __future__ import annotations

import importlib.util
import io
import zipfile
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from google.transit import gtfs_realtime_pb2

from connectors import transport
from connectors.readers import RECORD_ID, carried_id
from connectors.sdk.rows import RowError
from connectors.transport import GtfsError, Operator, Stop, Stops
from tests.connectors.test_readers_csv import SAMPLES, schema_problems, split

JST = timezone(timedelta(hours=9))
TRANSPORT = SAMPLES / "transport"

AGENCY = (
    "agency_id,agency_name,agency_url,agency_timezone,agency_lang\n"
    "mitoyo-ondemand,三豊つなぐ交通株式会社,https://example.jp,Asia/Tokyo,ja\n"
)
AGENCY_JP = "agency_id,agency_official_name\nmitoyo-ondemand,三豊つなぐ交通株式会社\n"
ROUTES = "route_id,agency_id,route_long_name,route_type\nnio-takuma,mitoyo-ondemand,仁尾詫間線,3\n"
TRIPS = "route_id,service_id,trip_id\nnio-takuma,weekday,nio-takuma-wd-0815\n"
STOP_TIMES = (
    "trip_id,arrival_time,departure_time,stop_id,stop_sequence\n"
    "nio-takuma-wd-0815,08:15:00,08:15:00,nio-shisho,1\n"
)
STOPS = (
    "stop_id,stop_name,stop_lat,stop_lon,zone_id,location_type,parent_station\n"
    "takuma-shisho,詫間支所前,34.2313,133.6347,takuma,0,\n"
    "nio-shisho,仁尾支所前,34.1985,133.6322,仁尾町,,\n"
    "jr-takase-eki,JR高瀬駅,34.1899,133.7176,Z1,1,\n"
    "jr-takase-eki-east,JR高瀬駅 東口,34.1898,133.7180,,2,jr-takase-eki\n"
    "saita-shisho,財田支所前,34.1051,133.7868,,0,\n"
)


def gtfs_zip(stops: str | bytes = STOPS, *, folder: str = "") -> bytes:
    """A GTFS-JP static feed zipped in memory (``stops`` as text, or bytes in any encoding)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, text in {
            "agency.txt": AGENCY,
            "agency_jp.txt": AGENCY_JP,
            "routes.txt": ROUTES,
            "trips.txt": TRIPS,
            "stop_times.txt": STOP_TIMES,
            "stops.txt": stops,
        }.items():
            archive.writestr(folder + name, text if isinstance(text, bytes) else text.encode())
    return buffer.getvalue()


@pytest.fixture(scope="module")
def stops() -> dict[str, Stop]:
    return transport.read_gtfs_stops(TRANSPORT / "gtfs")


class TestGtfsStops:
    def test_a_gtfs_jp_zip_gives_every_stop_with_its_town(self, tmp_path: Path) -> None:
        path = tmp_path / "feed.zip"
        path.write_bytes(gtfs_zip())
        found = transport.read_gtfs_stops(path)
        assert {s.stop_id: s.town for s in found.values()} == {
            "takuma-shisho": "takuma",  # zone_id is the town code
            "nio-shisho": "nio",  # zone_id is the town's Japanese name
            "jr-takase-eki": "takase",  # zone_id is a fare zone: the nearest centroid decides
            "saita-shisho": "saita",  # no zone_id: the nearest centroid decides
        }  # the station entrance (location_type 2) is not a place to be picked up
        assert found["takuma-shisho"] == Stop(
            "takuma-shisho", "詫間支所前", 34.2313, 133.6347, "takuma"
        )

    def test_the_zip_may_be_bytes_and_its_files_may_sit_in_a_folder(self) -> None:
        found = transport.read_gtfs_stops(gtfs_zip(folder="mitoyo-gtfs/"))
        assert set(found) == {"takuma-shisho", "nio-shisho", "jr-takase-eki", "saita-shisho"}

    def test_the_sample_folder_zipped_reads_as_the_folder(self, tmp_path: Path) -> None:
        path = tmp_path / "sample.zip"
        with zipfile.ZipFile(path, "w") as archive:
            for file in sorted((TRANSPORT / "gtfs").iterdir()):
                archive.write(file, file.name)
        assert transport.read_gtfs_stops(path) == transport.read_gtfs_stops(TRANSPORT / "gtfs")

    def test_the_sample_stops_cover_every_town(self, stops: dict[str, Stop]) -> None:
        assert {s.town for s in stops.values()} == {
            "takase", "yamamoto", "mino", "toyonaka", "takuma", "nio", "saita"
        }  # fmt: skip

    def test_a_feed_without_stops_is_refused(self) -> None:
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w") as archive:
            archive.writestr("agency.txt", AGENCY)
        with pytest.raises(GtfsError, match=r"no stops\.txt"):
            transport.read_gtfs_stops(buffer.getvalue())

    def test_not_a_zip_is_refused(self) -> None:
        with pytest.raises(GtfsError, match="not a GTFS zip"):
            transport.read_gtfs_stops(b"stop_id,stop_name\n")

    def test_a_stop_that_cannot_be_read_names_its_file_line_and_column(
        self, tmp_path: Path
    ) -> None:
        path = tmp_path / "feed.zip"
        path.write_bytes(gtfs_zip(STOPS + "mino-shisho,三野支所前,north,133.7016,mino,0,\n"))
        with pytest.raises(GtfsError) as refused:
            transport.read_gtfs_stops(path)
        assert str(refused.value) == (
            f"{path}: stops.txt line 7: column stop_lat: 'north' is not a number"
        )

    def test_a_missing_column_is_named_on_the_header_line(self) -> None:
        without_lat = STOPS.replace("stop_lat,", "latitude,")
        with pytest.raises(
            GtfsError, match=r"^stops.txt line 1: header: missing column\(s\) stop_lat$"
        ):
            transport.read_gtfs_stops(gtfs_zip(without_lat))

    def test_a_truncated_zip_is_refused_naming_the_file(self, tmp_path: Path) -> None:
        path = tmp_path / "feed.zip"
        whole = gtfs_zip()
        path.write_bytes(whole[: len(whole) // 2])  # a download cut short
        with pytest.raises(GtfsError, match=rf"^{path}: not a GTFS zip: "):
            transport.read_gtfs_stops(path)
        assert transport.read_gtfs_stops(whole)  # the whole file reads

    def test_a_damaged_stops_file_in_the_zip_is_refused_naming_it(self) -> None:
        damaged = gtfs_zip().replace(b"takuma-shisho", b"takuma-shisha")  # its CRC no longer fits
        with pytest.raises(GtfsError, match=r"^stops.txt cannot be read \(a damaged zip\?\)"):
            transport.read_gtfs_stops(damaged)


class TestRealFeeds:
    """Feeds as GTFS allows them and operators' tools write them."""

    def test_a_shift_jis_feed_is_read_in_the_encoding_given(self) -> None:
        feed = gtfs_zip(STOPS.encode("cp932"))
        found = transport.read_gtfs_stops(feed, encoding="cp932")
        assert found["takuma-shisho"].stop_name == "詫間支所前"
        assert found["nio-shisho"].town == "nio"  # zone_id 仁尾町, read right

    def test_a_shift_jis_feed_without_its_encoding_names_line_and_column(self) -> None:
        with pytest.raises(GtfsError) as refused:
            transport.read_gtfs_stops(gtfs_zip(STOPS.encode("cp932")))
        message = str(refused.value)
        assert message.startswith("stops.txt line 2: column stop_name: not utf-8-sig text")
        assert "cp932" in message and "\n" not in message

    def test_a_utf8_feed_stays_utf8_when_the_exports_are_shift_jis(self) -> None:
        # One --encoding cp932 for the run: the feed, valid UTF-8 as GTFS requires, is not
        # turned into mojibake.
        found = transport.read_gtfs_stops(gtfs_zip(), encoding="cp932")
        assert found["takuma-shisho"].stop_name == "詫間支所前"

    def test_bom_quoted_fields_extra_columns_and_crlf(self) -> None:
        stops = (
            '\ufeff"stop_id","stop_code","stop_name","stop_lat","stop_lon",'
            '"platform_code","stop_url"\r\n'
            '"takuma-shisho","101","詫間支所前, 北口","34.2313","133.6347","1","https://x.jp/a,b"\r\n'
            '"nio-shisho","102","仁尾支所前 ""本町""","34.1985","133.6322","",""\r\n'
            '"saita-shisho","103","財田支所前","34.1051","north","",""\r\n'
        )
        with pytest.raises(GtfsError, match=r"^stops.txt line 4: column stop_lon: 'north'"):
            transport.read_gtfs_stops(gtfs_zip(stops))
        found = transport.read_gtfs_stops(gtfs_zip(stops.rsplit('"saita', 1)[0]))
        assert found == {
            "takuma-shisho": Stop("takuma-shisho", "詫間支所前, 北口", 34.2313, 133.6347, "takuma"),
            "nio-shisho": Stop("nio-shisho", '仁尾支所前 "本町"', 34.1985, 133.6322, "nio"),
        }

    def test_any_non_empty_text_is_a_stop_id_and_events_carry_a_safe_one(self) -> None:
        long_id = "mitoyo-" + "x" * 70
        stops = (
            "stop_id,stop_name,stop_lat,stop_lon\n"
            "1番のりば,JR詫間駅 1番のりば,34.2275,133.6431\n"
            "A/12,高瀬 A/12,34.1899,133.7176\n"
            f"{long_id},長いID,34.1985,133.6322\n"
            "takuma-shisho,詫間支所前,34.2313,133.6347\n"
        )
        found = transport.read_gtfs_stops(gtfs_zip(stops))
        assert set(found) == {"1番のりば", "A/12", long_id, "takuma-shisho"}
        carried = {s.stop_id: s.place()["stop_id"] for s in found.values()}
        assert carried["takuma-shisho"] == "takuma-shisho"  # a safe id is kept as it is
        assert all(RECORD_ID.fullmatch(c) for c in carried.values())
        assert len(set(carried.values())) == 4
        assert carried["A/12"].startswith("A-12-") and carried["1番のりば"].startswith("1-")
        trips = (
            "trip_id,resident_id,vehicle_id,origin_stop_id,destination_stop_id,requested_at,"
            "pickup_at,dropoff_at,fare_jpy,passengers\n"
            "t-1,res-a1b2c3d4,veh-od07,1番のりば,A/12,2025-06-12T08:00:00+09:00,"
            "2025-06-12T09:00:00+09:00,2025-06-12T09:20:00+09:00,500,1\n"
        ).encode()
        drafts, errors = split(transport.read_trips_csv(trips, found))
        assert errors == [] and schema_problems(drafts) == []
        assert drafts[0].data["origin"]["stop_id"] == carried_id("1番のりば")
        assert drafts[0].data["origin"]["stop_name"] == "JR詫間駅 1番のりば"

    def test_two_stop_ids_that_would_be_carried_as_one_are_refused(self) -> None:
        stops = (
            "stop_id,stop_name,stop_lat,stop_lon\n"
            "1番のりば,一番,34.2275,133.6431\n"
            f"{carried_id('1番のりば')},偽,34.2276,133.6432\n"
        )
        with pytest.raises(GtfsError, match=r"^stops.txt line 3: column stop_id: .* both map to"):
            transport.read_gtfs_stops(gtfs_zip(stops))


class TestOutsideTheRegion:
    STOPS_BEYOND = (
        STOPS
        + "takamatsu-eki,高松駅,34.3502,134.0469,,0,\n"
        + "tokyo-eki,東京駅,35.6812,139.7671,takuma,0,\n"  # a zone_id does not pull it in
    )

    def test_stops_outside_the_region_are_reported_never_given_a_town(self) -> None:
        found = transport.read_gtfs_stops(gtfs_zip(self.STOPS_BEYOND))
        assert isinstance(found, Stops)
        assert set(found) == {"takuma-shisho", "nio-shisho", "jr-takase-eki", "saita-shisho"}
        assert {s.stop_id: s.line for s in found.outside.values()} == {
            "takamatsu-eki": 7,
            "tokyo-eki": 8,
        }
        summary = found.summary()
        assert summary.startswith("stops.txt: 4 stops in the region, 2 outside it")
        assert "takamatsu-eki 高松駅 (34.3502, 134.047; line 7)" in summary
        assert "tokyo-eki 東京駅" in summary

    def test_the_summary_shows_a_few_examples_and_counts_the_rest(self) -> None:
        far = "".join(f"far-{i},遠く{i},35.{i},139.0,,0,\n" for i in range(5))
        summary = transport.read_gtfs_stops(gtfs_zip(STOPS + far)).summary()
        assert "5 outside it" in summary and "far-2" in summary and "far-3" not in summary
        assert summary.endswith("; and 2 more")
        assert transport.read_gtfs_stops(gtfs_zip()).summary() == (
            "stops.txt: 4 stops in the region"
        )

    def test_a_trip_from_a_stop_outside_the_region_is_refused_naming_it(self) -> None:
        found = transport.read_gtfs_stops(gtfs_zip(self.STOPS_BEYOND))
        trips = (
            b"trip_id,resident_id,vehicle_id,origin_stop_id,destination_stop_id,"
            b"destination_lat,destination_lon,requested_at,pickup_at,dropoff_at,fare_jpy,passengers\n"
            b"t-1,res-a1b2c3d4,veh-od07,tokyo-eki,takuma-shisho,,,2025-06-12T08:00:00+09:00,"
            b"2025-06-12T09:00:00+09:00,2025-06-12T09:20:00+09:00,500,1\n"
            b"t-2,res-a1b2c3d4,veh-od07,takuma-shisho,,35.0,135.0,2025-06-12T08:00:00+09:00,"
            b"2025-06-12T09:00:00+09:00,2025-06-12T09:20:00+09:00,500,1\n"
            b"t-3,res-a1b2c3d4,veh-od07,takuma-shisho,,34.2000,133.6300,2025-06-12T08:00:00+09:00,"
            b"2025-06-12T09:00:00+09:00,2025-06-12T09:20:00+09:00,500,1\n"
        )
        drafts, errors = split(transport.read_trips_csv(trips, found))
        assert [e.line for e in errors] == [2, 3]
        assert errors[0].reason.startswith(
            "column origin_stop_id: stop 'tokyo-eki' is outside the region (tokyo-eki 東京駅"
        )
        assert errors[1].reason == (
            "column destination_lat: 35, 135 is outside the region"
            " (farther than 6 km from every town)"
        )
        assert [d.data["destination"]["town"] for d in drafts] == ["nio"]


class TestTrips:
    def test_the_sample_export_gives_valid_trips_with_places_from_the_stops(
        self, stops: dict[str, Stop]
    ) -> None:
        drafts, errors = split(transport.read_trips_csv(TRANSPORT / "trips.csv", stops))
        assert errors == []
        assert len(drafts) == 5
        assert schema_problems(drafts) == []
        first = drafts[0]
        assert (first.event_type, first.subject, first.natural_key, first.line) == (
            "transport.trip.completed",
            "res-a1b2c3d4",
            "odt-20250612-000123",
            2,
        )
        assert first.data["origin"] == {
            "stop_id": "takuma-shisho",
            "stop_name": "詫間支所前",
            "lat": 34.2313,
            "lon": 133.6347,
            "town": "takuma",
        }
        assert first.data["destination"]["town"] == "takase"
        assert first.data["operator_name"] == "三豊つなぐ交通株式会社"
        assert first.time == datetime(2025, 6, 12, 9, 58, 2, tzinfo=JST)  # the drop-off

    def test_local_times_in_any_style_become_rfc3339_in_japan_time(
        self, stops: dict[str, Stop]
    ) -> None:
        drafts, _ = split(transport.read_trips_csv(TRANSPORT / "trips.csv", stops))
        assert drafts[2].data["pickup_at"] == "2025-06-12T10:02:00+09:00"  # "2025-06-12 10:02:00"
        assert drafts[3].data["dropoff_at"] == "2025-06-12T10:46:00+09:00"  # "2025/06/12 10:46"
        assert "request_id" not in drafts[4].data

    def test_bad_rows_are_named_with_their_line_and_the_good_rows_still_come(
        self, stops: dict[str, Stop]
    ) -> None:
        drafts, errors = split(transport.read_trips_csv(TRANSPORT / "trips_with_errors.csv", stops))
        assert errors == [
            RowError(3, "column fare_jpy: 'abc' is not an integer"),
            RowError(
                4, "column origin_stop_id: unknown stop 'takuma-eki-mae' (not in the GTFS stops)"
            ),
        ]
        assert [d.line for d in drafts] == [2, 5]
        assert schema_problems(drafts) == []

    def test_a_shift_jis_export_reads_the_same_when_its_encoding_is_given(
        self, stops: dict[str, Stop]
    ) -> None:
        utf8, _ = split(transport.read_trips_csv(TRANSPORT / "trips.csv", stops))
        sjis, errors = split(
            transport.read_trips_csv(TRANSPORT / "trips_cp932.csv", stops, encoding="cp932")
        )
        assert errors == []
        assert [d.data for d in sjis] == [d.data for d in utf8]

    def test_a_shift_jis_export_read_as_utf8_is_refused_whole_with_a_hint(
        self, stops: dict[str, Stop]
    ) -> None:
        [error] = list(transport.read_trips_csv(TRANSPORT / "trips_cp932.csv", stops))
        assert isinstance(error, RowError)
        assert error.line == 1  # the header's 備考 is the first thing that does not decode
        assert "encoding='cp932'" in error.reason

    def test_row_dicts_map_like_a_file_and_door_to_door_points_get_a_town(
        self, stops: dict[str, Stop]
    ) -> None:
        row = {
            "trip_id": "odt-1",
            "resident_id": "res-a1b2c3d4",
            "vehicle_id": "veh-od01",
            "origin_lat": "34.2390",
            "origin_lon": "133.6401",
            "destination_stop_id": "jr-takuma-eki",
            "requested_at": "2025-06-12T08:00:00+09:00",
            "pickup_at": "2025-06-12T08:30:00+09:00",
            "dropoff_at": "2025-06-12T08:41:00+09:00",
            "fare_jpy": "300",
            "passengers": "1",
        }
        [draft] = list(transport.trip_drafts([row], stops))
        assert not isinstance(draft, RowError)
        assert draft.line == 2
        assert draft.data["origin"] == {"lat": 34.239, "lon": 133.6401, "town": "takuma"}
        assert schema_problems([draft]) == []

    @pytest.mark.parametrize(
        ("change", "reason"),
        [
            ({"dropoff_at": "2025-06-12T08:00:00+09:00"}, "column dropoff_at: 2025-06-12T08:00:00"),
            ({"requested_at": ""}, "column requested_at: required but empty"),  # on-demand
            ({"origin_stop_id": ""}, "column origin_stop_id: required (or origin_lat and"),
            ({"vehicle_id": "od01"}, "column vehicle_id: 'od01' is not a vehicle id"),
            ({"passengers": "0"}, "column passengers: 0 is less than 1"),
            ({"mode": "taxi"}, "column mode: 'taxi' is not one of on_demand, fixed_route_bus"),
        ],
    )  # fmt: skip
    def test_rows_that_would_break_the_schema_are_refused_with_the_column(
        self, stops: dict[str, Stop], change: dict[str, str], reason: str
    ) -> None:
        row = {
            "trip_id": "odt-2",
            "resident_id": "res-a1b2c3d4",
            "vehicle_id": "veh-od01",
            "origin_stop_id": "nio-shisho",
            "destination_stop_id": "jr-takuma-eki",
            "requested_at": "2025-06-12T08:00:00+09:00",
            "pickup_at": "2025-06-12T08:30:00+09:00",
            "dropoff_at": "2025-06-12T08:51:00+09:00",
            "fare_jpy": "500",
            "passengers": "1",
        } | change
        [error] = list(transport.trip_drafts([row], stops))
        assert isinstance(error, RowError)
        assert error.reason.startswith(reason)

    def test_a_fixed_route_trip_needs_no_booking(self, stops: dict[str, Stop]) -> None:
        row = {
            "trip_id": "bus-1",
            "resident_id": "res-k9x2m4p7",
            "mode": "fixed_route_bus",
            "route_id": "nio-takuma",
            "vehicle_id": "veh-bus03",
            "origin_stop_id": "nio-hachimangu",
            "destination_stop_id": "jr-takuma-eki",
            "pickup_at": "2025-06-12T08:18:00+09:00",
            "dropoff_at": "2025-06-12T08:36:00+09:00",
            "fare_jpy": "200",
            "passengers": "1",
        }
        [draft] = list(transport.trip_drafts([row], stops))
        assert not isinstance(draft, RowError)
        assert "requested_at" not in draft.data
        assert schema_problems([draft]) == []

    def test_any_text_is_a_route_id_and_the_event_carries_a_safe_one(
        self, stops: dict[str, Stop]
    ) -> None:
        row = {
            "trip_id": "bus-2",
            "resident_id": "res-k9x2m4p7",
            "mode": "fixed_route_bus",
            "route_id": "仁尾線/1系統",
            "vehicle_id": "veh-bus03",
            "origin_stop_id": "nio-hachimangu",
            "destination_stop_id": "jr-takuma-eki",
            "pickup_at": "2025-06-12T08:18:00+09:00",
            "dropoff_at": "2025-06-12T08:36:00+09:00",
            "fare_jpy": "200",
            "passengers": "1",
        }
        [draft] = list(transport.trip_drafts([row], stops))
        assert not isinstance(draft, RowError), draft
        assert draft.data["route_id"] == carried_id("仁尾線/1系統")
        assert RECORD_ID.fullmatch(draft.data["route_id"])
        assert schema_problems([draft]) == []
        too_long = row | {"route_id": "x" * (transport.GTFS_ID_MAX_LENGTH + 1)}
        [error] = list(transport.trip_drafts([too_long], stops))
        assert isinstance(error, RowError)
        assert error.reason.startswith("column route_id: 1001 characters")

    def test_a_trip_id_repeated_in_one_export_is_reported_not_published_twice(
        self, stops: dict[str, Stop]
    ) -> None:
        rows = list(transport.read_trips_csv(TRANSPORT / "trips.csv", stops))
        assert len(rows) == 5
        text = (TRANSPORT / "trips.csv").read_text(encoding="utf-8-sig")
        doubled = text + text.splitlines()[1] + "\n"
        _, errors = split(transport.read_trips_csv(doubled.encode(), stops))
        assert errors == [
            RowError(7, "column trip_id: 'odt-20250612-000123' already appears on line 2")
        ]


class TestRideRequests:
    def test_the_sample_export_gives_valid_requests(self, stops: dict[str, Stop]) -> None:
        drafts, errors = split(
            transport.read_ride_requests_csv(TRANSPORT / "ride_requests.csv", stops)
        )
        assert errors == []
        assert [d.natural_key for d in drafts] == [
            "req-20250612-0457",
            "req-20250612-0460",
            "req-20250612-0461",
            "req-20250612-0470",
        ]
        assert schema_problems(drafts) == []
        assert drafts[0].data["wheelchair"] is False
        assert drafts[3].data["wheelchair"] is True  # 有
        assert {d.event_type for d in drafts} == {"transport.ride.requested"}
        assert drafts[0].time == datetime(2025, 6, 12, 8, 2, 11, tzinfo=JST)

    def test_bad_rows_are_named_and_the_good_rows_still_come(self, stops: dict[str, Stop]) -> None:
        drafts, errors = split(
            transport.read_ride_requests_csv(TRANSPORT / "ride_requests_with_errors.csv", stops)
        )
        assert errors == [
            RowError(3, "column channel: 'fax' is not one of app, phone, web, line, kiosk"),
            RowError(
                4, "column resident_id: '田中太郎' is not a resident id (res- and 4-40 of a-z 0-9)"
            ),
        ]
        assert [d.line for d in drafts] == [2, 5]


def _feed() -> gtfs_realtime_pb2.FeedMessage:
    """A real GTFS-Realtime message: a header and two VehiclePosition entities."""
    feed = gtfs_realtime_pb2.FeedMessage()
    feed.header.gtfs_realtime_version = "2.0"
    feed.header.incrementality = gtfs_realtime_pb2.FeedHeader.FULL_DATASET
    feed.header.timestamp = 1749689100  # 2025-06-12T09:45:00+09:00
    moving = feed.entity.add()
    moving.id = "e1"
    moving.vehicle.vehicle.id = "OD-07"
    moving.vehicle.position.latitude = 34.2051
    moving.vehicle.position.longitude = 133.6262
    moving.vehicle.position.bearing = 87.5
    moving.vehicle.position.speed = 9.0  # m/s
    moving.vehicle.trip.route_id = "nio-takuma"
    moving.vehicle.trip.trip_id = "nio-takuma-wd-0815"
    moving.vehicle.occupancy_status = gtfs_realtime_pb2.VehiclePosition.MANY_SEATS_AVAILABLE
    moving.vehicle.timestamp = 1749689065  # 09:44:25
    parked = feed.entity.add()
    parked.id = "e2"
    parked.vehicle.vehicle.id = "veh-od02"
    parked.vehicle.position.latitude = 34.1051
    parked.vehicle.position.longitude = 133.7868
    return feed


class TestVehiclePositions:
    def test_a_feed_message_becomes_positions_with_coordinates_bearing_and_times(self) -> None:
        raw = _feed().SerializeToString()
        drafts, errors = split(transport.read_vehicle_positions(raw))
        assert errors == []
        moving, parked = drafts
        assert moving.event_type == "transport.vehicle.position"
        assert moving.subject == "veh-od07"
        assert moving.data == {
            "vehicle_id": "veh-od07",
            "operator_id": "mitoyo-ondemand",
            "mode": "on_demand",
            "lat": 34.2051,  # float32 on the wire, rounded back
            "lon": 133.6262,
            "bearing": 87.5,
            "speed_kmh": 32.4,
            "route_id": "nio-takuma",
            "service_trip_id": "nio-takuma-wd-0815",
            "occupancy": "many_seats_available",
            "recorded_at": "2025-06-12T09:44:25+09:00",
        }
        assert moving.time == datetime(2025, 6, 12, 9, 44, 25, tzinfo=JST)
        assert moving.natural_key == "veh-od07@1749689065"
        assert moving.line == 1
        # No vehicle timestamp: the header's time is when the snapshot was taken.
        assert parked.data["recorded_at"] == "2025-06-12T09:45:00+09:00"
        assert (parked.data["lat"], parked.data["lon"]) == (34.1051, 133.7868)
        assert "bearing" not in parked.data
        assert "occupancy" not in parked.data
        assert schema_problems(drafts) == []

    def test_realtime_route_and_trip_ids_of_any_text_are_carried_as_safe_ids(self) -> None:
        feed = _feed()
        trip = feed.entity[0].vehicle.trip
        trip.route_id, trip.trip_id = "仁尾線/1系統", "平日 08:15 便"
        [moving, _], errors = split(transport.read_vehicle_positions(feed.SerializeToString()))
        assert errors == []
        assert moving.data["route_id"] == carried_id("仁尾線/1系統")
        assert moving.data["service_trip_id"] == carried_id("平日 08:15 便")
        assert schema_problems([moving]) == []
        # A vehicle without a trip descriptor carries neither id.
        del feed.entity[1:]
        feed.entity[0].vehicle.ClearField("trip")
        [alone], _ = split(transport.read_vehicle_positions(feed.SerializeToString()))
        assert "route_id" not in alone.data
        assert "service_trip_id" not in alone.data

    @pytest.mark.parametrize(
        ("lat", "lon"),
        [(34.2051, 133.6262), (34.20512, 133.6271), (-33.8688, 151.2093), (0.1, -0.1)],
    )
    def test_coordinates_come_back_as_the_producer_wrote_them_despite_float32(
        self, lat: float, lon: float
    ) -> None:
        feed = _feed()  # float32 carries about 7 significant digits: all of these
        feed.entity[0].vehicle.position.latitude = lat
        feed.entity[0].vehicle.position.longitude = lon
        [draft, _] = list(transport.vehicle_position_drafts(feed))
        assert not isinstance(draft, RowError)
        assert (draft.data["lat"], draft.data["lon"]) == (lat, lon)

    def test_the_operator_sets_the_mode(self) -> None:
        bus = Operator("mitoyo-community-bus", "三豊市コミュニティバス", "fixed_route_bus")
        drafts, _ = split(transport.vehicle_position_drafts(_feed(), operator=bus))
        assert {(d.data["operator_id"], d.data["mode"]) for d in drafts} == {
            ("mitoyo-community-bus", "fixed_route_bus")
        }

    def test_other_entities_are_skipped_and_unusable_vehicles_are_reported(self) -> None:
        feed = _feed()
        update = feed.entity.add()
        update.id = "tu1"
        update.trip_update.trip.trip_id = "nio-takuma-wd-0815"
        blind = feed.entity.add()
        blind.id = "e4"
        blind.vehicle.vehicle.id = "od09"
        nameless = feed.entity.add()
        nameless.id = "e5"
        nameless.vehicle.position.latitude = 34.2
        nameless.vehicle.position.longitude = 133.7
        odd = feed.entity.add()
        odd.id = "e6"
        odd.vehicle.vehicle.id = "バス3"
        odd.vehicle.position.latitude = 34.2
        odd.vehicle.position.longitude = 133.7
        drafts, errors = split(transport.vehicle_position_drafts(feed))
        assert len(drafts) == 2
        assert errors == [
            RowError(4, "entity 'e4': no position"),
            RowError(5, "entity 'e5': no vehicle.id"),
            RowError(
                6,
                "entity 'e6': vehicle.id 'バス3' cannot be a platform vehicle id "
                "(veh- and a-z 0-9)",
            ),
        ]

    def test_without_any_timestamp_a_position_is_refused(self) -> None:
        feed = _feed()
        feed.header.ClearField("timestamp")
        _, errors = split(transport.vehicle_position_drafts(feed))
        assert errors == [
            RowError(
                2, "entity 'e2': no timestamp (neither the vehicle nor the feed header has one)"
            )
        ]

    def test_bytes_that_are_not_a_feed_message_are_one_error_for_the_whole_file(self) -> None:
        [error] = list(transport.read_vehicle_positions(b"\xff\xff\xff not protobuf"))
        assert isinstance(error, RowError)
        assert error.line == 0
        assert error.reason.startswith("not a GTFS-Realtime FeedMessage")

    def test_the_sample_feed_is_what_its_script_writes_and_reads_into_valid_positions(
        self,
    ) -> None:
        spec = importlib.util.spec_from_file_location(
            "make_vehicle_positions", TRANSPORT / "make_vehicle_positions.py"
        )
        assert spec is not None and spec.loader is not None
        script = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(script)
        committed = (TRANSPORT / "vehicle_positions.pb").read_bytes()
        assert script.build_feed().SerializeToString(deterministic=True) == committed
        drafts, errors = split(transport.read_vehicle_positions(TRANSPORT / "vehicle_positions.pb"))
        assert errors == []
        assert [d.subject for d in drafts] == ["veh-od07", "veh-od05", "veh-od02"]
        assert schema_problems(drafts) == []
