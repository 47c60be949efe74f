"""The synthetic region: a seeded, deterministic simulation of a Mitoyo-like region that
produces the four service firms' exports, row dicts in exactly the column formats the
readers accept, so a demo or a benchmark exercises the real mapping.

    region = Region(seed=7, population=2000)
    rows = region.day(date(2025, 6, 12))        # {"transport": {"trips": [...], ...}, ...}
    for batch in region.stream(speed=60):        # a live demo: one simulated minute a second
        connector.publish_all(region.drafts(batch))
    for connector, draft in region.events(100_000):   # a benchmark: as fast as possible
        ...

The same seed, population and start give the same rows, whatever order days are asked in:
each day draws from its own seeded generator, and the state carried between days (points,
wallet balances) is replayed from the start when an earlier day is asked for.
"""

from __future__ import annotations

import csv
import io
import math
import random
import time as systime
import zipfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from pathlib import Path

from google.transit import gtfs_realtime_pb2

from connectors import currency, health, transport, vacant_house
from connectors.readers import JST, Row
from connectors.region.housing import House, make_houses
from connectors.region.people import Owner, Prospect, Resident, make_prospects, make_residents
from connectors.region.places import MERCHANTS, STOPS, Merchant, PlaceStop, gtfs_stop_rows
from connectors.sdk.rows import EventDraft, RowError

__all__ = ["CONNECTORS", "FEEDS", "Batch", "Region"]

#: The four service connectors, and the feeds (exports) each one reads.
FEEDS: dict[str, tuple[str, ...]] = {
    "transport": ("ride_requests", "trips", "vehicle_positions"),
    "health": ("activities", "redemptions"),
    "currency": ("transactions",),
    "vacant_house": ("listings", "inquiries"),
}
CONNECTORS: tuple[str, ...] = tuple(FEEDS)
#: Every CSV feed's columns, as the readers document them.
COLUMNS: dict[tuple[str, str], tuple[str, ...]] = {
    ("transport", "ride_requests"): transport.REQUEST_COLUMNS,
    ("transport", "trips"): transport.TRIP_COLUMNS,
    ("health", "activities"): health.ACTIVITY_COLUMNS,
    ("health", "redemptions"): health.REDEMPTION_COLUMNS,
    ("currency", "transactions"): currency.TRANSACTION_COLUMNS,
    ("vacant_house", "listings"): vacant_house.LISTING_COLUMNS,
    ("vacant_house", "inquiries"): vacant_house.INQUIRY_COLUMNS,
}

_Timed = tuple[datetime, dict[str, str]]

# --- behaviour, by age band -------------------------------------------------------------------

_TRIP_RATE = {"0-14": 0.0, "15-39": 0.008, "40-64": 0.006, "65-74": 0.03, "75+": 0.05}
_PURPOSES = {  # where a trip goes: stop kind → weight
    "15-39": {"station": 40, "shop": 30, "office": 20, "clinic": 10},
    "40-64": {"station": 30, "shop": 30, "office": 20, "clinic": 20},
    "65-74": {
        "clinic": 25,
        "hospital": 10,
        "shop": 35,
        "office": 10,
        "community": 15,
        "station": 5,
    },
    "75+": {"clinic": 30, "hospital": 15, "shop": 30, "office": 10, "community": 15},
}
_CHANNELS = {
    "old": (("phone", 70), ("app", 10), ("line", 10), ("kiosk", 10)),
    "young": (("app", 50), ("line", 30), ("phone", 10), ("web", 10)),
}
_STEP_MEDIAN = {"15-39": 7000, "40-64": 6500, "65-74": 6000, "75+": 4200}
_SYNC_RATE = {"15-39": 0.65, "40-64": 0.65, "65-74": 0.75, "75+": 0.6}
_CHECKUPS = {
    "40-74": (
        ("specific_health_checkup", 60),
        ("cancer_screening", 25),
        ("dental_checkup", 10),
        ("comprehensive_checkup", 5),
    ),
    "75+": (("elderly_health_checkup", 60), ("cancer_screening", 15), ("dental_checkup", 25)),
}
_REWARDS = {
    "local_currency": "地域通貨「みとよコイン」{points:,}円分",
    "goods": "三豊産 お米 2kg",
    "public_transport_ticket": "オンデマンド交通 回数券",
    "donation": "子ども食堂への寄付",
}
_SPEND = {  # yen range per merchant category
    "grocery": (800, 5000),
    "restaurant": (600, 2500),
    "pharmacy": (500, 3000),
    "fuel": (2000, 6000),
    "farm_direct": (300, 2000),
    "retail": (500, 8000),
    "medical": (500, 3000),
    "lodging": (5000, 12000),
    "services": (1000, 4000),
    "transport": (500, 2000),
}
_INQUIRY_KINDS = (
    ("dual_residence", 40),
    ("relocation", 25),
    ("visit", 20),
    ("short_stay", 10),
    ("purchase", 5),
)
_MESSAGES = {
    "dual_residence": "{home}と三豊の二地域居住を考えています。週末に内覧できますか。"
    "リモートワークのため光回線の有無も教えてください。",
    "relocation": "{home}から家族で移住を検討しています。"
    "近くのスーパーや病院について教えてください。",
    "visit": "一度内覧させていただきたいです。平日で都合のよい日はありますか。",
    "short_stay": "夏の間だけ短期で滞在できる物件を探しています。家具の有無を教えてください。",
    "purchase": "購入を検討しています。改修の履歴と土地の境界について教えてください。",
}
_SPEED_KMH = 28.0  # average door-to-door speed on Mitoyo's roads
_ROAD_FACTOR = 1.3  # road distance over straight-line distance


