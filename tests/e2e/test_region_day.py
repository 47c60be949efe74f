"""The region end to end (issue 7): one day of the synthetic region through the whole
platform on its production backends, Apache Kafka and PostgreSQL, checked outcome by outcome.

The story, told once for the module by the ``story`` fixture: `tsunagu up` runs as a process
on a Kafka broker and a fresh PostgreSQL database, and the region's day (07:00 to midnight)
streams through the four service connectors over the bus, each signed in with a connector
token of the platform's issuer. Meanwhile:

* before the day, the municipality registers three partner firms and approves their purposes
  (admin API), and a few residents consent to them (``/v1/me``);
* at 10:00 a resident consents mid-stream, and an intruder slips three bad records onto the
  bus;
* at 12:00 a resident revokes their consent between two reads of the transport partner;
* at 14:00 one house owner consents to the housing partner; another one never does;
* at 18:00 a resident who paid in the afternoon erases their data; they walk in the evening,
  and the points for it reach the platform after the erasure;
* at each of these moments the partners read what they may (who consented, each one's
  activity, the vacant houses), and once more when the day is over, with a statistic each;
* the auditor verifies the chain and reads the flow map.

The day streams on while the story acts, except at 18:00: there it holds before its next
batch until the erasure is done, so that exactly the events published before it are the
ones it deletes, and exactly those after it are the ones never projected. Meanwhile the
connectors' outboxes keep draining and the platform keeps ingesting. Each test checks one
outcome against what the connectors reported publishing. Nothing asserts a timing:
asynchronous outcomes (ingest, the audit writer) are polled for, within a bound.
"""

from __future__ import annotations

import collections
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from datetime import time as clock
from typing import Any, TypeVar

import httpx
import pytest
from sqlalchemy import Engine, create_engine, text

from broker.bus.kafka import KafkaBus
from connectors.demo import open_connectors
from connectors.readers import JST
from connectors.region import Region
from connectors.sdk import BusSink, PublishReport, RemoteSchemas
from connectors.services import SERVICES
from contract.bus import OutRecord
from contract.deadletter import H_EVENT_ID, H_REASON, UNROUTED_DLQ
from contract.origin import OriginSigner
from tests.e2e.region_day import Cast, Published, RegionDay, choose_cast, plan
from tests.events import encode, make_event
from tests.fixtures.databases import fresh_postgres_database
from tests.fixtures.kafka import KafkaBroker
from tests.fixtures.platform import RunningPlatform, start_platform, stop_platform

SEED = 7
POPULATION = 1000
#: Simulated seconds per real second: 07:00 to midnight in about a quarter of a minute.
SPEED = 4000.0
DAY = date(2025, 4, 1)  # the region's first day


def at(hour: int) -> datetime:
    """A moment of the day, Japan time."""
    return datetime.combine(DAY, clock(hour), JST)


MORNING, NOON, AFTERNOON, EVENING = at(10), at(12), at(14), at(18)
#: The period partners read activity over, and the (whole, finished) month of statistics.
THE_DAY = [("from", at(0).isoformat()), ("to", (at(0) + timedelta(days=1)).isoformat())]
THE_MONTH = [("from", "2025-04-01T00:00:00+09:00"), ("to", "2025-05-01T00:00:00+09:00")]
K = 10  # the platform's default k-anonymity
INTRUDER = "urn:tsunagu:connector:e2e-intruder"

#: Each event type's data categories (schemas/catalogue/categories.json).
CATEGORIES_OF_TYPE: dict[str, tuple[str, ...]] = {
    "transport.ride.requested": ("transport.trips",),
    "transport.trip.completed": ("transport.trips",),
    "transport.vehicle.position": ("transport.vehicles",),
    "health.points.awarded": ("health.points",),
    "health.points.redeemed": ("health.points",),
    "currency.wallet.topped_up": ("currency.transactions",),
    "currency.payment.settled": ("currency.transactions",),
    "currency.points.converted": ("currency.transactions",),
    "vacant_house.listing.registered": ("property.listing", "property.details"),
    "vacant_house.listing.updated": ("property.listing", "property.details"),
    "vacant_house.inquiry.received": ("property.inquiries",),
}
#: Each data category's event types.
CATEGORY_TYPES: dict[str, tuple[str, ...]] = {
    code: tuple(t for t, codes in CATEGORIES_OF_TYPE.items() if code in codes)
    for code in {c for codes in CATEGORIES_OF_TYPE.values() for c in codes}
}
#: The projection tables whose rows are about one person, and the event types they hold.
SUBJECT_TABLES: dict[str, tuple[str, ...]] = {
    "transport_trips": ("transport.trip.completed",),
    "transport_ride_requests": ("transport.ride.requested",),
    "health_points": ("health.points.awarded", "health.points.redeemed"),
    "currency_transactions": (
        "currency.wallet.topped_up",
        "currency.payment.settled",
        "currency.points.converted",
    ),
    "vacant_house_inquiries": ("vacant_house.inquiry.received",),
}
#: Which category each statistic reads.
STATISTIC_CATEGORY = {
    "points-by-age-band": "health.points",
    "trips-by-town-month": "transport.trips",
}

Json = dict[str, Any]
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Partner:
    """A partner firm of the day: what it is approved for and what residents share with it."""

    partner_id: str
    name_ja: str
    name_en: str
    purpose: str
    categories: tuple[str, ...]


