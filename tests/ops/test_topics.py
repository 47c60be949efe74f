"""`tsunagu topics apply` and ops/kafka/topics.yaml: the file matches the code's topics, and
applying it creates, reconfigures, grows and reports against Apache Kafka and the SQLite log."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kafka import KafkaAdminClient
from kafka.admin import ConfigResource, ConfigResourceType
from typer.testing import CliRunner

from broker.bus.kafka import KafkaBus
from broker.bus.sqlite_log import SqliteLog
from broker.bus.topics import (
    REPO_TOPICS_FILE,
    Action,
    Report,
    TopicsFileError,
    apply_topics,
    load_topics,
    parse_topics,
)
from broker.cli import app
from broker.runtime import topic_specs
from broker.settings import Settings
from contract.bus import TopicSpec
from tests.fixtures.kafka import unique_topic

WEEK_MS = "604800000"


def _document() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(REPO_TOPICS_FILE.read_text(encoding="utf-8"))
    return loaded


def _write(path: Path, document: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(document), encoding="utf-8")
    return path


def _actions(report: Report) -> dict[str, list[Action]]:
    out: dict[str, list[Action]] = {}
    for step in report.steps:
        out.setdefault(step.topic, []).append(step.action)
    return out


# -- the file ---------------------------------------------------------------------------------


def test_the_file_defines_exactly_the_topics_the_platform_uses() -> None:
    code = {s.name: s for s in topic_specs(Settings(topic_prefix=""))}
    ops = {s.name: s for s in load_topics(REPO_TOPICS_FILE)}
    assert sorted(ops) == sorted(code)
    for name, spec in ops.items():
        assert spec.compacted == code[name].compacted, name
        assert spec.replication_factor == 3, name
        assert "retention.ms" in spec.configs or spec.compacted, name
    # What the code creates with one partition keeps one (consent.changes' listeners rely
    # on a single total order); domain topics may have more than the code's default.
    for name, spec in code.items():
        if spec.partitions == 1:
            assert ops[name].partitions == 1, name
    assert ops["consent.changes"].compacted
    assert ops["consent.changes"].configs["cleanup.policy"] == "compact"
    assert "retention.ms" not in ops["consent.changes"].configs  # compacted: kept for ever


def test_the_prefix_and_a_replication_override_apply_to_every_topic() -> None:
    specs = load_topics(REPO_TOPICS_FILE, prefix="region-a.", replication_factor=1)
    assert all(s.name.startswith("region-a.") for s in specs)
    assert {s.replication_factor for s in specs} == {1}


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ([], "topics: expected a mapping"),
        ({"topics": {}}, "topics: none defined"),
        ({"topics": {"t": {"partitions": 0}}}, "topics.t.partitions: expected a whole number"),
        ({"topics": {"t": {"partitions": True}}}, "topics.t.partitions: expected a whole number"),
        ({"topics": {"t": {"partitions": "4"}}}, "topics.t.partitions: expected a whole number"),
        ({"topics": {"t": {}}}, "topics.t.partitions: required"),
        ({"topics": {"t": {"partitions": 1, "retention": 5}}}, "unknown key(s) retention"),
        ({"topics": {"bad name": {"partitions": 1}}}, "topics.bad name:"),
        (
            {"topics": {"t": {"partitions": 1, "configs": {"retention.ms": [1]}}}},
            "topics.t.configs.retention.ms: expected a string or a number",
        ),
        ({"replication_factor": 0, "topics": {"t": {"partitions": 1}}}, "replication_factor"),
        ({"topic": {"t": {"partitions": 1}}}, "unknown key(s) topic"),
    ],
)
def test_a_bad_file_is_refused_naming_the_place(document: object, message: str) -> None:
    with pytest.raises(TopicsFileError) as raised:
        parse_topics(document)
    assert message in str(raised.value)


def test_config_values_are_spelt_as_kafka_spells_them() -> None:
    (spec,) = parse_topics(
        {"topics": {"t": {"partitions": 2, "configs": {"retention.ms": 5, "x.enable": True}}}}
    )
    assert spec.configs == {"retention.ms": "5", "x.enable": "true"}
    assert spec.replication_factor is None and not spec.compacted


def test_a_missing_or_broken_file_is_a_topics_file_error(tmp_path: Path) -> None:
    with pytest.raises(TopicsFileError, match="No such file"):
        load_topics(tmp_path / "absent.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("topics: {t: [", encoding="utf-8")
    with pytest.raises(TopicsFileError, match="not YAML"):
        load_topics(broken)


# -- against Apache Kafka ------------------------------------------------------------------------


@pytest.fixture
def admin(kafka_bus: KafkaBus) -> Iterator[KafkaAdminClient]:
    """A separate admin client, to look at what `apply` made."""
    client = KafkaAdminClient(bootstrap_servers=kafka_bus.bootstrap_servers)
    try:
        yield client
    finally:
        client.close()


def _configs(admin: KafkaAdminClient, topic: str) -> dict[str, str]:
    got = admin.describe_configs(
        [ConfigResource(ConfigResourceType.TOPIC, topic)], config_filter="all"
    )
    return {k: v["value"] for k, v in got["topic"][topic].items()}


def _partitions(admin: KafkaAdminClient, topic: str) -> int:
    (described,) = admin.describe_topics([topic])
    return len(described["partitions"])


def test_apply_creates_every_topic_with_its_settings_then_finds_them_as_defined(
    kafka_bus: KafkaBus, admin: KafkaAdminClient
) -> None:
    prefix = unique_topic("ops") + "."
    specs = load_topics(REPO_TOPICS_FILE, prefix=prefix, replication_factor=1)

    first = apply_topics(kafka_bus, specs)
    assert first.count(Action.CREATE) == len(specs) and first.in_sync

    listed = set(admin.list_topics())
    for spec in specs:
        assert spec.name in listed
        assert _partitions(admin, spec.name) == spec.partitions
        configs = _configs(admin, spec.name)
        for key, value in spec.configs.items():
            assert configs[key] == value, (spec.name, key)
    assert _configs(admin, prefix + "consent.changes")["cleanup.policy"] == "compact"
    assert _configs(admin, prefix + "transport")["retention.ms"] == WEEK_MS

    again = apply_topics(kafka_bus, specs)
    assert again.count(Action.OK) == len(specs) and again.in_sync


def test_a_dry_run_changes_nothing_and_reports_what_it_would_do(
    kafka_bus: KafkaBus, admin: KafkaAdminClient
) -> None:
    prefix = unique_topic("dry") + "."
    specs = load_topics(REPO_TOPICS_FILE, prefix=prefix, replication_factor=1)
    report = apply_topics(kafka_bus, specs, dry_run=True)
    assert report.count(Action.CREATE) == len(specs)
    assert not report.in_sync  # what differs is reported, and nothing was made
    assert not {s.name for s in specs} & set(admin.list_topics())
    assert report.lines()[0].startswith("would create")


def test_a_changed_retention_is_set_and_compaction_survives_the_change(
    kafka_bus: KafkaBus, admin: KafkaAdminClient, tmp_path: Path
) -> None:
    prefix = unique_topic("cfg") + "."
    apply_topics(kafka_bus, load_topics(REPO_TOPICS_FILE, prefix=prefix, replication_factor=1))
    document = _document()
    document["topics"]["transport"]["configs"]["retention.ms"] = 86400000
    document["topics"]["consent.changes"]["configs"]["segment.ms"] = 3600000
    path = _write(tmp_path / "topics.yaml", document)
    changed = load_topics(path, prefix=prefix, replication_factor=1)

    dry = apply_topics(kafka_bus, changed, dry_run=True)
    assert _actions(dry)[prefix + "transport"] == [Action.SET_CONFIGS]
    assert "retention.ms 604800000 -> 86400000" in "\n".join(dry.lines())
    assert _configs(admin, prefix + "transport")["retention.ms"] == WEEK_MS  # dry: untouched

    report = apply_topics(kafka_bus, changed)
    assert report.in_sync
    assert _actions(report)[prefix + "transport"] == [Action.SET_CONFIGS]
    assert _actions(report)[prefix + "health"] == [Action.OK]
    assert _configs(admin, prefix + "transport")["retention.ms"] == "86400000"
    changes = _configs(admin, prefix + "consent.changes")
    # Every config of the topic went in the request: a broker applying it as a whole-set
    # AlterConfigs must not lose compaction when only the segment time changed.
    assert changes["segment.ms"] == "3600000" and changes["cleanup.policy"] == "compact"
    assert apply_topics(kafka_bus, changed).count(Action.OK) == len(changed)


def test_apply_grows_partitions_and_says_so(kafka_bus: KafkaBus, admin: KafkaAdminClient) -> None:
    fewer = unique_topic("fewer")
    kafka_bus.create_topics([TopicSpec(fewer, 2)])
    wanted = [TopicSpec(fewer, 4, replication_factor=1)]

    dry = apply_topics(kafka_bus, wanted, dry_run=True)
    assert _actions(dry)[fewer] == [Action.ADD_PARTITIONS]
    assert _partitions(admin, fewer) == 2  # a dry run changes nothing

    report = apply_topics(kafka_bus, wanted)
    (step,) = report.steps
    assert step.action is Action.ADD_PARTITIONS
    assert step.detail.startswith("2 -> 4")
    assert f"partitions added     {fewer}: 2 -> 4" in "\n".join(report.lines())
    assert report.in_sync
    assert _partitions(admin, fewer) == 4  # CreatePartitions really made them
    assert apply_topics(kafka_bus, wanted).count(Action.OK) == 1


def test_what_kafka_cannot_change_is_reported_not_done(
    kafka_bus: KafkaBus, admin: KafkaAdminClient
) -> None:
    more = unique_topic("more")
    kafka_bus.create_topics([TopicSpec(more, 6)])

    report = apply_topics(kafka_bus, [TopicSpec(more, 4, replication_factor=1)])
    (step,) = [s for s in report.steps if s.action is not Action.SET_CONFIGS]
    assert step.action is Action.CANNOT
    assert "partitions 6 -> 4: partitions cannot be removed" in step.detail
    assert not report.in_sync
    assert _partitions(admin, more) == 6
    assert "cannot make" in report.lines()[-1]


def test_a_replication_factor_above_the_brokers_is_refused_before_creating(
    kafka_bus: KafkaBus, admin: KafkaAdminClient
) -> None:
    name = unique_topic("rf")
    report = apply_topics(kafka_bus, [TopicSpec(name, 1, replication_factor=3)])
    (step,) = report.steps
    assert step.action is Action.CANNOT
    assert "replication factor 3 needs 3 brokers, the cluster has 1" in step.detail
    assert "--replication-factor 1" in step.detail
    assert name not in admin.list_topics()


def test_an_existing_topics_replication_factor_is_reported_as_unchangeable(
    kafka_bus: KafkaBus,
) -> None:
    name = unique_topic("rf-existing")
    kafka_bus.create_topics([TopicSpec(name, 1)])
    report = apply_topics(kafka_bus, [TopicSpec(name, 1, replication_factor=3)])
    (step,) = [s for s in report.steps if s.action is Action.CANNOT]
    assert "replication factor 1 -> 3: needs a partition reassignment" in step.detail


# -- against the SQLite log ---------------------------------------------------------------------


def test_on_the_sqlite_log_apply_creates_the_topics_and_reports_partitions(
    tmp_path: Path,
) -> None:
    specs = load_topics(REPO_TOPICS_FILE)
    with SqliteLog(tmp_path / "bus.db") as bus:
        bus.create_topics([TopicSpec("transport", 4)])  # as `make run` made it
        report = apply_topics(bus, specs)
        assert bus.end_offsets("consent.changes") == {0: 0}
        assert len(bus.end_offsets("health")) == 12
        assert len(bus.end_offsets("transport")) == 4
        assert _actions(report)["transport"] == [Action.OK]
        assert "4 partitions here; the file's 12 are for Kafka" in report.lines()[0]
        assert report.count(Action.CREATE) == len(specs) - 1
        assert "replication" not in "\n".join(report.lines())  # the log has none
        assert report.in_sync


def test_the_command_on_the_embedded_log_exits_0_when_nothing_is_wrong(tmp_path: Path) -> None:
    bus = f"sqlite:///{tmp_path / 'bus.db'}"
    with SqliteLog(tmp_path / "bus.db") as log:
        log.create_topics([TopicSpec("transport", 4)])  # as `make run` made it
    first = CliRunner().invoke(app, ["topics", "apply", "--bus", bus])
    assert first.exit_code == 0, first.output
    assert "producers not applied: the embedded log has no users or ACLs" in first.output
    again = CliRunner().invoke(app, ["topics", "apply", "--bus", bus, "--dry-run"])
    assert again.exit_code == 0, again.output
    assert "would create" not in again.output


def test_the_command_on_the_embedded_log_exits_1_when_a_topic_is_missing(tmp_path: Path) -> None:
    bus = f"sqlite:///{tmp_path / 'bus.db'}"
    dry = CliRunner().invoke(app, ["topics", "apply", "--bus", bus, "--dry-run"])
    assert dry.exit_code == 1, dry.output
    assert "would create         transport: 12 partitions" in dry.output


# -- the command --------------------------------------------------------------------------------


def test_the_command_applies_the_file_with_the_settings_prefix(
    kafka_bus: KafkaBus, monkeypatch: pytest.MonkeyPatch
) -> None:
    prefix = unique_topic("cli") + "."
    monkeypatch.setenv("TSUNAGU_TOPIC_PREFIX", prefix)
    bus = "kafka://" + kafka_bus.bootstrap_servers[0]
    args = ["topics", "apply", "--bus", bus, "--replication-factor", "1"]

    dry = CliRunner().invoke(app, [*args, "--dry-run"])
    assert dry.exit_code == 1, dry.output  # everything differs: nothing exists yet
    assert f"would create         {prefix}transport: 12 partitions" in dry.output

    made = CliRunner().invoke(app, args)
    assert made.exit_code == 0, made.output
    assert "10 topics: 10 created" in made.output

    again = CliRunner().invoke(app, [*args, "--dry-run"])
    assert again.exit_code == 0, again.output
    assert "10 as defined" in again.output

    too_many = CliRunner().invoke(app, ["topics", "apply", "--bus", bus])
    assert too_many.exit_code == 1  # the file's three copies on the test's one broker
    assert "replication factor 1 -> 3" in too_many.output


def test_the_command_refuses_a_bad_file_and_an_unknown_bus(tmp_path: Path) -> None:
    bad = tmp_path / "topics.yaml"
    bad.write_text("topics: {t: {partitions: 0}}", encoding="utf-8")
    refused = CliRunner().invoke(app, ["topics", "apply", "--file", str(bad)])
    assert refused.exit_code == 2
    assert "topics.t.partitions: expected a whole number" in refused.output

    missing = CliRunner().invoke(app, ["topics", "apply", "--file", str(tmp_path / "none.yaml")])
    assert missing.exit_code == 2
    assert "no topics file at" in missing.output

    unknown = CliRunner().invoke(app, ["topics", "apply", "--bus", "nats://x:4222"])
    assert unknown.exit_code == 2
    assert "unsupported bus URL" in unknown.output


def test_the_stated_bus_retention_covers_every_kafka_topic_that_expires() -> None:
    # Erasure records state copies expire by now + TSUNAGU_BUS_RETENTION_S: on Kafka that is
    # true only if no topic keeps records longer (consent.changes, compacted, names no one).
    ops = load_topics(REPO_TOPICS_FILE)
    longest_ms = max(int(s.configs["retention.ms"]) for s in ops if "retention.ms" in s.configs)
    assert Settings().bus_retention_s * 1000 == longest_ms
