"""Who may write which topic: the ``producers`` of ``ops/kafka/topics.yaml``, made Kafka ACLs.

A connector's Kafka user gets, for the topics the file names for it and nothing else, WRITE
and DESCRIBE, plus IDEMPOTENT_WRITE on the cluster (its producer is idempotent). ``apply``
converges each listed user to exactly that: missing ACLs are created, any other ALLOW ACL of
that user is deleted (a grant left over from an earlier file is a hole). Users the file does
not list are left alone; to take every right from a connector, list it with no topics.

The platform's own processes use the brokers' super user and need no grant.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from broker.bus.sqlite_log import check_topic_name
from contract.bus import BusError

#: The cluster resource's name in ACLs (there is only one).
CLUSTER = "kafka-cluster"


class GrantsFileError(ValueError):
    """The ``producers`` section is not in the expected shape."""


@dataclass(frozen=True, slots=True)
class ProducerGrant:
    """A Kafka user that may write exactly ``topics``."""

    user: str
    topics: tuple[str, ...]


@dataclass(frozen=True, slots=True, order=True)
class Permission:
    """One ALLOW ACL of a user: an operation on a resource (a literal name)."""

    operation: str  # kafka-python's ACLOperation name: WRITE, DESCRIBE, IDEMPOTENT_WRITE
    resource: str  # its ResourceType name: TOPIC, CLUSTER, GROUP, ...
    name: str
    pattern: str = "LITERAL"  # or PREFIXED: every name that starts with ``name``

    def describe(self) -> str:
        """As a report line shows it."""
        prefixed = " (prefix)" if self.pattern != "LITERAL" else ""
        return f"{self.operation} on {self.resource.lower()} {self.name}{prefixed}"


def parse_producers(
    document: object, *, source: str = "topics", prefix: str = ""
) -> list[ProducerGrant]:
    """The ``producers`` section of a parsed topics document (user: [topic, ...]), each topic
    after ``prefix``; none when the section is absent."""
    if not isinstance(document, dict) or document.get("producers") is None:
        return []
    section = document["producers"]
    if not isinstance(section, dict):
        raise GrantsFileError(f"{source}: producers: expected a mapping of user to topics")
    known = set((document.get("topics") or {}).keys())
    grants = []
    for user, topics in section.items():
        where = f"{source}: producers.{user}"
        if not isinstance(user, str) or not user or any(c in user for c in " ,;:"):
            raise GrantsFileError(f"{where}: a Kafka user name without spaces, commas or colons")
        if topics is None:
            topics = []
        if not isinstance(topics, list) or not all(isinstance(t, str) for t in topics):
            raise GrantsFileError(f"{where}: expected a list of topic names")
        for topic in topics:
            if topic not in known:
                raise GrantsFileError(f"{where}: {topic!r} is not a topic of this file")
            try:
                check_topic_name(prefix + topic)
            except BusError as exc:
                raise GrantsFileError(f"{where}: {exc}") from None
        grants.append(ProducerGrant(user, tuple(prefix + t for t in topics)))
    return grants


def permissions(grant: ProducerGrant) -> set[Permission]:
    """The ALLOW ACLs ``grant`` means."""
    wanted = {Permission(op, "TOPIC", t) for t in grant.topics for op in ("WRITE", "DESCRIBE")}
    if grant.topics:
        wanted.add(Permission("IDEMPOTENT_WRITE", "CLUSTER", CLUSTER))
    return wanted


@dataclass(frozen=True, slots=True)
class GrantStep:
    """One change (or its absence) to one user's ACLs."""

    user: str
    action: str  # "ok", "grant", "revoke", "failed"
    detail: str = ""

    def line(self, *, dry_run: bool) -> str:
        """The step as ``tsunagu topics apply`` prints it."""
        labels = {
            "ok": ("ok", "ok"),
            "grant": ("would grant", "granted"),
            "revoke": ("would revoke", "revoked"),
            "failed": ("failed", "failed"),
        }
        label = labels[self.action][0 if dry_run else 1]
        return f"{label:<20} User:{self.user}" + (f": {self.detail}" if self.detail else "")


