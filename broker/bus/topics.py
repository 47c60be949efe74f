"""The platform's topics as the operator defines them (``ops/kafka/topics.yaml``), and making a
bus match them: ``tsunagu topics apply``.

What Kafka lets change on an existing topic, and so what ``apply`` does:

* missing topics are created with their partitions, replication factor and configs;
* configs that differ (``retention.ms``, ``cleanup.policy``, ...) are set. All of the file's
  configs of that topic are sent together: a broker without IncrementalAlterConfigs resets
  every config a request leaves out;
* partitions can be added, never removed. Adding them moves keys: a subject's next events
  go to another partition than its earlier ones, so drain the topic first (ops/README.md);
* the replication factor of an existing topic needs a partition reassignment
  (``kafka-reassign-partitions.sh``), which ``apply`` does not do: it reports it.

On the SQLite log only missing topics are created: it has no replication or configs besides
compaction, and keeps the partition count a topic was created with (one process reads every
partition, so another count than the file's is reported, not a difference).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import yaml

from broker.bus.grants import GrantStep, ProducerGrant, apply_grants
from broker.bus.sqlite_log import check_topic_name
from contract.bus import Bus, BusError, TopicSpec

if TYPE_CHECKING:
    from broker.bus.kafka import KafkaBus

#: The definitions shipped in the repository, when running from a checkout.
REPO_TOPICS_FILE = Path(__file__).resolve().parents[2] / "ops" / "kafka" / "topics.yaml"


class TopicsFileError(ValueError):
    """The topics file is missing, not YAML, or not in the expected shape."""


def load_topics(
    path: Path, *, prefix: str = "", replication_factor: int | None = None
) -> list[TopicSpec]:
    """The topics ``path`` defines, each name after ``prefix``; ``replication_factor``
    overrides the file's (a one-broker cluster cannot hold three copies)."""
    return parse_topics(
        read_topics_file(path),
        source=str(path),
        prefix=prefix,
        replication_factor=replication_factor,
    )


def read_topics_file(path: Path) -> object:
    """The topics file as parsed YAML (its topics and its producers' grants)."""
    try:
        document: object = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise TopicsFileError(f"{path}: {exc.strerror or exc}") from exc
    except yaml.YAMLError as exc:
        raise TopicsFileError(f"{path}: not YAML: {exc}") from exc
    return document


def parse_topics(
    document: object,
    *,
    source: str = "topics",
    prefix: str = "",
    replication_factor: int | None = None,
) -> list[TopicSpec]:
    """The topics of an already parsed topics document (see ``load_topics``)."""
    top = _mapping(document, source, {"replication_factor", "topics", "producers"})
    default_rf = _positive(top.get("replication_factor"), f"{source}: replication_factor")
    topics = _mapping(top.get("topics"), f"{source}: topics", None)
    if not topics:
        raise TopicsFileError(f"{source}: topics: none defined")
    specs = []
    for name, body in topics.items():
        where = f"{source}: topics.{name}"
        fields = _mapping(body, where, {"partitions", "replication_factor", "configs"})
        partitions = _positive(fields.get("partitions"), f"{where}.partitions")
        if partitions is None:
            raise TopicsFileError(f"{where}.partitions: required")
        configs = {
            str(key): _config_value(value, f"{where}.configs.{key}")
            for key, value in _mapping(fields.get("configs", {}), f"{where}.configs", None).items()
        }
        full_name = prefix + str(name)
        try:
            check_topic_name(full_name)
        except BusError as exc:
            raise TopicsFileError(f"{where}: {exc}") from None
        specs.append(
            TopicSpec(
                full_name,
                partitions,
                compacted="compact" in configs.get("cleanup.policy", "").split(","),
                replication_factor=replication_factor
                or _positive(fields.get("replication_factor"), f"{where}.replication_factor")
                or default_rf,
                configs=configs,
            )
        )
    return specs


