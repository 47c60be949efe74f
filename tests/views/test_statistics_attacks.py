"""The differencing attacks on published statistics, each written as an attacker would run
it against what is published, each recovering no suppressed cell: margin subtraction (a
town's total minus its published flows), window subtraction (a longer period minus a shorter
one), re-reading a closed month while late events arrive, and the trips near a stop."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine, update

from broker.store.database import make_engine
from broker.store.projections.timestamps import JST
from broker.store.projections.transport import Trip
from broker.views.statistics import (
    MonthNotClosedError,
    PointsByAgeBand,
    PurposeNotServedError,
    add_months,
    check_serves,
    jst_month_start,
    points_by_age_band,
    town_flows,
    trips_by_town_month,
    trips_nearby,
)
from tests.views.test_statistics import SETTLE, _points_of, _trips_of

_trips = Trip.__table__  # type: ignore[attr-defined]
K = 10
MAY = datetime(2025, 5, 1, tzinfo=JST)
JUNE = add_months(MAY, 1)
IN_MAY = datetime(2025, 5, 10, 3, 0, tzinfo=UTC)


@pytest.fixture
def engine(store_url: str) -> Iterator[Engine]:
    e = make_engine(store_url)
    yield e
    e.dispose()


# -- margin subtraction -----------------------------------------------------------------------


def _recovered_by_margins(engine: Engine, start: datetime, end: datetime) -> list[tuple[str, int]]:
    """What an attacker recovers as (published town total) − (its published flows): every row
    with exactly one suppressed flow gives that flow's trips exactly."""
    towns = trips_by_town_month(engine, start, end, k=K, settle_days=SETTLE)
    flows = town_flows(engine, start, end, k=K, settle_days=SETTLE)
    recovered = []
    for town in towns.cells:
        if town.measures is None:
            continue
        row = [f for f in flows.cells if f.origin_town == town.town and f.month == town.month]
        hidden = [f for f in row if f.suppressed]
        if len(hidden) == 1:
            published = sum(f.measures.trips for f in row if f.measures is not None)
            recovered.append((hidden[0].destination_town, town.measures.trips - published))
    return recovered


def test_a_town_total_minus_its_published_flows_recovers_no_suppressed_flow(
    engine: Engine,
) -> None:
    _trips_of(engine, range(K), origin="takuma", destination="mino", each=3)
    _trips_of(engine, range(100, 100 + K), origin="takuma", destination="nio", each=2)
    _trips_of(engine, range(200, 203), origin="takuma", destination="zentsuji")  # 3 residents

    flows = town_flows(engine, MAY, JUNE, k=K, settle_days=SETTLE)
    towns = trips_by_town_month(engine, MAY, JUNE, k=K, settle_days=SETTLE)

    assert _recovered_by_margins(engine, MAY, JUNE) == []
    # The town's total is still published; the small flow is hidden with the next smallest,
    # and the two together count at least k residents.
    [takuma] = towns.cells
    assert takuma.measures is not None and takuma.measures.trips == 3 * K + 2 * K + 3
    assert [(f.destination_town, f.suppressed) for f in flows.cells] == [
        ("mino", False),
        ("nio", True),
        ("zentsuji", True),
    ]


def test_several_small_flows_hidden_together_still_count_k_residents(engine: Engine) -> None:
    _trips_of(engine, range(K), origin="takuma", destination="mino")
    _trips_of(engine, [300], origin="takuma", destination="nio")  # one resident each
    _trips_of(engine, [301], origin="takuma", destination="zentsuji")

    flows = town_flows(engine, MAY, JUNE, k=K, settle_days=SETTLE)

    # Two single trips hidden together would still be recoverable (their sum is 2, so both
    # are 1): the big flow goes too, and the remainder is about at least k residents.
    assert all(f.suppressed for f in flows.cells)
    assert _recovered_by_margins(engine, MAY, JUNE) == []


def test_a_raised_k_reveals_no_flow_by_its_margin(engine: Engine) -> None:
    _trips_of(engine, range(12), origin="takuma", destination="mino", each=2)
    _trips_of(engine, range(100, 111), origin="takuma", destination="nio")  # 11 residents

    raised = trips_by_town_month(engine, MAY, JUNE, k=12, settle_days=SETTLE, minimum_k=K)
    flows = town_flows(engine, MAY, JUNE, k=12, settle_days=SETTLE, minimum_k=K)

    # At k=12 the 11-resident flow is suppressed: its town's total goes with it.
    assert [(f.destination_town, f.suppressed) for f in flows.cells] == [
        ("mino", False),
        ("nio", True),
    ]
    assert [c.suppressed for c in raised.cells] == [True]


# -- window subtraction -----------------------------------------------------------------------


def _recovered_by_windows(
    engine: Engine, months: list[datetime], end: datetime
) -> list[tuple[str, int]]:
    """What an attacker recovers as (points over months[0]..end) − (over months[1]..end), per
    age band, where that month's own cell is suppressed: it should be nothing."""
    first = months[0]
    longer = points_by_age_band(engine, first, end, k=K, settle_days=SETTLE)
    shorter = points_by_age_band(engine, months[1], end, k=K, settle_days=SETTLE)
    alone = points_by_age_band(engine, first, months[1], k=K, settle_days=SETTLE)

    def by_band(stat: PointsByAgeBand) -> dict[str, int]:
        sums: dict[str, int] = defaultdict(int)
        for c in stat.cells:
            if c.measures is not None:
                sums[c.age_band] += c.measures.points_awarded
        return sums

    long_sums, short_sums = by_band(longer), by_band(shorter)
    recovered = []
    for cell in alone.cells:
        difference = long_sums.get(cell.age_band, 0) - short_sums.get(cell.age_band, 0)
        if cell.suppressed and difference != 0:
            recovered.append((cell.age_band, difference))
    return recovered