@dataclass(frozen=True, slots=True)
class Batch:
    """Rows (or a GTFS-RT message) one connector's feed releases at simulated time ``at``."""

    at: datetime
    connector: str
    feed: str
    rows: tuple[Row, ...] = ()
    message: bytes = b""  # vehicle_positions: a serialized GTFS-Realtime FeedMessage


@dataclass(frozen=True, slots=True)
class _Leg:
    """A vehicle carrying riders from one stop to another."""

    vehicle: str  # the GTFS-RT vehicle id ("od03"); the platform id is "veh-od03"
    start: datetime
    end: datetime
    origin: PlaceStop
    destination: PlaceStop


@dataclass(slots=True)
class _Day:
    day: date
    rows: dict[tuple[str, str], list[_Timed]] = field(default_factory=dict)
    legs: list[_Leg] = field(default_factory=list)

    def add(self, connector: str, feed: str, at: datetime, cells: Mapping[str, str]) -> None:
        row = dict.fromkeys(COLUMNS[(connector, feed)], "")
        row.update(cells)
        self.rows.setdefault((connector, feed), []).append((at, row))


@dataclass(slots=True)
class _State:
    points: dict[str, int] = field(default_factory=dict)  # resident → health-point balance
    wallet: dict[str, int] = field(default_factory=dict)  # resident → yen in the wallet


def _clock(day: date, minutes: float) -> datetime:
    return datetime.combine(day, time(0), JST) + timedelta(minutes=minutes)


def _metres(a: PlaceStop, b: PlaceStop) -> float:
    k = math.cos(math.radians((a.lat + b.lat) / 2))
    return 111_195 * math.hypot(a.lat - b.lat, (a.lon - b.lon) * k)


def _bearing(a: PlaceStop, b: PlaceStop) -> float:
    k = math.cos(math.radians((a.lat + b.lat) / 2))
    return math.degrees(math.atan2((b.lon - a.lon) * k, b.lat - a.lat)) % 360.0


def _pick(rng: random.Random, weighted: Sequence[tuple[str, int]]) -> str:
    return rng.choices([k for k, _ in weighted], weights=[w for _, w in weighted])[0]