def _mapping(value: object, where: str, allowed: set[str] | None) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise TopicsFileError(f"{where}: expected a mapping, not {type(value).__name__}")
    unknown = sorted(str(k) for k in value if allowed is not None and k not in allowed)
    if unknown:
        raise TopicsFileError(f"{where}: unknown key(s) {', '.join(unknown)}")
    return {str(k): v for k, v in value.items()}


def _positive(value: object, where: str) -> int | None:
    if value is None:
        return None
    # bool is an int in Python; `partitions: yes` is a mistake, not 1.
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise TopicsFileError(f"{where}: expected a whole number of at least 1, not {value!r}")
    return value


def _config_value(value: object, where: str) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"  # Kafka's spelling, not Python's
    if isinstance(value, int | str):
        return str(value)
    raise TopicsFileError(f"{where}: expected a string or a number, not {value!r}")


# -- comparing and applying ---------------------------------------------------------------------


class Action(StrEnum):
    """What ``apply`` found, or did, for one topic and setting."""

    OK = "ok"  # matches the file
    CREATE = "create"
    SET_CONFIGS = "set configs"
    ADD_PARTITIONS = "add partitions"
    CANNOT = "cannot"  # differs, and apply cannot change it
    FAILED = "failed"  # apply tried and the broker refused


#: How a step is printed: (in a dry run, after applying).
_LABELS = {
    Action.OK: ("ok", "ok"),
    Action.CREATE: ("would create", "created"),
    Action.SET_CONFIGS: ("would set configs", "configs set"),
    Action.ADD_PARTITIONS: ("would add partitions", "partitions added"),
    Action.CANNOT: ("cannot", "cannot"),
    Action.FAILED: ("failed", "failed"),
}


@dataclass(frozen=True, slots=True)
class Step:
    """One line of the report."""

    topic: str
    action: Action
    detail: str = ""

    @property
    def settled(self) -> bool:
        """Whether the topic matches the file in this respect once the step is done."""
        return self.action not in (Action.CANNOT, Action.FAILED)

    def line(self, *, dry_run: bool) -> str:
        """The step as the command prints it."""
        label = _LABELS[self.action][0 if dry_run else 1]
        return f"{label:<20} {self.topic}" + (f": {self.detail}" if self.detail else "")


@dataclass
class Report:
    """Everything ``apply`` found and did, topic by topic."""

    dry_run: bool
    steps: list[Step] = field(default_factory=list)
    #: What could not be compared at all (a broker that does not describe configs).
    notes: list[str] = field(default_factory=list)
    #: The producers' ACLs, user by user (``broker.bus.grants``).
    grants: list[GrantStep] = field(default_factory=list)

    @property
    def in_sync(self) -> bool:
        """Whether the bus matches the file (after applying; as found, in a dry run)."""
        if self.dry_run:
            return all(s.action is Action.OK for s in self.steps) and all(
                g.action == "ok" for g in self.grants
            )
        return all(s.settled for s in self.steps) and all(g.action != "failed" for g in self.grants)

    def count(self, action: Action) -> int:
        """How many steps were ``action``."""
        return sum(1 for s in self.steps if s.action is action)

    def lines(self) -> list[str]:
        """The report as printed: one line per step, then a summary."""
        out = [s.line(dry_run=self.dry_run) for s in self.steps]
        out += [g.line(dry_run=self.dry_run) for g in self.grants] + self.notes
        topics = len({s.topic for s in self.steps})
        done = "would be " if self.dry_run else ""
        summary = (
            f"{topics} topics: {self.count(Action.CREATE)} {done}created, "
            f"{self.count(Action.SET_CONFIGS)} {done}reconfigured, "
            f"{self.count(Action.ADD_PARTITIONS)} {done}given partitions, "
            f"{self.count(Action.OK)} as defined"
        )
        stuck = sum(1 for s in self.steps if not s.settled)
        if stuck:
            summary += f"; {stuck} difference(s) apply cannot make (see above)"
        if self.grants:
            users = len({g.user for g in self.grants})
            changed = len({g.user for g in self.grants if g.action != "ok"})
            summary += f"; {users} producers, {changed} {done}given new ACLs"
        return [*out, summary]


