"""k-anonymous statistics on SQLite and PostgreSQL: suppression, JST months, totals, and the
settling delay before a month is published."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, insert, select

from broker.store.database import make_engine
from broker.store.projections.currency import CurrencyTransaction
from broker.store.projections.health import HealthPoints
from broker.store.projections.timestamps import JST
from broker.store.projections.transport import Trip
from broker.store.publications import PublishedStatistics
from broker.views.statistics import (
    MonthNotClosedError,
    TripMeasures,
    add_months,
    jst_month_start,
    points_by_age_band,
    publishable_end,
    spending_by_merchant_category,
    town_flows,
    trips_by_town_month,
    trips_nearby,
)

_trips = Trip.__table__  # type: ignore[attr-defined]
_points = HealthPoints.__table__  # type: ignore[attr-defined]
_currency = CurrencyTransaction.__table__  # type: ignore[attr-defined]
_published = PublishedStatistics.__table__  # type: ignore[attr-defined]

K = 10
#: The platform's default settling delay, in days; the months read here ended long before.
SETTLE = 7
START = datetime(2025, 4, 1, tzinfo=JST)
END = datetime(2025, 8, 1, tzinfo=JST)
IN_MAY = datetime(2025, 5, 10, 3, 0, tzinfo=UTC)

_ids = itertools.count()


@pytest.fixture
def engine(store_url: str) -> Iterator[Engine]:
    e = make_engine(store_url)
    yield e
    e.dispose()


def _ref(subject: int) -> str:
    """A subject's opaque reference: one subject, one ref."""
    return f"{subject:032x}"


def _trips_of(
    engine: Engine,
    subjects: range | list[int],
    *,
    origin: str | None = "takuma",
    destination: str | None = "mino",
    at: datetime = IN_MAY,
    each: int = 1,
) -> None:
    rows: list[dict[str, Any]] = []
    for subject in subjects:
        for _ in range(each):
            n = next(_ids)
            rows.append(
                {
                    "event_id": f"evt-{n}",
                    "trip_id": f"trip-{n}",
                    "subject_ref": _ref(subject),
                    "mode": "on_demand",
                    "operator_id": "op-1",
                    "origin_town": origin,
                    "destination_town": destination,
                    "pickup_at": at,
                    "dropoff_at": at + timedelta(minutes=20),
                    "fare_jpy": 300,
                    "passengers": 1,
                    "sealed": b"x",
                }
            )
    with engine.begin() as conn:
        conn.execute(insert(_trips), rows)


def _points_of(
    engine: Engine, subjects: range, points: int, *, age_band: str | None, at: datetime = IN_MAY
) -> None:
    rows = [
        {
            "event_id": f"evt-{next(_ids)}",
            "subject_ref": _ref(s),
            "programme_id": "walk",
            "kind": "awarded" if points > 0 else "redeemed",
            "points": points,
            "age_band": age_band,
            "occurred_at": at,
            "sealed": b"x",
        }
        for s in subjects
    ]
    with engine.begin() as conn:
        conn.execute(insert(_points), rows)


def _wallet(
    engine: Engine,
    subjects: range,
    amount: int,
    *,
    kind: str = "payment",
    category: str | None = "grocery",
    at: datetime = IN_MAY,
) -> None:
    rows = [
        {
            "event_id": f"evt-{next(_ids)}",
            "subject_ref": _ref(s),
            "kind": kind,
            "amount_jpy": amount,
            "merchant_category": category if kind == "payment" else None,
            "town": "takuma",
            "occurred_at": at,
            "sealed": b"x",
        }
        for s in subjects
    ]
    with engine.begin() as conn:
        conn.execute(insert(_currency), rows)


def _cell(cells: list[Any], **dims: str) -> Any:
    [found] = [c for c in cells if all(getattr(c, d) == v for d, v in dims.items())]
    return found


# -- suppression ------------------------------------------------------------------------------


def test_cell_below_k_subjects_is_suppressed(engine: Engine) -> None:
    _trips_of(engine, range(K - 1), origin="nio")

    stat = trips_by_town_month(engine, START, END, k=K, settle_days=SETTLE)

    cell = _cell(stat.cells, town="nio", month="2025-05")
    assert cell.suppressed is True
    assert cell.measures is None
    assert stat.suppressed_cells == 1


