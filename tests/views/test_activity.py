"""The cross-service view against a real store (SQLite and PostgreSQL): what a partner reads of
a resident, category by category as consent allows, in one statement per page."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, Table

from broker.bus.sqlite_log import SqliteLog
from broker.store.bulk import insert_many
from broker.store.database import make_engine
from broker.store.projections.currency import CurrencyTransaction
from broker.store.projections.health import HealthPoints
from broker.store.projections.transport import RideRequest, Trip
from broker.views.activity import ActivityPage, Item, activity
from consent.decisions import DecisionPoint, DecisionReason, Outcome
from consent.keys import KeyRing
from consent.service import ConsentService
from consent.vault import SubjectVault
from tests.consent.world import ALICE, BOB, BUS_FIRM, CATALOGUE, PLANNING, register_partners

TRIPS, POINTS, MONEY = "transport.trips", "health.points", "currency.transactions"
START = datetime(2025, 6, 1, tzinfo=UTC)
END = datetime(2025, 7, 1, tzinfo=UTC)

_trips: Table = Trip.__table__  # type: ignore[attr-defined]
_rides: Table = RideRequest.__table__  # type: ignore[attr-defined]
_points: Table = HealthPoints.__table__  # type: ignore[attr-defined]
_money: Table = CurrencyTransaction.__table__  # type: ignore[attr-defined]


class Region:
    """A store, a vault, the consent service and this process's decision point."""

    def __init__(self, store_url: str, tmp_path: Path, bus: SqliteLog) -> None:
        self.engine: Engine = make_engine(store_url)
        self.vault = SubjectVault.open_url(f"sqlite:///{tmp_path / 'vault.db'}")
        self.decisions = DecisionPoint(self.engine, CATALOGUE)
        self.consents = ConsentService(
            self.engine,
            KeyRing.open(tmp_path / "keys"),
            bus,
            catalogue=CATALOGUE,
            on_change=[self.decisions.cache.apply],
        )
        register_partners(self.consents)
        self.serial = 0

    def close(self) -> None:
        """Release the store and the vault."""
        self.vault.close()
        self.engine.dispose()

    def grant(self, subject: str, categories: list[str], **terms: Any) -> str:
        """``subject`` consents to the bus firm for planning; the consent's id."""
        expires = datetime.now(UTC) + timedelta(days=30)
        return self.consents.grant(
            subject, BUS_FIRM, PLANNING, categories, expires_at=expires, **terms
        ).id

    def store(self, subject: str, table: Table, at: datetime, **columns: Any) -> str:
        """One projected row of ``subject``, its sealed part under their key; its event id."""
        self.serial += 1
        key = self.vault.keys_for((subject,), create=True)[subject]
        event_id = f"evt-{self.serial:04d}"
        time_column = {"transport_trips": "pickup_at", "transport_ride_requests": "requested_at"}
        row = {
            "event_id": event_id,
            "subject_ref": key.ref,
            time_column.get(table.name, "occurred_at"): at,
            "sealed": key.seal({"secret": f"sealed-{self.serial}"}),
            **columns,
        }
        with self.engine.begin() as conn:
            insert_many(conn, table, [row])
        return event_id

    def trip(self, subject: str, at: datetime, fare: int, passengers: int = 1) -> str:
        """A completed trip."""
        return self.store(
            subject,
            _trips,
            at,
            trip_id=f"trip-{self.serial}",
            mode="on_demand",
            operator_id="mitoyo-ondemand",
            origin_stop_id="takuma-01",
            origin_town="takuma",
            destination_stop_id="nio-02",
            destination_town="nio",
            dropoff_at=at + timedelta(minutes=20),
            fare_jpy=fare,
            passengers=passengers,
        )

    def ride(self, subject: str, at: datetime) -> str:
        """A ride request."""
        return self.store(
            subject,
            _rides,
            at,
            request_id=f"req-{self.serial}",
            mode="on_demand",
            operator_id="mitoyo-ondemand",
            origin_stop_id=None,
            origin_town="mino",
            destination_stop_id=None,
            destination_town="saita",
            passengers=2,
            channel="phone",
        )

    def points(self, subject: str, at: datetime, points: int) -> str:
        """Health points awarded (positive) or redeemed (negative)."""
        return self.store(
            subject,
            _points,
            at,
            programme_id="mitoyo-kenko",
            kind="awarded" if points > 0 else "redeemed",
            points=points,
            reason="walking" if points > 0 else None,
            age_band="65-74",
        )

    def money(self, subject: str, at: datetime, kind: str, amount: int) -> str:
        """A local-currency transaction."""
        return self.store(
            subject,
            _money,
            at,
            kind=kind,
            amount_jpy=amount,
            merchant_category="grocery" if kind == "payment" else None,
            town="takuma",
            points=None,
        )

    def read(self, **options: Any) -> ActivityPage:
        """The bus firm's view of Alice over June, as it may see it."""
        return activity(
            self.engine,
            self.vault,
            self.decisions,
            partner=BUS_FIRM,
            purpose=PLANNING,
            subject=ALICE,
            start=options.pop("start", START),
            end=options.pop("end", END),
            **options,
        )


