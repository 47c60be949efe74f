"""Events under a service's pairwise subject, against a running platform: resolved at ingest
to the resident linked with that service; held sealed (never projected) while no resident is
linked; released when the resident links; discarded after the retention; a firm cannot publish
under another firm's subject. Each step is in the audit log, never naming the subject.
"""

from __future__ import annotations

import json
import secrets
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine, text

from broker.regionid.directory import Directory
from tests.events import make_event
from tests.fixtures.platform import RunningPlatform, start_platform, stop_platform
from tests.regionid.test_links import Linking
from tests.regionid.test_provider import Region, Registered, _add_client

TRIP = "transport.trip.completed"
#: The version naming the resident by the service's subject.
LINKED_TRIP = 2
#: The connector publishing the bus company's events (platform.ingest's token subject).
CONNECTOR = "test-connector"
BUS = ("kotoden-linked", "https://bus.example.jp/cb")
SHOP = ("mitoyo-shop", "https://shop.example.jp/cb")


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningPlatform]:
    """A platform sweeping its held events every half second."""
    running = start_platform(
        tmp_path_factory.mktemp("held"), {"TSUNAGU_HELD_SWEEP_INTERVAL_S": "0.5"}
    )
    yield running
    stop_platform(running)


@pytest.fixture(scope="module")
def linking(platform: RunningPlatform) -> Linking:
    clients = {
        BUS[0]: Registered(
            BUS[0], _add_client(platform, BUS[0], BUS[1], "--connector", CONNECTOR), BUS[1]
        ),
        SHOP[0]: Registered(SHOP[0], _add_client(platform, SHOP[0], SHOP[1]), SHOP[1]),
    }
    engine = create_engine(f"sqlite:///{platform.data_dir / 'store.db'}")
    Directory(engine)  # the clients are registered by the CLI; nothing else to seed
    engine.dispose()
    return Linking(Region(platform, f"{platform.base_url}/regionid", clients, "", ""))


def _link(linking: Linking, client_id: str, resident: str) -> str:
    """Link ``resident`` with ``client_id`` by a link code; the subject the firm learns."""
    code = linking.issue(client_id, f"C-{secrets.token_hex(4)}")
    assert linking.enter(resident, code).status_code == 201
    with linking.firm(client_id) as firm:
        sub: str = firm.get(f"/link-codes/{code}").json()["sub"]
    return sub


def _trip(sub: str) -> dict[str, Any]:
    doc = make_event(TRIP, version=LINKED_TRIP)
    doc["data"]["subject"] = sub
    doc["data"]["trip_id"] = f"t-{uuid.uuid4().hex[:12]}"
    doc["subject"] = sub
    return doc


def _query(platform: RunningPlatform, sql: str, **params: Any) -> list[Any]:
    engine = create_engine(f"sqlite:///{platform.data_dir / 'store.db'}")
    try:
        with engine.begin() as conn:
            result = conn.execute(text(sql), params)
            return list(result.all()) if result.returns_rows else []
    finally:
        engine.dispose()


def _projected(platform: RunningPlatform, event_id: str) -> bool:
    rows = _query(platform, "SELECT 1 FROM transport_trips WHERE event_id = :e", e=event_id)
    return bool(rows)


def _held(platform: RunningPlatform, event_id: str) -> list[Any]:
    return _query(platform, "SELECT * FROM held_events WHERE event_id = :e", e=event_id)


def _eventually(check: Any, timeout_s: float = 20) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, "not within the sweep's time"
        time.sleep(0.1)


def _id_link_entries(platform: RunningPlatform, event: str) -> list[dict[str, Any]]:
    rows = _query(
        platform,
        "SELECT fields, subject_ref FROM audit_entries WHERE kind = 'id_link' ORDER BY seq",
    )
    entries = [{**json.loads(f), "subject_ref": ref} for f, ref in rows]
    return [e for e in entries if e["event"] == event]


def _batches(platform: RunningPlatform) -> list[dict[str, Any]]:
    rows = _query(
        platform, "SELECT fields FROM audit_entries WHERE kind = 'publish_batch' ORDER BY seq"
    )
    return [json.loads(f) for (f,) in rows]


def test_an_event_under_a_linked_subject_is_projected_as_the_residents(
    platform: RunningPlatform, linking: Linking
) -> None:
    resident = f"res-{secrets.token_hex(5)}"
    sub = _link(linking, BUS[0], resident)
    doc = _trip(sub)
    platform.ingest([doc])
    assert _projected(platform, doc["id"])
    assert _held(platform, doc["id"]) == []
    # The projection keeps the resident's blind reference, never the firm's subject.
    assert not _query(platform, "SELECT 1 FROM transport_trips WHERE subject_ref = :s", s=sub)