TRANSPORT = Partner(
    "ptn-e2ekotsu",
    "三豊つなぐ交通株式会社",
    "Mitoyo Tsunagu Transport Co., Ltd.",
    "transport.planning",
    ("transport.trips",),
)
HEALTH = Partner(
    "ptn-e2ekenko",
    "みとよ健康ポイント事業",
    "Mitoyo Health Points Programme",
    "health.incentive",
    ("health.points", "currency.transactions"),
)
HOUSING = Partner(
    "ptn-e2esumai",
    "一般社団法人みとよ住まいつなぎ",
    "Mitoyo Homes Link",
    "housing.dual_residence_support",
    ("property.details",),
)
PARTNERS = (TRANSPORT, HEALTH, HOUSING)


# -- the actors ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Read:
    """One answer a partner got (every read of the day is kept)."""

    partner: Partner
    path: str
    body: Json
    text: str


@dataclass(frozen=True, slots=True)
class Round:
    """A partner's round of reads: who consented (consent id → pseudonym), and each one's
    activity (pseudonym → view)."""

    listed: dict[str, str]
    views: dict[str, Json]


class PartnerSystem:
    """A partner firm's system reading the broker API over HTTP with its own token."""

    def __init__(
        self, platform: RunningPlatform, http: httpx.Client, partner: Partner, reads: list[Read]
    ) -> None:
        self.partner = partner
        self._http = http
        self._headers = platform.auth("partner", partner.partner_id)
        self._reads = reads

    def _get(self, path: str, params: Sequence[tuple[str, str]]) -> Json:
        r = self._http.get(path, params=list(params), headers=self._headers)
        assert r.status_code == 200, f"{self.partner.partner_id}: GET {path}: {r.text}"
        body: Json = r.json()
        self._reads.append(Read(self.partner, path, body, r.text))
        return body

    def residents(self) -> dict[str, str]:
        """Consent id → pseudonym of each resident with an active consent to the partner."""
        page = self._get(
            "/v1/partner/residents", [("purpose", self.partner.purpose), ("limit", "1000")]
        )
        assert page["next_cursor"] is None
        return {r["consent_id"]: r["resident"] for r in page["residents"]}

    def activity(self, pseudonym: str) -> Json:
        """The resident's activity over the day in the categories residents share with it."""
        return self._get(
            f"/v1/partner/residents/{pseudonym}/activity",
            [
                ("purpose", self.partner.purpose),
                *THE_DAY,
                ("limit", "1000"),
                *[("category", c) for c in self.partner.categories],
            ],
        )

    def activity_refused(self, pseudonym: str) -> Json:
        """The problem answering a read of ``pseudonym``'s activity, which must be refused."""
        r = self._http.get(
            f"/v1/partner/residents/{pseudonym}/activity",
            params=[("purpose", self.partner.purpose), *THE_DAY],
            headers=self._headers,
        )
        assert r.status_code >= 400, f"{self.partner.partner_id}: {r.text}"
        body: Json = {"status": r.status_code, **r.json()}
        return body

    def round(self) -> Round:
        """Who consented, and each one's activity."""
        listed = self.residents()
        return Round(listed, {p: self.activity(p) for p in listed.values()})

    def houses(self) -> dict[str, Json]:
        """Listing id → vacant house, every listing."""
        page = self._get(
            "/v1/partner/vacant-houses",
            [("purpose", self.partner.purpose), *THE_DAY, ("limit", "500")],
        )
        assert page["next_cursor"] is None
        return {h["listing_id"]: h for h in page["houses"]}

    def statistic(self, name: str) -> Json:
        """A k-anonymous statistic over the region's first month."""
        return self._get(f"/v1/statistics/{name}", [("purpose", self.partner.purpose), *THE_MONTH])


class Person:
    """A resident (or a house owner) managing their consents through ``/v1/me``."""

    def __init__(self, platform: RunningPlatform, http: httpx.Client, subject: str) -> None:
        self.subject = subject
        self._http = http
        self._headers = platform.auth("resident", subject)

    def grant(self, partner: Partner) -> str:
        """Consent to ``partner`` for its purpose and categories for a year; the consent id."""
        r = self._http.post(
            "/v1/me/consents",
            json={
                "partner_id": partner.partner_id,
                "purpose": partner.purpose,
                "categories": list(partner.categories),
                "expires_at": (datetime.now(UTC) + timedelta(days=365)).isoformat(),
            },
            headers=self._headers,
        )
        assert r.status_code == 201, r.text
        return str(r.json()["id"])

    def revoke(self, consent_id: str) -> Json:
        """Revoke a consent; the new version."""
        r = self._http.post(f"/v1/me/consents/{consent_id}/revoke", headers=self._headers)
        assert r.status_code == 200, r.text
        body: Json = r.json()
        return body

    def erase(self) -> Json:
        """Ask for erasure; the record."""
        r = self._http.post("/v1/me/erasure", headers=self._headers)
        assert r.status_code == 200, r.text
        body: Json = r.json()
        return body

    def get(self, path: str) -> Any:
        """One of my ``/v1/me`` documents."""
        r = self._http.get(path, headers=self._headers)
        assert r.status_code == 200, r.text
        return r.json()