@dataclass(frozen=True, slots=True)
class TopicState:
    """An existing topic as the bus describes it; None where the bus cannot tell."""

    partitions: int
    replication_factor: int | None = None
    configs: Mapping[str, str] | None = None


def apply_topics(
    bus: Bus,
    specs: Sequence[TopicSpec],
    *,
    producers: Sequence[ProducerGrant] = (),
    dry_run: bool = False,
) -> Report:
    """Make ``bus`` hold ``specs``, and each of ``producers`` write exactly its topics: create
    what is missing, change what Kafka lets change, report the rest. Idempotent: a second run
    finds every topic and grant as defined."""
    from broker.bus.kafka import KafkaBus

    admin: _TopicAdmin = _KafkaTopics(bus) if isinstance(bus, KafkaBus) else _LogTopics(bus)
    existing = admin.describe([s.name for s in specs])
    steps = _create(admin, [s for s in specs if s.name not in existing], dry_run)
    for spec in specs:
        if spec.name in existing:
            steps += _converge(admin, spec, existing[spec.name], dry_run)
    order = {spec.name: i for i, spec in enumerate(specs)}
    steps.sort(key=lambda step: order[step.topic])  # in the file's order; stable within one
    report = Report(dry_run, steps, admin.notes)
    if producers and isinstance(bus, KafkaBus):
        report.grants, notes = apply_grants(bus.admin(), producers, dry_run=dry_run)
        report.notes += notes
    elif producers:
        report.notes.append("producers not applied: the embedded log has no users or ACLs")
    return report


def _create(admin: _TopicAdmin, missing: list[TopicSpec], dry_run: bool) -> list[Step]:
    brokers = admin.brokers() if missing else None
    steps: list[Step] = []
    creatable = []
    for spec in missing:
        rf = spec.replication_factor
        if brokers is not None and rf is not None and rf > brokers:
            reason = (
                f"replication factor {rf} needs {rf} brokers, the cluster has {brokers}"
                " (one broker: --replication-factor 1)"
            )
            steps.append(Step(spec.name, Action.CANNOT, reason))
        else:
            steps.append(Step(spec.name, Action.CREATE, admin.summary(spec)))
            creatable.append(spec)
    if creatable and not dry_run:
        admin.create(creatable)
    return steps


def _partitions(count: int) -> str:
    return f"{count} partition{'s' if count != 1 else ''}"


def _converge(admin: _TopicAdmin, spec: TopicSpec, state: TopicState, dry: bool) -> list[Step]:
    steps = []
    name = spec.name
    if state.partitions != spec.partitions and admin.fixed_partitions:
        # Partitions share work among Kafka consumers; one embedded process reads them all,
        # so a count other than the file's is nothing to fix (and nothing the log can change).
        detail = (
            f"{_partitions(state.partitions)} here; the file's {spec.partitions} are for Kafka "
            "(the embedded log keeps the count a topic was created with)"
        )
        steps.append(Step(name, Action.OK, detail))
    elif state.partitions > spec.partitions:
        steps.append(
            Step(
                name,
                Action.CANNOT,
                f"partitions {state.partitions} -> {spec.partitions}: partitions cannot be "
                "removed (keep them, or recreate the topic and lose its records)",
            )
        )
    elif state.partitions < spec.partitions:
        detail = f"{state.partitions} -> {spec.partitions}"
        steps.append(admin.add_partitions(name, spec.partitions, detail, dry))
    rf = spec.replication_factor
    if rf is not None and state.replication_factor is not None and rf != state.replication_factor:
        steps.append(
            Step(
                name,
                Action.CANNOT,
                f"replication factor {state.replication_factor} -> {rf}: needs a partition "
                "reassignment (kafka-reassign-partitions.sh; ops/README.md)",
            )
        )
    if state.configs is not None:
        wanted = spec.kafka_configs()
        differ = {k: v for k, v in wanted.items() if state.configs.get(k) != v}
        if differ:
            detail = ", ".join(
                f"{k} {state.configs.get(k, '(unset)')} -> {v}" for k, v in sorted(differ.items())
            )
            steps.append(admin.set_configs(name, wanted, detail, dry))
    return steps or [Step(name, Action.OK)]


