"""A bus record's connector token binds its event to the sources that token names."""

from __future__ import annotations

import secrets
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import jwt
import pytest
from sqlalchemy import create_engine, text

from broker.auth.issuer import EmbeddedIssuer
from broker.auth.origin import connector_key
from broker.auth.principals import Role
from broker.auth.verifier import StaticKeys, TokenVerifier
from broker.bus import open_bus
from broker.ingest.provenance import SourceAuthenticator
from contract.bus import OutRecord, Record
from contract.cloudevents import CloudEvent, from_dict
from contract.deadletter import H_EVENT_ID, H_REASON, DeadLetterReason, Rejection, dead_letter
from contract.origin import H_CONNECTOR_TOKEN, OriginSigner
from tests.auth.oidc import new_key
from tests.events import connector_signer, encode, make_event
from tests.fixtures.platform import RunningPlatform

OURS = "urn:tsunagu:connector:test"


@pytest.fixture
def issuer(tmp_path: Path) -> EmbeddedIssuer:
    return EmbeddedIssuer.in_data_dir(tmp_path, audience="tsunagu")


@pytest.fixture
def authenticator(issuer: EmbeddedIssuer) -> SourceAuthenticator:
    verifier = TokenVerifier(StaticKeys(issuer.jwks()), issuer=issuer.issuer, audience="tsunagu")
    return SourceAuthenticator(verifier, MASTER)


#: The platform's connector master key in these tests.
MASTER = secrets.token_bytes(32)


def _headers(token: str) -> list[tuple[str, bytes]]:
    return [(H_CONNECTOR_TOKEN, token.encode())]


def _record(
    token: str,
    event: CloudEvent,
    stamp_ms: int,
    *,
    key: bytes | None = None,
    appended: bool = False,
) -> Record:
    """``event`` on the bus as its connector publishes it: token and MAC (by default under
    the key of the token's own subject); ``stamp_ms`` the producer's time unless ``appended``
    (the bus's own)."""
    value = event.to_json()
    if key is None:
        try:
            subject = jwt.decode(token, options={"verify_signature": False})["sub"]
        except jwt.PyJWTError:
            subject = "not-a-token"
        key = connector_key(MASTER, subject)
    headers = OriginSigner(token, key).headers(b"k", value)
    return Record("transport", 0, 0, b"k", value, headers, stamp_ms, appended)


def _ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


NOW = datetime.now(UTC)
EVENT = from_dict(make_event(source=OURS))


def test_a_record_from_its_own_source_is_accepted(
    issuer: EmbeddedIssuer, authenticator: SourceAuthenticator
) -> None:
    token = issuer.issue("odt", Role.CONNECTOR, sources=[OURS], event_types=["transport.*"])
    assert authenticator.check(_record(token, EVENT, _ms(datetime.now(UTC))), EVENT) is None


def test_a_record_without_a_token_is_unauthenticated(authenticator: SourceAuthenticator) -> None:
    refused = authenticator.check(Record("transport", 0, 0, b"k", EVENT.to_json()), EVENT)
    assert isinstance(refused, Rejection)
    assert refused.reason is DeadLetterReason.UNAUTHENTICATED
    assert "no connector token" in refused.detail


def test_a_record_claiming_another_firms_source_is_refused(
    issuer: EmbeddedIssuer, authenticator: SourceAuthenticator
) -> None:
    token = issuer.issue(
        "other",
        Role.CONNECTOR,
        sources=["urn:tsunagu:connector:other"],
        event_types=["transport.*"],
    )
    refused = authenticator.check(_record(token, EVENT, _ms(datetime.now(UTC))), EVENT)
    assert isinstance(refused, Rejection)
    assert refused.reason is DeadLetterReason.SOURCE_NOT_ALLOWED
    assert refused.path == "/source"
    # The impersonator is named, not only the source it claimed.
    assert (refused.sender, refused.source) == ("other", OURS)


@pytest.mark.parametrize("token", ["garbage", "a.b.c"])
def test_a_malformed_token_is_unauthenticated(
    authenticator: SourceAuthenticator, token: str
) -> None:
    refused = authenticator.check(_record(token, EVENT, _ms(datetime.now(UTC))), EVENT)
    assert isinstance(refused, Rejection)
    assert refused.reason is DeadLetterReason.UNAUTHENTICATED


