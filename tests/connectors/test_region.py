"""The synthetic region: deterministic for a seed, plausible for Mitoyo, and speaking exactly
the file formats the connectors' readers accept.
"""

from __future__ import annotations

import math
from collections import Counter
from datetime import date, datetime, timedelta, timezone
from itertools import islice, pairwise
from pathlib import Path

import pytest
from google.transit import gtfs_realtime_pb2

from connectors import transport
from connectors.readers import RESIDENT_ID
from connectors.region import AGE_BANDS, COLUMNS, CONNECTORS, FEEDS, STOPS, Batch, Region
from connectors.sdk.rows import EventDraft, RowError
from contract.towns import TOWN_CODES, nearest_town
from tests.connectors.test_readers_csv import schema_problems, split

JST = timezone(timedelta(hours=9))
START = date(2025, 4, 1)
Rows = dict[str, dict[str, list[dict[str, str]]]]  # one day: connector → feed → rows


@pytest.fixture(scope="module")
def region() -> Region:
    return Region(seed=7, population=2000)


@pytest.fixture(scope="module")
def week(region: Region) -> list[Rows]:
    return [region.day(START + timedelta(days=i)) for i in range(7)]


class TestDeterminism:
    def test_the_same_seed_gives_the_same_rows_and_events(self) -> None:
        a, b = Region(seed=11, population=300), Region(seed=11, population=300)
        for day in (START, START + timedelta(days=1)):
            assert a.day(day) == b.day(day)
        assert list(a.events(2000)) == list(b.events(2000))

    def test_another_seed_gives_another_region(self) -> None:
        a, b = Region(seed=11, population=300), Region(seed=12, population=300)
        assert [r.resident_id for r in a.residents] != [r.resident_id for r in b.residents]
        assert a.day(START) != b.day(START)

    def test_a_day_is_the_same_whatever_order_days_are_asked_in(self) -> None:
        later = START + timedelta(days=40)
        in_order = Region(seed=5, population=300)
        for i in range(41):
            in_order.day(START + timedelta(days=i))
        jumping = Region(seed=5, population=300)
        assert jumping.day(later) == in_order.day(later)  # the days between are replayed
        assert jumping.day(START) == Region(seed=5, population=300).day(START)  # back again
        assert jumping.day(later) == in_order.day(later)

    def test_no_day_before_the_start(self, region: Region) -> None:
        with pytest.raises(ValueError, match="starts on 2025-04-01"):
            region.day(date(2025, 3, 31))


class TestPeople:
    def test_the_population_has_the_size_asked_for_with_unique_platform_ids(
        self, region: Region
    ) -> None:
        ids = [r.resident_id for r in region.residents]
        assert len(ids) == 2000 == len(set(ids))
        assert all(RESIDENT_ID.fullmatch(i) for i in ids)
        assert Region(seed=1, population=150).residents.__len__() == 150

    def test_every_town_and_age_band_is_present_and_the_region_is_ageing(
        self, region: Region
    ) -> None:
        towns = Counter(r.town for r in region.residents)
        bands = Counter(r.age_band for r in region.residents)
        assert set(towns) == set(TOWN_CODES)
        assert set(bands) == set(AGE_BANDS)
        assert towns["takase"] > towns["saita"]  # the biggest town and the smallest
        elderly = (bands["65-74"] + bands["75+"]) / 2000
        assert 0.30 < elderly < 0.45  # Mitoyo: about 37% are 65 or older
        assert 0.07 < bands["0-14"] / 2000 < 0.15

    def test_each_resident_lives_near_a_stop_of_their_town(self, region: Region) -> None:
        towns = {s.stop_id: s.town for s in STOPS}
        assert all(towns[r.home_stop_id] == r.town for r in region.residents)
        assert region.resident(region.residents[0].resident_id) == region.residents[0]

    def test_owners_are_platform_subjects_some_living_here_some_elsewhere(
        self, region: Region
    ) -> None:
        residents = {r.resident_id for r in region.residents}
        here = [o for o in region.owners if o.in_region]
        away = [o for o in region.owners if not o.in_region]
        assert here and away
        assert all(o.owner_id in residents for o in here)  # a resident who owns a house
        assert not any(o.owner_id in residents for o in away)
        assert all(not o.address.startswith("香川県三豊市") for o in away)
        assert all(RESIDENT_ID.fullmatch(o.owner_id) for o in region.owners)
        assert {h.owner.owner_id for h in region.houses} == {o.owner_id for o in region.owners}

    def test_prospects_are_subjects_from_outside_the_region(self, region: Region) -> None:
        residents = {r.resident_id for r in region.residents}
        assert region.prospects
        assert not any(p.resident_id in residents for p in region.prospects)