@pytest.fixture
def region(store_url: str, tmp_path: Path, sqlite_bus: SqliteLog) -> Iterator[Region]:
    """An empty region on each backend."""
    region = Region(store_url, tmp_path, sqlite_bus)
    yield region
    region.close()


def june(day: int, hour: int = 9) -> datetime:
    """A moment of June 2025."""
    return datetime(2025, 6, day, hour, tzinfo=UTC)


def _alices_month(region: Region) -> dict[str, str]:
    """Alice's June in every service, some of it outside June, and Bob's June beside it."""
    ids = {
        "trip1": region.trip(ALICE, june(3), fare=500, passengers=2),
        "ride1": region.ride(ALICE, june(3, 8)),
        "awarded": region.points(ALICE, june(4), 50),
        "payment": region.money(ALICE, june(5), "payment", 1200),
        "trip2": region.trip(ALICE, june(6), fare=300),
        "redeemed": region.points(ALICE, june(7), -20),
        "topped": region.money(ALICE, june(8), "topped_up", 3000),
        "converted": region.money(ALICE, june(9), "conversion", 700),
        "ride2": region.ride(ALICE, june(10)),
    }
    region.trip(ALICE, datetime(2025, 5, 31, 23, tzinfo=UTC), fare=900)  # before June
    region.points(ALICE, END, 10)  # the period's end is exclusive
    region.trip(BOB, june(3), fare=800)  # another resident
    region.money(BOB, june(5), "payment", 99)
    return ids


def _ids(items: list[Item]) -> list[str]:
    return [i.id for i in items]


def test_the_view_shows_each_consented_category_with_its_items_and_totals(
    region: Region,
) -> None:
    ids = _alices_month(region)
    consent = region.grant(ALICE, [TRIPS, POINTS, MONEY])

    page = region.read()

    in_time_order = ["ride1", "trip1", "awarded", "payment", "trip2", "redeemed", "topped"]
    in_time_order += ["converted", "ride2"]
    assert _ids(page.items) == [ids[n] for n in in_time_order]
    assert page.next is None
    kinds = [i.kind for i in page.items]
    assert kinds == [
        "ride_request",
        "trip",
        "points_awarded",
        "payment",
        "trip",
        "points_redeemed",
        "topped_up",
        "conversion",
        "ride_request",
    ]
    assert [i.category for i in page.items[:3]] == [TRIPS, TRIPS, POINTS]
    trip = page.items[1]
    assert trip.at == june(3)
    assert trip.data["fare_jpy"] == 500
    assert trip.data["dropoff_at"] == june(3) + timedelta(minutes=20)
    assert trip.data["destination_town"] == "nio"
    assert trip.data["secret"].startswith("sealed-")  # the sealed part, opened
    assert "subject_ref" not in trip.data and "sealed" not in trip.data
    assert page.items[0].data["origin_stop_id"] is None
    totals = {r.category: r.totals for r in page.categories}
    assert totals == {
        TRIPS: {"trips": 2, "fare_jpy": 800, "passengers": 3, "ride_requests": 2},
        POINTS: {"awarded": 50, "redeemed": 20, "net": 30},
        MONEY: {"payments": 1, "spent_jpy": 1200, "topped_up_jpy": 3000, "converted_jpy": 700},
    }
    assert all(r.decision.allowed and r.decision.consent_id == consent for r in page.categories)
    assert all((r.data_from, r.data_to) == (START, END) for r in page.categories)