def test_a_token_copied_off_the_topic_onto_other_bytes_is_refused(
    issuer: EmbeddedIssuer, authenticator: SourceAuthenticator
) -> None:
    # Whoever reads the topic has the token and a genuine record's MAC, not the key.
    token = issuer.issue("odt", Role.CONNECTOR, sources=[OURS], event_types=["transport.*"])
    genuine = _record(token, EVENT, _ms(datetime.now(UTC)))
    assert authenticator.check(genuine, EVENT) is None
    forged_event = from_dict(make_event(source=OURS))
    value = forged_event.to_json()
    copied = Record("transport", 0, 1, b"k", value, genuine.headers, genuine.timestamp_ms)
    refused = authenticator.check(copied, forged_event)
    assert isinstance(refused, Rejection)
    assert refused.reason is DeadLetterReason.UNAUTHENTICATED
    assert "MAC" in refused.detail and refused.sender == "odt"
    bare = Record("transport", 0, 2, b"k", value, _headers(token), genuine.timestamp_ms)
    assert isinstance(authenticator.check(bare, forged_event), Rejection)


def test_a_record_macd_under_another_connectors_key_is_refused(
    issuer: EmbeddedIssuer, authenticator: SourceAuthenticator
) -> None:
    token = issuer.issue("odt", Role.CONNECTOR, sources=[OURS], event_types=["transport.*"])
    theirs = connector_key(MASTER, "another-firm")
    refused = authenticator.check(_record(token, EVENT, _ms(datetime.now(UTC)), key=theirs), EVENT)
    assert isinstance(refused, Rejection)
    assert refused.reason is DeadLetterReason.UNAUTHENTICATED
    # And a key derived from another platform's master key is no better.
    elsewhere = connector_key(secrets.token_bytes(32), "odt")
    assert isinstance(
        authenticator.check(_record(token, EVENT, _ms(datetime.now(UTC)), key=elsewhere), EVENT),
        Rejection,
    )


def test_a_partner_token_cannot_publish(
    issuer: EmbeddedIssuer, authenticator: SourceAuthenticator
) -> None:
    refused = authenticator.check(
        _record(issuer.issue("ptn-x", Role.PARTNER), EVENT, _ms(datetime.now(UTC))), EVENT
    )
    assert isinstance(refused, Rejection)
    assert "partner token" in refused.detail


def test_another_installations_token_is_unauthenticated(
    tmp_path: Path, authenticator: SourceAuthenticator
) -> None:
    theirs = EmbeddedIssuer.in_data_dir(tmp_path / "theirs", audience="tsunagu")
    token = theirs.issue("odt", Role.CONNECTOR, sources=[OURS], event_types=["transport.*"])
    refused = authenticator.check(_record(token, EVENT, _ms(datetime.now(UTC))), EVENT)
    assert isinstance(refused, Rejection)
    assert refused.reason is DeadLetterReason.UNAUTHENTICATED


def test_a_producer_set_timestamp_cannot_revive_an_expired_token(
    issuer: EmbeddedIssuer, authenticator: SourceAuthenticator
) -> None:
    # Expired 400 days ago; the producer stamps the record (Kafka's CreateTime) inside the
    # token's life, or at 0.
    issued = NOW - timedelta(days=400, hours=1)
    token = issuer.issue(
        "odt", Role.CONNECTOR, sources=[OURS], event_types=["transport.*"], ttl_s=3600, now=issued
    )
    for stamp in (_ms(issued + timedelta(minutes=30)), 0):
        refused = authenticator.check(_record(token, EVENT, stamp), EVENT)
        assert isinstance(refused, Rejection), stamp
        assert refused.reason is DeadLetterReason.UNAUTHENTICATED
        assert "expired" in refused.detail


def test_a_zero_timestamp_does_not_skip_expiry_for_a_token_seen_before(
    issuer: EmbeddedIssuer,
) -> None:
    now = [time.time()]
    verifier = TokenVerifier(StaticKeys(issuer.jwks()), issuer=issuer.issuer, audience="tsunagu")
    authenticator = SourceAuthenticator(verifier, MASTER, clock=lambda: now[0])
    token = issuer.issue("odt", Role.CONNECTOR, sources=[OURS], event_types=["transport.*"])
    assert authenticator.check(_record(token, EVENT, _ms(datetime.now(UTC))), EVENT) is None
    now[0] += 2 * 3600  # the worker reads on, two hours later: the token has expired
    refused = authenticator.check(_record(token, EVENT, 0), EVENT)
    assert isinstance(refused, Rejection)
    assert "expired" in refused.detail


