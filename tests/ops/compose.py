"""docker-compose.yml as Compose would see it, without Docker: interpolation from an env file,
profiles, and what each service runs, sets, mounts and serves."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
COMPOSE_FILE = REPO / "docker-compose.yml"
FULL_ENV = REPO / "ops" / "compose" / "full.env"
#: What an operator must export before `docker compose up` (required interpolations).
SECRETS = {
    "POSTGRES_PASSWORD": "store-password",
    "VAULT_DB_PASSWORD": "vault-password",
    "GRAFANA_ADMIN_PASSWORD": "grafana-password",
    "KAFKA_ADMIN_PASSWORD": "kafkaAdminPassword1",
    "TRANSPORT_KAFKA_PASSWORD": "transportPassword2",
    "HEALTH_KAFKA_PASSWORD": "healthPassword3",
    "CURRENCY_KAFKA_PASSWORD": "currencyPassword4",
    "VACANT_HOUSE_KAFKA_PASSWORD": "vacantHousePassword5",
}

_VARIABLE = re.compile(
    r"\$(?:(?P<escaped>\$)|\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\})"
)


class MissingVariable(KeyError):
    """A required variable (``${X:?message}``) is not set."""


def interpolate(value: str, env: dict[str, str]) -> str:
    """Compose's ``${X}``, ``${X:-default}``, ``${X-default}``, ``${X:?err}`` and ``$$``."""

    def one(match: re.Match[str]) -> str:
        if match["escaped"]:
            return "$"
        name, op, arg = match["name"], match["op"], match["arg"]
        present = name in env
        current = env.get(name, "")
        if op in (":-", ":?"):
            present = present and current != ""
        if op in (":-", "-"):
            return current if present else arg
        if op in (":?", "?"):
            if not present:
                raise MissingVariable(f"{name}: {arg}")
            return current
        return current

    return _VARIABLE.sub(one, value)


def _interpolate_tree(node: Any, env: dict[str, str]) -> Any:
    if isinstance(node, str):
        return interpolate(node, env)
    if isinstance(node, list):
        return [_interpolate_tree(n, env) for n in node]
    if isinstance(node, dict):
        return {k: _interpolate_tree(v, env) for k, v in node.items()}
    return node


def raw() -> dict[str, Any]:
    """The file as YAML (anchors and merge keys resolved, nothing interpolated)."""
    loaded: dict[str, Any] = yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))
    return loaded


def read_env_file(path: Path) -> dict[str, str]:
    """KEY=VALUE lines, as Compose's --env-file reads them (comments and blanks skipped)."""
    out = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            out[key.strip()] = value.strip()
    return out


@dataclass(frozen=True)
class Service:
    """One service of an interpolated shape."""

    name: str
    spec: dict[str, Any]

    @property
    def environment(self) -> dict[str, str]:
        """Its environment, as strings (Compose's list form turned into a mapping)."""
        env = self.spec.get("environment") or {}
        if isinstance(env, list):
            env = dict(item.split("=", 1) for item in env)
        return {str(k): "" if v is None else str(v) for k, v in env.items()}

    @property
    def command(self) -> list[str]:
        """Its command as a list (empty when the image's default runs)."""
        command = self.spec.get("command") or []
        return [str(a) for a in command] if isinstance(command, list) else command.split()

    @property
    def runs_app(self) -> bool:
        """Whether it runs our image (built from the repository's Dockerfile)."""
        return "build" in self.spec

    @property
    def depends_on(self) -> dict[str, dict[str, Any]]:
        """Dependencies in the long form."""
        deps = self.spec.get("depends_on") or {}
        if isinstance(deps, list):
            return {d: {"condition": "service_started"} for d in deps}
        return {str(k): dict(v or {}) for k, v in deps.items()}

    def mounts(self) -> list[tuple[str, str, bool]]:
        """(source, target, read-only) of each volume in the short form."""
        out = []
        for entry in self.spec.get("volumes") or []:
            parts = str(entry).split(":")
            out.append((parts[0], parts[1], len(parts) > 2 and "ro" in parts[2].split(",")))
        return out

    def host_path(self, container_path: str) -> Path | None:
        """Where a path inside the container comes from in the repository (bind mounts)."""
        for source, target, _ in self.mounts():
            if not source.startswith((".", "/")):
                continue  # a named volume
            if container_path == target or container_path.startswith(target.rstrip("/") + "/"):
                rest = container_path[len(target) :].lstrip("/")
                return (REPO / source / rest).resolve()
        return None


@dataclass(frozen=True)
class Shape:
    """The stack as one profile and env file make it."""

    label: str
    document: dict[str, Any]
    profiles: frozenset[str]
    env: dict[str, str]

    @property
    def services(self) -> dict[str, Service]:
        """The services this shape starts."""
        out = {}
        for name, spec in self.document["services"].items():
            wanted = set(spec.get("profiles") or ())
            if not wanted or wanted & self.profiles:
                out[name] = Service(name, spec)
        return out

    @property
    def all_services(self) -> dict[str, Service]:
        """Every service of the file, started in this shape or not."""
        return {n: Service(n, s) for n, s in self.document["services"].items()}


def shape(label: str, env: dict[str, str], profiles: set[str] | None = None) -> Shape:
    """The interpolated file for ``env`` (``COMPOSE_PROFILES`` picks the profiles)."""
    document = _interpolate_tree(raw(), env)
    active = (
        profiles
        if profiles is not None
        else set(filter(None, env.get("COMPOSE_PROFILES", "").split(",")))
    )
    return Shape(label, document, frozenset(active), env)


def small() -> Shape:
    """`docker compose up -d` with only the secrets exported."""
    return shape("small", dict(SECRETS))


def full() -> Shape:
    """`docker compose --env-file ops/compose/full.env --profile full up -d`."""
    return shape("full", {**SECRETS, **read_env_file(FULL_ENV)}, {"full"})
