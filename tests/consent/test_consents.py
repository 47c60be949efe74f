"""Consents and partners: a consent never changes (a change is a new consent that supersedes
it, and the history is kept), grants are checked against the catalogue and the approvals,
and every change is published on the compacted ``consent.changes`` topic."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import orjson
import pytest
from sqlalchemy import Engine

from broker.bus.sqlite_log import SqliteLog
from consent.changes import CONSENT_CHANGES_TOPIC, ConsentChange, changes_topic
from consent.errors import (
    ConcurrentChangeError,
    ConsentNotFoundError,
    InvalidConsentError,
    InvalidPartnerError,
    InvalidTransitionError,
    PartnerExistsError,
    PurposeNotApprovedError,
    UnknownCategoryError,
    UnknownPartnerError,
    UnknownPurposeError,
)
from consent.keys import KeyRing
from consent.service import ConsentService
from contract.bus import BusError, OutRecord
from tests.bus.test_contract import drain
from tests.consent.world import (
    ALICE,
    BOB,
    BUS_FIRM,
    CATALOGUE,
    HEALTH,
    HEALTH_POINTS,
    PLANNING,
    STRANGER,
    TRIPS,
    VEHICLES,
    days,
    now,
    register_partners,
)


def _grant(service: ConsentService, categories: Sequence[str] = (TRIPS,)) -> str:
    return service.grant(ALICE, BUS_FIRM, PLANNING, categories, expires_at=now() + days(30)).id


def test_revoking_adds_a_consent_and_keeps_the_old_one_pointing_to_it(
    service: ConsentService,
) -> None:
    granted = _grant(service)
    revoked = service.revoke(ALICE, granted)
    assert revoked.id != granted
    assert (revoked.status, revoked.change, revoked.supersedes) == ("revoked", "revoked", granted)
    old = service.get(granted)
    assert (old.status, old.superseded_by) == ("active", revoked.id)  # kept as it was
    assert [(c.id, c.version) for c in service.history(ALICE)] == [(granted, 1), (revoked.id, 2)]
    assert [c.id for c in service.current(ALICE)] == [revoked.id]


def test_each_change_is_a_new_consent_in_one_chain(service: ConsentService) -> None:
    first = _grant(service)
    paused = service.pause(ALICE, first)
    resumed = service.resume(ALICE, paused.id)
    service.approve_purpose(BUS_FIRM, HEALTH, approved_by="mitoyo-city/kikaku-1")
    amended = service.grant(
        ALICE, BUS_FIRM, PLANNING, [TRIPS, HEALTH_POINTS], expires_at=now() + days(90)
    )
    revoked = service.revoke(ALICE, amended.id)
    history = service.history(ALICE)
    assert [(c.change, c.status) for c in history] == [
        ("granted", "active"),
        ("paused", "paused"),
        ("resumed", "active"),
        ("amended", "active"),
        ("revoked", "revoked"),
    ]
    ids = [first, paused.id, resumed.id, amended.id, revoked.id]
    assert [c.id for c in history] == ids
    assert [c.supersedes for c in history] == [None, *ids[:-1]]
    assert [c.superseded_by for c in history] == [*ids[1:], None]
    assert history[-1].categories == sorted([TRIPS, HEALTH_POINTS])


def test_granting_again_after_a_revocation_continues_the_chain(service: ConsentService) -> None:
    revoked = service.revoke(ALICE, _grant(service))
    again = service.grant(ALICE, BUS_FIRM, PLANNING, [TRIPS], expires_at=now() + days(30))
    assert (again.change, again.supersedes, again.status) == ("granted", revoked.id, "active")


def test_a_consent_for_a_purpose_the_partner_is_not_approved_for_cannot_be_granted(
    service: ConsentService,
) -> None:
    with pytest.raises(PurposeNotApprovedError):
        service.grant(ALICE, BUS_FIRM, HEALTH, [HEALTH_POINTS], expires_at=now() + days(30))
    service.withdraw_purpose(BUS_FIRM, PLANNING, withdrawn_by="mitoyo-city/kikaku-1")
    with pytest.raises(PurposeNotApprovedError):
        _grant(service)
    assert service.history(ALICE) == []


@pytest.mark.parametrize(
    ("partner", "purpose", "categories", "error"),
    [
        (STRANGER, PLANNING, [TRIPS], UnknownPartnerError),
        (BUS_FIRM, "marketing.everything", [TRIPS], UnknownPurposeError),
        (BUS_FIRM, PLANNING, ["transport.everything"], UnknownCategoryError),
        (BUS_FIRM, PLANNING, [], InvalidConsentError),
        (BUS_FIRM, PLANNING, [VEHICLES], InvalidConsentError),  # not personal: no consent
    ],
)
def test_a_grant_outside_the_catalogue_or_registry_is_refused(
    service: ConsentService,
    partner: str,
    purpose: str,
    categories: list[str],
    error: type[Exception],
) -> None:
    with pytest.raises(error):
        service.grant(ALICE, partner, purpose, categories, expires_at=now() + days(30))


def test_a_grant_with_times_out_of_order_is_refused(service: ConsentService) -> None:
    start = now() + days(10)
    with pytest.raises(InvalidConsentError, match="after valid_from"):
        service.grant(ALICE, BUS_FIRM, PLANNING, [TRIPS], valid_from=start, expires_at=start)
    with pytest.raises(InvalidConsentError, match="already past"):
        service.grant(
            ALICE, BUS_FIRM, PLANNING, [TRIPS], valid_from=now() - days(9), expires_at=now()
        )
    with pytest.raises(InvalidConsentError, match="data_to"):
        service.grant(
            ALICE, BUS_FIRM, PLANNING, [TRIPS], expires_at=start, data_from=start, data_to=start
        )
    with pytest.raises(InvalidConsentError, match="UTC offset"):
        service.grant(ALICE, BUS_FIRM, PLANNING, [TRIPS], expires_at=datetime(2099, 1, 1))


def test_a_grant_for_a_malformed_subject_id_is_refused(service: ConsentService) -> None:
    with pytest.raises(InvalidConsentError):
        service.grant("alice", BUS_FIRM, PLANNING, [TRIPS], expires_at=now() + days(30))


def test_invalid_transitions_are_refused(service: ConsentService) -> None:
    first = _grant(service)
    with pytest.raises(InvalidTransitionError, match="active"):
        service.resume(ALICE, first)
    revoked = service.revoke(ALICE, first)
    with pytest.raises(InvalidTransitionError, match="superseded"):
        service.pause(ALICE, first)
    for change in (service.pause, service.resume, service.revoke):
        with pytest.raises(InvalidTransitionError, match="revoked"):
            change(ALICE, revoked.id)


def test_an_expired_consent_cannot_be_paused_but_can_be_revoked(
    engine: Engine, keys: KeyRing, sqlite_bus: SqliteLog
) -> None:
    later = now() + days(40)
    service = ConsentService(engine, keys, sqlite_bus, catalogue=CATALOGUE)
    register_partners(service)
    consent = _grant(service)
    service_later = ConsentService(
        engine, keys, sqlite_bus, catalogue=CATALOGUE, clock=lambda: later
    )
    with pytest.raises(InvalidTransitionError, match="expired"):
        service_later.pause(ALICE, consent)
    assert service_later.revoke(ALICE, consent).status == "revoked"


def test_a_subject_cannot_change_someone_elses_consent(service: ConsentService) -> None:
    consent = _grant(service)
    with pytest.raises(ConsentNotFoundError):
        service.revoke(BOB, consent)
    assert service.get(consent).superseded_by is None


def test_two_changes_of_the_same_consent_at_once_let_exactly_one_win(
    engine: Engine, keys: KeyRing, sqlite_bus: SqliteLog, service: ConsentService
) -> None:
    consent = _grant(service)
    elsewhere = ConsentService(engine, keys, sqlite_bus, catalogue=CATALOGUE)
    stale = service.get(consent)
    elsewhere.pause(ALICE, consent)
    # Replaying the first process's view of the chain: it still thinks `consent` is current.
    with pytest.raises(ConcurrentChangeError), engine.begin() as conn:
        replacement = stale.model_copy(update={"id": "cns-concurrent", "supersedes": stale.id})
        service._write(conn, replacement, stale, service.partner(BUS_FIRM))
    assert [c.change for c in service.history(ALICE)] == ["granted", "paused"]


def test_every_change_is_published_keyed_by_consent_or_partner_never_by_subject(
    service: ConsentService, sqlite_bus: SqliteLog
) -> None:
    consent = _grant(service)
    revoked = service.revoke(ALICE, consent)
    records = drain(sqlite_bus.consumer("reader", [CONSENT_CHANGES_TOPIC]), 7)
    changes = [(r.key, ConsentChange.from_record(r)) for r in records]
    assert [(k, c.event) for k, c in changes] == [
        (BUS_FIRM.encode(), "partner_registered"),
        (b"ptn-akiyashien01", "partner_registered"),
        (BUS_FIRM.encode(), "purpose_approved"),
        (BUS_FIRM.encode(), "purpose_approved"),
        (b"ptn-akiyashien01", "purpose_approved"),
        (consent.encode(), "granted"),
        (revoked.id.encode(), "revoked"),
    ]
    # The compacted topic keeps records for ever: none of them names the subject.
    assert not [r for r in records if ALICE.encode() in (r.key or b"") + r.value]
    last = changes[-1][1]
    assert (last.consent_id, last.supersedes, last.status) == (revoked.id, consent, "revoked")
    assert sqlite_bus.end_offsets(CONSENT_CHANGES_TOPIC) == {0: 7}  # one partition


def test_a_change_the_bus_refused_is_published_by_the_next_flush(
    engine: Engine, keys: KeyRing, sqlite_bus: SqliteLog
) -> None:
    sqlite_bus.create_topics([changes_topic()])
    failing = True

    def publish(topic: str, records: Sequence[OutRecord]) -> None:
        if failing:
            raise BusError("broker unreachable")
        sqlite_bus.publish(topic, records)

    service = ConsentService(engine, keys, publish, catalogue=CATALOGUE)
    partner = service.register_partner("三豊バス", "Mitoyo Bus")  # committed, not published
    assert partner.id == service.partner(partner.id).id
    failing = False
    assert service.flush_outbox() == 1
    (record,) = drain(sqlite_bus.consumer("reader", [CONSENT_CHANGES_TOPIC]), 1)
    assert orjson.loads(record.value)["event"] == "partner_registered"
    assert service.flush_outbox() == 0


def test_partners_are_registered_once(service: ConsentService) -> None:
    with pytest.raises(PartnerExistsError):
        service.register_partner("別の会社", "Another firm", partner_id=BUS_FIRM)
    with pytest.raises(InvalidPartnerError):
        service.register_partner("悪い会社", "Bad firm", partner_id="partner-1")
    with pytest.raises(InvalidPartnerError):
        service.register_partner("悪い会社", "Bad firm", webhook_url="ftp://example.invalid/")
    generated = service.register_partner("新しい会社", "New firm")
    assert generated.id.startswith("ptn-")
    assert generated.created_at.tzinfo is not None
    assert {p.id for p in service.partners()} >= {BUS_FIRM, generated.id}


def test_approvals_keep_their_history(service: ConsentService) -> None:
    withdrawn = service.withdraw_purpose(BUS_FIRM, PLANNING, withdrawn_by="mitoyo-city/kikaku-2")
    assert withdrawn.revoked_by == "mitoyo-city/kikaku-2"
    assert withdrawn.revoked_at is not None and withdrawn.revoked_at <= datetime.now(UTC)
    again = service.approve_purpose(BUS_FIRM, PLANNING, approved_by="mitoyo-city/kikaku-3")
    assert service.approve_purpose(BUS_FIRM, PLANNING, approved_by="x").id == again.id
    standing = [(a.purpose, a.approved_by) for a in service.approvals(BUS_FIRM)]
    assert sorted(standing) == [
        ("transport.operation", "mitoyo-city/kikaku-1"),
        ("transport.planning", "mitoyo-city/kikaku-3"),
    ]
    everything = service.approvals(BUS_FIRM, include_withdrawn=True)
    assert [a.purpose for a in everything].count(PLANNING) == 2
    with pytest.raises(PurposeNotApprovedError):
        service.withdraw_purpose(BUS_FIRM, HEALTH, withdrawn_by="mitoyo-city/kikaku-2")


def test_a_partner_sees_the_consents_given_to_it(service: ConsentService) -> None:
    consent = _grant(service)
    revoked = service.revoke(ALICE, consent)
    assert [c.id for c in service.for_partner(BUS_FIRM)] == [revoked.id]
    assert [c.id for c in service.for_partner(BUS_FIRM, current_only=False)] == [
        consent,
        revoked.id,
    ]


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8000/hooks",  # the platform's own API
        "http://localhost/hooks",
        "http://[::1]/hooks",
        "http://10.0.0.5/hooks",
        "https://192.168.1.10/hooks",
        "http://172.16.0.1/hooks",
        "http://169.254.169.254/latest/meta-data/",  # cloud instance metadata
        "http://0.0.0.0/hooks",
        "http://[fd00::1]/hooks",
    ],
)
def test_a_webhook_on_the_platforms_own_network_is_refused_saying_why(
    engine: Engine, keys: KeyRing, sqlite_bus: SqliteLog, url: str
) -> None:
    strict = ConsentService(engine, keys, sqlite_bus, catalogue=CATALOGUE)
    with pytest.raises(InvalidPartnerError, match="TSUNAGU_WEBHOOK_ALLOW_PRIVATE") as refused:
        strict.register_partner("悪い会社", "Bad firm", webhook_url=url)
    assert "non-public address" in str(refused.value)
    assert not [p for p in strict.partners() if p.webhook_url == url]


def test_a_public_webhook_is_accepted_and_a_private_one_when_the_operator_allows(
    engine: Engine, keys: KeyRing, sqlite_bus: SqliteLog
) -> None:
    strict = ConsentService(engine, keys, sqlite_bus, catalogue=CATALOGUE)
    public = strict.register_partner("公開", "Public", webhook_url="https://93.184.215.14/hooks")
    assert public.webhook_url == "https://93.184.215.14/hooks"
    lenient = ConsentService(
        engine, keys, sqlite_bus, catalogue=CATALOGUE, allow_private_webhooks=True
    )
    local = lenient.register_partner("社内", "Local", webhook_url="http://127.0.0.1:9/hooks")
    assert local.webhook_url == "http://127.0.0.1:9/hooks"
