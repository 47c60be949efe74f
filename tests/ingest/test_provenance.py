"""A bus record's connector token binds its event to the sources that token names."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import jwt
import pytest
from sqlalchemy import create_engine, text

from broker.auth.issuer import EmbeddedIssuer
from broker.auth.principals import Role
from broker.auth.verifier import StaticKeys, TokenVerifier
from broker.bus import OutRecord, Record, open_bus
from broker.cloudevents import from_dict
from broker.ingest.deadletter import (
    H_CONNECTOR_TOKEN,
    H_EVENT_ID,
    H_REASON,
    DeadLetterReason,
    Rejection,
    dead_letter,
)
from broker.ingest.provenance import SourceAuthenticator
from tests.auth.oidc import new_key
from tests.events import connector_headers, encode, make_event
from tests.fixtures.platform import RunningPlatform

OURS = "urn:tsunagu:connector:test"


@pytest.fixture
def issuer(tmp_path: Path) -> EmbeddedIssuer:
    return EmbeddedIssuer.in_data_dir(tmp_path, audience="tsunagu")


@pytest.fixture
def authenticator(issuer: EmbeddedIssuer) -> SourceAuthenticator:
    verifier = TokenVerifier(StaticKeys(issuer.jwks()), issuer=issuer.issuer, audience="tsunagu")
    return SourceAuthenticator(verifier)


def _headers(token: str) -> list[tuple[str, bytes]]:
    return [(H_CONNECTOR_TOKEN, token.encode())]


def _ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


NOW = datetime.now(UTC)
EVENT = from_dict(make_event(source=OURS))


def test_a_record_from_its_own_source_is_accepted(
    issuer: EmbeddedIssuer, authenticator: SourceAuthenticator
) -> None:
    token = issuer.issue("odt", Role.CONNECTOR, sources=[OURS])
    assert authenticator.check(_headers(token), EVENT, _ms(datetime.now(UTC))) is None


def test_a_record_without_a_token_is_unauthenticated(authenticator: SourceAuthenticator) -> None:
    refused = authenticator.check([], EVENT, _ms(datetime.now(UTC)))
    assert isinstance(refused, Rejection)
    assert refused.reason is DeadLetterReason.UNAUTHENTICATED
    assert "no connector token" in refused.detail


def test_a_record_claiming_another_firms_source_is_refused(
    issuer: EmbeddedIssuer, authenticator: SourceAuthenticator
) -> None:
    token = issuer.issue("other", Role.CONNECTOR, sources=["urn:tsunagu:connector:other"])
    refused = authenticator.check(_headers(token), EVENT, _ms(datetime.now(UTC)))
    assert isinstance(refused, Rejection)
    assert refused.reason is DeadLetterReason.SOURCE_NOT_ALLOWED
    assert refused.path == "/source"
    # The impersonator is named, not only the source it claimed.
    assert (refused.sender, refused.source) == ("other", OURS)


@pytest.mark.parametrize("token", ["garbage", "a.b.c"])
def test_a_malformed_token_is_unauthenticated(
    authenticator: SourceAuthenticator, token: str
) -> None:
    refused = authenticator.check(_headers(token), EVENT, _ms(datetime.now(UTC)))
    assert isinstance(refused, Rejection)
    assert refused.reason is DeadLetterReason.UNAUTHENTICATED


def test_a_partner_token_cannot_publish(
    issuer: EmbeddedIssuer, authenticator: SourceAuthenticator
) -> None:
    refused = authenticator.check(
        _headers(issuer.issue("ptn-x", Role.PARTNER)), EVENT, _ms(datetime.now(UTC))
    )
    assert isinstance(refused, Rejection)
    assert "partner token" in refused.detail


def test_another_installations_token_is_unauthenticated(
    tmp_path: Path, authenticator: SourceAuthenticator
) -> None:
    theirs = EmbeddedIssuer.in_data_dir(tmp_path / "theirs", audience="tsunagu")
    token = theirs.issue("odt", Role.CONNECTOR, sources=[OURS])
    refused = authenticator.check(_headers(token), EVENT, _ms(datetime.now(UTC)))
    assert isinstance(refused, Rejection)
    assert refused.reason is DeadLetterReason.UNAUTHENTICATED


def test_a_token_is_judged_at_the_time_the_record_was_published(
    issuer: EmbeddedIssuer, authenticator: SourceAuthenticator
) -> None:
    issued = NOW - timedelta(hours=3)
    token = issuer.issue("odt", Role.CONNECTOR, sources=[OURS], ttl_s=3600, now=issued)
    # Published while valid, consumed after expiry (a backlog): accepted.
    assert authenticator.check(_headers(token), EVENT, _ms(issued + timedelta(minutes=30))) is None
    # Published after expiry: refused, also now that the token is cached.
    late = authenticator.check(_headers(token), EVENT, _ms(issued + timedelta(hours=2)))
    assert isinstance(late, Rejection)
    assert "expired" in late.detail


def test_a_dead_letter_never_keeps_the_token(issuer: EmbeddedIssuer) -> None:
    token = issuer.issue("odt", Role.CONNECTOR, sources=[OURS])
    record = Record("transport", 0, 7, b"k", b"{}", [*_headers(token), ("x-trace", b"1")])
    letter = dead_letter(record, Rejection(DeadLetterReason.NOT_JSON, "bad"))
    names = [name for name, _ in letter.headers]
    assert H_CONNECTOR_TOKEN not in names
    assert "x-trace" in names


def _dead_letter_reasons(platform: RunningPlatform, ids: set[str]) -> dict[str, str]:
    bus = open_bus(f"sqlite:///{platform.data_dir / 'bus.db'}")
    consumer = bus.consumer(f"reader-{uuid.uuid4().hex}", ["transport.dlq"])
    found: dict[str, str] = {}
    deadline = time.monotonic() + 15
    try:
        while time.monotonic() < deadline and set(found) != ids:
            for record in consumer.poll(500, 0.2):
                headers = dict(record.headers)
                event_id = headers.get(H_EVENT_ID, b"").decode()
                if event_id in ids:
                    found[event_id] = headers[H_REASON].decode()
                    assert H_CONNECTOR_TOKEN not in headers
    finally:
        consumer.close()
        bus.close()
    return found


def test_the_platform_dead_letters_bus_records_that_are_not_their_connectors(
    platform: RunningPlatform,
) -> None:
    anonymous, impostor, genuine = make_event(), make_event(), make_event()
    other = connector_headers(platform.data_dir, "urn:tsunagu:connector:another-firm")
    bus = open_bus(f"sqlite:///{platform.data_dir / 'bus.db'}")
    bus.publish("transport", [OutRecord(b"k", encode(anonymous))])
    bus.publish("transport", [OutRecord(b"k", encode(impostor), other)])
    bus.publish(
        "transport", [OutRecord(b"k", encode(genuine), connector_headers(platform.data_dir))]
    )
    bus.close()
    reasons = _dead_letter_reasons(platform, {anonymous["id"], impostor["id"]})
    assert reasons == {
        anonymous["id"]: "unauthenticated",
        impostor["id"]: "source_not_allowed",
    }
    engine = create_engine(f"sqlite:///{platform.data_dir / 'store.db'}")
    deadline = time.monotonic() + 15
    projected: set[str] = set()
    while time.monotonic() < deadline and genuine["id"] not in projected:
        with engine.connect() as conn:
            projected = set(conn.execute(text("SELECT event_id FROM transport_trips")).scalars())
        time.sleep(0.1)
    engine.dispose()
    assert genuine["id"] in projected
    assert not {anonymous["id"], impostor["id"]} & projected


def test_an_rs256_token_naming_the_platforms_ec_key_is_unauthenticated_on_the_bus(
    issuer: EmbeddedIssuer, authenticator: SourceAuthenticator
) -> None:
    now = int(time.time())
    claims = {"iss": issuer.issuer, "aud": "tsunagu", "sub": "odt", "role": "connector"}
    forged = jwt.encode(
        {**claims, "sources": [OURS], "iat": now, "exp": now + 60},
        new_key("RS256").private,
        algorithm="RS256",
        headers={"kid": issuer.kid},
    )
    refused = authenticator.check(_headers(forged), EVENT, _ms(datetime.now(UTC)))
    assert isinstance(refused, Rejection)
    assert refused.reason is DeadLetterReason.UNAUTHENTICATED
    assert "ES256" in refused.detail