class TestPlaces:
    def test_every_stop_is_nearest_to_its_own_towns_centroid(self) -> None:
        assert all(nearest_town(s.lat, s.lon).code == s.town for s in STOPS)

    def test_the_regions_gtfs_feed_reads_back_into_its_stops(
        self, region: Region, tmp_path: Path
    ) -> None:
        path = region.write_gtfs(tmp_path / "gtfs.zip")
        assert transport.read_gtfs_stops(path) == region.stops
        assert {s.town for s in region.stops.values()} == set(TOWN_CODES)


class TestRows:
    def test_every_connector_produces_rows_on_the_first_day(self, week: list[Rows]) -> None:
        first = week[0]
        assert set(first) == set(CONNECTORS)
        for connector, feeds in first.items():
            assert any(feeds.values()), connector

    def test_every_csv_feed_has_rows_within_a_week(self, week: list[Rows]) -> None:
        for connector, feed in COLUMNS:
            assert sum(len(day[connector][feed]) for day in week) > 0, (connector, feed)

    def test_rows_have_exactly_the_columns_of_the_readers_formats(self, week: list[Rows]) -> None:
        for day in week:
            for connector, feed in COLUMNS:
                for row in day[connector][feed]:
                    assert tuple(row) == COLUMNS[(connector, feed)]
                    assert all(isinstance(v, str) for v in row.values())

    def test_volumes_are_plausible_for_two_thousand_people(self, week: list[Rows]) -> None:
        weekday = week[0]  # Tuesday
        assert 20 <= len(weekday["transport"]["trips"]) <= 120
        assert 200 <= len(weekday["health"]["activities"]) <= 700
        assert 80 <= len(weekday["currency"]["transactions"]) <= 500
        sunday = week[5]
        assert len(sunday["transport"]["trips"]) < len(weekday["transport"]["trips"])

    def test_on_demand_vehicles_are_never_in_two_trips_at_once(self, week: list[Rows]) -> None:
        for day in week:
            by_vehicle: dict[str, list[tuple[str, str]]] = {}
            for trip in day["transport"]["trips"]:
                by_vehicle.setdefault(trip["vehicle_id"], []).append(
                    (trip["pickup_at"], trip["dropoff_at"])
                )
                assert trip["requested_at"] < trip["pickup_at"] < trip["dropoff_at"]
            for trips in by_vehicle.values():
                trips.sort()
                assert all(a[1] <= b[0] for a, b in pairwise(trips))

    def test_conversions_follow_redemptions_and_balances_never_go_negative(self) -> None:
        region = Region(seed=3, population=600)
        redemptions: dict[str, dict[str, str]] = {}
        conversions: list[dict[str, str]] = []
        for i in range(120):
            day = region.day(START + timedelta(days=i))
            redemptions |= {r["redemption_id"]: r for r in day["health"]["redemptions"]}
            conversions += [t for t in day["currency"]["transactions"] if t["kind"] == "conversion"]
        assert redemptions and conversions
        assert all(int(r["balance_after"]) >= 0 for r in redemptions.values())
        for conversion in conversions:
            redeemed = redemptions[conversion["redemption_id"]]
            assert redeemed["reward"] == "local_currency"
            assert conversion["resident_id"] == redeemed["resident_id"]
            assert conversion["points"] == conversion["amount_jpy"] == redeemed["points"]

    def test_vacant_houses_register_before_they_change_and_inquiries_name_real_listings(
        self, region: Region
    ) -> None:
        listings: list[dict[str, str]] = []
        inquiries: list[dict[str, str]] = []
        for i in range(90):
            day = region.day(START + timedelta(days=i))
            listings += day["vacant_house"]["listings"]
            inquiries += day["vacant_house"]["inquiries"]
        registered: set[str] = set()
        for row in listings:
            if row["action"] == "register":
                registered.add(row["listing_id"])
            else:
                assert row["listing_id"] in registered
        assert {q["listing_id"] for q in inquiries} <= registered
        assert Counter(q["kind"] for q in inquiries).most_common(1)[0][0] == "dual_residence"


