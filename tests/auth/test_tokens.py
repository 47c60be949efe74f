"""Token verification: OIDC keys by kid over HTTP, rotation, and every kind of forged token."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import jwt
import pytest

from broker.auth.errors import TokenRejectedError
from broker.auth.issuer import EmbeddedIssuer
from broker.auth.principals import Role
from broker.auth.verifier import RemoteKeys, StaticKeys, TokenVerifier
from tests.auth.oidc import Provider, new_key, running_provider


@pytest.fixture
def provider() -> Iterator[Provider]:
    with running_provider("RS256", "ES256") as p:
        yield p


def _verifier(provider: Provider, cache_s: float = 300.0) -> TokenVerifier:
    keys = RemoteKeys(provider.issuer, cache_s=cache_s, cooldown_s=0)
    return TokenVerifier(
        keys, issuer=provider.issuer, audience="tsunagu", leeway_s=30, cache_s=cache_s
    )


@pytest.mark.parametrize("alg", ["RS256", "ES256"])
def test_token_signed_by_a_key_from_the_providers_jwks_is_accepted(
    provider: Provider, alg: str
) -> None:
    key = next(k for k in provider.keys if k.alg == alg)
    principal = _verifier(provider).verify(provider.sign(key, sub="ptn-mitoyo", scope="a b"))
    assert principal.subject == "ptn-mitoyo"
    assert principal.role is Role.PARTNER
    assert principal.scopes == {"a", "b"}
    assert principal.sources == frozenset()


def test_keys_are_fetched_once_and_cached(provider: Provider) -> None:
    verifier = _verifier(provider)
    for key in provider.keys * 3:
        verifier.verify(provider.sign(key))
    assert provider.fetches == 1


def test_a_rotated_in_key_is_fetched_on_first_sight(provider: Provider) -> None:
    verifier = _verifier(provider)
    verifier.verify(provider.sign(provider.keys[0]))
    rotated = new_key("ES256")
    provider.keys.append(rotated)
    assert verifier.verify(provider.sign(rotated)).subject == "ptn-test"
    assert provider.fetches == 2


def test_after_rotation_the_removed_kid_is_refused_once_the_cache_expires(
    provider: Provider,
) -> None:
    verifier = _verifier(provider, cache_s=0.2)
    old = provider.keys[0]
    verifier.verify(provider.sign(old))
    provider.keys.remove(old)
    time.sleep(0.3)  # the cached key set has expired: the next token makes it fetch again
    with pytest.raises(TokenRejectedError, match="no key with kid"):
        verifier.verify(provider.sign(old))
    assert verifier.verify(provider.sign(provider.keys[0])).role is Role.PARTNER


def test_token_signed_by_an_unknown_key_with_a_known_kid_is_refused(provider: Provider) -> None:
    forger = new_key("RS256")
    forger.kid = provider.keys[0].kid  # claims to be the provider's key
    with pytest.raises(TokenRejectedError, match="signature"):
        _verifier(provider).verify(provider.sign(forger))


def test_token_of_another_issuer_is_refused(provider: Provider) -> None:
    token = provider.sign(provider.keys[0], issuer="https://evil.example")
    with pytest.raises(TokenRejectedError, match="not issued by"):
        _verifier(provider).verify(token)


def test_token_of_another_issuer_fetches_no_keys(provider: Provider) -> None:
    stranger = new_key("RS256")  # a kid the provider does not know: no refetch for it either
    token = provider.sign(stranger, issuer="https://evil.example")
    with pytest.raises(TokenRejectedError, match="not issued by"):
        _verifier(provider).verify(token)
    assert provider.fetches == 0


def test_keys_are_found_from_the_issuers_discovery_metadata(provider: Provider) -> None:
    verifier = _verifier(provider)
    assert verifier.verify(provider.sign(provider.keys[0])).role is Role.PARTNER
    assert provider.fetches == 1  # the metadata's jwks_uri, the stand-in's JWKS


def test_metadata_naming_another_issuer_is_refused_and_its_keys_never_fetched(
    provider: Provider,
) -> None:
    provider.metadata_issuer = "https://evil.example"
    with pytest.raises(TokenRejectedError, match=r"names issuer 'https://evil.example'.*4\.3"):
        _verifier(provider).verify(provider.sign(provider.keys[0]))
    assert provider.fetches == 0


def test_an_issuer_configured_with_a_trailing_slash_is_not_the_providers(
    provider: Provider,
) -> None:
    keys = RemoteKeys(provider.issuer + "/", cache_s=300, cooldown_s=0)
    verifier = TokenVerifier(keys, issuer=provider.issuer + "/", audience="tsunagu")
    token = provider.sign(provider.keys[0], issuer=provider.issuer + "/")
    with pytest.raises(TokenRejectedError, match="names issuer"):
        verifier.verify(token)


def test_token_for_another_audience_is_refused(provider: Provider) -> None:
    token = provider.sign(provider.keys[0], audience="another-api")
    with pytest.raises(TokenRejectedError, match="audience"):
        _verifier(provider).verify(token)


def test_expired_token_is_refused_beyond_the_clock_skew(provider: Provider) -> None:
    late = provider.sign(provider.keys[1], lifetime=timedelta(seconds=-40))
    within_skew = provider.sign(provider.keys[1], lifetime=timedelta(seconds=-10))
    verifier = _verifier(provider)
    with pytest.raises(TokenRejectedError, match="expired"):
        verifier.verify(late)
    assert verifier.verify(within_skew).subject == "ptn-test"


def test_token_not_valid_yet_is_refused(provider: Provider) -> None:
    token = provider.sign(provider.keys[1], not_before=datetime.now(UTC) + timedelta(minutes=5))
    with pytest.raises(TokenRejectedError, match="not valid yet"):
        _verifier(provider).verify(token)


def _b64(data: dict[str, object]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def test_alg_none_is_refused(provider: Provider) -> None:
    now = int(time.time())
    claims = {"iss": provider.issuer, "aud": "tsunagu", "sub": "x", "role": "admin"}
    unsigned = (
        _b64({"alg": "none", "typ": "JWT", "kid": provider.keys[0].kid})
        + "."
        + _b64({**claims, "iat": now, "exp": now + 60})
        + "."
    )
    with pytest.raises(TokenRejectedError, match="algorithm 'none' is not accepted"):
        _verifier(provider).verify(unsigned)


def test_hmac_token_keyed_with_the_public_key_is_refused(provider: Provider) -> None:
    # The classic confusion attack: HS256 with the provider's public key as the secret.
    public = json.dumps(provider.keys[0].jwk()).encode()
    now = int(time.time())
    claims = {"iss": provider.issuer, "aud": "tsunagu", "sub": "x", "role": "admin"}
    signing_input = (
        _b64({"alg": "HS256", "typ": "JWT", "kid": provider.keys[0].kid})
        + "."
        + _b64({**claims, "iat": now, "exp": now + 60})
    )
    mac = hmac.new(public, signing_input.encode(), hashlib.sha256).digest()
    token = signing_input + "." + base64.urlsafe_b64encode(mac).rstrip(b"=").decode()
    with pytest.raises(TokenRejectedError, match="HS256"):
        _verifier(provider).verify(token)


def test_token_without_a_role_or_with_an_unknown_role_is_refused(provider: Provider) -> None:
    verifier = _verifier(provider)
    with pytest.raises(TokenRejectedError, match="unknown role 'superuser'"):
        verifier.verify(provider.sign(provider.keys[0], role="superuser"))
    keycloak_style = provider.sign(provider.keys[0], role=None, roles=["offline", "auditor"])
    assert verifier.verify(keycloak_style).role is Role.AUDITOR


def test_garbage_is_not_a_jwt(tmp_path: Path) -> None:
    issuer = EmbeddedIssuer.in_data_dir(tmp_path, audience="a")
    verifier = TokenVerifier(StaticKeys(issuer.jwks()), issuer="i", audience="a")
    with pytest.raises(TokenRejectedError, match="not a JWT"):
        verifier.verify("garbage")


def test_embedded_issuer_keeps_its_key_and_binds_connectors_to_sources(tmp_path: Path) -> None:
    issuer = EmbeddedIssuer.in_data_dir(tmp_path, audience="tsunagu")
    again = EmbeddedIssuer.in_data_dir(tmp_path, audience="tsunagu")
    assert again.kid == issuer.kid
    assert (tmp_path / "keys" / "issuer.pem").stat().st_mode & 0o077 == 0
    verifier = TokenVerifier(StaticKeys(issuer.jwks()), issuer=issuer.issuer, audience="tsunagu")
    token = again.issue(
        "mitoyo-odt",
        Role.CONNECTOR,
        sources=["urn:tsunagu:connector:odt"],
        event_types=["transport.*"],
    )
    principal = verifier.verify(token)
    assert principal.role is Role.CONNECTOR
    assert principal.sources == {"urn:tsunagu:connector:odt"}
    assert principal.event_types == {"transport.*"}
    with pytest.raises(ValueError, match="must name the CloudEvents source"):
        issuer.issue("x", Role.CONNECTOR)
    with pytest.raises(ValueError, match="must name the event types"):
        issuer.issue("x", Role.CONNECTOR, sources=["urn:tsunagu:connector:odt"])
    with pytest.raises(ValueError, match="only a connector token binds sources"):
        issuer.issue("ptn-x", Role.PARTNER, sources=["urn:x"])


def test_embedded_token_is_refused_by_another_installation(tmp_path: Path) -> None:
    ours = EmbeddedIssuer.in_data_dir(tmp_path / "ours", audience="tsunagu")
    theirs = EmbeddedIssuer.in_data_dir(tmp_path / "theirs", audience="tsunagu")
    verifier = TokenVerifier(StaticKeys(ours.jwks()), issuer=ours.issuer, audience="tsunagu")
    with pytest.raises(TokenRejectedError, match="no key with kid"):
        verifier.verify(theirs.issue("admin", Role.ADMIN))


def _rs256_under(kid: str, issuer: str, role: str = "admin") -> str:
    """An RS256 token signed by a fresh RSA key, naming someone else's ``kid``."""
    forger = new_key("RS256")
    now = int(time.time())
    claims = {"iss": issuer, "aud": "tsunagu", "sub": "x", "role": role, "iat": now}
    return jwt.encode(
        {**claims, "exp": now + 60}, forger.private, algorithm="RS256", headers={"kid": kid}
    )