class Store:
    """The platform's PostgreSQL store, read directly to check what ingest did."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine: Engine = create_engine(url)

    def ids(self, sql: str) -> list[str]:
        """The first column of a query."""
        with self.engine.connect() as conn:
            return [str(v) for v in conn.execute(text(sql)).scalars()]

    def ledger(self) -> list[str]:
        """Every event id ingest has taken in."""
        return self.ids("SELECT id FROM ingested_events")

    def close(self) -> None:
        """Release the connections."""
        self.engine.dispose()


def eventually(probe: Callable[[], T | None], what: str, timeout_s: float = 30.0) -> T:
    """Poll ``probe`` until it answers something (ingest and the audit writer lag a little)."""
    deadline = time.monotonic() + timeout_s
    while True:
        found = probe()
        if found is not None:
            return found
        if time.monotonic() > deadline:
            pytest.fail(f"not within {timeout_s} s: {what}")
        time.sleep(0.2)


def category(view: Json, code: str) -> Json:
    """One category's part of an activity view."""
    part: Json = next(p for p in view["categories"] if p["category"] == code)
    return part


# -- the story ----------------------------------------------------------------------------------


@dataclass
class Story:
    """What happened during the day, for the tests to check."""

    platform: RunningPlatform
    store: Store
    bus: KafkaBus
    prefix: str
    cast: Cast
    planned: list[Published]
    began: datetime = field(default_factory=lambda: datetime.now(UTC))
    published: list[Published] = field(default_factory=list)
    reports: dict[str, PublishReport] = field(default_factory=dict)
    reads: list[Read] = field(default_factory=list)
    consents: dict[tuple[str, str], str] = field(default_factory=dict)  # (who, partner) → id
    injected: dict[str, tuple[str, str]] = field(default_factory=dict)  # id → (topic, reason)
    # 10:00
    listed_before_grant: dict[str, str] = field(default_factory=dict)
    listed_after_grant: dict[str, str] = field(default_factory=dict)
    # 12:00
    revoker_pseudonym: str = ""
    revoker_before: Json = field(default_factory=dict)
    revoked: Json = field(default_factory=dict)
    revoker_after: Json = field(default_factory=dict)
    listed_after_revocation: dict[str, str] = field(default_factory=dict)
    # 14:00
    houses_before_consent: dict[str, Json] = field(default_factory=dict)
    houses_after_consent: dict[str, Json] = field(default_factory=dict)
    # 18:00
    eraser_events_before: list[Published] = field(default_factory=list)
    eraser_pseudonyms: dict[str, str] = field(default_factory=dict)  # partner id → pseudonym
    eraser_before: dict[str, Json] = field(default_factory=dict)
    erasure: Json = field(default_factory=dict)
    eraser_after: dict[str, Json] = field(default_factory=dict)
    listed_after_erasure: dict[str, dict[str, str]] = field(default_factory=dict)
    # after the day
    final: dict[str, Round] = field(default_factory=dict)  # partner id → last round
    final_houses: dict[str, Json] = field(default_factory=dict)
    revoker_final: Json = field(default_factory=dict)
    points: Json = field(default_factory=dict)  # points-by-age-band
    trips: Json = field(default_factory=dict)  # trips-by-town-month

    def of(self, subject: str, *types: str) -> list[Published]:
        """What the connectors published about ``subject`` (of ``types``, if given)."""
        return [
            p
            for p in self.published
            if p.subject == subject and (not types or p.event_type in types)
        ]

    @property
    def erased_later(self) -> list[Published]:
        """The erased resident's events published after the erasure."""
        return [p for p in self.of(self.cast.eraser) if p.released > EVENING]

    def projected(self) -> list[Published]:
        """What should be in the projections: everything but what arrived after the erasure."""
        later = {p.event_id for p in self.erased_later}
        return [p for p in self.published if p.event_id not in later]


@pytest.fixture(scope="module")
def story(
    kafka_broker: KafkaBroker, postgres_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Story]:
    """The region's day on a platform of its own (Kafka bus, fresh PostgreSQL store)."""
    kafka_broker.start()  # a test before may have stopped the session's broker
    tag = uuid.uuid4().hex[:8]
    prefix = f"e2e{tag}."
    store_url = fresh_postgres_database(postgres_url)
    data_dir = tmp_path_factory.mktemp("region-day")
    platform = start_platform(
        data_dir,
        {
            "TSUNAGU_BUS": kafka_broker.url,
            "TSUNAGU_DATABASE_URL": store_url,
            "TSUNAGU_TOPIC_PREFIX": prefix,
            "TSUNAGU_INGEST_GROUP": f"e2e-ingest-{tag}",
        },
    )
    bus = KafkaBus([kafka_broker.bootstrap], client_id=f"e2e-connectors-{tag}")
    schemas = RemoteSchemas(platform.base_url)  # the connectors fetch the shared schemas
    store = Store(store_url)
    day: RegionDay | None = None
    try:
        region = Region(seed=SEED, population=POPULATION)
        planned = plan(SEED, POPULATION)
        cast = choose_cast(
            region,
            planned,
            grant_at=MORNING,
            revoke_at=NOON,
            owners_by=AFTERNOON,
            erase_at=EVENING,
        )

        def sink_for(source: str) -> BusSink:
            # Each firm signs its records with a token of the platform's issuer naming its source.
            token = platform.token("connector", source, sources=(source,))
            return BusSink(bus, token, platform.connector_key(source))

        connectors = open_connectors(schemas, sink_for, data_dir / "outbox", prefix)
        day = RegionDay(
            region, connectors, speed=SPEED, moments=[MORNING, NOON, AFTERNOON, EVENING]
        )
        with platform.client() as http:
            told = Story(platform, store, bus, prefix, cast, planned)
            _tell(told, http, day)
            yield told
    finally:
        if day is not None:
            day.close()
        schemas.close()
        bus.close()
        stop_platform(platform)
        store.close()