def test_where_the_bus_stamps_append_time_a_backlog_keeps_its_token(
    issuer: EmbeddedIssuer,
) -> None:
    # The embedded log stamps each record when appending it: that time, not the producer's,
    # says whether the token was valid when the record was published.
    verifier = TokenVerifier(StaticKeys(issuer.jwks()), issuer=issuer.issuer, audience="tsunagu")
    authenticator = SourceAuthenticator(verifier, MASTER)
    issued = NOW - timedelta(hours=3)
    token = issuer.issue(
        "odt", Role.CONNECTOR, sources=[OURS], event_types=["transport.*"], ttl_s=3600, now=issued
    )
    assert (
        authenticator.check(
            _record(token, EVENT, _ms(issued + timedelta(minutes=30)), appended=True), EVENT
        )
        is None
    )
    late = authenticator.check(
        _record(token, EVENT, _ms(issued + timedelta(hours=2)), appended=True), EVENT
    )
    assert isinstance(late, Rejection)
    assert "expired" in late.detail


def test_a_connector_cannot_publish_a_domain_it_is_not_registered_for(
    issuer: EmbeddedIssuer, authenticator: SourceAuthenticator
) -> None:
    # The currency connector, with its own source, rewriting a vacant-house listing.
    currency = "urn:tsunagu:connector:mitoyo-pay"
    token = issuer.issue("pay", Role.CONNECTOR, sources=[currency], event_types=["currency.*"])
    listing = from_dict(make_event("vacant_house.listing.updated", source=currency))
    refused = authenticator.check(_record(token, listing, _ms(datetime.now(UTC))), listing)
    assert isinstance(refused, Rejection)
    assert refused.reason is DeadLetterReason.NOT_AUTHORIZED
    assert (refused.path, refused.sender) == ("/type", "pay")
    assert "currency.*" in refused.detail and "vacant_house.listing.updated" in refused.detail
    # Its own domain's events pass, and so does one exact type it is registered for.
    payment = from_dict(make_event("currency.payment.settled", source=currency))
    assert authenticator.check(_record(token, payment, _ms(datetime.now(UTC))), payment) is None
    exact = issuer.issue(
        "pay", Role.CONNECTOR, sources=[currency], event_types=["currency.payment.settled"]
    )
    assert authenticator.check(_record(exact, payment, _ms(datetime.now(UTC))), payment) is None
    topup = from_dict(make_event("currency.wallet.topped_up", source=currency))
    refused = authenticator.check(_record(exact, topup, _ms(datetime.now(UTC))), topup)
    assert isinstance(refused, Rejection)
    assert refused.reason is DeadLetterReason.NOT_AUTHORIZED


def test_a_connector_token_without_event_types_may_publish_nothing(
    issuer: EmbeddedIssuer, authenticator: SourceAuthenticator
) -> None:
    # A token of another provider (or of before registration) that names no event types.
    now = int(time.time())
    claims = {"iss": issuer.issuer, "aud": "tsunagu", "sub": "odt", "role": "connector"}
    bare = jwt.encode(
        {**claims, "sources": [OURS], "iat": now, "exp": now + 60},
        issuer._key,
        algorithm="ES256",
        headers={"kid": issuer.kid},
    )
    refused = authenticator.check(_record(bare, EVENT, _ms(datetime.now(UTC))), EVENT)
    assert isinstance(refused, Rejection)
    assert refused.reason is DeadLetterReason.NOT_AUTHORIZED
    assert "no event type" in refused.detail


def test_a_dead_letter_never_keeps_the_token(issuer: EmbeddedIssuer) -> None:
    token = issuer.issue("odt", Role.CONNECTOR, sources=[OURS], event_types=["transport.*"])
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
    other = connector_signer(platform.data_dir, "urn:tsunagu:connector:another-firm")
    bus = open_bus(f"sqlite:///{platform.data_dir / 'bus.db'}")
    bus.publish("transport", [OutRecord(b"k", encode(anonymous))])
    bus.publish("transport", [other.sign(OutRecord(b"k", encode(impostor)))])
    bus.publish(
        "transport", [connector_signer(platform.data_dir).sign(OutRecord(b"k", encode(genuine)))]
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
    refused = authenticator.check(_record(forged, EVENT, _ms(datetime.now(UTC))), EVENT)
    assert isinstance(refused, Rejection)
    assert refused.reason is DeadLetterReason.UNAUTHENTICATED
    assert "ES256" in refused.detail
