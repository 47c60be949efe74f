"""docker-compose.yml, checked without Docker (which these machines do not have): every command
is one our CLI accepts, every TSUNAGU_* variable one our settings read, every port, host,
volume and file consistent, in both the small and the full shape.

What this cannot show: that the images start, that Kafka forms its quorum, that nginx and
Prometheus accept their files. The stack itself is never started here (ops/README.md)."""

from __future__ import annotations

import base64
import os
import re
from pathlib import Path
from typing import Any
from unittest import mock
from urllib.parse import urlsplit

import pytest
import typer.main
import yaml

from broker.bus.kafka import kafka_url
from broker.bus.topics import load_topics
from broker.cli import app
from broker.settings import Settings
from tests.ops.compose import (
    COMPOSE_FILE,
    REPO,
    SECRETS,
    MissingVariable,
    Service,
    Shape,
    full,
    raw,
    shape,
    small,
)

SHAPES = {"small": small, "full": full}
CLI: Any = typer.main.get_command(app)
#: Environment variables the settings read: TSUNAGU_ + each field's name.
SETTINGS_VARIABLES = {f"TSUNAGU_{name.upper()}": name for name in Settings.model_fields}
#: The process that serves /metrics, and the setting of its port.
METRICS_PORT_SETTING = {
    ("up",): "port",
    ("worker",): "metrics_port",
    ("connector", "run"): "connector_metrics_port",
}


@pytest.fixture(autouse=True)
def _no_settings_from_this_machine(monkeypatch: pytest.MonkeyPatch) -> None:
    """Settings read here come from the compose file alone, not this shell's TSUNAGU_*."""
    for name in list(os.environ):
        if name.startswith("TSUNAGU_"):
            monkeypatch.delenv(name)


@pytest.fixture(params=sorted(SHAPES))
def stack(request: pytest.FixtureRequest) -> Shape:
    """Each shape the README tells operators to start."""
    made: Shape = SHAPES[request.param]()
    return made


def _walk(args: list[str]) -> tuple[tuple[str, ...], Any, list[str]]:
    """The subcommand path of ``tsunagu`` args, its click command and the remaining args."""
    command: Any = CLI
    path: list[str] = []
    rest = list(args)
    while hasattr(command, "commands"):
        assert rest, f"tsunagu {' '.join(path)}: a subcommand is needed"
        name = rest.pop(0)
        assert name in command.commands, f"tsunagu {' '.join(path)} has no command {name!r}"
        command, path = command.commands[name], [*path, name]
    return tuple(path), command, rest


def _cli_envvars() -> set[str]:
    """Environment variables our CLI's options read (e.g. TSUNAGU_CONNECTOR_TOKEN)."""
    found: set[str] = set()

    def visit(command: Any) -> None:
        for param in command.params:
            envvar = getattr(param, "envvar", None)
            found.update([envvar] if isinstance(envvar, str) else envvar or [])
        for sub in getattr(command, "commands", {}).values():
            visit(sub)

    visit(CLI)
    return found


def _tsunagu(service: Service) -> list[str]:
    """The `tsunagu` invocation a service of our image runs."""
    command = service.command
    assert command and command[0] == "tsunagu", f"{service.name} runs {command}, not tsunagu"
    return command[1:]


def _as_on_host(service: Service, args: list[str]) -> list[str]:
    """``args`` with each path inside the container that a bind mount gives replaced by the
    repository's file: the CLI checks that its input files exist, as they do in the stack."""
    out = []
    for arg in args:
        host = service.host_path(arg) if arg.startswith("/") else None
        out.append(str(host) if host is not None else arg)
    return out


def _role(service: Service) -> tuple[str, ...]:
    path, _, _ = _walk(_tsunagu(service))
    return path[:2] if path[0] == "connector" else path


def _settings(service: Service) -> Settings:
    """The settings the service's process reads: its environment, as in the container."""
    variables = {k: v for k, v in service.environment.items() if k.startswith("TSUNAGU_")}
    with mock.patch.dict(os.environ, variables):
        return Settings()


def _metrics_port(service: Service) -> int | None:
    """Where the service's process serves /metrics (None: it does not)."""
    setting = METRICS_PORT_SETTING.get(_role(service))
    if setting is None:
        return None
    _, command, rest = _walk(_tsunagu(service))
    flag = command.make_context("check", _as_on_host(service, rest)).params.get("metrics_port")
    port = int(flag if flag is not None else getattr(_settings(service), setting))
    return port or None


def _app_services(stack: Shape) -> list[Service]:
    return [s for s in stack.services.values() if s.runs_app]


def _expose(service: Service) -> set[int]:
    return {int(str(p).split("/")[0]) for p in service.spec.get("expose") or []}


