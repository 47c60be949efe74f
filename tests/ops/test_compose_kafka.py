"""The compose file's Kafka is secured as ops/README.md says: every client signs in (SASL), the
brokers deny what no ACL allows, the platform is the super user and each connector a user of
its own that `tsunagu topics apply` grants its domain's topic and nothing else.

Docker does not run here, so the last test takes the brokers' settings from the compose file,
turns them into ``server.properties`` as the apache/kafka image does with ``KAFKA_*``
variables, and starts a real Kafka 4 with them: the grants the topics service applies hold
there, and the connectors' users are refused everything else."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from broker.bus import open_bus
from broker.bus.grants import parse_producers
from broker.bus.kafka import KafkaBus, kafka_url
from broker.bus.topics import read_topics_file
from broker.cli import app
from contract.bus import BusError, OutRecord
from ops.kafka.broker import ADMIN_USER, KafkaBroker, free_port
from tests.fixtures.kafka import unique_topic
from tests.ops.compose import REPO, Service, Shape, full, small

TOPICS_FILE = REPO / "ops" / "kafka" / "topics.yaml"
_JAAS_USER = re.compile(r'user_(?P<user>[\w-]+)="(?P<password>[^"]*)"')


@pytest.fixture(params=["small", "full"])
def stack(request: pytest.FixtureRequest) -> Shape:
    """Each shape the README tells operators to start."""
    return small() if request.param == "small" else full()


def _brokers(stack: Shape) -> dict[str, Service]:
    return {
        n: s
        for n, s in stack.services.items()
        if s.spec.get("image", "").startswith("apache/kafka")
    }


def _kafka_users(broker: Service) -> dict[str, str]:
    """The users (and passwords) the broker's SASL/PLAIN listener knows."""
    jaas = broker.environment["KAFKA_LISTENER_NAME_SASL_PLAIN_SASL_JAAS_CONFIG"]
    return {m["user"]: m["password"] for m in _JAAS_USER.finditer(jaas)}


def _server_properties(broker: Service) -> dict[str, str]:
    """The broker's ``KAFKA_*`` variables as the image turns them into properties."""
    props = {}
    for name, value in broker.environment.items():
        if name.startswith("KAFKA_"):
            # The image reads `_` as `.` and escapes `_` and `-` as `__` and `___`: the file
            # avoids both, so the plain reading is the only one.
            assert "__" not in name, f"{name}: needs the image's escaping; rename the listener"
            props[name.removeprefix("KAFKA_").lower().replace("_", ".")] = value
    return props


def _bus_user(service: Service) -> str:
    _, security = kafka_url(service.environment["TSUNAGU_BUS"])
    return security.get("sasl_plain_username", "")


def test_the_brokers_authenticate_everyone_and_deny_what_no_acl_allows(stack: Shape) -> None:
    for name, broker in _brokers(stack).items():
        props = _server_properties(broker)
        protocols = dict(p.split(":") for p in props["listener.security.protocol.map"].split(","))
        assert set(protocols.values()) == {"SASL_PLAINTEXT"}, name  # no listener without SASL
        assert props["authorizer.class.name"].endswith("StandardAuthorizer"), name
        assert props["allow.everyone.if.no.acl.found"] == "false", name
        assert props["super.users"] == f"User:{ADMIN_USER}", name
        healthcheck = broker.spec["healthcheck"]["test"][1]
        assert "--command-config" in healthcheck and f'username="{ADMIN_USER}"' in healthcheck


def test_every_client_signs_in_with_the_password_the_brokers_know(stack: Shape) -> None:
    known = _kafka_users(next(iter(_brokers(stack).values())))
    for service in stack.services.values():
        bus = service.environment.get("TSUNAGU_BUS")
        if bus is None:
            continue
        _, security = kafka_url(bus)
        user = security.get("sasl_plain_username")
        assert user in known, f"{service.name} signs in as {user!r}, a user the brokers lack"
        assert security["sasl_plain_password"] == known[user], service.name
        assert security["security_protocol"] == "SASL_PLAINTEXT", service.name


def test_only_platform_processes_are_the_super_user_and_each_connector_is_its_own(
    stack: Shape,
) -> None:
    grants = {
        g.user: g.topics
        for g in parse_producers(read_topics_file(TOPICS_FILE), source=str(TOPICS_FILE))
    }
    seen = set()
    for service in stack.services.values():
        if "TSUNAGU_BUS" not in service.environment:
            continue
        user = _bus_user(service)
        if service.command[1:3] == ["connector", "run"]:
            connector = service.command[3]
            assert user == connector, f"{service.name} publishes as {user!r}"
            # Exactly its domain's topic: no other topic, no reads, no groups.
            assert grants[user] == (connector,), f"{user} may write {grants[user]}"
            seen.add(user)
        else:
            assert user == ADMIN_USER, f"{service.name} is a platform process as {user!r}"
    assert seen == set(grants), "a producer of topics.yaml has no connector here, or the reverse"


def test_the_compose_brokers_settings_enforce_the_topics_files_grants_on_real_kafka(
    tmp_path: Path,
) -> None:
    stack = small()
    (kafka,) = _brokers(stack).values()
    port, controller_port = free_port(), free_port()
    props = _server_properties(kafka)
    assert props["listeners"] == "SASL://:9092,CONTROLLER://:9093"
    props |= {
        "listeners": f"SASL://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}",
        "advertised.listeners": f"SASL://127.0.0.1:{port}",
    }
    for own in ("node.id", "controller.quorum.voters", "log.dirs"):  # the fixture's own
        props.pop(own)
    users = _kafka_users(kafka)
    prefix = unique_topic("compose") + "."

    def url(service: Service) -> str:
        servers, _ = kafka_url(service.environment["TSUNAGU_BUS"])
        return service.environment["TSUNAGU_BUS"].replace(",".join(servers), f"127.0.0.1:{port}")

    with KafkaBroker(
        workdir=tmp_path, port=port, controller_port=controller_port, users=users, config=props
    ):
        topics = stack.services["topics"]
        applied = CliRunner().invoke(
            app,
            ["topics", "apply", "--file", str(TOPICS_FILE), "--replication-factor", "1"],
            env={"TSUNAGU_BUS": url(topics), "TSUNAGU_TOPIC_PREFIX": prefix},
        )
        assert applied.exit_code == 0, applied.output
        assert applied.output.count("granted") == 4, applied.output

        transport = open_bus(url(stack.services["connector-transport"]))
        try:
            transport.publish(prefix + "transport", [OutRecord(b"veh-1", b"a trip")])
            for other in ("health", "consent.changes", "transport.dlq"):
                with pytest.raises(BusError, match="not authorized"):
                    transport.publish(prefix + other, [OutRecord(b"k", b"forged")])
        finally:
            transport.close()

        servers, security = kafka_url(url(topics).replace(users[ADMIN_USER], "guessed"))
        intruder = KafkaBus(
            servers, security=security, publish_timeout_s=3.0, request_timeout_ms=3000
        )
        try:
            with pytest.raises(BusError):
                intruder.publish(prefix + "transport", [OutRecord(b"k", b"v")])
        finally:
            intruder.close()

        platform = open_bus(url(stack.services["worker"]))
        try:
            # The trip landed; nothing of the forgeries did.
            assert sum(platform.end_offsets(prefix + "transport").values()) == 1
            assert sum(platform.end_offsets(prefix + "health").values()) == 0
        finally:
            platform.close()