def apply_grants(
    admin: Any, grants: Sequence[ProducerGrant], *, dry_run: bool = False
) -> tuple[list[GrantStep], list[str]]:
    """Make each granted user's ALLOW ACLs exactly its grant (kafka-python ``admin``):
    the steps, and notes (a cluster that enforces no ACLs is said so, and left alone)."""
    from kafka.errors import KafkaError, SecurityDisabledError

    steps: list[GrantStep] = []
    notes: list[str] = []
    for grant in grants:
        try:
            have = _allowed(admin, grant.user)
        except SecurityDisabledError:
            return [], [
                "producers not applied: the brokers enforce no ACLs (no authorizer); "
                "every client may write every topic"
            ]
        except KafkaError as exc:
            raise BusError(f"describing the ACLs of User:{grant.user} failed: {exc}") from exc
        wanted = permissions(grant)
        missing, extra = sorted(wanted - have), sorted(have - wanted)
        if not missing and not extra:
            steps.append(GrantStep(grant.user, "ok"))
            continue
        for action, changes in (("grant", missing), ("revoke", extra)):
            if not changes:
                continue
            detail = ", ".join(p.describe() for p in changes)
            if not dry_run:
                failure = _change(admin, grant.user, changes, create=action == "grant")
                if failure:
                    steps.append(GrantStep(grant.user, "failed", f"{detail}: {failure}"))
                    continue
            steps.append(GrantStep(grant.user, action, detail))
        if not dry_run and not _settled(admin, grant.user, wanted):
            notes.append(f"User:{grant.user}: the new ACLs were not yet in force when apply ended")
    return steps, notes


def _settled(admin: Any, user: str, wanted: set[Permission], timeout_s: float = 15.0) -> bool:
    """Wait until the broker answers with exactly ``wanted``: KRaft brokers apply ACLs from
    the metadata log a moment after the controller accepted them."""
    from kafka.errors import KafkaError

    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if _allowed(admin, user) == wanted:
                return True
        except KafkaError:
            pass
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)


def _allowed(admin: Any, user: str) -> set[Permission]:
    """Every ALLOW ACL naming ``user``."""
    from kafka.admin import (
        ACLFilter,
        ACLOperation,
        ACLPermissionType,
        ACLResourcePatternType,
        ResourcePatternFilter,
        ResourceType,
    )

    found, error = admin.describe_acls(
        ACLFilter(
            principal=f"User:{user}",
            host="*",
            operation=ACLOperation.ANY,
            permission_type=ACLPermissionType.ALLOW,
            resource_pattern=ResourcePatternFilter(
                ResourceType.ANY, None, ACLResourcePatternType.ANY
            ),
        )
    )
    del error  # kafka-python raises any error itself; this is always NoError
    return {
        Permission(
            acl.operation.name,
            acl.resource_pattern.resource_type.name,
            acl.resource_pattern.resource_name,
            acl.resource_pattern.pattern_type.name,
        )
        for acl in found
    }


def _change(admin: Any, user: str, changes: Iterable[Permission], *, create: bool) -> str | None:
    """Create or delete ``changes`` for ``user``; what failed, or None."""
    from kafka.admin import (
        ACL,
        ACLFilter,
        ACLOperation,
        ACLPermissionType,
        ACLResourcePatternType,
        ResourcePattern,
        ResourcePatternFilter,
        ResourceType,
    )
    from kafka.errors import KafkaError, NoError

    def pattern(p: Permission, cls: Any) -> Any:
        return cls(ResourceType[p.resource], p.name, ACLResourcePatternType[p.pattern])

    try:
        if create:
            acls = [
                ACL(
                    principal=f"User:{user}",
                    host="*",
                    operation=ACLOperation[p.operation],
                    permission_type=ACLPermissionType.ALLOW,
                    resource_pattern=pattern(p, ResourcePattern),
                )
                for p in changes
            ]
            result = admin.create_acls(acls)
            return "; ".join(error.__name__ for error in result["failed"]) or None
        filters = [
            ACLFilter(
                principal=f"User:{user}",
                host="*",
                operation=ACLOperation[p.operation],
                permission_type=ACLPermissionType.ALLOW,
                resource_pattern=pattern(p, ResourcePatternFilter),
            )
            for p in changes
        ]
        deleted = admin.delete_acls(filters)
        return "; ".join(e.__name__ for _, _, e in deleted if e is not NoError) or None
    except KafkaError as exc:
        return str(exc)