def test_cell_with_k_subjects_is_published(engine: Engine) -> None:
    _trips_of(engine, range(K), origin="takuma")

    stat = trips_by_town_month(engine, START, END, k=K, settle_days=SETTLE)

    cell = _cell(stat.cells, town="takuma", month="2025-05")
    assert cell.suppressed is False
    assert (cell.measures.trips, cell.measures.subjects) == (K, K)
    assert stat.suppressed_cells == 0


def test_many_trips_by_few_subjects_stay_suppressed(engine: Engine) -> None:
    # 50 trips, but by 3 residents: the cell is about 3 people, whatever its row count.
    _trips_of(engine, [1, 2, 3, 1, 2], origin="nio", each=10)

    stat = trips_by_town_month(engine, START, END, k=K, settle_days=SETTLE)

    cell = _cell(stat.cells, town="nio", month="2025-05")
    assert cell.suppressed is True
    assert cell.measures is None


def test_a_suppressed_cell_publishes_no_subject_count_nor_any_measure(engine: Engine) -> None:
    _trips_of(engine, range(3), origin="nio")

    published = trips_by_town_month(engine, START, END, k=K, settle_days=SETTLE).model_dump(
        mode="json"
    )

    assert published["cells"] == [
        {"town": "nio", "month": "2025-05", "suppressed": True, "measures": None}
    ]


def test_a_higher_k_suppresses_cells_a_lower_k_publishes(engine: Engine) -> None:
    _trips_of(engine, range(12), origin="takuma")

    at_12 = trips_by_town_month(engine, START, END, k=12, settle_days=SETTLE, minimum_k=K)
    at_13 = trips_by_town_month(engine, START, END, k=13, settle_days=SETTLE, minimum_k=K)
    assert _cell(at_12.cells, town="takuma").measures
    assert _cell(at_13.cells, town="takuma").suppressed


def test_totals_cover_published_cells_only(engine: Engine) -> None:
    _trips_of(engine, range(K), origin="takuma", each=2)  # 20 trips, published
    _trips_of(engine, range(100, 100 + K - 1), origin="nio")  # 9 trips, suppressed

    stat = trips_by_town_month(engine, START, END, k=K, settle_days=SETTLE)

    assert stat.totals.trips == 20
    assert stat.totals_cover == "published cells only"
    assert stat.suppressed_cells == 1
    assert stat.k == K


# -- months in Japan time ---------------------------------------------------------------------


def test_a_trip_late_on_the_last_utc_day_of_may_counts_in_june_in_japan(engine: Engine) -> None:
    _trips_of(engine, range(2), at=datetime(2025, 5, 31, 15, 30, tzinfo=UTC))  # 06-01 00:30 JST
    _trips_of(engine, range(2), at=datetime(2025, 5, 31, 14, 59, tzinfo=UTC))  # 05-31 23:59 JST

    stat = trips_by_town_month(engine, START, END, k=2, settle_days=SETTLE)

    assert [(c.month, c.measures and c.measures.trips) for c in stat.cells] == [
        ("2025-05", 2),
        ("2025-06", 2),
    ]


def test_months_are_listed_per_town_in_order(engine: Engine) -> None:
    for month in (4, 7, 5):
        _trips_of(engine, range(2), origin="takuma", at=datetime(2025, month, 10, tzinfo=UTC))
    _trips_of(engine, range(2), origin="mino", at=datetime(2025, 6, 10, tzinfo=UTC))
    _trips_of(engine, range(2), origin=None, at=datetime(2025, 6, 10, tzinfo=UTC))

    stat = trips_by_town_month(engine, START, END, k=2, settle_days=SETTLE)

    assert [(c.town, c.month) for c in stat.cells] == [
        ("mino", "2025-06"),
        ("takuma", "2025-04"),
        ("takuma", "2025-05"),
        ("takuma", "2025-07"),
        ("unknown", "2025-06"),
    ]


def test_the_period_includes_its_start_and_excludes_its_end(engine: Engine) -> None:
    _trips_of(engine, range(2), origin="at-start", at=START)
    _trips_of(engine, range(2), origin="at-end", at=END)
    _trips_of(engine, range(2), origin="just-before-end", at=END - timedelta(microseconds=1))

    stat = trips_by_town_month(engine, START, END, k=2, settle_days=SETTLE)

    assert sorted(c.town for c in stat.cells) == ["at-start", "just-before-end"]


def test_the_period_is_reported_in_japan_time(engine: Engine) -> None:
    period = trips_by_town_month(engine, START, END, k=K, settle_days=SETTLE).model_dump(
        mode="json"
    )["period"]

    assert period == {"from": "2025-04-01T00:00:00+09:00", "to": "2025-08-01T00:00:00+09:00"}


