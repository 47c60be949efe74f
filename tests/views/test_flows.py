"""People flow (人流データ) and ridership (乗降実績) from trips at stops, on both stores:
the cells, Japan-time hour bands, k (a cell of k-1 residents is in no output), the filters'
refusals, and the open datasets in the standard's column names."""

from __future__ import annotations

import csv
import io
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine, insert

from broker.api.routes.opendata import as_csv
from broker.store.database import make_engine
from broker.store.projections.timestamps import JST
from broker.store.projections.transport import TransportStop, Trip
from broker.views.flows import people_flow, ridership
from broker.views.opendata import PEOPLE_FLOW_COLUMNS, Moment, dataset
from broker.views.statistics import FilterError, add_months, jst_month_start

_trips = Trip.__table__  # type: ignore[attr-defined]
_stops = TransportStop.__table__  # type: ignore[attr-defined]

K = 10
SETTLE = 7
START = datetime(2025, 5, 1, tzinfo=JST)
END = datetime(2025, 6, 1, tzinfo=JST)
#: Saturday 2025-05-10, 10:15 in Japan.
SATURDAY_10 = datetime(2025, 5, 10, 10, 15, tzinfo=JST)

#: Stops and the third-level mesh each lies in.
CITY_HALL = ("city-hall", 34.1826, 133.7153)  # mesh 51332517
STATION = ("station", 34.2175, 133.6960)  # mesh 51332565
SHRINE = ("shrine", 34.1500, 133.7500)  # mesh 51331680
NO_PLACE = ("no-place", None, None)  # a stop reported without coordinates
CITY_HALL_EAST = ("city-hall-east", 34.1830, 133.7160)  # mesh 51332517, like the city hall
CITY_HALL_WEST = ("city-hall-west", 34.1822, 133.7148)  # mesh 51332517 too


@pytest.fixture
def engine(store_url: str) -> Iterator[Engine]:
    e = make_engine(store_url)
    with e.begin() as conn:
        conn.execute(
            insert(_stops),
            [
                {
                    "stop_id": stop,
                    "town": "takuma",
                    "lat": lat,
                    "lon": lon,
                    "on_demand": True,
                    "bus": False,
                    "first_seen": START,
                    "last_seen": START,
                }
                for stop, lat, lon in (
                    CITY_HALL,
                    STATION,
                    SHRINE,
                    NO_PLACE,
                    CITY_HALL_EAST,
                    CITY_HALL_WEST,
                )
            ],
        )
    yield e
    e.dispose()


def _ride(
    engine: Engine,
    residents: int,
    *,
    origin: str | None,
    destination: str | None,
    at: datetime = SATURDAY_10,
    each: int = 1,
    group: str = "",
) -> None:
    """``each`` trips of each of ``residents`` residents, picked up at ``at``, 20 min long."""
    rows = [
        {
            "event_id": f"evt-{uuid.uuid4().hex}",
            "trip_id": f"trip-{uuid.uuid4().hex[:8]}",
            "subject_ref": uuid.uuid5(uuid.NAMESPACE_OID, f"{group}/{r}").hex,
            "mode": "on_demand",
            "operator_id": "op-1",
            "origin_stop_id": origin,
            "destination_stop_id": destination,
            "origin_town": "takuma",
            "destination_town": "takuma",
            "pickup_at": at,
            "dropoff_at": at + timedelta(minutes=20),
            "fare_jpy": 300,
            "passengers": 1,
            "sealed": b"x",
        }
        for r in range(residents)
        for _ in range(each)
    ]
    with engine.begin() as conn:
        conn.execute(insert(_trips), rows)


def _flow(
    engine: Engine,
    *,
    area_code: str | None = None,
    measurement_date: str | None = None,
    start_time: str | None = None,
) -> list[dict[str, object]]:
    stat = people_flow(
        engine,
        START,
        END,
        k=K,
        settle_days=SETTLE,
        area_code=area_code,
        measurement_date=measurement_date,
        start_time=start_time,
    )
    return [c.model_dump() for c in stat.cells]


def _keys(cells: list[dict[str, object]]) -> set[tuple[object, ...]]:
    return {(c["areaCode"], c["measurementDate"], c["startTime"]) for c in cells}


# -- people flow ---------------------------------------------------------------------------------


def test_people_flow_counts_distinct_residents_per_mesh_day_and_hour_band(engine: Engine) -> None:
    _ride(engine, K, origin="city-hall", destination="station", each=2)

    cells = _flow(engine)

    assert cells == [
        {
            "areaCode": "51332517",
            "locationName": None,
            "measurementDate": "2025-05-10",
            "startTime": "10:00",
            "endTime": "11:00",
            "dayOfWeek": "土",
            "peopleCount": K,  # 20 boardings, by 10 residents
        },
        {
            "areaCode": "51332565",
            "locationName": None,
            "measurementDate": "2025-05-10",
            "startTime": "10:00",
            "endTime": "11:00",
            "dayOfWeek": "土",
            "peopleCount": K,
        },
    ]


