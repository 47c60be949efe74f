"""Identities at the API: the region's OIDC provider, the embedded issuer's CLI, roles, sources."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import httpx
import jwt
import pytest

from broker.auth.issuer import EmbeddedIssuer
from tests.auth.oidc import Provider, new_key, running_provider
from tests.events import make_event
from tests.fixtures.platform import RunningPlatform, start_platform, stop_platform

CE_BATCH = {"content-type": "application/cloudevents-batch+json"}


@pytest.fixture(scope="module")
def oidc() -> Iterator[tuple[Provider, RunningPlatform]]:
    """A platform trusting a local OIDC provider, with a short key cache."""
    with running_provider("RS256", "ES256") as provider:
        data_dir = Path(tempfile.mkdtemp(prefix="oidc-"))
        running = start_platform(
            data_dir,
            {
                "TSUNAGU_OIDC_ISSUER": provider.issuer,
                "TSUNAGU_JWKS_CACHE_S": "0.5",
                "TSUNAGU_JWKS_REFETCH_COOLDOWN_S": "0",
            },
        )
        try:
            yield provider, running
        finally:
            stop_platform(running)


def _get(platform: RunningPlatform, token: str) -> tuple[int, dict[str, str], dict[str, str]]:
    with platform.client() as http:
        r = http.get("/v1/me/consents", headers={"Authorization": f"Bearer {token}"})
    body = r.json() if r.headers["content-type"].endswith("json") else {}
    return r.status_code, dict(r.headers), body


@pytest.mark.parametrize("alg", ["RS256", "ES256"])
def test_tokens_of_the_regions_provider_are_accepted(
    oidc: tuple[Provider, RunningPlatform], alg: str
) -> None:
    provider, platform = oidc
    key = next(k for k in provider.keys if k.alg == alg)
    status, _, _ = _get(platform, provider.sign(key, role="resident", sub="res-abcd1234"))
    assert status == 200


def test_forged_tokens_are_401_problems_saying_why(oidc: tuple[Provider, RunningPlatform]) -> None:
    provider, platform = oidc
    good = provider.keys[0]
    forger = new_key("RS256")
    forger.kid = good.kid
    cases = {
        "wrong key": (provider.sign(forger, role="resident"), "signature"),
        "wrong issuer": (
            provider.sign(good, role="resident", issuer="https://evil.example"),
            "not issued by",
        ),
        "expired": (
            provider.sign(good, role="resident", lifetime=timedelta(minutes=-5)),
            "expired",
        ),
        "alg none": (
            "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJzdWIiOiJyZXMtYWJjZDEyMzQifQ.",
            "'none' is not accepted",
        ),
        "embedded issuer's token": (platform.token("resident", "res-abcd1234"), "not issued by"),
    }
    for name, (token, why) in cases.items():
        status, headers, body = _get(platform, token)
        assert status == 401, name
        assert headers["content-type"] == "application/problem+json", name
        assert headers["www-authenticate"].startswith('Bearer error="invalid_token"'), name
        assert why in body["detail"], (name, body["detail"])


def test_a_valid_token_without_the_right_role_is_403(
    oidc: tuple[Provider, RunningPlatform],
) -> None:
    provider, platform = oidc
    status, _, body = _get(platform, provider.sign(provider.keys[1], role="partner"))
    assert status == 403
    assert "resident role" in body["detail"]


def test_a_removed_provider_key_is_refused_after_rotation(
    oidc: tuple[Provider, RunningPlatform],
) -> None:
    provider, platform = oidc
    retired = new_key("ES256")
    provider.keys.append(retired)
    token = provider.sign(retired, role="resident", sub="res-abcd1234")
    assert _get(platform, token)[0] == 200  # a new kid is fetched on first sight
    provider.keys.remove(retired)
    time.sleep(1.0)  # past TSUNAGU_JWKS_CACHE_S: the next unknown-key check refetches
    status, _, body = _get(platform, token)
    assert status == 401
    assert "no key with kid" in body["detail"]


def test_token_cli_issues_a_working_admin_token(platform: RunningPlatform) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "broker.cli", "token", "issue", "--role", "admin", "--sub", "ops"],
        env={**os.environ, "TSUNAGU_DATA_DIR": str(platform.data_dir)},
        capture_output=True,
        text=True,
        check=True,
    )
    token = out.stdout.strip()
    with platform.client() as http:
        r = http.get("/v1/partners", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 200


def test_token_cli_refuses_a_connector_without_a_source(platform: RunningPlatform) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "broker.cli", "token", "issue", "--role", "connector", "--sub", "c"],
        env={**os.environ, "TSUNAGU_DATA_DIR": str(platform.data_dir)},
        capture_output=True,
        text=True,
    )
    assert out.returncode == 2
    assert "source" in out.stderr


def test_a_connector_cannot_publish_as_another_firm(platform: RunningPlatform) -> None:
    ours = make_event()
    theirs = make_event(source="urn:tsunagu:connector:another-firm")
    headers = {
        **CE_BATCH,
        **platform.auth("connector", "odt", sources=(ours["source"],)),
    }
    with platform.client() as http:
        r = http.post("/v1/events", json=[ours, theirs], headers=headers)
        anonymous = http.post("/v1/events", json=[ours], headers=CE_BATCH)
        partner = http.post(
            "/v1/events", json=[ours], headers={**CE_BATCH, **platform.auth("partner", "p")}
        )
    assert r.status_code == 202
    first, second = r.json()["results"]
    assert first["status"] == "accepted"
    assert second["status"] == "rejected"
    assert second["reason"] == "source_not_allowed"
    assert anonymous.status_code == 401
    assert partner.status_code == 403


def test_an_rs256_token_naming_the_platforms_ec_key_is_a_401_problem_on_every_route(
    platform: RunningPlatform,
) -> None:
    # No credentials needed for the attack: any RSA key, the platform's public kid.
    kid = EmbeddedIssuer.in_data_dir(platform.data_dir, audience="tsunagu").kid
    now = int(time.time())
    claims = {"iss": "urn:tsunagu:issuer:embedded", "aud": "tsunagu", "sub": "x", "role": "admin"}
    token = jwt.encode(
        {**claims, "iat": now, "exp": now + 60},
        new_key("RS256").private,
        algorithm="RS256",
        headers={"kid": kid},
    )
    auth = {"Authorization": f"Bearer {token}"}
    with platform.client() as http:
        spec = http.get("/openapi.json").json()
        guarded = [
            (method, re.sub(r"\{[^}]+\}", "x", path))
            for path, item in spec["paths"].items()
            for method, operation in item.items()
            if operation.get("security")
        ]
        assert len(guarded) > 10
        for method, path in guarded:
            r = http.request(method.upper(), path, headers=auth)
            assert r.status_code == 401, (method, path, r.status_code, r.text)
            assert r.headers["content-type"] == "application/problem+json", (method, path)
            assert "ES256" in r.json()["detail"], (method, path)


@pytest.fixture(scope="module")
def slow_oidc() -> Iterator[tuple[Provider, RunningPlatform]]:
    """A platform trusting a local OIDC provider that the tests can make slow."""
    with running_provider("ES256") as provider:
        data_dir = Path(tempfile.mkdtemp(prefix="oidc-slow-"))
        running = start_platform(
            data_dir,
            {
                "TSUNAGU_OIDC_ISSUER": provider.issuer,
                "TSUNAGU_JWKS_CACHE_S": "300",
                "TSUNAGU_JWKS_REFETCH_COOLDOWN_S": "0",
            },
        )
        try:
            yield provider, running
        finally:
            provider.gate.set()
            stop_platform(running)


def test_a_slow_identity_provider_blocks_neither_health_nor_known_keys(
    slow_oidc: tuple[Provider, RunningPlatform],
) -> None:
    provider, platform = slow_oidc
    known = provider.keys[0]
    assert _get(platform, provider.sign(known, role="resident", sub="res-abcd0000"))[0] == 200
    provider.gate.clear()  # the provider now holds every JWKS request until the gate opens
    provider.asked.clear()
    strangers = [provider.sign(new_key("ES256"), role="resident") for _ in range(60)]
    statuses: list[int] = []

    def stranger(token: str) -> None:
        with httpx.Client(base_url=platform.base_url, timeout=60) as http:
            r = http.get("/v1/me/consents", headers={"Authorization": f"Bearer {token}"})
        statuses.append(r.status_code)

    threads = [threading.Thread(target=stranger, args=(t,)) for t in strangers]
    for t in threads:
        t.start()
    try:
        assert provider.asked.wait(20)  # a key fetch is in flight, held at the gate
        # With sixty requests waiting on the provider, health and signed-in users still answer.
        with platform.client() as http:
            assert http.get("/healthz").status_code == 200
        for n in range(3):
            token = provider.sign(known, role="resident", sub=f"res-abcd000{n + 1}")
            assert _get(platform, token)[0] == 200
        assert not provider.gate.is_set()  # all of it while the provider was still silent
    finally:
        provider.gate.set()
        for t in threads:
            t.join()
    assert statuses == [401] * 60


SCOPED_PARTNER = ["--role", "partner", "--sub", "ptn-x", "--scope", "views:all"]


def test_token_cli_offers_no_scope_option_that_nothing_would_check(
    platform: RunningPlatform,
) -> None:
    # Scopes lift no refusal anywhere (consent decides); an option to issue them would suggest
    # otherwise.
    out = subprocess.run(
        [sys.executable, "-m", "broker.cli", "token", "issue", *SCOPED_PARTNER],
        env={**os.environ, "TSUNAGU_DATA_DIR": str(platform.data_dir)},
        capture_output=True,
        text=True,
    )
    assert out.returncode == 2
    assert "No such option: --scope" in out.stderr