def test_months_start_at_midnight_in_japan() -> None:
    start = datetime(2025, 3, 31, 15, 0, tzinfo=UTC)
    assert jst_month_start(start).isoformat() == "2025-04-01T00:00:00+09:00"
    assert add_months(jst_month_start(start), 12).isoformat() == "2026-04-01T00:00:00+09:00"
    assert add_months(jst_month_start(start), -4).isoformat() == "2024-12-01T00:00:00+09:00"


# -- points, spending, flows ------------------------------------------------------------------


def test_points_by_age_band_sum_awards_and_redemptions_and_show_a_missing_band_as_unknown(
    engine: Engine,
) -> None:
    _points_of(engine, range(K), 100, age_band="65-74")
    _points_of(engine, range(K), -30, age_band="65-74")
    _points_of(engine, range(20, 20 + K), 50, age_band=None)
    _points_of(engine, range(40, 42), 500, age_band="18-24")

    stat = points_by_age_band(engine, START, END, k=K, settle_days=SETTLE)

    assert [c.age_band for c in stat.cells] == ["18-24", "65-74", "unknown"]
    elder = _cell(stat.cells, age_band="65-74").measures
    assert (elder.points_awarded, elder.points_redeemed, elder.subjects) == (1000, 300, K)
    unknown = _cell(stat.cells, age_band="unknown").measures
    assert (unknown.points_awarded, unknown.points_redeemed, unknown.subjects) == (500, 0, K)
    assert _cell(stat.cells, age_band="18-24").suppressed
    assert (stat.totals.points_awarded, stat.totals.points_redeemed) == (1500, 300)
    assert stat.suppressed_cells == 1


def test_spending_counts_payments_only_by_merchant_category(engine: Engine) -> None:
    _wallet(engine, range(K), 1200, category="grocery")
    _wallet(engine, range(K), 5000, kind="topped_up")
    _wallet(engine, range(K), 300, kind="conversion")
    _wallet(engine, range(30, 30 + K), 800, category=None)
    _wallet(engine, range(60, 63), 9000, category="taxi")

    stat = spending_by_merchant_category(engine, START, END, k=K, settle_days=SETTLE)

    assert [c.merchant_category for c in stat.cells] == ["grocery", "taxi", "unknown"]
    grocery = _cell(stat.cells, merchant_category="grocery").measures
    assert (grocery.amount_jpy, grocery.payments, grocery.subjects) == (12_000, K, K)
    assert _cell(stat.cells, merchant_category="taxi").suppressed
    assert (stat.totals.amount_jpy, stat.totals.payments) == (20_000, 2 * K)


def test_town_flows_count_trips_per_origin_and_destination(engine: Engine) -> None:
    _trips_of(engine, range(K), origin="takuma", destination="mino", each=3)
    _trips_of(engine, range(K), origin="takuma", destination="takuma")
    _trips_of(engine, range(50, 52), origin="nio", destination="mino")

    stat = town_flows(engine, START, END, k=K, settle_days=SETTLE)

    assert [(c.origin_town, c.destination_town, c.suppressed) for c in stat.cells] == [
        ("nio", "mino", True),
        ("takuma", "mino", False),
        ("takuma", "takuma", False),
    ]
    flow = _cell(stat.cells, origin_town="takuma", destination_town="mino").measures
    assert (flow.trips, flow.subjects) == (3 * K, K)
    assert stat.totals.trips == 4 * K


def test_an_empty_period_has_no_cells_and_zero_totals(engine: Engine) -> None:
    stat = town_flows(engine, START, END, k=K, settle_days=SETTLE)

    assert (stat.cells, stat.suppressed_cells, stat.totals.trips) == ([], 0, 0)


@pytest.mark.parametrize(
    ("start", "end", "k"),
    [
        (END, START, K),
        (START, START, K),
        (START.replace(tzinfo=None), END, K),
        (START, END, 1),
        (START + timedelta(days=1), END, K),
        (START, add_months(jst_month_start(datetime.now(UTC)), 1), K),
    ],
    ids=["inverted", "empty", "naive", "k-of-one", "not-aligned", "not-closed"],
)
def test_a_statistic_refuses_a_bad_period_or_k(start: datetime, end: datetime, k: int) -> None:
    engine = make_engine("sqlite://")
    with pytest.raises(ValueError):
        trips_by_town_month(engine, start, end, k=k, settle_days=SETTLE)