def test_an_event_under_an_unlinked_subject_is_held_sealed_then_released_on_linking(
    platform: RunningPlatform, linking: Linking
) -> None:
    resident = f"res-{secrets.token_hex(5)}"
    sub = _link(linking, BUS[0], resident)
    with platform.client() as http:
        auth = platform.auth("resident", resident)
        assert http.delete(f"/v1/me/links/{BUS[0]}", headers=auth).status_code == 200
    doc = _trip(sub)
    platform.ingest([doc])
    # Held: not projected, and its bytes are sealed (not even the trip id in clear).
    assert not _projected(platform, doc["id"])
    (held,) = _held(platform, doc["id"])
    assert doc["data"]["trip_id"].encode() not in held.sealed
    batch = next(b for b in reversed(_batches(platform)) if b.get("held"))
    assert batch["held"] == 1 and batch["held_sources"] == {doc["source"]: 1}
    assert sub not in json.dumps(_batches(platform))
    released_before = len(_id_link_entries(platform, "released"))
    # The resident links the service again: the held event is theirs now.
    assert _link(linking, BUS[0], resident) == sub
    _eventually(lambda: _projected(platform, doc["id"]))
    assert _held(platform, doc["id"]) == []
    released = _id_link_entries(platform, "released")[released_before:]
    assert [(e["client"], e["events"]) for e in released] == [(CONNECTOR, 1)]
    assert released[0]["subject_ref"]
    # A redelivery of the released event doubles nothing.
    platform.ingest([doc])
    assert (
        len(_query(platform, "SELECT 1 FROM transport_trips WHERE event_id = :e", e=doc["id"])) == 1
    )


def test_a_firm_cannot_publish_under_another_firms_subject(
    platform: RunningPlatform, linking: Linking
) -> None:
    resident = f"res-{secrets.token_hex(5)}"
    shops_sub = _link(linking, SHOP[0], resident)
    doc = _trip(shops_sub)  # published by the bus company's connector
    platform.ingest([doc])
    assert not _projected(platform, doc["id"])
    assert len(_held(platform, doc["id"])) == 1
    # Linking the bus company too does not make the shop's subject the bus company's.
    bus_sub = _link(linking, BUS[0], resident)
    assert bus_sub != shops_sub
    time.sleep(1.5)  # three sweeps
    assert not _projected(platform, doc["id"])


def test_a_held_event_is_discarded_after_the_retention(
    platform: RunningPlatform, linking: Linking
) -> None:
    doc = _trip("Z" * 43)  # a subject nobody was ever linked with
    platform.ingest([doc])
    assert len(_held(platform, doc["id"])) == 1
    discarded_before = len(_id_link_entries(platform, "discarded"))
    _query(
        platform,
        "UPDATE held_events SET held_at = '2000-01-01 00:00:00' WHERE event_id = :e",
        e=doc["id"],
    )
    _eventually(lambda: _held(platform, doc["id"]) == [])
    assert not _projected(platform, doc["id"])
    discarded = _id_link_entries(platform, "discarded")[discarded_before:]
    assert [(e["client"], e["events"]) for e in discarded] == [(CONNECTOR, 1)]
    assert discarded[0]["subject_ref"] is None


def test_the_schema_catalogue_states_the_deprecation_window(platform: RunningPlatform) -> None:
    doc = httpx.get(f"{platform.base_url}/v1/schemas/{TRIP}").json()
    assert doc["breaking"][str(LINKED_TRIP)]
    assert doc["deprecated"] == {"1": "2027-09-30"}


def test_a_linked_subject_is_released_behind_a_long_backlog_of_unlinked_ones(
    platform: RunningPlatform, linking: Linking
) -> None:
    # More events no one will link than a sweep reads at once, all held before ours.
    backlog = [_trip(secrets.token_urlsafe(32)[:43]) for _ in range(2100)]
    platform.ingest(backlog, timeout_s=60)
    resident = f"res-{secrets.token_hex(5)}"
    sub = _link(linking, BUS[0], resident)
    with platform.client() as http:
        auth = platform.auth("resident", resident)
        assert http.delete(f"/v1/me/links/{BUS[0]}", headers=auth).status_code == 200
    doc = _trip(sub)
    platform.ingest([doc])
    assert len(_held(platform, doc["id"])) == 1
    assert _link(linking, BUS[0], resident) == sub
    _eventually(lambda: _projected(platform, doc["id"]))
    assert len(_query(platform, "SELECT 1 FROM held_events")) >= len(backlog)
