"""The decision recorder: every decision of the decision point, allow and deny, with its
reason and consent id, under the subject's reference only."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import orjson
import pytest
from sqlalchemy import Engine, select

from broker.audit import AuditLog, EntryKind, decision_recorder, verify_store
from broker.audit import tables as t
from broker.audit.flows import Bucket, Edge, flow_map, refusals_over_time
from broker.bus.sqlite_log import SqliteLog
from consent.decisions import DecisionPoint, DecisionReason
from consent.keys import KeyRing
from consent.service import ConsentService
from tests.consent.world import (
    ALICE,
    BOB,
    BUS_FIRM,
    CATALOGUE,
    HEALTH_POINTS,
    PLANNING,
    TRIPS,
    days,
    now,
    register_partners,
)

MONEY = "currency.transactions"


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


def _flows(engine: Engine) -> dict[tuple[str, str], Edge]:
    """The map of the last hour, by (source, target)."""
    end = datetime.now(UTC) + timedelta(minutes=1)
    flows = flow_map(engine, CATALOGUE, end - timedelta(hours=1), end)
    return {(e.source, e.target): e for e in flows.edges}


def _read_whole_view(recording: DecisionPoint, audit: AuditLog, subject: str) -> None:
    """The bus firm reads the cross-service view of ``subject`` as a whole: each category
    decided without being named, the read recorded with what it included."""
    decided = [
        recording.decide(BUS_FIRM, PLANNING, c, subject, asked=False)
        for c in (TRIPS, HEALTH_POINTS, MONEY)
    ]
    audit.append_now(
        EntryKind.PARTNER_READ,
        actor=BUS_FIRM,
        subject=subject,
        partner=BUS_FIRM,
        purpose=PLANNING,
        categories=[d.category for d in decided if d.allowed],
        view="activity",
    )


def test_a_withheld_decision_is_recorded_as_withheld_and_a_refusal_without_the_field(
    service: ConsentService, recording: DecisionPoint, audit: AuditLog, engine: Engine
) -> None:
    service.grant(ALICE, BUS_FIRM, PLANNING, [TRIPS], expires_at=now() + days(30))
    recording.decide(BUS_FIRM, PLANNING, HEALTH_POINTS, ALICE, asked=False)
    recording.decide(BUS_FIRM, PLANNING, HEALTH_POINTS, ALICE)
    audit.flush()

    with engine.connect() as conn:
        rows = conn.execute(select(t.entries).order_by(t.entries.c.seq)).all()
    withheld, refused = (orjson.loads(r.fields) for r in rows)
    assert withheld["allowed"] is False and withheld["withheld"] is True
    assert withheld["reason"] == refused["reason"] == "category_not_covered"
    assert refused["allowed"] is False and "withheld" not in refused


def test_ordinary_reads_of_the_whole_view_are_allowed_and_withheld_never_refused(
    service: ConsentService, recording: DecisionPoint, audit: AuditLog, engine: Engine
) -> None:
    service.grant(ALICE, BUS_FIRM, PLANNING, [TRIPS], expires_at=now() + days(30))
    for _ in range(7):
        _read_whole_view(recording, audit, ALICE)
    audit.flush()

    edges = _flows(engine)
    partner = f"partner:{BUS_FIRM}"
    trips = edges[f"category:{TRIPS}", partner]
    assert (trips.count, trips.refused, trips.withheld) == (7, 0, 0)
    for category in (HEALTH_POINTS, MONEY):
        edge = edges[f"category:{category}", partner]
        assert (edge.count, edge.refused, edge.withheld, edge.reasons) == (0, 0, 7, {})
    hour = datetime.now(UTC) - timedelta(hours=1)
    bars = refusals_over_time(engine, hour, hour + timedelta(hours=2), Bucket.HOUR)
    assert sum(b.refused for b in bars) == 0
    assert sum(b.withheld for b in bars) == 14
    assert all(b.reasons == {} for b in bars)


def test_a_revoked_consents_next_read_is_refused_for_what_it_covered(
    service: ConsentService, recording: DecisionPoint, audit: AuditLog, engine: Engine
) -> None:
    consent = service.grant(ALICE, BUS_FIRM, PLANNING, [TRIPS], expires_at=now() + days(30))
    _read_whole_view(recording, audit, ALICE)
    service.revoke(ALICE, consent.id)
    _read_whole_view(recording, audit, ALICE)
    audit.flush()

    edges = _flows(engine)
    partner = f"partner:{BUS_FIRM}"
    trips = edges[f"category:{TRIPS}", partner]
    assert (trips.count, trips.refused, trips.reasons) == (1, 1, {"revoked": 1})
    health = edges[f"category:{HEALTH_POINTS}", partner]
    assert (health.refused, health.withheld) == (0, 2)
    hour = datetime.now(UTC) - timedelta(hours=1)
    bars = refusals_over_time(engine, hour, hour + timedelta(hours=2), Bucket.HOUR)
    assert sum(b.refused for b in bars) == 1
    assert sum(b.withheld for b in bars) == 4


def test_a_category_asked_for_by_name_without_consent_is_refused_on_the_map(
    service: ConsentService, recording: DecisionPoint, audit: AuditLog, engine: Engine
) -> None:
    service.grant(ALICE, BUS_FIRM, PLANNING, [TRIPS], expires_at=now() + days(30))
    recording.decide(BUS_FIRM, PLANNING, HEALTH_POINTS, ALICE)
    audit.flush()

    health = _flows(engine)[f"category:{HEALTH_POINTS}", f"partner:{BUS_FIRM}"]
    assert (health.refused, health.withheld) == (1, 0)
    assert health.reasons == {"category_not_covered": 1}


def test_decisions_recorded_before_withheld_existed_still_count_as_refusals(
    audit: AuditLog, engine: Engine
) -> None:
    # An entry as every decision was written before: no ``withheld`` field.
    audit.append_now(
        EntryKind.DECISION,
        actor=BUS_FIRM,
        subject=ALICE,
        allowed=False,
        reason="category_not_covered",
        partner=BUS_FIRM,
        purpose=PLANNING,
        category=HEALTH_POINTS,
    )

    health = _flows(engine)[f"category:{HEALTH_POINTS}", f"partner:{BUS_FIRM}"]
    assert (health.refused, health.withheld) == (1, 0)
    assert health.reasons == {"category_not_covered": 1}
    hour = datetime.now(UTC) - timedelta(hours=1)
    bars = refusals_over_time(engine, hour, hour + timedelta(hours=2), Bucket.HOUR)
    assert (sum(b.refused for b in bars), sum(b.withheld for b in bars)) == (1, 0)