def _tell(story: Story, http: httpx.Client, day: RegionDay) -> None:
    platform, cast = story.platform, story.cast
    transport, health, housing = (
        PartnerSystem(platform, http, p, story.reads) for p in (TRANSPORT, HEALTH, HOUSING)
    )

    def consent(subject: str, partner: Partner) -> None:
        story.consents[(subject, partner.partner_id)] = Person(platform, http, subject).grant(
            partner
        )

    # Before the day: the municipality registers the partners; some residents consent.
    admin = platform.auth("admin", "city-ops")
    for p in PARTNERS:
        body = {"id": p.partner_id, "name_ja": p.name_ja, "name_en": p.name_en}
        r = http.post("/v1/partners", json=body, headers=admin)
        assert r.status_code == 201, r.text
        r = http.post(
            f"/v1/partners/{p.partner_id}/purposes", json={"purpose": p.purpose}, headers=admin
        )
        assert r.status_code == 201, r.text
    for resident in (*cast.riders, cast.revoker, cast.eraser):
        consent(resident, TRANSPORT)
    for resident in (*cast.walkers, cast.eraser):
        consent(resident, HEALTH)
    day.start()

    # 10:00, the day streaming on: a resident consents; an intruder tries the bus.
    with day.at(MORNING, hold=False):
        story.listed_before_grant = transport.residents()
        consent(cast.granter, TRANSPORT)
        story.listed_after_grant = transport.residents()
        story.injected = _intrude(story)
        transport.round()
        health.round()

    # 12:00, the day streaming on: the transport partner reads the revoker's morning trips,
    # the revoker revokes, the partner reads again.
    with day.at(NOON, hold=False):
        revoker_consent = story.consents[(cast.revoker, TRANSPORT.partner_id)]
        morning = {
            p.event_id for p in story.planned if p.subject == cast.revoker and p.released < NOON
        }
        pseudonym = story.revoker_pseudonym = transport.residents()[revoker_consent]

        def trips_so_far() -> Json | None:
            view = transport.activity(pseudonym)
            return view if {i["id"] for i in view["items"]} & morning else None

        story.revoker_before = eventually(trips_so_far, "the revoker's morning trip")
        story.revoked = Person(platform, http, cast.revoker).revoke(revoker_consent)
        story.revoker_after = transport.activity(pseudonym)
        story.listed_after_revocation = transport.residents()
        health.round()

    # 14:00, the day streaming on: once both listings are in, one owner consents.
    with day.at(AFTERNOON, hold=False):
        listings = {cast.consenting.listing_id, cast.refusing.listing_id}

        def both_listed() -> dict[str, Json] | None:
            houses = housing.houses()
            return houses if listings <= set(houses) else None

        story.houses_before_consent = eventually(both_listed, "both owners' listings")
        consent(cast.consenting.owner.owner_id, HOUSING)
        story.houses_after_consent = housing.houses()
        transport.round()
        health.round()

    # 18:00, the day held (what they published so far is exactly what the erasure deletes):
    # the partners read the resident's afternoon, the resident erases their data, and the
    # partners read again.
    with day.at(EVENING, hold=True) as so_far:
        story.eraser_events_before = [p for p in so_far if p.subject == cast.eraser]
        wanted = {p.event_id for p in story.eraser_events_before}
        eventually(
            lambda: True if wanted <= set(story.store.ledger()) else None,
            "the erased resident's events of the day so far taken in",
        )
        for system in (transport, health):
            pid = system.partner.partner_id
            psn = system.residents()[story.consents[(cast.eraser, pid)]]
            story.eraser_pseudonyms[pid] = psn
            story.eraser_before[pid] = system.activity(psn)
        story.erasure = Person(platform, http, cast.eraser).erase()
        for system in (transport, health):
            pid = system.partner.partner_id
            story.eraser_after[pid] = system.activity_refused(story.eraser_pseudonyms[pid])
            story.listed_after_erasure[pid] = system.residents()

    day.finish()
    story.published, story.reports = day.published, day.reports
    everything = {p.event_id for p in story.published}
    eventually(
        lambda: True if everything <= set(story.store.ledger()) else None,
        "every event of the day taken in",
        timeout_s=60,
    )
    # After the day: the partners read once more, and a statistic each.
    story.final = {TRANSPORT.partner_id: transport.round(), HEALTH.partner_id: health.round()}
    story.final_houses = housing.houses()
    story.revoker_final = transport.activity(story.revoker_pseudonym)
    story.points = health.statistic("points-by-age-band")
    story.trips = transport.statistic("trips-by-town-month")


def _intrude(story: Story) -> dict[str, tuple[str, str]]:
    """Three bad records on the bus: one without a connector token, one claiming the currency
    connector's source under the intruder's own token, one breaking its schema."""
    token = story.platform.token("connector", INTRUDER, sources=(INTRUDER,))
    signer = OriginSigner(token, story.platform.connector_key(INTRUDER))
    unsigned = make_event("transport.trip.completed", source=INTRUDER)
    forged = make_event("currency.payment.settled", source=SERVICES["currency"].source)
    broken = make_event("transport.trip.completed", source=INTRUDER)
    broken["data"]["fare_jpy"] = "free"
    sent = [
        (unsigned, "transport", False, "unauthenticated"),
        (forged, "currency", True, "source_not_allowed"),
        (broken, "transport", True, "schema_violation"),
    ]
    for doc, domain, signed, _ in sent:
        record = OutRecord(doc["subject"].encode(), encode(doc))
        story.bus.publish(story.prefix + domain, [signer.sign(record) if signed else record])
    return {doc["id"]: (story.prefix + domain, reason) for doc, domain, _, reason in sent}


