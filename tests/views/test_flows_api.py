"""`/v1/statistics/people-flow` and `/v1/statistics/ridership` on a running platform: served
under the statistics rules (approved purpose, audited read), a cell of k-1 residents in no
answer, and every bad filter a 422 problem naming its field and rule."""

from __future__ import annotations

import itertools
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import insert

from broker.store.database import make_engine
from broker.store.projections.transport import TransportStop, Trip
from broker.views.statistics import add_months, jst_month_start
from tests.fixtures.platform import RunningPlatform, register_partner

_trips = Trip.__table__  # type: ignore[attr-defined]
_stops = TransportStop.__table__  # type: ignore[attr-defined]

PLANNING = "transport.planning"
K = 10
#: Months no other test reads (a month is frozen at its first publication).
_months = (add_months(jst_month_start(datetime.now(UTC)), -30 - i) for i in itertools.count())


def _seed(
    platform: RunningPlatform, stop: str, lat: float, lon: float, residents: int, at: datetime
) -> None:
    """A stop and one trip from it per resident, straight into the platform's store."""
    engine = make_engine(f"sqlite:///{platform.data_dir / 'store.db'}")
    try:
        with engine.begin() as conn:
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
                        "first_seen": at,
                        "last_seen": at,
                    }
                ],
            )
            conn.execute(
                insert(_trips),
                [
                    {
                        "event_id": f"evt-{uuid.uuid4().hex}",
                        "trip_id": f"trip-{uuid.uuid4().hex[:8]}",
                        "subject_ref": uuid.uuid5(uuid.NAMESPACE_OID, f"{stop}/{r}").hex,
                        "mode": "on_demand",
                        "operator_id": "op-1",
                        "origin_stop_id": stop,
                        "origin_town": "takuma",
                        "pickup_at": at,
                        "dropoff_at": at + timedelta(minutes=20),
                        "fare_jpy": 300,
                        "passengers": 1,
                        "sealed": b"x",
                    }
                    for r in range(residents)
                ],
            )
    finally:
        engine.dispose()


def test_a_partner_reads_people_flow_and_ridership_without_cells_under_k(
    platform: RunningPlatform,
) -> None:
    month = next(_months)
    at = month + timedelta(days=2, hours=8, minutes=10)  # 08:10 Japan time
    big, small = f"stop-{uuid.uuid4().hex[:8]}", f"stop-{uuid.uuid4().hex[:8]}"
    _seed(platform, big, 34.1826, 133.7153, K, at)  # mesh 51332517
    _seed(platform, small, 34.1500, 133.7500, K - 1, at)  # mesh 51331680
    period = {"from": month.isoformat(), "to": add_months(month, 1).isoformat()}
    with platform.client() as http:
        partner = register_partner(platform, http, PLANNING)
        auth = platform.auth("partner", partner)
        flow = http.get(
            "/v1/statistics/people-flow", params={**period, "purpose": PLANNING}, headers=auth
        )
        rides = http.get(
            "/v1/statistics/ridership", params={**period, "purpose": PLANNING}, headers=auth
        )
    assert flow.status_code == 200, flow.text
    assert flow.json()["cells"] == [
        {
            "areaCode": "51332517",
            "locationName": None,
            "measurementDate": f"{at.astimezone(month.tzinfo):%Y-%m-%d}",
            "startTime": "08:00",
            "endTime": "09:00",
            "dayOfWeek": "月火水木金土日"[at.astimezone(month.tzinfo).weekday()],
            "peopleCount": K,
        }
    ]
    assert "51331680" not in flow.text
    assert rides.status_code == 200, rides.text
    assert [(c["stop_id"], c["boardings"]) for c in rides.json()["cells"]] == [(big, K)]
    assert small not in rides.text


def test_people_flow_is_refused_for_a_purpose_it_does_not_serve(platform: RunningPlatform) -> None:
    with platform.client() as http:
        partner = register_partner(platform, http, "health.incentive")
        r = http.get(
            "/v1/statistics/people-flow",
            params={"purpose": "health.incentive"},
            headers=platform.auth("partner", partner),
        )
    assert r.status_code == 403
    assert r.json()["type"] == "urn:tsunagu:problem:purpose-not-served"


@pytest.mark.parametrize(
    ("path", "params", "field", "rule"),
    [
        ("people-flow", {"areaCode": "5133251"}, "areaCode", "8 digits"),
        ("people-flow", {"areaCode": "99999999"}, "areaCode", "outside Japan"),
        ("people-flow", {"measurementDate": "20250510"}, "measurementDate", "YYYY-MM-DD"),
        ("people-flow", {"startTime": "10:30"}, "startTime", "hourly band"),
        ("ridership", {"date": "2025-13-01"}, "date", "YYYY-MM-DD"),
        ("ridership", {"startTime": "25:00"}, "startTime", "hourly band"),
    ],
)
def test_a_bad_filter_is_a_422_problem_naming_the_field_and_rule(
    platform: RunningPlatform, path: str, params: dict[str, str], field: str, rule: str
) -> None:
    with platform.client() as http:
        r = http.get(
            f"/v1/statistics/{path}", params=params, headers=platform.auth("auditor", "city-audit")
        )
    assert r.status_code == 422, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    problem = r.json()
    assert problem["type"] == "urn:tsunagu:problem:invalid-filter"
    assert problem["detail"].startswith(f"{field}: ")
    assert rule in problem["detail"]
