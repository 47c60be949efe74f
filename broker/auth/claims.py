"""The one place that turns a verified token's claims into our subject and role.

The embedded issuer writes a ``role`` claim with our role names. An OpenID provider is read
as its settings say: roles from ``role``/``roles``, from Keycloak's realm roles
(``realm_access.roles``) or from one client's roles (``resource_access.<client>.roles``),
each provider role renamed to ours by an optional map, and the subject from ``sub`` or
another claim (Keycloak's ``preferred_username``, or ``azp`` for a client's own token).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from broker.auth.errors import TokenRejectedError
from broker.auth.principals import Role

RoleSource = Literal["role", "realm_access", "resource_access"]


def strings(value: Any) -> frozenset[str]:
    """A claim read as a set of strings: space-separated text or a JSON list of strings."""
    if isinstance(value, str):
        return frozenset(value.split())
    if isinstance(value, list):
        return frozenset(v for v in value if isinstance(v, str))
    return frozenset()


@dataclass(frozen=True, slots=True)
class ClaimMapping:
    """Where a token's role and subject are, and how provider role names become ours."""

    role_source: RoleSource = "role"
    #: The client whose ``resource_access`` roles count (``role_source="resource_access"``).
    role_client: str = ""
    #: Provider role name -> our role; empty means the provider uses our names.
    role_map: Mapping[str, Role] = field(default_factory=dict)
    subject_claim: str = "sub"

    def subject(self, claims: Mapping[str, Any]) -> str:
        """The caller's subject: the configured claim, a non-empty string."""
        value = claims.get(self.subject_claim)
        if not isinstance(value, str) or not value:
            raise TokenRejectedError(
                f"the token carries no {self.subject_claim!r} claim to name its subject; "
                "have the identity provider add it (TSUNAGU_OIDC_SUBJECT_CLAIM says which)"
            )
        return value

    def role(self, claims: Mapping[str, Any]) -> Role:
        """The caller's one role of ours, from where the settings say roles are."""
        names, where = self._provider_roles(claims)
        if names is None:
            raise TokenRejectedError(f"the token carries no role claim ({where})")
        ours = {self._ours(n) for n in names} - {None}
        if len(ours) > 1:
            found = ", ".join(sorted(r.value for r in ours if r is not None))
            raise TokenRejectedError(
                f"the token carries several of our roles ({found}) in {where}; one is needed"
            )
        if not ours:
            accepted = (
                ", ".join(sorted(self.role_map))
                if self.role_map
                else ", ".join(r.value for r in Role)
            )
            raise TokenRejectedError(
                f"unknown role {', '.join(repr(n) for n in sorted(names)) or '(none)'} in the "
                f"token's {where}; this platform accepts {accepted} (TSUNAGU_OIDC_ROLE_MAP maps "
                "provider roles to ours)"
            )
        (role,) = ours
        assert role is not None
        return role

    def _ours(self, name: str) -> Role | None:
        if self.role_map:
            return self.role_map.get(name)
        try:
            return Role(name)
        except ValueError:
            return None

    def _provider_roles(self, claims: Mapping[str, Any]) -> tuple[frozenset[str] | None, str]:
        """The provider's role names (None when the claim is absent) and where they were."""
        if self.role_source == "realm_access":
            realm = claims.get("realm_access")
            roles = realm.get("roles") if isinstance(realm, dict) else None
            return (strings(roles) if roles is not None else None), "realm_access.roles"
        if self.role_source == "resource_access":
            where = f"resource_access.{self.role_client}.roles"
            access = claims.get("resource_access")
            client = access.get(self.role_client) if isinstance(access, dict) else None
            roles = client.get("roles") if isinstance(client, dict) else None
            return (strings(roles) if roles is not None else None), where
        if "role" in claims and claims["role"] is not None:
            raw = claims["role"]
            if not isinstance(raw, str):
                return frozenset(), "role"
            # An unknown single role is named as such rather than filtered out.
            return frozenset({raw}), "role"
        if isinstance(claims.get("roles"), list):
            return strings(claims["roles"]), "roles"
        return None, "role"