def _auditor(story: Story) -> dict[str, str]:
    return story.platform.auth("auditor", "city-audit")


def _entries(story: Story, kind: str) -> list[Json]:
    """Every audit entry of ``kind``, oldest first, through the auditor's API."""
    found: list[Json] = []
    cursor: str | None = None
    with story.platform.client() as http:
        while True:
            params = {"kind": kind, "limit": "1000", **({"cursor": cursor} if cursor else {})}
            r = http.get("/v1/audit/entries", params=params, headers=_auditor(story))
            assert r.status_code == 200, r.text
            found += r.json()["entries"]
            cursor = r.json()["next_cursor"]
            if cursor is None:
                return found[::-1]


# -- the connectors and ingest ------------------------------------------------------------------


def test_the_four_connectors_publish_the_whole_day_without_refusing_a_row(story: Story) -> None:
    # Paced and paused, the day is the one the region makes: every event, in order.
    assert [p.event_id for p in story.published] == [p.event_id for p in story.planned]
    published = collections.Counter(p.connector for p in story.published)
    assert set(published) == {"transport", "health", "currency", "vacant_house"}
    for name, report in story.reports.items():
        assert report.errors == [], report.summary()
        assert report.duplicates == 0
        assert report.accepted == published[name] > 0
    assert len({p.event_id for p in story.published}) == len(story.published)


def test_every_published_event_is_taken_in_exactly_once_and_nothing_else(story: Story) -> None:
    ledger = story.store.ledger()
    assert len(ledger) == len(set(ledger))
    assert set(ledger) == {p.event_id for p in story.published}
    assert not set(ledger) & set(story.injected)


def test_the_projections_hold_every_event_but_the_erased_residents(story: Story) -> None:
    erased = {p.event_id for p in story.of(story.cast.eraser)}
    for table, types in SUBJECT_TABLES.items():
        expected = {p.event_id for p in story.published if p.event_type in types} - erased
        assert set(story.store.ids(f"SELECT event_id FROM {table}")) == expected, table
    listed = {p.subject for p in story.published if p.event_type.startswith("vacant_house.list")}
    assert set(story.store.ids("SELECT listing_id FROM vacant_house_listings")) == listed
    vehicles = {p.subject for p in story.published if p.event_type == "transport.vehicle.position"}
    assert set(story.store.ids("SELECT vehicle_id FROM transport_vehicle_positions")) == vehicles


def test_the_audit_log_counts_each_connectors_events_as_published(story: Story) -> None:
    batches = [e["fields"] for e in _entries(story, "publish_batch")]
    projected = collections.Counter(p.source for p in story.projected())
    recorded: collections.Counter[str] = collections.Counter()
    for batch in batches:
        recorded.update(batch["sources"])
    # What each connector published, minus the events about the erased resident that came
    # after the erasure (taken in, projected nowhere), minus nothing else: no dead letters.
    assert recorded == projected
    assert sum(b.get("erased", 0) for b in batches) == len(story.erased_later) > 0
    assert sum(b["duplicates"] for b in batches) == 0
    assert sum(b["dead_letters"] for b in batches) == len(story.injected)


def test_dead_letters_are_exactly_the_intruders_records_with_their_reasons(story: Story) -> None:
    expected = {event_id: reason for event_id, (_, reason) in story.injected.items()}
    entries = _entries(story, "dead_letter")
    letters = [e["fields"] for e in entries]
    assert {d["event_id"]: d["reason"] for d in letters} == expected
    # The forgery names both whom it claimed to be and who sent it (the intruder's token).
    (forgery,) = [e for e in entries if e["fields"]["reason"] == "source_not_allowed"]
    assert forgery["fields"]["source"] == SERVICES["currency"].source
    assert forgery["fields"]["sender"] == forgery["actor"] == INTRUDER
    assert len(letters) == len(expected)
    assert {d["event_id"]: d["topic"] for d in letters} == {
        event_id: topic for event_id, (topic, _) in story.injected.items()
    }
    # On the bus, each one sits in its topic's dead-letter topic with the reason attached;
    # the clean day left nothing there.
    domains = ("transport", "health", "currency", "vacant_house")
    dlqs = [f"{story.prefix}{d}.dlq" for d in domains] + [story.prefix + UNROUTED_DLQ]
    consumer = story.bus.consumer(f"e2e-dlq-reader-{uuid.uuid4().hex[:8]}", dlqs)
    on_bus: dict[str, tuple[str, str]] = {}
    try:
        deadline = time.monotonic() + 30
        while len(on_bus) < len(expected) and time.monotonic() < deadline:
            for record in consumer.poll(100, 1.0):
                headers = dict(record.headers)
                on_bus[headers[H_EVENT_ID].decode()] = (
                    record.topic,
                    headers[H_REASON].decode(),
                )
    finally:
        consumer.close()
    assert on_bus == {
        event_id: (f"{topic}.dlq", reason) for event_id, (topic, reason) in story.injected.items()
    }
    ends = {topic: sum(story.bus.end_offsets(topic).values()) for topic in dlqs}
    assert ends == {
        topic: sum(1 for t, _ in story.injected.values() if f"{t}.dlq" == topic) for topic in dlqs
    }


# -- consent, as partners meet it ---------------------------------------------------------------


