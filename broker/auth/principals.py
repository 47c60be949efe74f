"""Roles and the principal a verified token stands for."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum


class Role(StrEnum):
    """What a caller is; each route admits some roles and refuses the rest (403)."""

    CONNECTOR = "connector"
    PARTNER = "partner"
    RESIDENT = "resident"
    AUDITOR = "auditor"
    ADMIN = "admin"


@dataclass(frozen=True, slots=True)
class Principal:
    """A verified caller: the token's subject and role, and what the token binds it to."""

    subject: str
    role: Role
    issuer: str
    expires_at: datetime
    #: CloudEvents ``source`` values a connector may publish as (empty for other roles).
    sources: frozenset[str] = field(default_factory=frozenset)
    #: Event types a connector is registered for: exact types, or ``<domain>.*`` for all of a
    #: domain's (claim ``event_types``; empty for other roles, and a connector without it
    #: may publish nothing).
    event_types: frozenset[str] = field(default_factory=frozenset)
    #: OAuth scopes as given; informational: no scope lifts a consent refusal.
    scopes: frozenset[str] = field(default_factory=frozenset)
    token_id: str | None = None
