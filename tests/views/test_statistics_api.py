"""`/v1/statistics` on a running platform: who may read, purposes, k, periods, suppression,
and the settling delay before a month is published (here and on vacant houses' trips nearby)."""

from __future__ import annotations

import itertools
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import insert

from broker.store.database import make_engine
from broker.store.projections.timestamps import JST
from broker.store.projections.transport import Trip
from broker.views.statistics import (
    KBelowMinimumError,
    MonthNotClosedError,
    PeriodError,
    add_months,
    chosen_k,
    complete_months,
    jst_month_start,
    publishable_end,
    published_month_start,
)
from tests.fixtures.platform import RunningPlatform, register_partner, start_platform, stop_platform

_trips = Trip.__table__  # type: ignore[attr-defined]
_ids = itertools.count()

PURPOSE = "statistics.municipal"
PATHS = (
    "/v1/statistics/trips-by-town-month",
    "/v1/statistics/points-by-age-band",
    "/v1/statistics/spending-by-merchant-category",
    "/v1/statistics/town-flows",
)
THIS_MONTH = jst_month_start(datetime.now(UTC))
#: The platform's default settling delay (TSUNAGU_STATISTICS_SETTLE_DAYS), in days.
SETTLE_DAYS = 7
HOUSING = "housing.dual_residence_support"
#: A complete month in the past: every test's data is in it.
MONTH = add_months(THIS_MONTH, -2)
PERIOD = {"from": MONTH.isoformat(), "to": add_months(MONTH, 1).isoformat()}
#: Months no test has read yet: a month is frozen at its first publication, so a test that
#: writes trips and then reads them takes a month of its own, before any default period.
_unread_months = (add_months(THIS_MONTH, -14 - i) for i in itertools.count())


def _fresh_month() -> tuple[datetime, dict[str, str]]:
    month = next(_unread_months)
    return month, {"from": month.isoformat(), "to": add_months(month, 1).isoformat()}


def _town() -> str:
    return f"town-{uuid.uuid4().hex[:8]}"


def _trips_from(
    platform: RunningPlatform,
    town: str,
    subjects: int,
    *,
    each: int = 1,
    month: datetime = MONTH,
    destination: str = "mino",
) -> None:
    """Trips straight into the platform's store (as the ingest worker would have written)."""
    at = month + timedelta(days=3, hours=5)
    rows = []
    for subject in range(subjects):
        for _ in range(each):
            n = next(_ids)
            rows.append(
                {
                    "event_id": f"evt-{uuid.uuid4().hex}-{n}",
                    "trip_id": f"trip-{n}",
                    "subject_ref": uuid.uuid5(uuid.NAMESPACE_OID, f"{town}/{subject}").hex,
                    "mode": "on_demand",
                    "operator_id": "op-1",
                    "origin_town": town,
                    "destination_town": destination,
                    "pickup_at": at,
                    "dropoff_at": at + timedelta(minutes=20),
                    "fare_jpy": 300,
                    "passengers": 1,
                    "sealed": b"x",
                }
            )
    engine = make_engine(f"sqlite:///{platform.data_dir / 'store.db'}")
    try:
        with engine.begin() as conn:
            conn.execute(insert(_trips), rows)
    finally:
        engine.dispose()


def _cell(body: dict[str, object], town: str) -> dict[str, object]:
    cells = body["cells"]
    assert isinstance(cells, list)
    [found] = [c for c in cells if c["town"] == town]
    return found  # type: ignore[no-any-return]


# -- who may read ----------------------------------------------------------------------------


def test_a_partner_approved_for_the_purpose_reads_statistics_with_small_cells_suppressed(
    platform: RunningPlatform,
) -> None:
    big, small = _town(), _town()
    at, period = _fresh_month()
    _trips_from(platform, big, 10, each=2, month=at)
    _trips_from(platform, small, 3, each=10, month=at)  # 30 trips, but by 3 residents
    with platform.client() as http:
        partner = register_partner(platform, http, PURPOSE)
        r = http.get(
            "/v1/statistics/trips-by-town-month",
            params={**period, "purpose": PURPOSE},
            headers=platform.auth("partner", partner),
        )
    assert r.status_code == 200, r.text
    body = r.json()
    month = f"{at:%Y-%m}"
    assert _cell(body, big) == {
        "town": big,
        "month": month,
        "suppressed": False,
        "measures": {"trips": 20, "subjects": 10},
    }
    assert _cell(body, small) == {
        "town": small,
        "month": month,
        "suppressed": True,
        "measures": None,
    }
    assert body["k"] == 10
    assert body["totals_cover"] == "published cells only"
    assert body["suppressed_cells"] >= 1


