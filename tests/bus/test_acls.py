"""Kafka as a deployment runs it: SASL authentication and ACLs, so a connector's credentials
write its own domain's topic and nothing else."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from urllib.parse import quote

import pytest

from broker.bus import open_bus
from broker.bus.kafka import KafkaBus, kafka_url
from contract.bus import BusError, OutRecord, TopicSpec
from ops.kafka.broker import ADMIN_USER, KafkaBroker
from tests.bus.test_contract import drain
from tests.fixtures.kafka import unique_topic

USERS = {ADMIN_USER: secrets.token_urlsafe(16), "mitoyo-bus": secrets.token_urlsafe(16) + "@:/"}


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
    platform.create_topics([TopicSpec(transport, 1), TopicSpec(currency, 1)])
    secured.grant_producer("mitoyo-bus", [transport])

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
