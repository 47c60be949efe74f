"""The decision recorder: every decision of the decision point, allow and deny, with its
reason and consent id, under the subject's reference only."""

from __future__ import annotations

from collections.abc import Iterator

import orjson
import pytest
from sqlalchemy import Engine, select

from broker.audit import AuditLog, decision_recorder, verify_store
from broker.audit import tables as t
from broker.bus.sqlite_log import SqliteLog
from consent.decisions import DecisionPoint, DecisionReason
from consent.keys import KeyRing
from consent.service import ConsentService
from tests.consent.world import (
    ALICE,
    BOB,
    BUS_FIRM,
    CATALOGUE,
    PLANNING,
    TRIPS,
    days,
    now,
    register_partners,
)


@pytest.fixture
def recording(engine: Engine, keys: KeyRing, audit: AuditLog) -> DecisionPoint:
    """A decision point whose decisions go to the audit log."""
    return DecisionPoint(engine, CATALOGUE, on_decision=decision_recorder(audit))


@pytest.fixture
def service(
    engine: Engine, keys: KeyRing, sqlite_bus: SqliteLog, recording: DecisionPoint
) -> Iterator[ConsentService]:
    """The consent service, with the bus firm approved for transport planning."""
    svc = ConsentService(
        engine, keys, sqlite_bus, catalogue=CATALOGUE, on_change=[recording.cache.apply]
    )
    register_partners(svc)
    yield svc


def test_allow_and_deny_are_recorded_with_reason_and_consent(
    service: ConsentService,
    recording: DecisionPoint,
    audit: AuditLog,
    engine: Engine,
    keys: KeyRing,
) -> None:
    consent = service.grant(ALICE, BUS_FIRM, PLANNING, [TRIPS], expires_at=now() + days(30))
    allowed = recording.decide(BUS_FIRM, PLANNING, TRIPS, ALICE)
    denied = recording.decide(BUS_FIRM, PLANNING, TRIPS, BOB)
    assert allowed.allowed and not denied.allowed

    audit.flush()

    with engine.connect() as conn:
        rows = conn.execute(select(t.entries).order_by(t.entries.c.seq)).all()
    assert [r.kind for r in rows] == ["decision", "decision"]
    first, second = (orjson.loads(r.fields) for r in rows)
    assert first == {
        "allowed": True,
        "reason": "allowed",
        "consent_id": consent.id,
        "partner": BUS_FIRM,
        "purpose": PLANNING,
        "category": TRIPS,
    }
    assert second["allowed"] is False and second["reason"] == DecisionReason.NO_CONSENT
    assert "consent_id" not in second
    assert [r.actor for r in rows] == [BUS_FIRM, BUS_FIRM]
    assert rows[0].subject_ref == audit.refs.of(ALICE) != rows[1].subject_ref
    assert all(ALICE not in str(tuple(r)) and BOB not in str(tuple(r)) for r in rows)
    assert verify_store(engine, keys.jwks()).ok


def test_a_residents_tracker_finds_only_their_decisions(
    service: ConsentService, recording: DecisionPoint, audit: AuditLog
) -> None:
    service.grant(ALICE, BUS_FIRM, PLANNING, [TRIPS], expires_at=now() + days(30))
    for subject in (ALICE, BOB, ALICE):
        recording.decide(BUS_FIRM, PLANNING, TRIPS, subject)

    mine = audit.entries_of(ALICE)

    assert [orjson.loads(e.fields)["allowed"] for e in mine] == [True, True]