def test_a_people_flow_cell_of_k_minus_one_residents_is_in_no_output(engine: Engine) -> None:
    _ride(engine, K, origin="city-hall", destination="station", group="many")
    # 9 residents, 45 trips, shrine to shrine at 14:15: one cell of 9 people.
    at = SATURDAY_10 + timedelta(hours=4)
    _ride(engine, K - 1, origin="shrine", destination="shrine", at=at, each=5, group="few")

    stat = people_flow(engine, START, END, k=K, settle_days=SETTLE)

    assert ("51331680", "2025-05-10", "14:00") not in _keys([c.model_dump() for c in stat.cells])
    assert all(c.areaCode != "51331680" for c in stat.cells)
    assert stat.suppressed_cells == 1


def test_hour_bands_are_japan_time_and_the_last_ends_at_24(engine: Engine) -> None:
    # 2025-05-09T15:30Z is Saturday 00:30 in Japan; 14:50Z is Friday 23:50.
    _ride(
        engine, K, origin="city-hall", destination=None, at=datetime(2025, 5, 9, 15, 30, tzinfo=UTC)
    )
    _ride(
        engine, K, origin="station", destination=None, at=datetime(2025, 5, 9, 14, 50, tzinfo=UTC)
    )

    cells = {c["areaCode"]: c for c in _flow(engine)}

    saturday, friday = cells["51332517"], cells["51332565"]
    assert (saturday["measurementDate"], saturday["startTime"], saturday["dayOfWeek"]) == (
        "2025-05-10",
        "00:00",
        "土",
    )
    assert (friday["measurementDate"], friday["startTime"], friday["endTime"]) == (
        "2025-05-09",
        "23:00",
        "24:00",
    )
    assert friday["dayOfWeek"] == "金"


def test_a_stop_without_coordinates_is_in_ridership_not_in_people_flow(engine: Engine) -> None:
    _ride(engine, K, origin="no-place", destination=None)

    assert _flow(engine) == []
    [cell] = ridership(engine, START, END, k=K, settle_days=SETTLE).cells
    assert (cell.stop_id, cell.boardings, cell.alightings) == ("no-place", K, 0)


def test_a_mesh_minus_its_published_stops_never_gives_a_suppressed_stops_riders(
    engine: Engine,
) -> None:
    # Two stops in one mesh: K riders at one, K - 1 at the other. The mesh counts 2K - 1
    # residents and is published; had the first stop been published too, the mesh minus it
    # would give the second stop's K - 1 riders, a cell under k.
    _ride(engine, K, origin=CITY_HALL[0], destination=None, group="a")
    _ride(engine, K - 1, origin=CITY_HALL_EAST[0], destination=None, group="b")

    [mesh] = _flow(engine, area_code="51332517")
    assert mesh["peopleCount"] == 2 * K - 1
    stops = ridership(engine, START, END, k=K, settle_days=SETTLE)
    assert stops.cells == []  # the K cell is suppressed with the K - 1 one
    assert stops.suppressed_cells == 2


def test_a_stop_beside_a_suppressed_one_is_published_when_the_hidden_ones_reach_k(
    engine: Engine,
) -> None:
    # The refusal's other side: with K - 1 riders at each of two small stops, the hidden cells
    # together count at least K residents, so the big stop is published.
    _ride(engine, K, origin=CITY_HALL[0], destination=None, group="a")
    _ride(engine, K - 1, origin=CITY_HALL_EAST[0], destination=None, group="b")
    _ride(engine, K - 1, origin=CITY_HALL_WEST[0], destination=None, group="c")

    [cell] = ridership(engine, START, END, k=K, settle_days=SETTLE).cells
    assert (cell.stop_id, cell.boardings) == (CITY_HALL[0], K)


def test_people_flow_filters_keep_one_mesh_day_or_band(engine: Engine) -> None:
    _ride(engine, K, origin="city-hall", destination="station")

    assert _keys(_flow(engine, area_code="51332565")) == {("51332565", "2025-05-10", "10:00")}
    assert _flow(engine, measurement_date="2025-05-11") == []
    assert len(_flow(engine, start_time="10:00")) == 2
    assert _flow(engine, start_time="11:00") == []


@pytest.mark.parametrize(
    ("filters", "field", "rule"),
    [
        ({"area_code": "5133251"}, "areaCode", "8 digits"),
        ({"area_code": "12345678"}, "areaCode", "outside Japan"),
        ({"measurement_date": "2025/05/10"}, "measurementDate", "YYYY-MM-DD"),
        ({"measurement_date": "2025-02-30"}, "measurementDate", "YYYY-MM-DD"),
        ({"start_time": "10:30"}, "startTime", "hourly band"),
        ({"start_time": "24:00"}, "startTime", "hourly band"),
    ],
)
def test_a_bad_people_flow_filter_is_refused_naming_its_field_and_rule(
    engine: Engine, filters: dict[str, str], field: str, rule: str
) -> None:
    with pytest.raises(FilterError, match=rule) as refused:
        _flow(engine, **filters)
    assert refused.value.field == field
    assert str(refused.value).startswith(f"{field}: ")