def test_a_partner_must_name_its_purpose(platform: RunningPlatform) -> None:
    with platform.client() as http:
        partner = register_partner(platform, http, PURPOSE)
        r = http.get(PATHS[0], params=PERIOD, headers=platform.auth("partner", partner))
    assert r.status_code == 422
    assert r.headers["content-type"] == "application/problem+json"
    assert "purpose" in r.json()["detail"]


def test_a_partner_not_approved_for_the_purpose_is_refused(platform: RunningPlatform) -> None:
    with platform.client() as http:
        partner = register_partner(platform, http, "transport.planning")
        r = http.get(
            PATHS[0],
            params={**PERIOD, "purpose": PURPOSE},
            headers=platform.auth("partner", partner),
        )
    assert r.status_code == 403
    assert r.headers["content-type"] == "application/problem+json"
    assert PURPOSE in r.json()["detail"]


def test_an_unregistered_partner_is_refused(platform: RunningPlatform) -> None:
    with platform.client() as http:
        r = http.get(
            PATHS[0],
            params={**PERIOD, "purpose": PURPOSE},
            headers=platform.auth("partner", "ptn-nobody"),
        )
    assert r.status_code == 403
    assert "not registered" in r.json()["detail"]


@pytest.mark.parametrize("role", ["auditor", "admin"])
def test_the_municipality_reads_every_statistic_without_a_purpose(
    platform: RunningPlatform, role: str
) -> None:
    with platform.client() as http:
        responses = [
            http.get(path, params=PERIOD, headers=platform.auth(role, "city-ops")) for path in PATHS
        ]
    assert [r.status_code for r in responses] == [200] * len(PATHS)
    assert [r.json()["statistic"] for r in responses] == [p.rsplit("/", 1)[1] for p in PATHS]


@pytest.mark.parametrize("role", ["resident", "connector"])
def test_residents_and_connectors_read_no_statistics(platform: RunningPlatform, role: str) -> None:
    with platform.client() as http:
        sources = ("urn:tsunagu:connector:bus",) if role == "connector" else ()
        r = http.get(
            PATHS[3], params=PERIOD, headers=platform.auth(role, "someone", sources=sources)
        )
    assert r.status_code == 403


def test_statistics_need_a_token(platform: RunningPlatform) -> None:
    with platform.client() as http:
        r = http.get(PATHS[3], params=PERIOD)
    assert r.status_code == 401


# -- k ---------------------------------------------------------------------------------------


def test_k_below_the_platform_minimum_is_refused_saying_so(platform: RunningPlatform) -> None:
    with platform.client() as http:
        r = http.get(
            PATHS[0], params={**PERIOD, "k": 5}, headers=platform.auth("auditor", "city-audit")
        )
    assert r.status_code == 422
    assert r.headers["content-type"] == "application/problem+json"
    assert "minimum of 10" in r.json()["detail"]


def test_a_higher_k_suppresses_cells_the_minimum_publishes(platform: RunningPlatform) -> None:
    town = _town()
    at, period = _fresh_month()
    _trips_from(platform, town, 12, month=at)
    auditor = platform.auth("auditor", "city-audit")
    with platform.client() as http:
        at_minimum = http.get(PATHS[0], params=period, headers=auditor).json()
        raised = http.get(PATHS[0], params={**period, "k": 13}, headers=auditor).json()
    assert _cell(at_minimum, town)["suppressed"] is False
    assert _cell(raised, town)["suppressed"] is True
    assert raised["k"] == 13


# -- periods ---------------------------------------------------------------------------------


def test_a_period_is_widened_to_whole_months_in_japan_time(platform: RunningPlatform) -> None:
    inside = {
        "from": (MONTH + timedelta(days=10)).isoformat(),
        "to": (MONTH + timedelta(days=11)).isoformat(),
    }
    with platform.client() as http:
        r = http.get(PATHS[3], params=inside, headers=platform.auth("auditor", "city-audit"))
    assert r.status_code == 200, r.text
    period = r.json()["period"]
    assert datetime.fromisoformat(period["from"]) == MONTH
    assert datetime.fromisoformat(period["to"]) == add_months(MONTH, 1)


def test_the_default_period_is_the_last_twelve_published_months(
    platform: RunningPlatform,
) -> None:
    before = datetime.now(UTC)
    with platform.client() as http:
        r = http.get(PATHS[3], headers=platform.auth("auditor", "city-audit"))
    after = datetime.now(UTC)
    period = r.json()["period"]
    # The end of the last month that ended at least the settling delay ago (read either side
    # of the request, should it straddle a day when one more month is published).
    end = datetime.fromisoformat(period["to"])
    assert end in {publishable_end(before, SETTLE_DAYS), publishable_end(after, SETTLE_DAYS)}
    assert datetime.fromisoformat(period["from"]) == add_months(end, -12)