class Region:
    """A Mitoyo-like region of ``population`` residents, deterministic for a ``seed``."""

    def __init__(
        self,
        seed: int = 0,
        population: int = 2000,
        *,
        start: date = date(2025, 4, 1),
        programme: health.Programme | None = None,
        position_interval: timedelta = timedelta(minutes=2),
    ) -> None:
        if population < 1:
            raise ValueError("population must be at least 1")
        self.seed = seed
        self.start = start
        self.position_interval = position_interval
        rng = random.Random(f"tsunagu-region/{seed}/people")
        taken: set[str] = set()
        self.residents: tuple[Resident, ...] = tuple(make_residents(rng, population, taken))
        houses = make_houses(rng, max(7, population // 40), start, list(self.residents), taken)
        self.houses: tuple[House, ...] = tuple(houses)
        owners = {h.owner.owner_id: h.owner for h in houses}
        self.owners: tuple[Owner, ...] = tuple(owners.values())
        self.prospects: tuple[Prospect, ...] = tuple(
            make_prospects(rng, max(20, population // 20), taken)
        )
        #: GTFS-RT ids of the on-demand fleet; the platform ids are ``veh-`` + these.
        self.fleet: tuple[str, ...] = tuple(
            f"od{i:02d}" for i in range(1, max(3, population // 250) + 1)
        )
        self.merchants: tuple[Merchant, ...] = MERCHANTS
        # Through the reader, as a firm's GTFS would be: the region's stops with their towns.
        self.stops: dict[str, transport.Stop] = transport.stops_from_rows(gtfs_stop_rows())
        self.programme = programme or health.load_programme()
        self._by_id = {r.resident_id: r for r in self.residents}
        self._state = _State()
        self._cursor = start
        self._cached: _Day | None = None
        self._ledger = health.DailyPoints()  # for drafts(): caps across a day's batches
        self._book = vacant_house.ListingBook()

    # --- what later demo code needs ---------------------------------------------------------

    def resident(self, resident_id: str) -> Resident:
        """One resident by id."""
        return self._by_id[resident_id]

    def stops_table(self) -> list[dict[str, str]]:
        """The region's stops as GTFS ``stops.txt`` rows."""
        return gtfs_stop_rows()

    def write_gtfs(self, path: str | Path) -> Path:
        """Write the region's GTFS-JP static feed (agency, routes, stops, feed info) as a zip."""
        files = {
            "agency.txt": [
                {
                    "agency_id": "mitoyo-ondemand",
                    "agency_name": transport.DEFAULT_OPERATOR.name,
                    "agency_url": "https://example.jp/mitoyo-ondemand",
                    "agency_timezone": "Asia/Tokyo",
                    "agency_lang": "ja",
                }
            ],
            "routes.txt": [
                {
                    "route_id": "mitoyo-ondemand-area",
                    "agency_id": "mitoyo-ondemand",
                    "route_short_name": "",
                    "route_long_name": "三豊市 AIオンデマンド交通",
                    "route_type": "3",
                }
            ],
            "stops.txt": self.stops_table(),
            "feed_info.txt": [
                {
                    "feed_publisher_name": transport.DEFAULT_OPERATOR.name,
                    "feed_publisher_url": "https://example.jp/mitoyo-ondemand",
                    "feed_lang": "ja",
                    "feed_start_date": self.start.strftime("%Y%m%d"),
                    "feed_version": f"region-{self.seed}",
                }
            ],
        }
        target = Path(path)
        with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as archive:
            for name, rows in files.items():
                archive.writestr(name, _csv_text(rows))
        return target

    # --- the firms' exports -----------------------------------------------------------------

    def day(self, day: date) -> dict[str, dict[str, list[dict[str, str]]]]:
        """Every CSV feed's rows of one day, in time order: connector → feed → rows.

        Vehicle positions are a GTFS-Realtime feed, not rows: see ``vehicle_feed``.
        """
        simulated = self._simulate(day)
        out: dict[str, dict[str, list[dict[str, str]]]] = {c: {} for c in CONNECTORS}
        for connector, feed in COLUMNS:
            timed = simulated.rows.get((connector, feed), [])
            out[connector][feed] = [dict(row) for _, row in timed]  # the cache stays intact
        return out

    def vehicle_feed(self, at: datetime) -> gtfs_realtime_pb2.FeedMessage:
        """The GTFS-Realtime VehiclePositions feed at ``at``: every vehicle carrying riders."""
        return self._feed(at, self._simulate(at.date()).legs)

    def stream(
        self,
        start: datetime | None = None,
        speed: float = 60.0,
        *,
        until: datetime | None = None,
        tick: timedelta = timedelta(minutes=1),
        sleep: Callable[[float], None] = systime.sleep,
        clock: Callable[[], float] = systime.monotonic,
    ) -> Iterator[Batch]:
        """Batches in time order, paced at ``speed`` simulated seconds per real second.

        Each ``tick`` of simulated time releases what happened in it: one batch per feed
        with rows, and a vehicle-positions message at every ``position_interval``. Runs
        until ``until`` (forever when None); ``speed=math.inf`` does not wait at all.
        ``sleep`` and ``clock`` are there for tests.
        """
        start = start or datetime.combine(self.start, time(0), JST)
        began = clock()
        day = start.date()
        while until is None or datetime.combine(day, time(0), JST) <= until:
            for batch in self._batches(day, tick):
                if batch.at <= start:
                    continue
                if until is not None and batch.at > until:
                    return
                if math.isfinite(speed):
                    due = began + (batch.at - start).total_seconds() / speed
                    wait = due - clock()
                    if wait > 0:
                        sleep(wait)
                yield batch
            day += timedelta(days=1)

    def drafts(self, batch: Batch) -> Iterator[EventDraft | RowError]:
        """What the feed's reader makes of a batch (the same mapping a firm's files go through)."""
        return self._map(batch, self._ledger, self._book)

    def events(self, n: int) -> Iterator[tuple[str, EventDraft]]:
        """The first ``n`` events from the start, day by day in time order: (connector, draft)."""
        ledger, book = health.DailyPoints(), vacant_house.ListingBook()
        produced = 0
        day = self.start
        while produced < n:
            simulated = self._simulate(day)
            found: list[tuple[datetime, int, str, EventDraft]] = []
            for batch in self._day_batches(simulated):
                for item in self._map(batch, ledger, book):
                    if isinstance(item, RowError):
                        raise RuntimeError(f"the region made a bad {batch.feed} row: {item}")
                    found.append((item.time, len(found), batch.connector, item))
            found.sort(key=lambda f: (f[0], f[1]))
            for _, _, connector, draft in found[: n - produced]:
                yield connector, draft
            produced += min(len(found), n - produced)
            ledger = health.DailyPoints()  # caps are per day: yesterday's are done with
            day += timedelta(days=1)

    # --- mapping through the readers --------------------------------------------------------

    def _map(
        self, batch: Batch, ledger: health.DailyPoints, book: vacant_house.ListingBook
    ) -> Iterator[EventDraft | RowError]:
        rows = batch.rows
        match batch.connector, batch.feed:
            case "transport", "ride_requests":
                return transport.ride_request_drafts(rows, self.stops)
            case "transport", "trips":
                return transport.trip_drafts(rows, self.stops)
            case "transport", "vehicle_positions":
                return transport.read_vehicle_positions(batch.message)
            case "health", "activities":
                return health.award_drafts(rows, self.programme, ledger=ledger)
            case "health", "redemptions":
                return health.redemption_drafts(rows, self.programme)
            case "currency", "transactions":
                return currency.transaction_drafts(rows)
            case "vacant_house", "listings":
                return vacant_house.listing_drafts(rows, book=book)
            case "vacant_house", "inquiries":
                return vacant_house.inquiry_drafts(rows)
        raise ValueError(f"no feed {batch.connector}/{batch.feed}")

    def _day_batches(self, simulated: _Day) -> Iterator[Batch]:
        end = _clock(simulated.day, 24 * 60)
        for (connector, feed), timed in simulated.rows.items():
            yield Batch(end, connector, feed, tuple(row for _, row in timed))
        for at, legs in self._instants(simulated):
            yield Batch(at, "transport", "vehicle_positions", message=self._message(at, legs))

    def _batches(self, day: date, tick: timedelta) -> Iterator[Batch]:
        simulated = self._simulate(day)
        midnight = _clock(day, 0)
        # (release time, order, connector, feed, row or message)
        slots: dict[tuple[datetime, str, str], list[dict[str, str]]] = {}
        for (connector, feed), timed in simulated.rows.items():
            for at, row in timed:
                release = midnight + tick * (((at - midnight) // tick) + 1)
                slots.setdefault((release, connector, feed), []).append(row)
        items: list[Batch] = [
            Batch(release, connector, feed, tuple(rows))
            for (release, connector, feed), rows in slots.items()
        ]
        for at, legs in self._instants(simulated):
            message = self._message(at, legs)
            items.append(Batch(at, "transport", "vehicle_positions", message=message))
        items.sort(key=lambda b: (b.at, CONNECTORS.index(b.connector), b.feed))
        return iter(items)

    def _instants(self, simulated: _Day) -> list[tuple[datetime, list[_Leg]]]:
        midnight = _clock(simulated.day, 0)
        step = self.position_interval
        moving: dict[datetime, list[_Leg]] = {}
        for leg in simulated.legs:
            at = midnight + step * -((midnight - leg.start) // step)  # first instant ≥ start
            while at < leg.end:
                moving.setdefault(at, []).append(leg)
                at += step
        return sorted(moving.items(), key=lambda m: m[0])

    def _message(self, at: datetime, legs: Sequence[_Leg]) -> bytes:
        return self._feed(at, legs).SerializeToString(deterministic=True)

    def _feed(self, at: datetime, legs: Sequence[_Leg]) -> gtfs_realtime_pb2.FeedMessage:
        feed = gtfs_realtime_pb2.FeedMessage()
        feed.header.gtfs_realtime_version = "2.0"
        feed.header.incrementality = gtfs_realtime_pb2.FeedHeader.FULL_DATASET
        stamp = int(at.timestamp())
        feed.header.timestamp = stamp
        for leg in legs:
            if not leg.start <= at < leg.end:
                continue
            share = (at - leg.start) / (leg.end - leg.start)
            entity = feed.entity.add()
            entity.id = leg.vehicle
            vp = entity.vehicle
            vp.vehicle.id = leg.vehicle
            vp.vehicle.label = f"オンデマンド {leg.vehicle[2:]}号車"
            vp.position.latitude = leg.origin.lat + (leg.destination.lat - leg.origin.lat) * share
            vp.position.longitude = leg.origin.lon + (leg.destination.lon - leg.origin.lon) * share
            vp.position.bearing = _bearing(leg.origin, leg.destination)
            vp.position.speed = _SPEED_KMH / 3.6
            vp.current_status = gtfs_realtime_pb2.VehiclePosition.IN_TRANSIT_TO
            vp.stop_id = leg.destination.stop_id
            vp.occupancy_status = gtfs_realtime_pb2.VehiclePosition.MANY_SEATS_AVAILABLE
            vp.timestamp = stamp
        return feed

    # --- the simulation ---------------------------------------------------------------------

    def _simulate(self, day: date) -> _Day:
        if day < self.start:
            raise ValueError(f"the region starts on {self.start}; {day} is before it")
        if self._cached is not None and self._cached.day == day:
            return self._cached
        if day < self._cursor:  # an earlier day: replay the carried state from the start
            self._state, self._cursor = _State(), self.start
        while self._cursor < day:
            self._run(self._cursor)
            self._cursor += timedelta(days=1)
        self._cached = self._run(day)
        self._cursor = day + timedelta(days=1)
        return self._cached

    def _run(self, day: date) -> _Day:
        rng = random.Random(f"tsunagu-region/{self.seed}/{day.isoformat()}")
        out = _Day(day)
        self._transport(rng, out)
        conversions = self._health(rng, out)
        self._currency(rng, out, conversions)
        self._vacant_houses(rng, out)
        for timed in out.rows.values():
            timed.sort(key=lambda t: t[0])
        return out

    def _transport(self, rng: random.Random, out: _Day) -> None:
        day, ymd = out.day, out.day.strftime("%Y%m%d")
        weekday = day.weekday() < 5
        by_kind: dict[str, list[PlaceStop]] = {}
        for stop in STOPS:
            by_kind.setdefault(stop.kind, []).append(stop)
        home_stops = {s.stop_id: s for s in STOPS}
        # (desired pickup minute, resident, origin, destination, purpose)
        wanted: list[tuple[int, Resident, PlaceStop, PlaceStop, str]] = []
        for resident in self.residents:
            rate = _TRIP_RATE[resident.age_band] * (1.0 if weekday else 0.4)
            if not rate or rng.random() >= rate:
                continue
            purposes = _PURPOSES[resident.age_band]
            purpose = rng.choices(list(purposes), weights=list(purposes.values()))[0]
            home = home_stops[resident.home_stop_id]
            local = [s for s in by_kind[purpose] if s.town == resident.town and s != home]
            choices = local if local and rng.random() < 0.7 else by_kind[purpose]
            destination = rng.choice([s for s in choices if s != home] or STOPS)
            pickup = rng.randrange(8 * 60, 15 * 60 + 30, 5)
            wanted.append((pickup, resident, home, destination, purpose))
            if purpose != "station" and rng.random() < 0.6:  # and back home later
                back = pickup + rng.randrange(60, 181, 15)
                if back <= 17 * 60 + 30:
                    wanted.append((back, resident, destination, home, "home"))
        wanted.sort(key=lambda w: (w[0], w[1].resident_id))
        free_at = dict.fromkeys(self.fleet, 7 * 60 + 30.0)
        for seq, (desired, resident, origin, destination, purpose) in enumerate(wanted, 1):
            old = resident.age_band in ("65-74", "75+")
            requested = max(7 * 60.0, desired - rng.randrange(30, 241)) + rng.random()
            passengers = 1 if rng.random() < 0.85 else 2
            metres = _metres(origin, destination) * _ROAD_FACTOR
            minutes = metres / (_SPEED_KMH * 1000 / 60) + 2  # and boarding
            request_id = f"req-{ymd}-{seq:04d}"
            cells = {
                "request_id": request_id,
                "resident_id": resident.resident_id,
                "mode": "on_demand",
                "origin_stop_id": origin.stop_id,
                "destination_stop_id": destination.stop_id,
                "requested_at": _clock(day, requested).isoformat(timespec="seconds"),
                "desired_pickup_at": _clock(day, desired).isoformat(timespec="seconds"),
                "passengers": str(passengers),
                "channel": _pick(rng, _CHANNELS["old" if old else "young"]),
                "wheelchair": "true" if resident.age_band == "75+" and rng.random() < 0.04 else "",
            }
            if purpose in ("clinic", "hospital"):  # an appointment: when they must be there
                arrive = _clock(day, desired + minutes + 10)
                cells["desired_arrival_at"] = arrive.isoformat(timespec="seconds")
            out.add("transport", "ride_requests", _clock(day, requested), cells)
            if rng.random() >= 0.93:
                continue  # cancelled: no trip
            vehicle = min(self.fleet, key=lambda v: (free_at[v], v))
            picked = max(float(desired), free_at[vehicle]) + rng.uniform(0, 10)
            dropped = picked + minutes * rng.uniform(0.95, 1.15)
            free_at[vehicle] = dropped + 5
            fare = (300 if origin.town == destination.town else 500) * passengers
            at_pickup, at_dropoff = _clock(day, picked), _clock(day, dropped)
            out.add(
                "transport",
                "trips",
                at_dropoff,
                {
                    "trip_id": f"odt-{ymd}-{seq:06d}",
                    "request_id": request_id,
                    "resident_id": resident.resident_id,
                    "mode": "on_demand",
                    "vehicle_id": f"veh-{vehicle}",
                    "origin_stop_id": origin.stop_id,
                    "destination_stop_id": destination.stop_id,
                    "requested_at": cells["requested_at"],
                    "pickup_at": at_pickup.isoformat(timespec="seconds"),
                    "dropoff_at": at_dropoff.isoformat(timespec="seconds"),
                    "fare_jpy": str(fare),
                    "passengers": str(passengers),
                    "distance_m": str(round(metres)),
                },
            )
            out.legs.append(_Leg(vehicle, at_pickup, at_dropoff, origin, destination))

    def _health(self, rng: random.Random, out: _Day) -> list[dict[str, str]]:
        """Walking, check-ups and redemptions; returns the currency conversions redeemed."""
        day, ymd = out.day, out.day.strftime("%Y%m%d")
        programme, points = self.programme, self._state.points
        conversions: list[dict[str, str]] = []
        members = [r for r in self.residents if r.health_member]
        # Redemptions first: they spend what earlier days earned.
        for seq, resident in enumerate(
            (r for r in members if points.get(r.resident_id, 0) >= 500 and rng.random() < 0.04),
            1,
        ):
            balance = points[resident.resident_id]
            spent = 500 if balance < 1000 else rng.choice((500, 1000))
            weights = (60, 20, 15, 5) if resident.wallet_id else (0, 50, 35, 15)
            reward = rng.choices(list(_REWARDS), weights=weights)[0]
            points[resident.resident_id] = balance - spent
            at = _clock(day, rng.uniform(10 * 60, 18 * 60))
            redemption_id = f"rd-{ymd}-{seq:04d}"
            out.add(
                "health",
                "redemptions",
                at,
                {
                    "redemption_id": redemption_id,
                    "resident_id": resident.resident_id,
                    "points": str(spent),
                    "reward": reward,
                    "reward_name": _REWARDS[reward].format(points=spent),
                    "balance_after": str(balance - spent),
                    "redeemed_at": at.isoformat(timespec="seconds"),
                },
            )
            if reward == "local_currency" and resident.wallet_id:
                converted = at + timedelta(minutes=rng.uniform(1, 5))
                conversions.append(
                    {
                        "txn_id": f"cv-{ymd}-{seq:04d}",
                        "kind": "conversion",
                        "occurred_at": converted.isoformat(timespec="seconds"),
                        "wallet_id": resident.wallet_id,
                        "resident_id": resident.resident_id,
                        "amount_jpy": str(spent),
                        "redemption_id": redemption_id,
                        "programme_id": programme.programme_id,
                        "programme_name": programme.name,
                        "points": str(spent),
                        "rate_jpy_per_point": "1",
                    }
                )
        activities: list[dict[str, str]] = []
        weekday = day.weekday() < 5
        for resident in members:
            band = resident.age_band
            if rng.random() < _SYNC_RATE[band]:
                steps = int(rng.lognormvariate(math.log(_STEP_MEDIAN[band]), 0.45))
                syncs = [steps, steps + int(rng.lognormvariate(math.log(2500), 0.5))]
                for steps in syncs[: 2 if rng.random() < 0.08 else 1]:
                    at = _clock(day, rng.uniform(19 * 60, 23 * 60 + 30))
                    activities.append(
                        {
                            "record_id": f"st-{ymd}-{len(activities) + 1:05d}",
                            "resident_id": resident.resident_id,
                            "date": day.isoformat(),
                            "kind": "walking",
                            "steps": str(min(steps, 60_000)),
                            "recorded_at": at.isoformat(timespec="seconds"),
                            "age_band": band,
                        }
                    )
            if weekday and band in ("40-64", "65-74", "75+") and rng.random() < 1 / 300:
                kinds = _CHECKUPS["75+" if band == "75+" else "40-74"]
                at = _clock(day, rng.uniform(9 * 60, 15 * 60))
                activities.append(
                    {
                        "record_id": f"ck-{ymd}-{len(activities) + 1:05d}",
                        "resident_id": resident.resident_id,
                        "date": day.isoformat(),
                        "kind": "checkup",
                        "checkup_kind": _pick(rng, kinds),
                        "recorded_at": at.isoformat(timespec="seconds"),
                        "age_band": band,
                    }
                )
        for cells in activities:
            out.add("health", "activities", datetime.fromisoformat(cells["recorded_at"]), cells)
        # The balance grows by what the programme's rules award: the reader's own reckoning.
        for item in health.award_drafts(activities, programme):
            if isinstance(item, EventDraft):
                resident_id = item.data["resident_id"]
                points[resident_id] = points.get(resident_id, 0) + item.data["points"]
        return conversions

    def _currency(self, rng: random.Random, out: _Day, conversions: list[dict[str, str]]) -> None:
        day, ymd = out.day, out.day.strftime("%Y%m%d")
        wallet = self._state.wallet
        busy = 1.2 if day.weekday() >= 5 else 1.0
        by_town: dict[str, list[Merchant]] = {}
        for merchant in MERCHANTS:
            by_town.setdefault(merchant.town, []).append(merchant)
        payments = topups = 0
        for resident in self.residents:
            if resident.wallet_id is None:
                continue
            rate = (0.15 if resident.age_band in ("65-74", "75+") else 0.12) * busy
            if rng.random() >= rate:
                continue
            local = rng.random() < 0.8
            merchant = rng.choice(by_town[resident.town] if local else MERCHANTS)
            low, high = _SPEND[merchant.category]
            amount = round(rng.uniform(low, high), -1)
            paid = _clock(day, rng.uniform(9 * 60, 19 * 60 + 30))
            balance = wallet.get(resident.resident_id, 0)
            if balance < amount:
                topups += 1
                enough = [a for a in (5000, 10000, 20000, 30000) if balance + a >= amount]
                top = rng.choice(enough[:3])
                method = _pick(
                    rng,
                    (("cash", 70), ("convenience_store", 20), ("bank_account", 10))
                    if resident.age_band in ("65-74", "75+")
                    else (
                        ("credit_card", 40),
                        ("bank_account", 30),
                        ("convenience_store", 20),
                        ("cash", 10),
                    ),
                )
                place = {
                    "cash": f"{_town_office(resident.town)} チャージ窓口",
                    "convenience_store": "コンビニ チャージ端末",
                }.get(method, "")
                bonus = top // 10  # a 10% premium, as local currencies pay to draw spending
                at = paid - timedelta(minutes=rng.uniform(5, 40))
                out.add(
                    "currency",
                    "transactions",
                    at,
                    {
                        "txn_id": f"tu-{ymd}-{topups:05d}",
                        "kind": "topup",
                        "occurred_at": at.isoformat(timespec="seconds"),
                        "wallet_id": resident.wallet_id,
                        "resident_id": resident.resident_id,
                        "amount_jpy": str(top),
                        "bonus_jpy": str(bonus),
                        "method": method,
                        "place_name": place,
                    },
                )
                balance += top + bonus
            payments += 1
            wallet[resident.resident_id] = balance - int(amount)
            out.add(
                "currency",
                "transactions",
                paid,
                {
                    "txn_id": f"pay-{ymd}-{payments:06d}",
                    "kind": "payment",
                    "occurred_at": paid.isoformat(timespec="seconds"),
                    "wallet_id": resident.wallet_id,
                    "resident_id": resident.resident_id,
                    "amount_jpy": str(int(amount)),
                    "merchant_id": merchant.merchant_id,
                    "merchant_name": merchant.name,
                    "merchant_category": merchant.category,
                    "town": merchant.town,
                },
            )
        for cells in conversions:
            resident_id = cells["resident_id"]
            wallet[resident_id] = wallet.get(resident_id, 0) + int(cells["amount_jpy"])
            out.add("currency", "transactions", datetime.fromisoformat(cells["occurred_at"]), cells)

    def _vacant_houses(self, rng: random.Random, out: _Day) -> None:
        day, ymd = out.day, out.day.strftime("%Y%m%d")
        for house in self.houses:
            if house.registered_at.date() == day:
                out.add("vacant_house", "listings", house.registered_at, house.cells)
            for at, changed in house.changes:
                if at.date() == day:
                    cells = {
                        "listing_id": house.listing_id,
                        "action": "update",
                        "owner_id": house.owner.owner_id,
                        "recorded_at": at.isoformat(),
                        **changed,
                    }
                    out.add("vacant_house", "listings", at, cells)
        noon = _clock(day, 12 * 60)
        seq = 0
        for house in self.houses:
            if house.status_at(noon) != "available" or rng.random() >= 0.025:
                continue
            seq += 1
            prospect = rng.choice(self.prospects)
            kind = _pick(rng, _INQUIRY_KINDS)
            if kind == "purchase" and house.offer_type == "rent":
                kind = "visit"
            move_in = day + timedelta(days=rng.randint(60, 240))
            at = _clock(day, rng.uniform(8 * 60, 23 * 60))
            out.add(
                "vacant_house",
                "inquiries",
                at,
                {
                    "inquiry_id": f"inq-{ymd}-{seq:04d}",
                    "listing_id": house.listing_id,
                    "resident_id": prospect.resident_id,
                    "kind": kind,
                    "message": _MESSAGES[kind].format(home=prospect.home),
                    "preferred_move_in": move_in.strftime("%Y-%m"),
                    "household_size": str(prospect.household_size),
                    "received_at": at.isoformat(timespec="seconds"),
                },
            )


def _town_office(town: str) -> str:
    stop = next(s for s in STOPS if s.town == town and s.kind == "office")
    return stop.name.removesuffix("前")


def _csv_text(rows: list[dict[str, str]]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]), lineterminator="\r\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()