def test_rs256_header_naming_the_platforms_ec_key_is_refused(tmp_path: Path) -> None:
    # The algorithm comes from the key (EC P-256: ES256), never from the token's header.
    issuer = EmbeddedIssuer.in_data_dir(tmp_path, audience="tsunagu")
    verifier = TokenVerifier(StaticKeys(issuer.jwks()), issuer=issuer.issuer, audience="tsunagu")
    token = _rs256_under(issuer.kid, issuer.issuer)
    with pytest.raises(TokenRejectedError, match="ES256"):
        verifier.verify(token)
    with pytest.raises(TokenRejectedError, match="ES256"):
        verifier.verify(token, datetime.now(UTC))


def test_es256_header_naming_a_providers_rsa_key_is_refused(provider: Provider) -> None:
    rsa_key = next(k for k in provider.keys if k.alg == "RS256")
    ec_key = next(k for k in provider.keys if k.alg == "ES256")
    token = jwt.encode(
        {
            "iss": provider.issuer,
            "aud": "tsunagu",
            "sub": "x",
            "role": "admin",
            "iat": int(time.time()),
            "exp": int(time.time()) + 60,
        },
        ec_key.private,
        algorithm="ES256",
        headers={"kid": rsa_key.kid},
    )
    with pytest.raises(TokenRejectedError, match="RS256"):
        _verifier(provider).verify(token)