def test_the_month_under_way_is_not_published(platform: RunningPlatform) -> None:
    now = datetime.now(UTC)
    with platform.client() as http:
        r = http.get(
            PATHS[3],
            params={"from": THIS_MONTH.isoformat(), "to": (now + timedelta(hours=1)).isoformat()},
            headers=platform.auth("auditor", "city-audit"),
        )
    assert r.status_code == 422
    assert "complete months" in r.json()["detail"]


@pytest.mark.parametrize(
    ("params", "says"),
    [
        ({"from": PERIOD["to"], "to": PERIOD["from"]}, "before"),
        (
            {"from": add_months(MONTH, -61).isoformat(), "to": add_months(MONTH, 1).isoformat()},
            "5 years",
        ),
        ({"from": "2025-01-01T00:00:00", "to": PERIOD["to"]}, "timezone"),
    ],
    ids=["inverted", "over-five-years", "naive"],
)
def test_a_malformed_period_is_a_problem(
    platform: RunningPlatform, params: dict[str, str], says: str
) -> None:
    with platform.client() as http:
        r = http.get(PATHS[0], params=params, headers=platform.auth("auditor", "city-audit"))
    assert r.status_code == 422
    assert r.headers["content-type"] == "application/problem+json"
    assert says in r.json()["detail"]


# -- the settling delay ------------------------------------------------------------------------

MAY = datetime(2025, 5, 1, tzinfo=JST)
JUNE = add_months(MAY, 1)
JUNE_3 = datetime(2025, 6, 3, 9, 0, tzinfo=JST)


def test_a_period_within_the_settling_delay_is_a_problem_saying_from_when() -> None:
    with pytest.raises(MonthNotClosedError) as refused:
        complete_months(MAY, JUNE, JUNE_3, SETTLE_DAYS)
    assert "2025-05 has ended but is published only from 2025-06-08T00:00:00+09:00" in str(
        refused.value
    )
    # Once settled it is published; a period reaching into it stops before it until then.
    assert complete_months(MAY, JUNE, datetime(2025, 6, 8, tzinfo=JST), SETTLE_DAYS) == (MAY, JUNE)
    assert complete_months(add_months(MAY, -2), None, JUNE_3, SETTLE_DAYS) == (
        add_months(MAY, -2),
        MAY,
    )
    assert complete_months(None, None, JUNE_3, SETTLE_DAYS) == (add_months(MAY, -12), MAY)
    assert complete_months(None, None, JUNE_3, 0) == (add_months(JUNE, -12), JUNE)