class _TopicAdmin(Protocol):
    """What ``apply`` needs of a bus's topic administration."""

    notes: list[str]
    #: Whether a topic keeps the partition count it was created with (the embedded log).
    fixed_partitions: bool

    def describe(self, names: Sequence[str]) -> dict[str, TopicState]:
        """The state of those of ``names`` that exist."""
        ...

    def brokers(self) -> int | None:
        """How many brokers could hold replicas (None: no such thing)."""
        ...

    def summary(self, spec: TopicSpec) -> str:
        """What a new topic of ``spec`` gets on this bus."""
        ...

    def create(self, specs: Sequence[TopicSpec]) -> None:
        """Create the topics."""
        ...

    def add_partitions(self, name: str, total: int, detail: str, dry_run: bool) -> Step:
        """Grow ``name`` to ``total`` partitions (or say why not)."""
        ...

    def set_configs(self, name: str, configs: dict[str, str], detail: str, dry: bool) -> Step:
        """Set ``configs`` on ``name`` (or say why not)."""
        ...


class _LogTopics:
    """Any bus through the ``Bus`` interface alone (the SQLite log)."""

    fixed_partitions = True

    def __init__(self, bus: Bus) -> None:
        self.bus = bus
        self.notes: list[str] = []

    def describe(self, names: Sequence[str]) -> dict[str, TopicState]:
        found = {}
        for name in names:
            try:
                # The interface's one way to see a topic: an unknown one is a BusError.
                found[name] = TopicState(len(self.bus.end_offsets(name)))
            except BusError:
                continue
        return found

    def brokers(self) -> int | None:
        return None

    def summary(self, spec: TopicSpec) -> str:
        # The log has no replicas and no configs but compaction.
        return _partitions(spec.partitions) + (", compacted" if spec.compacted else "")

    def create(self, specs: Sequence[TopicSpec]) -> None:
        self.bus.create_topics(specs)

    def add_partitions(self, name: str, total: int, detail: str, dry_run: bool) -> Step:
        raise AssertionError("the embedded log's partition counts are never converged")

    def set_configs(self, name: str, configs: dict[str, str], detail: str, dry: bool) -> Step:
        raise AssertionError("the SQLite log reports no configs")  # describe() gives None