def _published(service: Service) -> list[tuple[str, int]]:
    """(host side, container port) of each published port."""
    out = []
    for entry in service.spec.get("ports") or []:
        host, _, container = str(entry).rpartition(":")
        out.append((host, int(container)))
    return out


# -- commands and settings ------------------------------------------------------------------------


def test_every_command_is_one_our_cli_accepts(stack: Shape) -> None:
    apps = _app_services(stack)
    assert {s.name for s in apps} >= {"api", "worker", "topics"}
    for service in apps:
        path, command, rest = _walk(_tsunagu(service))
        # Parses the options as `tsunagu` would: unknown options and bad values fail here.
        command.make_context(" ".join(path), _as_on_host(service, rest))
    roles = {_role(s) for s in apps}
    assert {("up",), ("worker",), ("topics", "apply"), ("connector", "run")} <= roles
    connectors = {_walk(_tsunagu(s))[0][2] for s in apps if _role(s) == ("connector", "run")}
    assert connectors == {"transport", "health", "currency", "vacant_house"}


def test_every_tsunagu_variable_is_one_the_settings_or_the_cli_read(stack: Shape) -> None:
    known = set(SETTINGS_VARIABLES) | _cli_envvars()
    for service in stack.services.values():
        for name in service.environment:
            if name.startswith("TSUNAGU_"):
                assert name in known, f"{service.name} sets {name}, which nothing reads"
        if service.runs_app:
            _settings(service)  # each value is one the settings accept (types, ranges)


def test_connectors_are_wrapped_to_run_again_and_nothing_else_is(stack: Shape) -> None:
    for service in _app_services(stack):
        entrypoint = service.spec.get("entrypoint")
        if _role(service) == ("connector", "run"):
            assert entrypoint is not None and entrypoint[:2] == ["/bin/sh", "-c"]
            script = entrypoint[2]
            assert '"$@"' in script and re.search(r"sleep \d+ & wait \$!;", script), script
        else:
            assert entrypoint is None, service.name


def test_the_file_has_only_what_compose_reads() -> None:
    document = raw()
    extensions = {k for k in document if k.startswith("x-")}
    assert set(document) - extensions == {"name", "services", "volumes"}
    assert document["name"] == "tsunagu"  # volume names (tsunagu_keys) in ops/README.md


def test_secrets_come_from_the_environment_and_are_required() -> None:
    text = COMPOSE_FILE.read_text(encoding="utf-8")
    for name in SECRETS:
        assert f"${{{name}:?" in text, f"{name} must be required, with no default"
        with pytest.raises(MissingVariable, match=name):
            shape("missing", {k: v for k, v in SECRETS.items() if k != name})
    for service in SHAPES["small"]().services.values():
        for key, value in service.environment.items():
            if re.search(r"PASSWORD|SECRET", key):
                assert value in SECRETS.values(), f"{service.name}: {key} has a literal value"
    # Nothing unbraced that Compose would read as a variable and we would not.
    for line in text.splitlines():
        stripped = re.sub(r"\$\$|\$\{[^}]*\}", "", line)
        assert "$" not in stripped, line


# -- ports and hosts ----------------------------------------------------------------------------


def test_processes_serve_where_the_stack_looks_for_them(stack: Shape) -> None:
    for service in _app_services(stack):
        role, settings = _role(service), _settings(service)
        port = _metrics_port(service)
        if role in METRICS_PORT_SETTING:
            assert port, f"{service.name} serves no /metrics"
            # Bound to all interfaces, or Prometheus (another container) cannot reach it.
            assert settings.host == "0.0.0.0", service.name
            assert port in _expose(service), f"{service.name} serves {port}, exposes others"
        if role == ("up",):
            assert settings.api_processes == 1  # one process per container: one /metrics
            healthcheck = " ".join(service.spec["healthcheck"]["test"])
            assert f"http://127.0.0.1:{settings.port}/readyz" in healthcheck
        if role == ("worker",):
            healthcheck = " ".join(service.spec["healthcheck"]["test"])
            assert f"http://127.0.0.1:{port}/metrics" in healthcheck
        if int(service.spec.get("deploy", {}).get("replicas", 1)) > 1:
            # Replicas cannot share a host port.
            assert not service.spec.get("ports"), f"{service.name} is replicated"


def test_the_proxy_forwards_to_the_api_port_and_publishes_its_own(stack: Shape) -> None:
    proxy = stack.services["proxy"]
    (conf,) = [Path(p) for p in [proxy.host_path("/etc/nginx/nginx.conf")] if p]
    text = conf.read_text(encoding="utf-8")
    (upstream,) = re.findall(r"set \$api http://([\w-]+):(\d+);", text)
    api = stack.services[upstream[0]]
    assert _role(api) == ("up",) and int(upstream[1]) == _settings(api).port
    (listen,) = re.findall(r"listen (\d+);", text)
    assert [c for _, c in _published(proxy)] == [int(listen)]
    assert "location = /metrics" in text  # not public through the proxy
    assert int(api.spec["deploy"]["replicas"]) >= 2