def test_a_month_still_settling_is_not_published_nor_the_default_nearby_a_house(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    # A platform of its own whose months settle for 40 days: last month, which ended at most
    # 31 days ago, is still settling whatever the day.
    settle = 40
    settling = start_platform(
        tmp_path_factory.mktemp("settling"),
        extra_env={"TSUNAGU_STATISTICS_SETTLE_DAYS": str(settle)},
    )
    before = datetime.now(UTC)
    this_month = jst_month_start(before)
    last_month = add_months(this_month, -1)
    try:
        with settling.client() as http:
            auditor = settling.auth("auditor", "city-audit")
            last = {"from": last_month.isoformat(), "to": this_month.isoformat()}
            statistic = http.get(PATHS[0], params=last, headers=auditor)
            default = http.get(PATHS[0], headers=auditor)
            partner = register_partner(settling, http, HOUSING)
            as_partner = settling.auth("partner", partner)
            houses = "/v1/partner/vacant-houses"
            asked = http.get(
                houses,
                params={"purpose": HOUSING, "month": f"{last_month:%Y-%m}"},
                headers=as_partner,
            )
            nearby_default = http.get(houses, params={"purpose": HOUSING}, headers=as_partner)
        after = datetime.now(UTC)
    finally:
        stop_platform(settling)
    when = (this_month + timedelta(days=settle)).isoformat()
    says = f"{last_month:%Y-%m} has ended but is published only from {when}"
    assert statistic.status_code == 422, statistic.text
    assert statistic.headers["content-type"] == "application/problem+json"
    assert says in statistic.json()["detail"]
    assert asked.status_code == 422, asked.text
    assert says in asked.json()["detail"]
    # The defaults stop at the last month published, not the last one ended.
    published = {publishable_end(before, settle), publishable_end(after, settle)}
    assert default.status_code == 200, default.text
    assert datetime.fromisoformat(default.json()["period"]["to"]) in published
    assert nearby_default.status_code == 200, nearby_default.text
    assert datetime.fromisoformat(nearby_default.json()["period_from"]) in {
        add_months(end, -1) for end in published
    }
    assert max(published) < this_month


# -- attacks over HTTP -------------------------------------------------------------------------


def test_a_town_total_minus_its_published_flows_recovers_nothing_over_http(
    platform: RunningPlatform,
) -> None:
    town = _town()
    at, period = _fresh_month()
    _trips_from(platform, town, 10, each=3, month=at, destination="mino")
    _trips_from(platform, town, 12, month=at, destination="nio")
    _trips_from(platform, town, 2, month=at, destination="zentsuji")
    auditor = platform.auth("auditor", "city-audit")
    with platform.client() as http:
        totals = http.get(PATHS[0], params=period, headers=auditor).json()
        flows = http.get(PATHS[3], params=period, headers=auditor).json()
    total = _cell(totals, town)["measures"]
    assert isinstance(total, dict)
    row = [f for f in flows["cells"] if f["origin_town"] == town]
    hidden = [f for f in row if f["suppressed"]]
    assert total["trips"] == 30 + 12 + 2
    assert len(hidden) != 1  # else it would be the total minus the published flows
    assert sorted(f["destination_town"] for f in hidden) == ["nio", "zentsuji"]


@pytest.mark.parametrize(
    ("path", "purpose"),
    [(PATHS[1], "transport.planning"), (PATHS[2], "transport.planning")],
)
def test_a_statistic_is_refused_for_a_purpose_it_does_not_serve(
    platform: RunningPlatform, path: str, purpose: str
) -> None:
    with platform.client() as http:
        partner = register_partner(platform, http, purpose)
        r = http.get(
            path, params={**PERIOD, "purpose": purpose}, headers=platform.auth("partner", partner)
        )
    assert r.status_code == 403
    assert r.headers["content-type"] == "application/problem+json"
    assert "read it for one of those" in r.json()["detail"]


# -- the document and the rate ---------------------------------------------------------------


def test_the_openapi_document_shows_each_statistic_with_an_example(
    platform: RunningPlatform,
) -> None:
    with platform.client() as http:
        doc = http.get("/openapi.json").json()
    for path in PATHS:
        assert path in doc["paths"]
    schema = doc["components"]["schemas"]["TripsByTownMonth"]
    [example] = schema["examples"]
    assert example["totals_cover"] == "published cells only"
    assert any(cell["suppressed"] for cell in example["cells"])


def test_a_partner_over_its_rate_gets_429_with_retry_after(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    # A platform of its own, whose partners may make one request and then wait a long time.
    slow = start_platform(
        tmp_path_factory.mktemp("slow"),
        extra_env={"TSUNAGU_PARTNER_BURST": "1", "TSUNAGU_PARTNER_RATE_PER_S": "0.01"},
    )
    try:
        with slow.client() as http:
            partner = register_partner(slow, http, PURPOSE)
            params = {**PERIOD, "purpose": PURPOSE}
            first = http.get(PATHS[1], params=params, headers=slow.auth("partner", partner))
            second = http.get(PATHS[1], params=params, headers=slow.auth("partner", partner))
    finally:
        stop_platform(slow)
    assert first.status_code == 200, first.text
    assert second.status_code == 429
    assert int(second.headers["retry-after"]) >= 1


# -- the k floor and the period, as the statistics domain rules them ---------------------------


def test_k_may_raise_the_minimum_and_is_refused_below_it_saying_what_to_ask() -> None:
    assert chosen_k(None, 10) == 10
    assert chosen_k(25, 10) == 25
    with pytest.raises(KBelowMinimumError, match="ask with k=10 or more"):
        chosen_k(9, 10)


def test_a_period_over_five_years_or_empty_is_refused_saying_what_to_ask() -> None:
    start = add_months(MAY, -61)
    assert complete_months(add_months(MAY, -60), MAY, JUNE_3, SETTLE_DAYS)[0] == add_months(
        MAY, -60
    )
    with pytest.raises(PeriodError, match="ask for it in parts"):
        complete_months(start, MAY, JUNE_3, SETTLE_DAYS)
    with pytest.raises(PeriodError, match="`from` must be before `to`"):
        complete_months(MAY, MAY, JUNE_3, SETTLE_DAYS)


def test_a_houses_month_not_published_yet_is_refused_naming_the_last_published() -> None:
    assert published_month_start(None, JUNE_3, SETTLE_DAYS) == add_months(MAY, -1)
    assert published_month_start("2025-04", JUNE_3, SETTLE_DAYS) == add_months(MAY, -1)
    with pytest.raises(MonthNotClosedError, match="name a published month, 2025-04 or earlier"):
        published_month_start("2025-05", JUNE_3, SETTLE_DAYS)
