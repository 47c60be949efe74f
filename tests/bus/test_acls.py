"""Kafka as a deployment runs it: SASL authentication and ACLs, so a connector's credentials
write its own domain's topic and nothing else; the ACLs come from the topics file's
``producers``, applied by ``tsunagu topics apply``."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from urllib.parse import quote

import pytest

from broker.bus import open_bus
from broker.bus.grants import ProducerGrant
from broker.bus.kafka import KafkaBus, kafka_url
from broker.bus.topics import apply_topics
from contract.bus import BusError, OutRecord, TopicSpec
from ops.kafka.broker import ADMIN_USER, KafkaBroker
from tests.bus.test_contract import drain
from tests.fixtures.kafka import unique_topic

USERS = {
    ADMIN_USER: secrets.token_urlsafe(16),
    "mitoyo-bus": secrets.token_urlsafe(16) + "@:/",
    "health-bus": secrets.token_urlsafe(16),
    "house-bus": secrets.token_urlsafe(16),
}


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaBroker]:
    """A broker with SASL/PLAIN, StandardAuthorizer and deny-by-default."""
    with KafkaBroker(workdir=tmp_path_factory.mktemp("sasl"), users=USERS) as broker:
        yield broker


def _url(broker: KafkaBroker, user: str, password: str) -> str:
    return (
        f"kafka://{quote(user, safe='')}:{quote(password, safe='')}@{broker.bootstrap}"
        "?security_protocol=SASL_PLAINTEXT&sasl_mechanism=PLAIN"
    )


def test_a_connector_writes_its_own_domain_and_is_refused_on_another(
    secured: KafkaBroker,
) -> None:
    prefix = unique_topic("acl") + "."
    transport, currency = prefix + "transport", prefix + "currency"
    platform = open_bus(_url(secured, ADMIN_USER, USERS[ADMIN_USER]))
    assert isinstance(platform, KafkaBus)
    specs = [TopicSpec(transport, 1), TopicSpec(currency, 1)]
    report = apply_topics(platform, specs, producers=[ProducerGrant("mitoyo-bus", (transport,))])
    assert report.in_sync, report.lines()
    assert [g.action for g in report.grants] == ["grant"]

    connector = open_bus(_url(secured, "mitoyo-bus", USERS["mitoyo-bus"]))
    try:
        connector.publish(transport, [OutRecord(b"veh-1", b"a trip")])
        with pytest.raises(BusError, match="not authorized"):
            connector.publish(currency, [OutRecord(b"res-1", b"a forged payment")])
        with pytest.raises(BusError):  # it may write, not read, even its own topic
            drain(connector.consumer(unique_topic("g"), [transport]), 1, timeout_s=5)
    finally:
        connector.close()

    try:
        assert platform.end_offsets(transport) == {0: 1}
        assert platform.end_offsets(currency) == {0: 0}  # nothing of the forgery landed
    finally:
        platform.close()


def test_a_wrong_password_is_refused(secured: KafkaBroker) -> None:
    servers, security = kafka_url(_url(secured, "mitoyo-bus", "guessed"))
    intruder = KafkaBus(servers, security=security, publish_timeout_s=3.0, request_timeout_ms=3000)
    try:
        with pytest.raises(BusError):
            intruder.publish(unique_topic("x"), [OutRecord(b"k", b"v")])
    finally:
        intruder.close()


def test_without_credentials_the_secured_broker_answers_nothing(secured: KafkaBroker) -> None:
    anonymous = KafkaBus([secured.bootstrap], publish_timeout_s=3.0, request_timeout_ms=3000)
    try:
        with pytest.raises(BusError):
            anonymous.publish(unique_topic("x"), [OutRecord(b"k", b"v")])
    finally:
        anonymous.close()


def test_apply_takes_away_a_producers_grant_the_file_does_not_give(secured: KafkaBroker) -> None:
    prefix = unique_topic("acl") + "."
    health, currency = prefix + "health", prefix + "currency"
    specs = [TopicSpec(health, 1), TopicSpec(currency, 1)]
    platform = open_bus(_url(secured, ADMIN_USER, USERS[ADMIN_USER]))
    assert isinstance(platform, KafkaBus)
    try:
        # An earlier file let the health connector write currency too.
        apply_topics(platform, specs, producers=[ProducerGrant("health-bus", (health, currency))])
        report = apply_topics(platform, specs, producers=[ProducerGrant("health-bus", (health,))])
        (revoked,) = [g for g in report.grants if g.action == "revoke"]
        assert currency in revoked.detail and health not in revoked.detail
        again = apply_topics(platform, specs, producers=[ProducerGrant("health-bus", (health,))])
        assert [g.action for g in again.grants] == ["ok"]
    finally:
        platform.close()

    connector = open_bus(_url(secured, "health-bus", USERS["health-bus"]))
    try:
        connector.publish(health, [OutRecord(b"res-1", b"a walk")])
        with pytest.raises(BusError, match="not authorized"):
            connector.publish(currency, [OutRecord(b"res-1", b"a payment")])
    finally:
        connector.close()


def test_a_dry_run_names_the_grants_and_changes_nothing(secured: KafkaBroker) -> None:
    topic = unique_topic("acl")
    platform = open_bus(_url(secured, ADMIN_USER, USERS[ADMIN_USER]))
    assert isinstance(platform, KafkaBus)
    try:
        grants = [ProducerGrant("house-bus", (topic,))]
        apply_topics(platform, [TopicSpec(topic, 1)])
        dry = apply_topics(platform, [TopicSpec(topic, 1)], producers=grants, dry_run=True)
        assert not dry.in_sync
        assert any(line.startswith("would grant") and topic in line for line in dry.lines())
        still = apply_topics(platform, [TopicSpec(topic, 1)], producers=grants, dry_run=True)
        assert [g.action for g in still.grants] == ["grant"]  # the dry run granted nothing
    finally:
        platform.close()


def test_on_a_broker_without_acls_apply_says_so_instead_of_pretending(
    kafka_bus: KafkaBus,
) -> None:
    topic = unique_topic("open")
    report = apply_topics(
        kafka_bus, [TopicSpec(topic, 1)], producers=[ProducerGrant("mitoyo-bus", (topic,))]
    )
    assert report.grants == []
    assert any("enforce no ACLs" in note for note in report.notes)