def test_the_bus_names_the_kafka_brokers_of_the_shape(stack: Shape) -> None:
    brokers = {
        n: s
        for n, s in stack.services.items()
        if s.spec.get("image", "").startswith("apache/kafka")
    }
    assert len(brokers) == (3 if stack.label == "full" else 1)
    for service in _app_services(stack):
        url = _settings(service).bus_url
        assert url.startswith("kafka://"), service.name
        servers, _ = kafka_url(url)
        for hostport in servers:
            host, port = hostport.split(":")
            assert host in brokers, f"{service.name}: bus host {host} is not a broker here"
            env = brokers[host].environment
            assert f"SASL://{host}:{port}" in env["KAFKA_ADVERTISED_LISTENERS"]
            assert f"SASL://:{port}" in env["KAFKA_LISTENERS"]


def test_the_kraft_quorum_and_replication_fit_the_brokers(stack: Shape) -> None:
    brokers = {n: s.environment for n, s in stack.services.items() if n.startswith("kafka")}
    ids, cluster_ids = set(), set()
    for name, env in brokers.items():
        ids.add(env["KAFKA_NODE_ID"])
        cluster_ids.add(env["CLUSTER_ID"])
        voters = dict(v.split("@") for v in env["KAFKA_CONTROLLER_QUORUM_VOTERS"].split(","))
        # Every broker of the shape is a voter, under its own node id, and only those.
        assert sorted(h.split(":")[0] for h in voters.values()) == sorted(brokers), name
        assert voters[env["KAFKA_NODE_ID"]] == f"{name}:9093"
        assert "CONTROLLER://:9093" in env["KAFKA_LISTENERS"]
        for key in (
            "KAFKA_DEFAULT_REPLICATION_FACTOR",
            "KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR",
            "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR",
        ):
            assert 1 <= int(env[key]) <= len(brokers), (name, key)
        assert int(env["KAFKA_MIN_INSYNC_REPLICAS"]) <= int(env["KAFKA_DEFAULT_REPLICATION_FACTOR"])
        assert env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"
    assert len(ids) == len(brokers)
    (cluster_id,) = cluster_ids
    raw_id = base64.urlsafe_b64decode(cluster_id + "==")
    assert (
        len(raw_id) == 16 and base64.urlsafe_b64encode(raw_id).rstrip(b"=").decode() == cluster_id
    )


def test_topics_are_applied_from_the_repo_file_with_a_factor_the_brokers_hold(
    stack: Shape,
) -> None:
    topics = stack.services["topics"]
    _, command, rest = _walk(_tsunagu(topics))
    params = command.make_context("apply", rest).params
    path = topics.host_path(str(params["file"]))
    assert path == REPO / "ops" / "kafka" / "topics.yaml"
    brokers = [n for n in stack.services if n.startswith("kafka")]
    assert params["replication_factor"] == len(brokers)
    assert topics.spec["restart"] == "no"
    for name in ("api", "worker"):
        # TSUNAGU_TOPIC_PARTITIONS (topics the platform creates itself) matches the file.
        partitions = _settings(stack.services[name]).topic_partitions
        domains = [s for s in load_topics(path) if s.name in ("transport", "health")]
        assert {s.partitions for s in domains} == {partitions}


def test_store_and_vault_are_separate_postgres_services(stack: Shape) -> None:
    for service in _app_services(stack):
        if _role(service) not in (("up",), ("worker",)):
            continue
        settings = _settings(service)
        store, vault = urlsplit(settings.store_url), urlsplit(settings.vault_store_url)
        assert store.hostname != vault.hostname, "the vault must not live with the store"
        for url in (store, vault):
            db = stack.services[str(url.hostname)]
            assert db.spec["image"].startswith("postgres:")
            env = db.environment
            assert url.username == env["POSTGRES_USER"]
            assert url.path.lstrip("/") == env["POSTGRES_DB"]
            assert url.password == env["POSTGRES_PASSWORD"]
            assert url.port == 5432


def test_dependencies_exist_and_wait_for_what_they_say(stack: Shape) -> None:
    every = stack.all_services
    for service in stack.services.values():
        for name, dep in service.depends_on.items():
            assert name in every, f"{service.name} depends on unknown {name}"
            if name not in stack.services:
                # A broker of the full profile: the small shape must start without it.
                assert dep.get("required") is False, f"{service.name} needs {name}"
                continue
            target = stack.services[name]
            condition = dep.get("condition", "service_started")
            if condition == "service_healthy":
                assert "healthcheck" in target.spec, f"{name} has no health check"
            if condition == "service_completed_successfully":
                assert target.spec.get("restart") == "no", f"{name} is not a one-shot"
    assert stack.services["api"].depends_on["topics"]["condition"] == (
        "service_completed_successfully"
    )