def test_partners_see_residents_only_under_their_own_pseudonyms(story: Story) -> None:
    region = Region(seed=SEED, population=POPULATION)
    people = (
        {r.resident_id for r in region.residents}
        | {o.owner_id for o in region.owners}
        | {p.resident_id for p in region.prospects}
    )
    assert story.reads
    for read in story.reads:
        leaked = {person for person in people if person in read.text}
        assert not leaked, f"{read.partner.partner_id} {read.path} names {leaked}"
    pseudonyms = [r["resident"] for read in story.reads for r in read.body.get("residents", ())]
    assert pseudonyms and all(p.startswith("psn-") for p in pseudonyms)
    # The one person who consented to both resident partners is someone else to each.
    psn = story.eraser_pseudonyms
    assert psn[TRANSPORT.partner_id] != psn[HEALTH.partner_id]


def test_a_consent_granted_mid_stream_lets_the_partner_read_from_then_on(story: Story) -> None:
    granted = story.consents[(story.cast.granter, TRANSPORT.partner_id)]
    assert granted not in story.listed_before_grant
    assert granted in story.listed_after_grant
    # Their trips after the grant are in the partner's view by the end of the day.
    final = story.final[TRANSPORT.partner_id]
    view = final.views[final.listed[granted]]
    assert category(view, "transport.trips")["included"] is True
    trips = story.of(story.cast.granter, *CATEGORY_TYPES["transport.trips"])
    assert [p for p in trips if p.released > MORNING]
    assert {i["id"] for i in view["items"]} == {p.event_id for p in trips}


def test_each_partner_sees_every_event_each_consent_covers_and_nothing_else(story: Story) -> None:
    cast = story.cast
    still_consenting = {
        TRANSPORT.partner_id: {*cast.riders, cast.granter},
        HEALTH.partner_id: set(cast.walkers),
    }
    for partner in (TRANSPORT, HEALTH):
        final = story.final[partner.partner_id]
        subjects = {
            subject
            for (subject, pid), consent in story.consents.items()
            if pid == partner.partner_id and consent in final.listed
        }
        assert subjects == still_consenting[partner.partner_id]
        shared = [t for code in partner.categories for t in CATEGORY_TYPES[code]]
        for subject in subjects:
            view = final.views[final.listed[story.consents[(subject, partner.partner_id)]]]
            assert all(category(view, code)["included"] for code in partner.categories), view
            assert {i["id"] for i in view["items"]} == {
                p.event_id for p in story.of(subject, *shared)
            }, subject


def test_a_revocation_mid_stream_withholds_the_category_as_revoked_from_the_next_read(
    story: Story,
) -> None:
    consent = story.consents[(story.cast.revoker, TRANSPORT.partner_id)]
    before = category(story.revoker_before, "transport.trips")
    assert before["included"] is True and before["consent_id"] == consent
    morning = {p.event_id for p in story.of(story.cast.revoker) if p.released < NOON}
    assert {i["id"] for i in story.revoker_before["items"]} & morning
    # The revocation is a new version of the consent; the very next read is refused under it.
    assert story.revoked["status"] == "revoked" and story.revoked["supersedes"] == consent
    after = category(story.revoker_after, "transport.trips")
    assert after["included"] is False
    assert after["withheld"] == {"reason": "revoked", "consent_id": story.revoked["id"]}
    assert story.revoker_after["items"] == []
    assert consent not in story.listed_after_revocation
    # Their afternoon trip was still taken in, and is not shown either.
    afternoon = [
        p.event_id
        for p in story.of(story.cast.revoker, "transport.trip.completed")
        if p.released > NOON
    ]
    assert afternoon
    assert set(afternoon) <= set(story.store.ids("SELECT event_id FROM transport_trips"))
    final = category(story.revoker_final, "transport.trips")
    assert final["withheld"]["reason"] == "revoked" and story.revoker_final["items"] == []


def test_the_revoked_resident_finds_the_reads_before_revocation_in_their_access_log(
    story: Story,
) -> None:
    consent = story.consents[(story.cast.revoker, TRANSPORT.partner_id)]
    suffix = f"/{story.revoker_pseudonym}/activity"
    expected = [
        (
            [c["category"] for c in read.body["categories"] if c["included"]],
            sorted({c["consent_id"] for c in read.body["categories"] if c["included"]}),
            len(read.body["items"]),
        )
        for read in story.reads
        if read.path.endswith(suffix)
    ]
    with story.platform.client() as http:
        log = Person(story.platform, http, story.cast.revoker).get("/v1/me/access-log?limit=1000")
    assert log["next_cursor"] is None  # every read on this one page
    # Newest first: reversed, in the order the partner read.
    reads = [r for r in reversed(log["reads"]) if r["view"] == "activity"]
    assert [(r["categories"], r["consent_ids"], r["rows"]) for r in reads] == expected
    assert {r["partner"] for r in reads} == {TRANSPORT.partner_id}
    assert {r["purpose"] for r in reads} == {TRANSPORT.purpose}
    earlier = [r for r in reads if r["categories"]]
    assert earlier and all(r["consent_ids"] == [consent] for r in earlier)
    assert reads[-1]["categories"] == [] and reads[-1]["rows"] == 0