class _KafkaTopics:
    """A Kafka cluster through kafka-python's admin client."""

    fixed_partitions = False

    def __init__(self, bus: KafkaBus) -> None:
        self.bus = bus
        self.notes: list[str] = []

    def _admin(self) -> Any:
        return self.bus.admin()

    def describe(self, names: Sequence[str]) -> dict[str, TopicState]:
        from kafka.admin import ConfigResource, ConfigResourceType
        from kafka.errors import KafkaError

        try:
            # List first: describing an absent topic is an error for the whole request.
            listed = set(self._admin().list_topics())
            present = [n for n in names if n in listed]
            if not present:
                return {}
            described = self._admin().describe_topics(present)
        except KafkaError as exc:
            raise BusError(f"describing topics failed: {exc}") from exc
        configs = self._configs(present, ConfigResource, ConfigResourceType)
        found = {}
        for topic in described:
            if topic["error_code"] != 0 or not topic["partitions"]:
                raise BusError(f"describing topic {topic['name']!r}: error {topic['error_code']}")
            replicas = {len(p["replica_nodes"]) for p in topic["partitions"]}
            found[topic["name"]] = TopicState(
                len(topic["partitions"]),
                # Partitions with differing copies (a half-done reassignment): report the least.
                min(replicas),
                configs.get(topic["name"]),
            )
        return found

    def _configs(self, names: list[str], resource: Any, kind: Any) -> dict[str, dict[str, str]]:
        from kafka.errors import KafkaError

        try:
            # "all", not kafka-python's "modified": a value equal to the broker's default
            # is as good as one set on the topic.
            got = self._admin().describe_configs(
                [resource(kind.TOPIC, n) for n in names], config_filter="all"
            )
        except KafkaError as exc:
            self.notes.append(f"configs not compared: the broker did not describe them ({exc})")
            return {}
        return {
            name: {k: str(v["value"]) for k, v in entries.items() if v.get("value") is not None}
            for name, entries in got.get("topic", {}).items()
        }

    def summary(self, spec: TopicSpec) -> str:
        parts = [_partitions(spec.partitions)]
        if spec.replication_factor is not None:
            parts.append(f"replication factor {spec.replication_factor}")
        parts += [f"{k}={v}" for k, v in sorted(spec.kafka_configs().items())]
        return ", ".join(parts)

    def brokers(self) -> int | None:
        from kafka.errors import KafkaError

        try:
            return len(self._admin().describe_cluster()["brokers"])
        except KafkaError as exc:
            raise BusError(f"describing the cluster failed: {exc}") from exc

    def create(self, specs: Sequence[TopicSpec]) -> None:
        self.bus.create_topics(specs)

    def add_partitions(self, name: str, total: int, detail: str, dry_run: bool) -> Step:
        from kafka.errors import KafkaError

        step = Step(name, Action.ADD_PARTITIONS, f"{detail} (keys move: drain the topic first)")
        if dry_run:
            return step
        try:
            result = self._admin().create_partitions({name: total}, raise_errors=False)
        except KafkaError as exc:
            return Step(name, Action.FAILED, f"partitions {detail}: {exc}")
        errors = [r for r in result.results if r.error_code != 0]
        if errors:
            why = errors[0].error_message or f"error {errors[0].error_code}"
            return Step(name, Action.FAILED, f"partitions {detail}: {why}")
        if not self._settled(lambda: self.describe([name])[name].partitions == total):
            self.notes.append(f"{name}: the new partitions were not yet visible when apply ended")
        return step

    def set_configs(self, name: str, configs: dict[str, str], detail: str, dry: bool) -> Step:
        from kafka.admin import ConfigResource, ConfigResourceType
        from kafka.errors import KafkaError

        step = Step(name, Action.SET_CONFIGS, detail)
        if dry:
            return step
        try:
            # The broker judges unknown keys; kafka-python's own check needs DescribeConfigs
            # filters that not every Kafka-protocol broker implements.
            result = self._admin().alter_configs(
                [ConfigResource(ConfigResourceType.TOPIC, name, configs=dict(configs))],
                raise_on_unknown=False,
            )
        except KafkaError as exc:
            return Step(name, Action.FAILED, f"{detail}: {exc}")
        outcome = result.get("topic", {}).get(name, "no answer")
        if outcome != "OK":
            return Step(name, Action.FAILED, f"{detail}: {outcome}")
        wanted = dict(configs)
        kinds = (ConfigResource, ConfigResourceType)
        if not self._settled(lambda: wanted.items() <= self._configs([name], *kinds)[name].items()):
            self.notes.append(f"{name}: the new configs were not yet visible when apply ended")
        return step

    @staticmethod
    def _settled(check: Callable[[], bool], timeout_s: float = 15.0) -> bool:
        """Wait until ``check`` holds: KRaft brokers apply a change from the metadata log a
        moment after the controller accepted it, and a report must describe what is there."""
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                if check():
                    return True
            except (BusError, KeyError):
                pass
            if time.monotonic() > deadline:
                return False
            time.sleep(0.1)
