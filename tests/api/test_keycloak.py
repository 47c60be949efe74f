"""A real Keycloak as the region's OpenID provider: `tsunagu up` configured with its issuer only.

The realms are in tests/auth/keycloak/: ``tsunagu`` has a public client for residents'
password grants, a confidential client (``audit-office``) whose service account holds the
``auditor`` client role of ``tsunagu`` and the ``tsunagu-auditor`` realm role, and a client
whose tokens are for another audience; ``elsewhere`` is another issuer with the same names.
"""

from __future__ import annotations

import base64
import json
import tempfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import jwt
import pytest

from broker.auth.claims import ClaimMapping
from broker.auth.errors import TokenRejectedError
from broker.auth.principals import Role
from broker.auth.verifier import RemoteKeys, TokenVerifier
from ops.keycloak.server import KeycloakServer
from tests.fixtures.platform import RunningPlatform, start_platform, stop_platform

ROLE_MAP = {"tsunagu-resident": "resident", "tsunagu-auditor": "auditor"}


def _start(keycloak: KeycloakServer, settings: dict[str, str]) -> RunningPlatform:
    data_dir = Path(tempfile.mkdtemp(prefix="keycloak-platform-"))
    return start_platform(data_dir, {"TSUNAGU_OIDC_ISSUER": keycloak.issuer("tsunagu"), **settings})


@pytest.fixture(scope="module")
def realm_roles(keycloak: KeycloakServer) -> Iterator[RunningPlatform]:
    """A platform reading Keycloak realm roles through a map, subjects from usernames."""
    running = _start(
        keycloak,
        {
            "TSUNAGU_OIDC_ROLE_SOURCE": "realm_access",
            "TSUNAGU_OIDC_ROLE_MAP": json.dumps(ROLE_MAP),
            "TSUNAGU_OIDC_SUBJECT_CLAIM": "preferred_username",
        },
    )
    try:
        yield running
    finally:
        stop_platform(running)


@pytest.fixture(scope="module")
def client_roles(keycloak: KeycloakServer) -> Iterator[RunningPlatform]:
    """A platform reading the `tsunagu` client's roles (our names), subjects from `sub`."""
    running = _start(keycloak, {"TSUNAGU_OIDC_ROLE_SOURCE": "resource_access"})
    try:
        yield running
    finally:
        stop_platform(running)


def _password_token(
    keycloak: KeycloakServer,
    user: str,
    password: str,
    *,
    realm: str = "tsunagu",
    client_id: str = "tsunagu-portal",
) -> str:
    answer = keycloak.token(
        realm,
        grant_type="password",
        client_id=client_id,
        scope="openid",
        username=user,
        password=password,
    )
    return str(answer["access_token"])


def _audit_office_token(keycloak: KeycloakServer) -> str:
    answer = keycloak.token(
        "tsunagu",
        grant_type="client_credentials",
        client_id="audit-office",
        client_secret="audit-office-secret",
    )
    return str(answer["access_token"])


def _get(platform: RunningPlatform, path: str, token: str) -> httpx.Response:
    with platform.client() as http:
        return http.get(path, headers={"Authorization": f"Bearer {token}"})


def _refused(response: httpx.Response, why: str) -> None:
    assert response.status_code == 401, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert why in response.json()["detail"], response.json()["detail"]


def test_a_residents_password_grant_token_is_accepted_by_realm_role(
    keycloak: KeycloakServer, realm_roles: RunningPlatform
) -> None:
    token = _password_token(keycloak, "res-hanako01", "hanako-pass")
    response = _get(realm_roles, "/v1/me/consents", token)
    assert response.status_code == 200, response.text


def test_a_client_credentials_token_is_accepted_by_mapped_realm_role(
    keycloak: KeycloakServer, realm_roles: RunningPlatform
) -> None:
    token = _audit_office_token(keycloak)
    assert _get(realm_roles, "/v1/audit/verification", token).status_code == 200
    # The role is the mapped realm role: an auditor is no resident.
    assert _get(realm_roles, "/v1/me/consents", token).status_code == 403


def test_a_client_credentials_token_is_accepted_by_client_role(
    keycloak: KeycloakServer, client_roles: RunningPlatform
) -> None:
    response = _get(client_roles, "/v1/audit/verification", _audit_office_token(keycloak))
    assert response.status_code == 200, response.text


def test_realm_roles_do_not_count_where_client_roles_are_configured(
    keycloak: KeycloakServer, client_roles: RunningPlatform
) -> None:
    token = _password_token(keycloak, "res-hanako01", "hanako-pass")
    _refused(_get(client_roles, "/v1/me/consents", token), "resource_access.tsunagu.roles")


def test_a_realm_role_that_is_not_mapped_is_refused(
    keycloak: KeycloakServer, realm_roles: RunningPlatform
) -> None:
    token = _password_token(keycloak, "res-guest001", "guest-pass")
    _refused(_get(realm_roles, "/v1/me/consents", token), "unknown role")


def test_a_token_of_another_realm_is_refused(
    keycloak: KeycloakServer, realm_roles: RunningPlatform
) -> None:
    token = _password_token(keycloak, "res-hanako01", "hanako-pass", realm="elsewhere")
    _refused(_get(realm_roles, "/v1/me/consents", token), "not issued by")


def test_a_token_for_another_audience_is_refused(
    keycloak: KeycloakServer, realm_roles: RunningPlatform
) -> None:
    token = _password_token(keycloak, "res-hanako01", "hanako-pass", client_id="other-app")
    _refused(_get(realm_roles, "/v1/me/consents", token), "not for audience 'tsunagu'")


def test_a_keycloak_token_stripped_to_alg_none_is_refused(
    keycloak: KeycloakServer, realm_roles: RunningPlatform
) -> None:
    token = _password_token(keycloak, "res-hanako01", "hanako-pass")
    _, payload, _ = token.split(".")
    header = base64.urlsafe_b64encode(b'{"alg":"none","typ":"JWT"}').rstrip(b"=").decode()
    _refused(_get(realm_roles, "/v1/me/consents", f"{header}.{payload}."), "'none'")


def test_keycloak_metadata_naming_another_issuer_is_refused(keycloak: KeycloakServer) -> None:
    token = _audit_office_token(keycloak)
    kid = jwt.get_unverified_header(token)["kid"]
    # Configured with a trailing slash, the issuer is not the one Keycloak's metadata names
    # (Discovery §4.3 wants them identical), so no key of that document is trusted.
    slashed = RemoteKeys(keycloak.issuer("tsunagu") + "/", cache_s=300, cooldown_s=0)
    with pytest.raises(TokenRejectedError, match=r"names issuer .* not the configured"):
        slashed.key(kid)
    # ... while the exact issuer finds the keys, and its token is accepted.
    exact = keycloak.issuer("tsunagu")
    verifier = TokenVerifier(
        RemoteKeys(exact, cache_s=300, cooldown_s=0),
        issuer=exact,
        audience="tsunagu",
        claims=ClaimMapping(role_source="resource_access", role_client="tsunagu"),
    )
    assert verifier.verify(token).role is Role.AUDITOR