def test_an_owner_who_did_not_consent_keeps_the_details_withheld_while_a_consenting_owner_is_shown(
    story: Story,
) -> None:
    shown, kept = story.cast.consenting, story.cast.refusing
    for house in (shown, kept):
        listed = story.houses_before_consent[house.listing_id]
        assert listed["owner_details"] is None
        assert listed["owner_details_withheld"]["reason"] == "owner_consent_missing"
    for houses in (story.houses_after_consent, story.final_houses):
        mine, theirs = houses[shown.listing_id], houses[kept.listing_id]
        assert mine["owner_details_withheld"] is None
        assert mine["owner_details"]["owner_name"] == shown.owner.name
        assert mine["owner_details"]["exact_address"] == shown.cells["exact_address"]
        assert theirs["owner_details"] is None
        assert theirs["owner_details_withheld"]["reason"] == "owner_consent_missing"
        # The public listing is there for both.
        assert theirs["listing"]["district"] == kept.cells["district"]
        assert mine["listing"]["district"] == shown.cells["district"]
    # Nothing identifying the owner who did not consent ever reached the partner.
    for read in story.reads:
        for secret in (kept.owner.name, kept.owner.phone, kept.cells["exact_address"]):
            assert secret not in read.text, read.path


# -- erasure -------------------------------------------------------------------------------------


def test_an_erased_resident_is_gone_from_every_view(story: Story) -> None:
    eraser = story.cast.eraser
    # Before, both partners saw what they shared: the afternoon's payment among it.
    paid = category(story.eraser_before[HEALTH.partner_id], "currency.transactions")
    assert paid["included"] is True and paid["totals"]["payments"] >= 1
    record = story.erasure
    assert record["consents_revoked"] == 2
    assert record["key_destroyed"] is True
    # Every row about them that ingest had made, and no other, was deleted; their consents
    # (two grants, two revocations) were scrubbed of their id.
    deleted = dict(record["rows_deleted"])
    assert deleted.pop("consents") == 4
    assert sum(deleted.values()) == len(story.eraser_events_before)
    assert record["copies_expire_at"] is not None  # Kafka's copies, by retention
    assert eraser not in str(record)
    for partner in (TRANSPORT, HEALTH):
        pid = partner.partner_id
        consent = story.consents[(eraser, pid)]
        assert consent not in story.listed_after_erasure[pid]
        # Their old pseudonym names no one any more.
        assert story.eraser_after[pid]["status"] == 404
        assert story.eraser_pseudonyms[pid] not in story.final[pid].views


def test_events_about_an_erased_resident_arriving_later_are_not_projected(story: Story) -> None:
    later = story.erased_later
    assert "health.points.awarded" in {p.event_type for p in later}
    ids = {p.event_id for p in later}
    # Taken in (the ledger has them, so they are not redelivered) but projected nowhere.
    assert ids <= set(story.store.ledger())
    for table in SUBJECT_TABLES:
        assert not ids & set(story.store.ids(f"SELECT event_id FROM {table}")), table


def test_the_erased_resident_keeps_only_the_record_of_what_happened(story: Story) -> None:
    eraser = story.cast.eraser
    with story.platform.client() as http:
        me = Person(story.platform, http, eraser)
        consents = me.get("/v1/me/consents")
        log = me.get("/v1/me/access-log?limit=1000")["reads"]
    # Their consents were revoked, then scrubbed of their id: none names them any more.
    assert consents == []
    # Their data tracker still tells who read their data: the audit log outlives the key
    # (the audit reference is not derived from it), and nothing read after the erasure.
    reads = [r for r in log if r["view"] == "activity"]
    before = [r for r in reads if r["categories"]]
    assert before and {r["partner"] for r in before} == {TRANSPORT.partner_id, HEALTH.partner_id}
    # Nothing was read of them after the erasure: their old pseudonyms name no one (404).
    erased_at = datetime.fromisoformat(story.erasure["completed_at"])
    assert [r for r in log if datetime.fromisoformat(r["at"]) > erased_at and r["rows"]] == []


def _cells(statistic: Json, *dimensions: str) -> dict[tuple[str, ...], tuple[int, int] | None]:
    """A statistic's cells: dimensions → (measure, subjects), or None when suppressed."""
    measure = {"points-by-age-band": "points_awarded", "trips-by-town-month": "trips"}
    cells: dict[tuple[str, ...], tuple[int, int] | None] = {}
    for cell in statistic["cells"]:
        key = tuple(cell[d] for d in dimensions)
        if cell["suppressed"]:
            assert cell["measures"] is None, cell  # nothing at all of a suppressed cell
            cells[key] = None
        else:
            m = cell["measures"]
            cells[key] = (m[measure[statistic["statistic"]]], m["subjects"])
    return cells


def _k_anonymous(
    amounts: dict[tuple[str, ...], int], subjects: dict[tuple[str, ...], set[str]]
) -> dict[tuple[str, ...], tuple[int, int] | None]:
    return {
        key: None if len(subjects[key]) < K else (amounts[key], len(subjects[key]))
        for key in subjects
    }


def test_statistics_count_the_day_k_anonymously_without_the_erased_resident(
    story: Story,
) -> None:
    points: dict[tuple[str, ...], int] = collections.Counter()
    walkers: dict[tuple[str, ...], set[str]] = collections.defaultdict(set)
    for p in story.published:
        if p.event_type == "health.points.awarded" and p.subject != story.cast.eraser:
            points[(p.data["age_band"],)] += p.data["points"]
            walkers[(p.data["age_band"],)].add(p.subject)
    assert story.points["k"] == K
    assert _cells(story.points, "age_band") == _k_anonymous(points, walkers)
    assert any(story.points["cells"]) and not story.points["suppressed_cells"]
    # A day's on-demand trips are too few for any town to reach k riders: every cell is
    # suppressed, and the totals cover published cells only. No consent is needed, so the
    # revoked resident's trips count too.
    trips: dict[tuple[str, ...], int] = collections.Counter()
    riders: dict[tuple[str, ...], set[str]] = collections.defaultdict(set)
    for p in story.published:
        if p.event_type == "transport.trip.completed":
            trips[(p.data["origin"]["town"], "2025-04")] += 1
            riders[(p.data["origin"]["town"], "2025-04")].add(p.subject)
    assert story.cast.revoker in set().union(*riders.values())
    assert _cells(story.trips, "town", "month") == _k_anonymous(trips, riders)
    assert story.trips["suppressed_cells"] == len(story.trips["cells"]) > 0
    assert story.trips["totals"]["trips"] == 0


