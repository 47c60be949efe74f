"""Claims to our role and subject: the `role` claim, Keycloak realm and client roles, maps."""

from __future__ import annotations

from typing import Any

import pytest

from broker.auth.claims import ClaimMapping
from broker.auth.errors import TokenRejectedError
from broker.auth.principals import Role

KEYCLOAK_CLAIMS: dict[str, Any] = {
    "sub": "8d6c-user",
    "preferred_username": "ptn-mitoyo",
    "azp": "tsunagu-partner-app",
    "realm_access": {"roles": ["offline_access", "tsunagu-auditor"]},
    "resource_access": {
        "tsunagu": {"roles": ["partner"]},
        "account": {"roles": ["manage-account"]},
    },
}


def test_the_role_claim_is_read_by_default() -> None:
    assert ClaimMapping().role({"role": "resident"}) is Role.RESIDENT
    assert ClaimMapping().role({"roles": ["other", "auditor"]}) is Role.AUDITOR


def test_an_unknown_or_missing_role_claim_is_refused() -> None:
    with pytest.raises(TokenRejectedError, match=r"superuser.*accepts"):
        ClaimMapping().role({"role": "superuser"})
    with pytest.raises(TokenRejectedError, match="no role claim"):
        ClaimMapping().role({"sub": "x"})


def test_several_of_our_roles_are_refused() -> None:
    with pytest.raises(TokenRejectedError, match="several of our roles"):
        ClaimMapping().role({"roles": ["auditor", "partner"]})


def test_keycloak_realm_roles_are_read_through_the_role_map() -> None:
    mapping = ClaimMapping(role_source="realm_access", role_map={"tsunagu-auditor": Role.AUDITOR})
    assert mapping.role(KEYCLOAK_CLAIMS) is Role.AUDITOR


def test_realm_roles_without_a_mapped_one_are_refused_naming_them() -> None:
    mapping = ClaimMapping(role_source="realm_access", role_map={"tsunagu-partner": Role.PARTNER})
    with pytest.raises(TokenRejectedError, match=r"tsunagu-auditor.*realm_access\.roles"):
        mapping.role(KEYCLOAK_CLAIMS)


def test_keycloak_client_roles_count_only_for_the_configured_client() -> None:
    ours = ClaimMapping(role_source="resource_access", role_client="tsunagu")
    assert ours.role(KEYCLOAK_CLAIMS) is Role.PARTNER
    other = ClaimMapping(role_source="resource_access", role_client="another-api")
    with pytest.raises(TokenRejectedError, match=r"resource_access\.another-api\.roles"):
        other.role(KEYCLOAK_CLAIMS)


def test_the_role_claim_is_ignored_when_roles_come_from_keycloak() -> None:
    mapping = ClaimMapping(role_source="realm_access")
    with pytest.raises(TokenRejectedError, match="no role claim"):
        mapping.role({"role": "admin"})


def test_the_subject_comes_from_the_configured_claim() -> None:
    assert ClaimMapping().subject(KEYCLOAK_CLAIMS) == "8d6c-user"
    named = ClaimMapping(subject_claim="preferred_username")
    assert named.subject(KEYCLOAK_CLAIMS) == "ptn-mitoyo"
    with pytest.raises(TokenRejectedError, match="'email'"):
        ClaimMapping(subject_claim="email").subject(KEYCLOAK_CLAIMS)
