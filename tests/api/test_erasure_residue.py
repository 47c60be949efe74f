"""Erasure reaches every copy: after a resident's data has flowed through the embedded
platform (SQLite bus, SQLite store, vault, audit log), erasing them leaves none of their id
or personal values in any file of the data directory, the SQLite -wal and -shm files
included, except where the erasure record says the copy expires later."""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Iterator
from contextlib import closing
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.events import example_data, make_event
from tests.fixtures.platform import (
    RunningPlatform,
    register_partner,
    start_platform,
    stop_platform,
)

PLANNING = "transport.planning"
HOUSING = "housing.dual_residence_support"
JST = "+09:00"


def _id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def _grant(
    platform: RunningPlatform, subject: str, partner: str, purpose: str, cats: list[str]
) -> None:
    with platform.client() as http:
        r = http.post(
            "/v1/me/consents",
            json={
                "partner_id": partner,
                "purpose": purpose,
                "categories": cats,
                "expires_at": (datetime.now(UTC) + timedelta(days=30)).isoformat(),
            },
            headers=platform.auth("resident", subject),
        )
    assert r.status_code == 201, r.text


def _events(resident: str, name: str, phone: str, message: str) -> list[dict[str, Any]]:
    trip = example_data("transport.trip.completed")
    trip.update(
        trip_id=_id("trip"),
        resident_id=resident,
        requested_at=f"2025-06-03T08:00:00{JST}",
        pickup_at=f"2025-06-03T09:00:00{JST}",
        dropoff_at=f"2025-06-03T09:20:00{JST}",
    )
    listing = example_data("vacant_house.listing.registered", 1)  # v1's owner_name field
    listing.update(listing_id=_id("prop"), owner_id=resident)
    listing["owner_details"] = {
        **listing["owner_details"],
        "owner_name": name,
        "owner_contact": {"phone": phone, "email": f"{resident}@example.jp"},
    }
    inquiry = example_data("vacant_house.inquiry.received")
    inquiry.update(inquiry_id=_id("inq"), resident_id=resident, message=message)
    return [
        make_event("transport.trip.completed", data=trip, subject=resident),
        make_event(
            "vacant_house.listing.registered",
            data=listing,
            subject=listing["listing_id"],
            version=1,
        ),
        make_event("vacant_house.inquiry.received", data=inquiry, subject=resident),
    ]


def _dead_letter(platform: RunningPlatform, resident: str, phone: str) -> None:
    """An event of the resident's refused at ingest: its bytes go to the dead letters."""
    data = example_data("currency.payment.settled")
    data.update(payment_id=_id("pay"), resident_id=resident, amount_jpy=-1, note=phone)
    event = make_event("currency.payment.settled", data=data, subject=resident)
    headers = {
        "content-type": "application/cloudevents+json",
        **platform.auth("connector", "test-connector", sources=(event["source"],)),
    }
    with platform.client() as http:
        r = http.post("/v1/events", content=orjson.dumps(event), headers=headers)
    assert r.status_code == 202, r.text
    assert r.json()["results"][0]["status"] == "rejected", r.text


def _checkpoint(data_dir: Path) -> None:
    for name in ("bus.db", "store.db"):
        with closing(sqlite3.connect(data_dir / name)) as conn:
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")


def _files_holding(data_dir: Path, needles: dict[str, bytes]) -> dict[str, list[str]]:
    """Per needle, every file under ``data_dir`` whose bytes contain it."""
    found: dict[str, list[str]] = {}
    for path in sorted(p for p in data_dir.rglob("*") if p.is_file()):
        content = path.read_bytes()
        for label, needle in needles.items():
            if needle in content:
                found.setdefault(label, []).append(str(path.relative_to(data_dir)))
    return found


@pytest.fixture
def platform(tmp_path: Path) -> Iterator[RunningPlatform]:
    """A platform of this test's own: its whole data directory is scanned."""
    running = start_platform(tmp_path / "data")
    yield running
    stop_platform(running)


def test_erasure_leaves_no_copy_of_the_resident_in_the_data_directory(
    platform: RunningPlatform,
) -> None:
    resident = _id("res")
    name, phone, message = "遠藤 消子", "090-9876-5432", "週末に内見できますか（消去試験）"
    with platform.client() as http:
        partner = register_partner(platform, http, PLANNING, HOUSING)
    _grant(platform, resident, partner, PLANNING, ["transport.trips"])
    platform.ingest(_events(resident, name, phone, message))
    _dead_letter(platform, resident, phone)
    # Into the database files too, not only their WAL: erasure must reach both.
    _checkpoint(platform.data_dir)
    held = _files_holding(platform.data_dir, {"id": resident.encode(), "phone": phone.encode()})
    assert {"bus.db", "store.db"} <= set(held["id"]) and "bus.db" in held["phone"], held
    _grant(platform, resident, partner, HOUSING, ["property.details"])
    me = platform.auth("resident", resident)
    with platform.client() as http:
        pseudonyms = http.get(
            "/v1/partner/residents",
            params={"purpose": PLANNING},
            headers=platform.auth("partner", partner),
        ).json()["residents"]
        (pseudonym,) = [p["resident"] for p in pseudonyms]
        read = http.get(
            f"/v1/partner/residents/{pseudonym}/activity",
            params={"purpose": PLANNING},
            headers=platform.auth("partner", partner),
        )
        assert read.status_code == 200, read.text
        erased = http.post("/v1/me/erasure", headers=me)
        assert erased.status_code == 200, erased.text
        after = http.get(
            f"/v1/partner/residents/{pseudonym}/activity",
            params={"purpose": PLANNING},
            headers=platform.auth("partner", partner),
        )
    record = erased.json()
    needles = {
        "resident id": resident.encode(),
        "name": name.encode(),
        "phone": phone.encode(),
        "message": message.encode(),
    }
    running = _files_holding(platform.data_dir, needles)
    # Stopped, SQLite folds its -wal files into the databases: scan what a copy would hold.
    stop_platform(platform)
    stopped = _files_holding(platform.data_dir, needles)
    assert (running, stopped) == ({}, {}), f"{running} {stopped} {record}"
    assert after.status_code == 404, after.text
    # The consents stay for the partner's record, scrubbed; the bus copies were deleted, and
    # the record says until when copies beyond reach (Kafka's retention) may last.
    assert record["rows_deleted"]["consents"] == 4  # two grants, two revocations
    assert record["rows_deleted"]["bus_records"] >= 4  # three events and a dead letter
    expires = datetime.fromisoformat(record["copies_expire_at"])
    assert expires - datetime.fromisoformat(record["completed_at"]) == timedelta(days=14)