def test_a_slow_key_server_delays_no_token_of_a_known_key(provider: Provider) -> None:
    keys = RemoteKeys(provider.issuer, cache_s=300, cooldown_s=0, timeout_s=30)
    verifier = TokenVerifier(keys, issuer=provider.issuer, audience="tsunagu", leeway_s=30)
    known = provider.keys[0]
    verifier.verify(provider.sign(known))  # the key set is fetched once, quickly
    provider.gate.clear()  # from now on the provider does not answer until the gate opens
    provider.asked.clear()
    strangers = [provider.sign(new_key("ES256")) for _ in range(20)]
    outcomes: list[str] = []

    def verify(token: str) -> None:
        try:
            verifier.verify(token)
            outcomes.append("accepted")
        except TokenRejectedError as exc:
            outcomes.append(exc.detail)

    first = threading.Thread(target=verify, args=(strangers[0],))
    first.start()
    assert provider.asked.wait(10)  # the refetch for an unknown kid is held at the gate
    keys.cooldown_s = 60  # from here on, the one fetch in flight must serve every stranger
    waiting = [threading.Thread(target=verify, args=(t,)) for t in strangers[1:]]
    for t in waiting:
        t.start()
    # Meanwhile fresh tokens of the known key verify, with the provider still silent.
    for sub in ("ptn-a", "ptn-b", "ptn-c"):
        assert verifier.verify(provider.sign(known, sub=sub)).subject == sub
    assert not provider.gate.is_set() and outcomes == []
    provider.gate.set()
    for t in [first, *waiting]:
        t.join()
    assert provider.fetches == 2  # twenty unknown kids, one fetch
    assert len(outcomes) == 20
    assert all("no key with kid" in o for o in outcomes)


def test_a_failed_fetch_is_remembered_until_its_cool_down_ends(provider: Provider) -> None:
    provider.status = 503  # the provider is down
    keys = RemoteKeys(provider.issuer, cache_s=300, cooldown_s=60, timeout_s=5)
    verifier = TokenVerifier(keys, issuer=provider.issuer, audience="tsunagu", leeway_s=30)
    token = provider.sign(provider.keys[0])
    with pytest.raises(TokenRejectedError, match="unreachable") as first:
        verifier.verify(token)
    assert "503" in first.value.detail
    assert "next attempt is in" in first.value.detail
    for _ in range(10):  # answered from the negative cache, without asking the provider
        with pytest.raises(TokenRejectedError, match="unreachable"):
            verifier.verify(token)
    assert provider.fetches == 1