class TestEvents:
    def test_every_draft_from_a_week_validates_and_no_row_is_refused(self, region: Region) -> None:
        types: Counter[str] = Counter()
        for i in range(7):
            day = START + timedelta(days=i)
            for connector, feeds in region.day(day).items():
                for feed, rows in feeds.items():
                    batch = Batch(
                        datetime.combine(day, datetime.min.time(), JST),
                        connector,
                        feed,
                        tuple(rows),
                    )
                    drafts, errors = split(region.drafts(batch))
                    assert errors == []
                    assert schema_problems(drafts) == []
                    types.update(d.event_type for d in drafts)
        assert set(types) >= {
            "transport.ride.requested",
            "transport.trip.completed",
            "health.points.awarded",
            "currency.wallet.topped_up",
            "currency.payment.settled",
            "vacant_house.listing.registered",
        }

    def test_events_gives_n_valid_drafts_in_time_order_from_every_connector(self) -> None:
        region = Region(seed=2, population=1000)
        events = list(region.events(30_000))
        assert len(events) == 30_000
        times = [d.time for _, d in events]
        assert times == sorted(times)
        assert {c for c, _ in events} == set(CONNECTORS)
        assert len({(d.event_type, d.natural_key) for _, d in events}) == 30_000
        assert schema_problems(d for _, d in events) == []
        kinds = {d.event_type for _, d in events}
        assert "transport.vehicle.position" in kinds
        assert "currency.points.converted" in kinds
        assert "vacant_house.listing.updated" in kinds

    def test_the_subject_of_each_event_is_who_the_schema_says(self) -> None:
        for connector, draft in Region(seed=4, population=400).events(5000):
            if draft.event_type.startswith("vacant_house.listing"):
                assert draft.subject == draft.data["listing_id"]
            elif draft.event_type == "transport.vehicle.position":
                assert draft.subject == draft.data["vehicle_id"]
            else:
                assert draft.subject == draft.data["resident_id"], connector


class TestStream:
    def test_batches_come_in_time_order_paced_by_the_speed(self) -> None:
        region = Region(seed=9, population=800)
        start = datetime(2025, 6, 12, 7, 0, tzinfo=JST)
        until = datetime(2025, 6, 12, 12, 0, tzinfo=JST)
        now = [0.0]  # a fake clock: sleeping moves it on

        def sleep(seconds: float) -> None:
            now[0] += seconds

        batches = list(
            region.stream(start, speed=600, until=until, sleep=sleep, clock=lambda: now[0])
        )
        assert batches
        assert all(start < b.at <= until for b in batches)
        assert [b.at for b in batches] == sorted(b.at for b in batches)
        assert {(b.connector, b.feed) for b in batches} >= {
            ("transport", "ride_requests"),
            ("transport", "trips"),
            ("transport", "vehicle_positions"),
            ("currency", "transactions"),
        }
        # Five simulated hours at 600× are thirty real seconds: the last batch is due then.
        assert now[0] == pytest.approx((batches[-1].at - start).total_seconds() / 600)
        assert 29 <= now[0] <= 30

    def test_a_stream_covers_what_the_day_holds(self) -> None:
        region = Region(seed=9, population=800)
        day = date(2025, 6, 12)
        start = datetime(2025, 6, 12, 0, 0, tzinfo=JST)
        batches = list(
            region.stream(start, speed=math.inf, until=start + timedelta(hours=23, minutes=59))
        )
        rows = region.day(day)
        streamed: Counter[tuple[str, str]] = Counter()
        for b in batches:
            streamed[(b.connector, b.feed)] += len(b.rows)
        late = sum(1 for r in rows["transport"]["trips"] if r["dropoff_at"] >= "2025-06-12T23:59")
        assert streamed[("transport", "trips")] == len(rows["transport"]["trips"]) - late
        assert streamed[("health", "activities")] == len(rows["health"]["activities"])

    def test_vehicle_position_batches_are_gtfs_realtime_that_the_reader_takes(self) -> None:
        region = Region(seed=9, population=800)
        start = datetime(2025, 6, 12, 8, 0, tzinfo=JST)
        positions = [
            b
            for b in islice(region.stream(start, speed=math.inf), 400)
            if b.feed == "vehicle_positions"
        ]
        assert positions
        for batch in positions[:20]:
            feed = gtfs_realtime_pb2.FeedMessage.FromString(batch.message)
            assert feed.header.timestamp == int(batch.at.timestamp())
            drafts, errors = split(region.drafts(batch))
            assert errors == []
            assert len(drafts) == len(feed.entity)
            assert all(d.data["vehicle_id"].startswith("veh-od") for d in drafts)
            assert schema_problems(drafts) == []

    def test_the_vehicle_feed_shows_the_cars_that_are_carrying_someone(self) -> None:
        region = Region(seed=9, population=800)
        day = region.day(date(2025, 6, 12))
        trip = day["transport"]["trips"][len(day["transport"]["trips"]) // 2]
        pickup = datetime.fromisoformat(trip["pickup_at"])
        dropoff = datetime.fromisoformat(trip["dropoff_at"])
        feed = region.vehicle_feed(pickup + (dropoff - pickup) / 2)
        moving = [d for d in transport.vehicle_position_drafts(feed) if isinstance(d, EventDraft)]
        assert trip["vehicle_id"] in {d.subject for d in moving}
        assert not [d for d in transport.vehicle_position_drafts(feed) if isinstance(d, RowError)]


def test_feeds_name_every_connector_and_feed() -> None:
    assert FEEDS == {
        "transport": ("ride_requests", "trips", "vehicle_positions"),
        "health": ("activities", "redemptions"),
        "currency": ("transactions",),
        "vacant_house": ("listings", "inquiries"),
    }
