"""On Kafka, a connector's token is judged at the broker's append time: the platform's domain
topics use LogAppendTime, so a backlog read hours later keeps the tokens that were valid when
it was published, and a producer cannot backdate a record to bring an expired token back."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest
from kafka import KafkaProducer

from broker.auth.issuer import EmbeddedIssuer
from broker.auth.origin import connector_key
from broker.auth.principals import Role
from broker.auth.verifier import StaticKeys, TokenVerifier
from broker.bus.kafka import KafkaBus
from broker.ingest.provenance import SourceAuthenticator
from broker.runtime import APPEND_TIME, topic_specs
from broker.settings import Settings
from contract.bus import Record, TopicSpec
from contract.cloudevents import CloudEvent, from_dict
from contract.deadletter import Rejection
from contract.origin import OriginSigner
from tests.events import make_event
from tests.fixtures.kafka import KafkaBroker, unique_topic

MASTER = b"m" * 32
SOURCE = "urn:tsunagu:connector:odt"
TTL_S = 60


@pytest.fixture
def issuer(tmp_path_factory: pytest.TempPathFactory) -> EmbeddedIssuer:
    """An embedded issuer of connector tokens."""
    return EmbeddedIssuer.in_data_dir(tmp_path_factory.mktemp("issuer"), audience="tsunagu")


def _publish(broker: KafkaBroker, topic: str, token: str, event: CloudEvent, at_ms: int) -> None:
    """As a producer that sets the record's timestamp itself (CreateTime) to ``at_ms``."""
    value = event.to_json()
    headers = OriginSigner(token, connector_key(MASTER, "odt")).headers(b"k", value)
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap)
    try:
        producer.send(topic, value=value, key=b"k", headers=list(headers), timestamp_ms=at_ms)
        producer.flush()
    finally:
        producer.close()


def _read(bus: KafkaBus, topic: str) -> Record:
    consumer = bus.consumer(unique_topic("g"), [topic])
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            records = consumer.poll(max_records=1, timeout_s=1)
            if records:
                return records[0]
        raise AssertionError(f"nothing on {topic}")
    finally:
        consumer.close()


def _authenticator(issuer: EmbeddedIssuer, hours_later: float) -> SourceAuthenticator:
    verifier = TokenVerifier(StaticKeys(issuer.jwks()), issuer=issuer.issuer, audience="tsunagu")
    return SourceAuthenticator(verifier, MASTER, clock=lambda: time.time() + hours_later * 3600)


def test_the_platforms_domain_topics_carry_the_brokers_append_time() -> None:
    specs = {s.name: s for s in topic_specs(Settings())}
    assert specs["transport"].kafka_configs()["message.timestamp.type"] == "LogAppendTime"
    assert "message.timestamp.type" not in specs["consent.changes"].kafka_configs()


def test_a_backlog_read_hours_later_keeps_the_token_valid_when_it_was_published(
    kafka_broker: KafkaBroker, kafka_bus: KafkaBus, issuer: EmbeddedIssuer
) -> None:
    appended, created = unique_topic("append"), unique_topic("create")
    kafka_bus.create_topics([TopicSpec(appended, 1, configs=APPEND_TIME), TopicSpec(created, 1)])
    token = issuer.issue(
        "odt", Role.CONNECTOR, sources=[SOURCE], event_types=["transport.*"], ttl_s=TTL_S
    )
    event = from_dict(make_event(source=SOURCE))
    now_ms = int(time.time() * 1000)
    _publish(kafka_broker, appended, token, event, now_ms)
    _publish(kafka_broker, created, token, event, now_ms)

    on_append_time = _read(kafka_bus, appended)
    assert on_append_time.appended
    # Read two hours later: the broker's stamp says the token was valid when published.
    assert _authenticator(issuer, hours_later=2).check(on_append_time, event) is None

    on_create_time = _read(kafka_bus, created)
    assert not on_create_time.appended
    # Without the broker's stamp the time is the worker's: the backlog's token has expired.
    refused = _authenticator(issuer, hours_later=2).check(on_create_time, event)
    assert isinstance(refused, Rejection) and "expired" in refused.detail


def test_a_backdated_record_cannot_bring_an_expired_token_back(
    kafka_broker: KafkaBroker, kafka_bus: KafkaBus, issuer: EmbeddedIssuer
) -> None:
    topic = unique_topic("append")
    kafka_bus.create_topics([TopicSpec(topic, 1, configs=APPEND_TIME)])
    issued = datetime.now(UTC) - timedelta(hours=3)
    token = issuer.issue(
        "odt",
        Role.CONNECTOR,
        sources=[SOURCE],
        event_types=["transport.*"],
        ttl_s=TTL_S,
        now=issued,
    )
    event = from_dict(make_event(source=SOURCE))
    # The producer claims the record was made while the token was still valid.
    _publish(
        kafka_broker, topic, token, event, int((issued + timedelta(seconds=10)).timestamp() * 1000)
    )
    record = _read(kafka_bus, topic)
    assert (
        record.appended and record.timestamp_ms > (issued + timedelta(hours=2)).timestamp() * 1000
    )
    refused = _authenticator(issuer, hours_later=0).check(record, event)
    assert isinstance(refused, Rejection) and "expired" in refused.detail
