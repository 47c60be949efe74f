"""A small region for the sealing and erasure tests: two residents, one owner, their events."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, select

from broker.ingest.pipeline import BatchOutcome, IngestWorker
from broker.store.projections import LISTINGS, subject_tables
from consent.vault import SubjectVault
from contract.bus import Bus, Record
from tests.events import encode, example_data, make_event, registry
from tests.fixtures.databases import fresh_postgres_database

ALICE = "res-alice001"  # rides, walks, pays, inquires, and owns a vacant house
BOB = "res-bob00002"  # lives alongside: erasing Alice must not touch him
ALICES_HOUSE = "prop-alice001"

MERCHANT_NAME = "仁尾うどん本舗"
OWNER_NAME = "大西 花子"
MESSAGE = "東京と三豊の二地域居住を考えています。"

PERSONAL_TYPES = (
    "transport.trip.completed",
    "transport.ride.requested",
    "health.points.awarded",
    "health.points.redeemed",
    "currency.payment.settled",
    "currency.wallet.topped_up",
    "currency.points.converted",
    "vacant_house.inquiry.received",
)


@pytest.fixture(params=["sqlite", "postgresql"])
def vault_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty vault on each backend: SQLite in the test's keys directory, a fresh PG database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'keys' / 'vault.db'}"
    base: str = request.getfixturevalue("postgres_url")
    return fresh_postgres_database(base)


@pytest.fixture
def vault(vault_url: str) -> Iterator[SubjectVault]:
    """This process's vault."""
    opened = SubjectVault.open_url(vault_url)
    yield opened
    opened.close()


def event_about(event_type: str, subject: str, **changes: Any) -> dict[str, Any]:
    """A valid event of ``event_type`` about ``subject`` (the schema's example, adjusted)."""
    # Listings in v1's shape: the tests name v1's owner fields (v2 is the standard model).
    version = 1 if event_type.startswith("vacant_house.listing") else None
    data = example_data(event_type, version)
    data["owner_id" if event_type.startswith("vacant_house.listing") else "resident_id"] = subject
    data.update(changes)
    return make_event(event_type, data=data, subject=subject, version=version)


def residents_events(subject: str) -> list[dict[str, Any]]:
    """One event of every personal type about ``subject``."""
    docs = [event_about(t, subject) for t in PERSONAL_TYPES]
    for doc in docs:
        if doc["type"] == "currency.payment.settled":
            doc["data"]["merchant_name"] = MERCHANT_NAME
        if doc["type"] == "vacant_house.inquiry.received":
            doc["data"]["message"] = MESSAGE
    return docs


def listing_of(owner: str, listing_id: str = ALICES_HOUSE) -> dict[str, Any]:
    """A vacant house ``owner`` registers, with their details."""
    doc = event_about("vacant_house.listing.registered", owner, listing_id=listing_id)
    doc["data"]["owner_details"]["owner_name"] = OWNER_NAME
    return doc


def ingest(
    bus: Bus, store: Engine, vault: SubjectVault, docs: list[dict[str, Any]]
) -> BatchOutcome:
    """Run ``docs`` through the real ingest worker as one batch."""
    worker = IngestWorker(bus, store, registry(), vault)
    records = [
        Record(doc["type"].split(".")[0], 0, i, doc["subject"].encode(), encode(doc))
        for i, doc in enumerate(docs)
    ]
    return worker.process(records)


def personal_rows(store: Engine) -> dict[str, list[dict[str, Any]]]:
    """Every row of every table about a person, by table (what a backup would hold)."""
    with store.connect() as conn:
        return {
            table.name: [dict(r._mapping) for r in conn.execute(select(table))]
            for table in (*subject_tables(), LISTINGS)
        }