# -- ridership -----------------------------------------------------------------------------------


def test_ridership_counts_boardings_and_alightings_per_stop_day_and_band(engine: Engine) -> None:
    _ride(engine, K, origin="city-hall", destination="station", each=2, group="a")
    # Ten more board at the station at 10:50 and alight at the city hall at 11:10.
    at = SATURDAY_10 + timedelta(minutes=35)
    _ride(engine, K, origin="station", destination="city-hall", at=at, group="b")

    stat = ridership(engine, START, END, k=K, settle_days=SETTLE)

    assert [c.model_dump() for c in stat.cells] == [
        {
            "stop_id": "city-hall",
            "date": "2025-05-10",
            "startTime": "10:00",
            "endTime": "11:00",
            "boardings": 2 * K,
            "alightings": 0,
        },
        {
            "stop_id": "city-hall",
            "date": "2025-05-10",
            "startTime": "11:00",
            "endTime": "12:00",
            "boardings": 0,
            "alightings": K,
        },
        {
            "stop_id": "station",
            "date": "2025-05-10",
            "startTime": "10:00",
            "endTime": "11:00",
            "boardings": K,
            "alightings": 2 * K,
        },
    ]
    assert (stat.totals.boardings, stat.totals.alightings) == (3 * K, 3 * K)


def test_a_ridership_cell_of_k_minus_one_residents_is_in_no_output(engine: Engine) -> None:
    _ride(engine, K, origin="city-hall", destination=None, group="many")
    _ride(engine, K - 1, origin="shrine", destination=None, each=5, group="few")

    stat = ridership(engine, START, END, k=K, settle_days=SETTLE)

    assert [c.stop_id for c in stat.cells] == ["city-hall"]
    assert stat.suppressed_cells == 1
    assert "shrine" not in stat.model_dump_json()


def test_a_bad_ridership_filter_is_refused_naming_its_field(engine: Engine) -> None:
    with pytest.raises(FilterError, match="YYYY-MM-DD") as refused:
        ridership(engine, START, END, k=K, settle_days=SETTLE, day="10/05/2025")
    assert refused.value.field == "date"
    with pytest.raises(FilterError, match="hourly band") as refused:
        ridership(engine, START, END, k=K, settle_days=SETTLE, start_time="noon")
    assert refused.value.field == "startTime"


# -- open data -----------------------------------------------------------------------------------


def _csv(name: str, at: Moment) -> tuple[bytes, list[dict[str, str]]]:
    ds = dataset(name)
    body = as_csv(ds, ds.rows(at))
    return body, list(csv.DictReader(io.StringIO(body.decode("utf-8-sig"))))


def test_open_data_people_flow_has_the_models_columns_and_no_cell_under_k(engine: Engine) -> None:
    now = datetime.now(UTC)
    day = add_months(jst_month_start(now), -2) + timedelta(days=4, hours=10, minutes=15)
    _ride(engine, K, origin="city-hall", destination=None, at=day, group="many")
    _ride(engine, K - 1, origin="shrine", destination=None, at=day, each=5, group="few")
    at = Moment(engine=engine, k=K, settle_days=SETTLE, now=now)

    body, rows = _csv("people-flow", at)

    assert body.startswith(b"\xef\xbb\xbf")
    header = body.decode("utf-8-sig").splitlines()[0]
    assert header == ",".join(PEOPLE_FLOW_COLUMNS)
    assert header == (
        "areaCode,locationName,measurementDate,startTime,endTime,dayOfWeek,peopleCount"
    )
    assert [(r["areaCode"], r["startTime"], r["peopleCount"]) for r in rows] == [
        ("51332517", "10:00", str(K))
    ]
    assert b"51331680" not in body  # the shrine's mesh: 9 residents


def test_open_data_ridership_has_plain_columns_and_no_cell_under_k(engine: Engine) -> None:
    now = datetime.now(UTC)
    day = add_months(jst_month_start(now), -2) + timedelta(days=4, hours=10, minutes=15)
    _ride(engine, K, origin="city-hall", destination=None, at=day, group="many")
    _ride(engine, K - 1, origin="shrine", destination=None, at=day, each=5, group="few")
    at = Moment(engine=engine, k=K, settle_days=SETTLE, now=now)

    body, rows = _csv("ridership", at)

    header = body.decode("utf-8-sig").splitlines()[0]
    assert header == "stop_id,date,startTime,endTime,boardings,alightings"
    assert [(r["stop_id"], r["boardings"], r["alightings"]) for r in rows] == [
        ("city-hall", str(K), "0")
    ]
    assert b"shrine" not in body