# -- the platform ---------------------------------------------------------------------------------


def test_the_platform_reports_ready(story: Story) -> None:
    with story.platform.client() as http:
        r = http.get("/readyz")
    assert r.status_code == 200, r.text


# -- the auditor ---------------------------------------------------------------------------------


def test_the_auditor_verifies_the_chain(story: Story) -> None:
    env = {
        **os.environ,
        "TSUNAGU_DATA_DIR": str(story.platform.data_dir),
        "TSUNAGU_DATABASE_URL": story.store.url,
    }
    with story.platform.client() as http:
        r = http.get("/v1/audit/verification", params={"fresh": "true"}, headers=_auditor(story))
    assert r.status_code == 200, r.text
    state = r.json()
    assert state["ok"] is True and state["problem"] is None
    assert state["entries"] == state["last_seq"] > len(story.reads)
    # The command an auditor runs against the store: the whole chain, at least as long as
    # the API just said, every checkpoint's signature.
    expect = str(state["last_seq"])
    verified = subprocess.run(
        [sys.executable, "-m", "broker.cli", "audit", "verify", "--expect-seq", expect],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert verified.stdout.startswith("ok store: ")


def _expected_flows(story: Story) -> dict[tuple[str, str], Json]:
    """The flow map the day should draw, from what was published and what partners got."""
    edges: dict[tuple[str, str], Json] = {}

    def edge(source: str, target: str) -> Json:
        return edges.setdefault(
            (source, target), {"count": 0, "refused": 0, "reasons": {}, "purposes": {}}
        )

    def refuse(e: Json, reason: str) -> None:
        e["refused"] += 1
        e["reasons"][reason] = e["reasons"].get(reason, 0) + 1

    for p in story.projected():
        topic = f"topic:{story.prefix}{p.event_type.split('.')[0]}"
        edge(f"connector:{p.source}", topic)["count"] += 1
        for code in CATEGORIES_OF_TYPE[p.event_type]:
            edge(topic, f"category:{code}")["count"] += 1
    for topic, reason in story.injected.values():
        # The forged record too is drawn from the intruder (its token), not from its victim.
        refuse(edge(f"connector:{INTRUDER}", f"topic:{topic}"), reason)

    def read(code: str, partner: Partner) -> None:
        e = edge(f"category:{code}", f"partner:{partner.partner_id}")
        e["count"] += 1
        e["purposes"][partner.purpose] = e["purposes"].get(partner.purpose, 0) + 1

    for r in story.reads:
        partner = f"partner:{r.partner.partner_id}"
        if r.path.endswith("/activity"):
            for part in r.body["categories"]:
                if part["included"]:
                    read(part["category"], r.partner)
                else:
                    reason = part["withheld"]["reason"]
                    refuse(edge(f"category:{part['category']}", partner), reason)
        elif r.path == "/v1/partner/vacant-houses":
            read("property.listing", r.partner)
            for house in r.body["houses"]:
                if house["owner_details"] is not None:
                    read("property.details", r.partner)
                else:
                    reason = house["owner_details_withheld"]["reason"]
                    refuse(edge("category:property.details", partner), reason)
        elif r.path.startswith("/v1/statistics/"):
            read(STATISTIC_CATEGORY[r.path.rsplit("/", 1)[1]], r.partner)
    return edges


def test_the_flow_map_shows_every_hop_of_the_day_with_its_counts_and_refusals(
    story: Story,
) -> None:
    expected = _expected_flows(story)
    with story.platform.client() as http:

        def drawn() -> dict[tuple[str, str], Json]:
            r = http.get(
                "/v1/audit/flows",
                params={"since": (story.began - timedelta(minutes=1)).isoformat()},
                headers=_auditor(story),
            )
            assert r.status_code == 200, r.text
            return {
                (e["source"], e["target"]): {
                    k: e[k] for k in ("count", "refused", "reasons", "purposes")
                }
                for e in r.json()["edges"]
            }

        # Decisions reach the log a moment after the read that made them.
        deadline = time.monotonic() + 30
        flows = drawn()
        while flows != expected and time.monotonic() < deadline:
            time.sleep(0.2)
            flows = drawn()
    assert flows == expected
    # The hops the auditor looks for, by name: each connector's source into its topic ...
    for name, service in SERVICES.items():
        hop = flows[(f"connector:{service.source}", f"topic:{story.prefix}{name}")]
        assert hop["count"] > 0
    # ... and the revoked resident's category refused to the transport partner as revoked.
    refused = flows[("category:transport.trips", f"partner:{TRANSPORT.partner_id}")]
    assert refused["reasons"]["revoked"] >= 1
    details = flows[("category:property.details", f"partner:{HOUSING.partner_id}")]
    assert details["count"] >= 1 and details["reasons"]["owner_consent_missing"] >= 1