# -- the settling delay -----------------------------------------------------------------------

MAY = datetime(2025, 5, 1, tzinfo=JST)
JUNE = add_months(MAY, 1)
#: When May is published with a settling delay of SETTLE days: June 8, midnight in Japan.
MAY_PUBLISHED = datetime(2025, 6, 8, tzinfo=JST)
DAY = timedelta(days=1)


def _published_months(engine: Engine) -> list[tuple[str, str]]:
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(select(_published.c.family, _published.c.month))]


def test_a_month_is_not_published_before_its_settling_delay(engine: Engine) -> None:
    _trips_of(engine, range(K), at=IN_MAY)
    ended = JUNE + timedelta(seconds=1)
    settling = MAY_PUBLISHED - timedelta(seconds=1)

    for now in (ended, settling):
        with pytest.raises(MonthNotClosedError, match="published only from 2025-06-08T00:00"):
            trips_by_town_month(engine, MAY, JUNE, k=K, settle_days=SETTLE, now=now)
        with pytest.raises(MonthNotClosedError, match="published only from 2025-06-08T00:00"):
            trips_nearby(engine, MAY, k=K, settle_days=SETTLE, now=now)
    # A refused read froze nothing.
    assert _published_months(engine) == []

    published = trips_by_town_month(engine, MAY, JUNE, k=K, settle_days=SETTLE, now=MAY_PUBLISHED)

    assert [(c.town, c.month, c.suppressed) for c in published.cells] == [
        ("takuma", "2025-05", False)
    ]
    assert _published_months(engine) == [("trips", "2025-05")]


def test_a_late_event_within_the_settling_delay_is_counted(engine: Engine) -> None:
    _trips_of(engine, range(K), at=IN_MAY)  # on time
    june_3 = datetime(2025, 6, 3, 9, 0, tzinfo=JST)
    with pytest.raises(MonthNotClosedError):
        town_flows(engine, MAY, JUNE, k=K, settle_days=SETTLE, now=june_3)
    # A weekly export brings May 31's trip of one more resident (late in Japan time, at
    # 2025-05-31T23:30+09:00) after the month ended, within the delay.
    _trips_of(engine, [K], at=datetime(2025, 5, 31, 14, 30, tzinfo=UTC))

    flows = town_flows(engine, MAY, JUNE, k=K, settle_days=SETTLE, now=MAY_PUBLISHED)
    towns = trips_by_town_month(engine, MAY, JUNE, k=K, settle_days=SETTLE, now=MAY_PUBLISHED)

    [flow] = flows.cells
    [town] = towns.cells
    assert flow.measures == town.measures == TripMeasures(trips=K + 1, subjects=K + 1)

    # Once published, the month is frozen: an event arriving after that is not counted in it.
    _trips_of(engine, [K + 1], at=IN_MAY)
    later = trips_by_town_month(engine, MAY, JUNE, k=K, settle_days=SETTLE, now=JUNE + 60 * DAY)
    assert later.model_dump() == towns.model_dump()


def test_a_months_settling_delay_is_counted_in_japan_time(engine: Engine) -> None:
    # June 8, 00:00 in Japan is June 7, 15:00 UTC.
    assert publishable_end(datetime(2025, 6, 7, 14, 59, 59, tzinfo=UTC), SETTLE) == MAY
    assert publishable_end(datetime(2025, 6, 7, 15, 0, tzinfo=UTC), SETTLE) == JUNE
    # Without a delay a month is published as soon as it ends, and not before.
    assert publishable_end(JUNE - timedelta(seconds=1), 0) == MAY
    assert publishable_end(JUNE, 0) == JUNE
    _trips_of(engine, range(K), at=IN_MAY)
    stat = trips_by_town_month(engine, MAY, JUNE, k=K, settle_days=0, now=JUNE)
    assert [c.month for c in stat.cells] == ["2025-05"]


def test_a_period_reaching_into_a_settling_month_says_from_when_it_is_published() -> None:
    engine = make_engine("sqlite://")
    april = add_months(MAY, -1)
    with pytest.raises(MonthNotClosedError) as refused:
        points_by_age_band(engine, april, JUNE, k=K, settle_days=SETTLE, now=JUNE + 2 * DAY)
    assert "2025-05" in str(refused.value)
    assert "2025-06-08T00:00:00+09:00" in str(refused.value)
    assert "TSUNAGU_STATISTICS_SETTLE_DAYS" in str(refused.value)