def test_a_twelve_month_window_minus_an_eleven_month_one_recovers_no_suppressed_cell(
    engine: Engine,
) -> None:
    months = [add_months(datetime(2024, 6, 1, tzinfo=JST), i) for i in range(12)]
    end = add_months(months[-1], 1)
    # One resident's points in the first month; ten residents' in each later month.
    _points_of(engine, range(1), 700, age_band="75+", at=months[0] + timedelta(days=3))
    for month in months[1:]:
        _points_of(engine, range(K), 100, age_band="75+", at=month + timedelta(days=3))

    assert _recovered_by_windows(engine, months, end) == []
    # Each month is published on its own: the first is suppressed, the others are not.
    year = points_by_age_band(engine, months[0], end, k=K, settle_days=SETTLE)
    assert [c.suppressed for c in year.cells] == [True] + [False] * 11


def test_a_window_not_aligned_to_months_is_refused(engine: Engine) -> None:
    with pytest.raises(ValueError, match="whole JST calendar months"):
        points_by_age_band(engine, MAY + timedelta(days=1), JUNE, k=K, settle_days=SETTLE)


# -- late events ------------------------------------------------------------------------------


def test_re_reading_a_closed_month_while_late_events_arrive_isolates_no_trip(
    engine: Engine,
) -> None:
    _trips_of(engine, range(K), origin="takuma", destination="mino")
    _trips_of(engine, range(100, 100 + K), origin="nio", destination="mino")
    first = (
        trips_by_town_month(engine, MAY, JUNE, k=K, settle_days=SETTLE).model_dump(),
        town_flows(engine, MAY, JUNE, k=K, settle_days=SETTLE).model_dump(),
    )
    changes = 0
    for n in range(50):
        _trips_of(engine, [1000 + n], origin="takuma" if n % 2 else "nio", at=IN_MAY)  # late
        again = (
            trips_by_town_month(engine, MAY, JUNE, k=K, settle_days=SETTLE).model_dump(),
            town_flows(engine, MAY, JUNE, k=K, settle_days=SETTLE).model_dump(),
        )
        changes += again != first
    assert changes == 0


def test_a_month_first_published_at_a_lower_k_is_not_counted_again_at_a_higher_one(
    engine: Engine,
) -> None:
    _trips_of(engine, range(20), origin="takuma", destination="mino")
    first = trips_by_town_month(engine, MAY, JUNE, k=K, settle_days=SETTLE)
    _trips_of(engine, [500], origin="takuma", destination="mino", at=IN_MAY)  # late

    # The platform's minimum is raised later: the month is not published again over the
    # newer events (the difference would be the late trip), only suppressed further.
    later = trips_by_town_month(engine, MAY, JUNE, k=15, settle_days=SETTLE, minimum_k=15)

    assert first.cells[0].measures is not None and later.cells[0].measures is not None
    assert later.cells[0].measures.trips == first.cells[0].measures.trips == 20


def test_a_month_under_way_is_not_published() -> None:
    engine = make_engine("sqlite://")
    this_month = jst_month_start(datetime.now(UTC))
    with pytest.raises(MonthNotClosedError):
        town_flows(
            engine, add_months(this_month, -1), add_months(this_month, 1), k=K, settle_days=SETTLE
        )
    with pytest.raises(MonthNotClosedError):
        trips_nearby(engine, this_month, k=K, settle_days=SETTLE)


# -- trips near a stop ------------------------------------------------------------------------


def _trips_at_stop(engine: Engine, subjects: range, stop: str) -> None:
    _trips_of(engine, subjects, origin="takuma", destination="mino", at=IN_MAY)
    with engine.begin() as conn:  # the helper writes no stops: put these trips at ``stop``
        conn.execute(
            update(_trips)
            .where(_trips.c.subject_ref.in_([f"{s:032x}" for s in subjects]))
            .values(origin_stop_id=stop)
        )


def test_trips_near_a_stop_disclose_no_single_trip(engine: Engine) -> None:
    _trips_at_stop(engine, range(1), "stop-lonely")  # one resident's trip
    _trips_at_stop(engine, range(100, 100 + K), "stop-busy")

    nearby = trips_nearby(engine, MAY, k=K, settle_days=SETTLE)

    assert nearby == {"stop-busy": K, "stop-lonely": None}


# -- purposes ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("statistic", "purpose"),
    [
        ("points-by-age-band", "transport.planning"),
        ("spending-by-merchant-category", "health.incentive"),
        ("town-flows", "care.community_watch"),
        ("trips-nearby", "currency.promotion"),
    ],
)
def test_a_statistic_is_refused_for_a_purpose_it_does_not_serve(
    statistic: str, purpose: str
) -> None:
    with pytest.raises(PurposeNotServedError, match="read it for one of those"):
        check_serves(statistic, purpose)


@pytest.mark.parametrize(
    ("statistic", "purpose"),
    [
        ("points-by-age-band", "health.incentive"),
        ("town-flows", "transport.planning"),
        ("trips-nearby", "housing.dual_residence_support"),
        ("spending-by-merchant-category", "statistics.municipal"),
    ],
)
def test_a_statistic_is_served_for_its_purposes(statistic: str, purpose: str) -> None:
    check_serves(statistic, purpose)