def test_pages_follow_in_time_order_without_repeat_or_gap(region: Region) -> None:
    _alices_month(region)
    region.grant(ALICE, [TRIPS, POINTS, MONEY])
    everything = region.read()

    pages = [region.read(limit=2)]
    while pages[-1].next is not None:
        pages.append(region.read(limit=2, after=pages[-1].next))

    assert [len(p.items) for p in pages] == [2, 2, 2, 2, 1]
    assert [i for p in pages for i in p.items] == everything.items

    # Totals cover the whole period on every page, not what is left after the cursor.
    def parts(page: ActivityPage) -> list[tuple[str, dict[str, int], Any, Any]]:
        return [(r.category, r.totals, r.data_from, r.data_to) for r in page.categories]

    assert all(parts(p) == parts(everything) for p in pages)


def test_a_category_without_consent_is_withheld_and_none_of_it_is_read(
    region: Region,
) -> None:
    _alices_month(region)
    region.grant(ALICE, [TRIPS])

    page = region.read()

    assert {i.category for i in page.items} == {TRIPS}
    assert len(page.items) == 4
    withheld = {r.category: r for r in page.categories if not r.decision.allowed}
    assert set(withheld) == {POINTS, MONEY}
    assert all(r.decision.reason is DecisionReason.CATEGORY_NOT_COVERED for r in withheld.values())
    assert all(r.totals == {} for r in withheld.values())
    # Read as a whole, the view asked for none of them by name: withheld, not refused.
    assert all(r.decision.outcome is Outcome.WITHHELD for r in withheld.values())


def test_a_category_named_without_consent_is_refused_and_none_of_it_is_read(
    region: Region,
) -> None:
    _alices_month(region)
    region.grant(ALICE, [TRIPS])

    page = region.read(categories=[TRIPS, POINTS])

    assert {i.category for i in page.items} == {TRIPS}
    (points,) = (r for r in page.categories if not r.decision.allowed)
    assert points.category == POINTS and points.totals == {}
    assert points.decision.reason is DecisionReason.CATEGORY_NOT_COVERED
    assert points.decision.outcome is Outcome.REFUSED
    assert [r.category for r in page.categories] == [TRIPS, POINTS]


def test_revoked_consent_blocks_next_read(region: Region) -> None:
    _alices_month(region)
    consent = region.grant(ALICE, [TRIPS, POINTS, MONEY])
    assert len(region.read().items) == 9

    region.consents.revoke(ALICE, consent)
    page = region.read()

    assert page.items == []
    assert all(r.decision.reason is DecisionReason.REVOKED for r in page.categories)
    assert all(r.decision.outcome is Outcome.REFUSED for r in page.categories)
    assert all(r.totals == {} for r in page.categories)


def test_the_consents_data_range_narrows_the_period_read(region: Region) -> None:
    ids = _alices_month(region)
    region.grant(ALICE, [TRIPS, POINTS, MONEY], data_from=june(5), data_to=june(9))

    page = region.read()

    assert _ids(page.items) == [ids[n] for n in ("payment", "trip2", "redeemed", "topped")]
    totals = {r.category: r.totals for r in page.categories}
    assert totals[TRIPS] == {"trips": 1, "fare_jpy": 300, "passengers": 1, "ride_requests": 0}
    assert totals[POINTS] == {"awarded": 0, "redeemed": 20, "net": -20}
    assert all((r.data_from, r.data_to) == (june(5), june(9)) for r in page.categories)


def test_a_period_outside_the_consents_data_range_reads_nothing_and_shows_zeros(
    region: Region,
) -> None:
    _alices_month(region)
    region.grant(ALICE, [TRIPS, POINTS, MONEY], data_to=START)

    page = region.read()

    assert page.items == []
    assert all(r.decision.allowed for r in page.categories)
    assert {r.category: r.totals["trips"] for r in page.categories if r.category == TRIPS} == {
        TRIPS: 0
    }