# -- files and volumes ----------------------------------------------------------------------------


def test_every_mounted_file_and_path_a_command_names_exists(stack: Shape) -> None:
    declared = set(raw().get("volumes") or {})
    for service in stack.services.values():
        for source, _, read_only in service.mounts():
            if source.startswith((".", "/")):
                assert (REPO / source).exists(), f"{service.name} mounts missing {source}"
                assert read_only, f"{service.name} mounts {source} writable"
            else:
                assert source in declared, f"{service.name} uses undeclared volume {source}"
        if service.runs_app:
            for arg in _tsunagu(service):
                if arg.startswith("/") and not arg.startswith("/var/lib/tsunagu"):
                    path = service.host_path(arg)
                    assert path is not None and path.exists(), f"{service.name}: {arg}"
    build = stack.services["api"].spec["build"]
    assert (REPO / build / "Dockerfile").is_file()


def test_platform_processes_share_the_keys_and_connectors_only_read_them(stack: Shape) -> None:
    for service in _app_services(stack):
        keys = [m for m in service.mounts() if m[1] == "/var/lib/tsunagu/keys"]
        if _role(service) in (("up",), ("worker",)):
            assert keys == [("keys", "/var/lib/tsunagu/keys", False)], service.name
        elif _role(service) == ("connector", "run"):
            assert keys == [("keys", "/var/lib/tsunagu/keys", True)], service.name
            assert _settings(service).data_dir == Path("/var/lib/tsunagu")


def test_prometheus_scrapes_every_process_where_it_serves_metrics(stack: Shape) -> None:
    prometheus = stack.services["prometheus"]
    flags = dict(a.removeprefix("--").split("=", 1) for a in prometheus.command)
    config_path = prometheus.host_path(flags["config.file"])
    assert config_path is not None
    config = yaml.safe_load(config_path.read_text(encoding="utf-8"))
    for rules in config["rule_files"]:
        assert (config_path.parent / rules).is_file()
    scraped: set[str] = set()
    for job in config["scrape_configs"]:
        if not job["job_name"].startswith("tsunagu-"):
            continue
        assert job.get("metrics_path", "/metrics") == "/metrics"
        targets = [
            (name, sd["port"]) for sd in job.get("dns_sd_configs", []) for name in sd["names"]
        ] + [
            (t.split(":")[0], int(t.split(":")[1]))
            for static in job.get("static_configs", [])
            for t in static["targets"]
        ]
        for host, port in targets:
            assert host in stack.services, f"{job['job_name']}: no service {host}"
            service = stack.services[host]
            assert _metrics_port(service) == port, f"{job['job_name']}: {host}:{port}"
            scraped.add(host)
    serving = {s.name for s in _app_services(stack) if _metrics_port(s)}
    assert serving == scraped


def test_grafana_provisions_the_datasource_and_the_dashboards(stack: Shape) -> None:
    grafana = stack.services["grafana"]
    datasources = grafana.host_path("/etc/grafana/provisioning/datasources")
    assert datasources is not None
    (source,) = yaml.safe_load((datasources / "prometheus.yml").read_text())["datasources"]
    url = urlsplit(source["url"])
    assert url.hostname == "prometheus" and url.port == 9090
    assert any(c == 9090 for _, c in _published(stack.services["prometheus"]))
    providers = grafana.host_path("/etc/grafana/provisioning/dashboards")
    assert providers is not None
    (provider,) = yaml.safe_load((providers / "tsunagu.yml").read_text())["providers"]
    dashboards = grafana.host_path(provider["options"]["path"])
    assert dashboards == REPO / "ops" / "grafana" / "dashboards"
    assert sorted(p.name for p in dashboards.glob("*.json")) == ["flows.json", "platform.json"]
    home = grafana.environment["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert grafana.host_path(home) == dashboards / "platform.json"
    assert grafana.environment["GF_AUTH_ANONYMOUS_ENABLED"] == "false"
    # The operator's consoles listen on the machine itself only.
    for name in ("grafana", "prometheus"):
        assert all(h.startswith("127.0.0.1:") for h, _ in _published(stack.services[name]))


def test_workers_and_api_scale_by_replicas(stack: Shape) -> None:
    expected = 3 if stack.label == "full" else 2
    for name in ("api", "worker"):
        assert int(stack.services[name].spec["deploy"]["replicas"]) == expected
