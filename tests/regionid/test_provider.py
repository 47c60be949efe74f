"""The region ID against a real `tsunagu up`, signed in to with an independent OpenID Connect
client library (oic, not Authlib): discovery, code + PKCE (S256 only), an ID token validated
by the client (signature, iss, aud, nonce), userinfo, refresh with rotation, logout, pairwise
subjects; and every refusal (RFC 6749 §4.1.2.1 / §5.2) answered and written to the audit log.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest
from oic.oic import Client
from oic.oic.message import (
    AccessTokenResponse,
    AuthorizationResponse,
    ClaimsRequest,
    RegistrationResponse,
)
from oic.utils.authn.client import CLIENT_AUTHN_METHOD
from sqlalchemy import create_engine, text

from broker.demo.logins import DEMO_RESIDENT_LOGIN, seed_logins
from broker.regionid.directory import Directory
from broker.regionid.proofing import ACR, Proofing
from tests.fixtures.platform import RunningPlatform, start_platform, stop_platform

# Two firms on two sectors, a third on the first firm's sector (its own app).
BUS = ("kotoden-bus", "https://bus.example.jp/callback")
SUPER = ("mitoyo-super", "https://super.example.jp/oidc/cb")
BUS_APP = ("kotoden-bus-app", "https://bus.example.jp/app/cb")


@dataclass
class Registered:
    """A client as `tsunagu regionid client add` printed it."""

    client_id: str
    secret: str
    redirect_uri: str


@dataclass
class Region:
    """The running platform, its region ID's issuer, the clients and the demo resident."""

    platform: RunningPlatform
    issuer: str
    clients: dict[str, Registered]
    username: str
    password: str


def _add_client(platform: RunningPlatform, client_id: str, uri: str, *more: str) -> str:
    env = {**os.environ, "TSUNAGU_DATA_DIR": str(platform.data_dir)}
    done = subprocess.run(
        [sys.executable, "-m", "broker.cli", "regionid", "client", "add", client_id,
         "--name", client_id, "--redirect-uri", uri, *more],
        env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return dict(line.split(None, 1) for line in done.stdout.splitlines())["client_secret"]


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningPlatform]:
    """The platform, its per-account sign-in throttle raised: these tests sign the demo
    resident in many times (the throttle is tested apart, at its default)."""
    running = start_platform(
        tmp_path_factory.mktemp("platform"), {"TSUNAGU_REGIONID_SIGN_IN_BURST": "1000"}
    )
    yield running
    stop_platform(running)


@pytest.fixture(scope="module")
def region(platform: RunningPlatform) -> Iterator[Region]:
    clients = {
        cid: Registered(cid, _add_client(platform, cid, uri), uri) for cid, uri in (BUS, SUPER)
    }
    secret = _add_client(platform, BUS_APP[0], BUS_APP[1], "--sector", "bus.example.jp")
    clients[BUS_APP[0]] = Registered(BUS_APP[0], secret, BUS_APP[1])
    engine = create_engine(f"sqlite:///{platform.data_dir / 'store.db'}")
    logins = seed_logins(Directory(engine), platform.data_dir)
    engine.dispose()
    resident = next(x for x in logins if x.username == DEMO_RESIDENT_LOGIN)
    issuer = f"{platform.base_url}/regionid"
    yield Region(platform, issuer, clients, resident.username, resident.password)


def oidc_client(region: Region, client_id: str) -> Client:
    """An oic client that discovered the provider and knows its registration."""
    registered = region.clients[client_id]
    client = Client(client_authn_method=CLIENT_AUTHN_METHOD)
    client.provider_config(region.issuer)
    client.store_registration_info(
        RegistrationResponse(
            client_id=registered.client_id,
            client_secret=registered.secret,
            redirect_uris=[registered.redirect_uri],
        )
    )
    client.redirect_uris = [registered.redirect_uri]
    return client


def challenge(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def post_login(region: Region, url: str, password: str | None = None) -> httpx.Response:
    """Open the sign-in form at ``url`` and post it as a browser would; the last answer."""
    with httpx.Client(timeout=30) as browser:
        form = browser.get(url)
        assert form.status_code == 200, form.text
        assert 'name="password"' in form.text
        action = form.text.split('action="', 1)[1].split('"', 1)[0].replace("&amp;", "&")
        return browser.post(
            region.platform.base_url + action,
            data={"username": region.username, "password": password or region.password},
        )


@dataclass
class SignedIn:
    client: Client
    state: str
    nonce: str
    tokens: AccessTokenResponse


def sign_in(region: Region, client_id: str, claims: dict[str, Any] | None = None) -> SignedIn:
    """The whole flow with oic: authorization request with PKCE, sign-in, code exchange."""
    client = oidc_client(region, client_id)
    state, nonce = secrets.token_urlsafe(16), secrets.token_urlsafe(16)
    pkce, verifier = client.add_code_challenge()
    assert pkce["code_challenge_method"] == "S256"
    args: dict[str, Any] = {
        "client_id": client_id,
        "response_type": "code",
        "scope": ["openid", "profile", "offline_access"],
        "nonce": nonce,
        "state": state,
        "redirect_uri": region.clients[client_id].redirect_uri,
        **pkce,
    }
    if claims is not None:
        args["claims"] = ClaimsRequest(**claims)
    request = client.construct_AuthorizationRequest(request_args=args)
    answer = post_login(region, request.request(client.authorization_endpoint))
    assert answer.status_code == 302, answer.text
    location = answer.headers["location"]
    assert location.startswith(region.clients[client_id].redirect_uri + "?")
    response = client.parse_response(
        AuthorizationResponse, info=urlsplit(location).query, sformat="urlencoded"
    )
    assert response["state"] == state
    tokens = client.do_access_token_request(
        state=state,
        request_args={"code": response["code"], "code_verifier": verifier},
        authn_method="client_secret_basic",
    )
    assert isinstance(tokens, AccessTokenResponse), tokens.to_dict()
    return SignedIn(client, state, nonce, tokens)


def refusals(region: Region) -> list[dict[str, Any]]:
    """The audit log's sign-in refusals, oldest first."""
    engine = create_engine(f"sqlite:///{region.platform.data_dir / 'store.db'}")
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                text("SELECT fields FROM audit_entries WHERE kind = 'sign_in_refused' ORDER BY seq")
            ).scalars()
            return [json.loads(r) for r in rows]
    finally:
        engine.dispose()


def _refused_since(region: Region, before: int) -> list[dict[str, Any]]:
    return refusals(region)[before:]


# -- what works ------------------------------------------------------------------------------


def test_discovery_names_the_issuer_its_endpoints_and_s256_only(region: Region) -> None:
    doc = httpx.get(f"{region.issuer}/.well-known/openid-configuration").json()
    assert doc["issuer"] == region.issuer
    assert doc["code_challenge_methods_supported"] == ["S256"]
    assert doc["subject_types_supported"] == ["pairwise"]
    keys = httpx.get(doc["jwks_uri"]).json()["keys"]
    assert [k["alg"] for k in keys] == ["ES256"]


def test_a_resident_signs_in_with_code_and_pkce_and_the_client_validates_the_id_token(
    region: Region,
) -> None:
    signed = sign_in(region, BUS[0])
    id_token = signed.tokens["id_token"]  # oic verified its signature against the JWKS
    assert id_token["iss"] == region.issuer
    assert id_token["aud"] == [BUS[0]]
    assert id_token["nonce"] == signed.nonce
    assert id_token["acr"] == ACR[Proofing.MYNUMBER_CARD]
    assert "verified_claims" not in id_token  # not asked for
    info = signed.client.do_user_info_request(state=signed.state)
    assert info["sub"] == id_token["sub"]
    assert info["name"] == "三豊 花子"


def test_a_refresh_rotates_and_the_old_refresh_token_is_then_refused(region: Region) -> None:
    signed = sign_in(region, BUS[0])
    old = signed.tokens["refresh_token"]
    fresh = signed.client.do_access_token_refresh(
        state=signed.state, authn_method="client_secret_basic"
    )
    assert isinstance(fresh, AccessTokenResponse), fresh
    assert fresh["refresh_token"] != old
    assert fresh["access_token"] != signed.tokens["access_token"]
    before = len(refusals(region))
    registered = region.clients[BUS[0]]
    again = httpx.post(
        f"{region.issuer}/token",
        data={"grant_type": "refresh_token", "refresh_token": old},
        auth=(registered.client_id, registered.secret),
    )
    assert again.status_code == 400
    assert again.json()["error"] == "invalid_grant"
    assert "already used" in again.json()["error_description"]
    assert _refused_since(region, before)[0]["error"] == "invalid_grant"
    # The new one still works.
    info = httpx.get(
        f"{region.issuer}/userinfo",
        headers={"Authorization": f"Bearer {fresh['access_token']}"},
    )
    assert info.status_code == 200


def test_two_firms_get_different_stable_subjects_for_one_resident(region: Region) -> None:
    bus_first = sign_in(region, BUS[0]).tokens["id_token"]["sub"]
    bus_again = sign_in(region, BUS[0]).tokens["id_token"]["sub"]
    supermarket = sign_in(region, SUPER[0]).tokens["id_token"]["sub"]
    same_sector = sign_in(region, BUS_APP[0]).tokens["id_token"]["sub"]
    assert bus_first == bus_again  # stable
    assert supermarket != bus_first  # pairwise: another firm, another subject
    assert same_sector == bus_first  # one firm's two apps, one sector


def test_verified_claims_come_when_asked_for_with_the_claims_parameter(region: Region) -> None:
    asked = {"id_token": {"verified_claims": None}, "userinfo": {"verified_claims": None}}
    signed = sign_in(region, SUPER[0], claims=asked)
    verified = signed.tokens["id_token"]["verified_claims"]
    assert verified["verification"]["trust_framework"] == "jp_aml"
    assert verified["verification"]["evidence"][0]["signature_type"] == "jp_jpki"
    assert verified["claims"] == {"name": "三豊 花子", "birthdate": "1956-04-01"}
    info = httpx.get(
        f"{region.issuer}/userinfo",
        headers={"Authorization": f"Bearer {signed.tokens['access_token']}"},
    ).json()
    assert info["verified_claims"] == verified


def test_logout_ends_the_clients_tokens(region: Region) -> None:
    signed = sign_in(region, SUPER[0])
    bearer = {"Authorization": f"Bearer {signed.tokens['access_token']}"}
    assert httpx.get(f"{region.issuer}/userinfo", headers=bearer).status_code == 200
    hint = signed.tokens["id_token_jwt"]  # the ID token as received
    out = httpx.get(
        f"{region.issuer}/logout",
        params={"id_token_hint": hint, "post_logout_redirect_uri": SUPER[1], "state": "x"},
    )
    assert out.status_code == 302
    assert out.headers["location"] == SUPER[1] + "?state=x"
    assert httpx.get(f"{region.issuer}/userinfo", headers=bearer).status_code == 401


# -- refusals --------------------------------------------------------------------------------


def authorize_url(region: Region, client_id: str, **overrides: str) -> str:
    params = {
        "client_id": client_id,
        "response_type": "code",
        "scope": "openid",
        "state": "s-1",
        "redirect_uri": region.clients[client_id].redirect_uri
        if client_id in region.clients
        else "",
        "code_challenge": challenge("v" * 50),
        "code_challenge_method": "S256",
        **overrides,
    }
    return f"{region.issuer}/authorize?{urlencode({k: v for k, v in params.items() if v})}"


def code_for(region: Region, client_id: str, verifier: str = "v" * 50) -> str:
    answer = post_login(
        region, authorize_url(region, client_id, code_challenge=challenge(verifier))
    )
    assert answer.status_code == 302, answer.text
    return parse_qs(urlsplit(answer.headers["location"]).query)["code"][0]


def exchange(
    region: Region, client_id: str, code: str, verifier: str = "v" * 50, **more: str
) -> httpx.Response:
    registered = region.clients[client_id]
    return httpx.post(
        f"{region.issuer}/token",
        data={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": registered.redirect_uri,
            "code_verifier": verifier,
            **more,
        },
        auth=(registered.client_id, registered.secret),
    )


@pytest.mark.parametrize(
    "redirect_uri",
    [
        "https://evil.example.com/cb",  # not registered
        BUS[1] + "/more",  # a registered one, extended: exact match only
        SUPER[1],  # another client's
    ],
)
def test_an_unregistered_redirect_uri_is_never_redirected_to(
    region: Region, redirect_uri: str
) -> None:
    before = len(refusals(region))
    answer = httpx.get(authorize_url(region, BUS[0], redirect_uri=redirect_uri))
    assert answer.status_code == 400
    assert "location" not in answer.headers
    assert answer.json()["error"] == "invalid_request"
    refused = _refused_since(region, before)
    assert refused and refused[0]["client"] == BUS[0]
    assert "not supported" in refused[0]["reason"]
    # Its sign-in form is not shown either, and its post is refused the same way.
    with httpx.Client() as browser:
        posted = browser.post(
            authorize_url(region, BUS[0], redirect_uri=redirect_uri),
            data={"username": region.username, "password": region.password},
        )
    assert posted.status_code == 400 and "location" not in posted.headers


def test_an_unknown_client_is_refused_without_a_redirect(region: Region) -> None:
    answer = httpx.get(authorize_url(region, "nobody", redirect_uri=BUS[1]))
    assert answer.status_code == 400
    assert "location" not in answer.headers
    assert answer.json()["error"] == "invalid_client"


@pytest.mark.parametrize("method", ["plain", ""])
def test_plain_or_missing_pkce_method_is_refused(region: Region, method: str) -> None:
    before = len(refusals(region))
    answer = httpx.get(authorize_url(region, BUS[0], code_challenge_method=method))
    # The redirect URI is registered: the refusal goes back to the client (§4.1.2.1).
    assert answer.status_code == 302
    query = parse_qs(urlsplit(answer.headers["location"]).query)
    assert answer.headers["location"].startswith(BUS[1])
    assert query["error"] == ["invalid_request"] and query["state"] == ["s-1"]
    assert "S256" in query["error_description"][0]
    assert _refused_since(region, before)[0]["error"] == "invalid_request"


def test_missing_pkce_is_refused(region: Region) -> None:
    answer = httpx.get(authorize_url(region, BUS[0], code_challenge="", code_challenge_method=""))
    assert answer.status_code == 302
    assert parse_qs(urlsplit(answer.headers["location"]).query)["error"] == ["invalid_request"]


def test_a_pkce_mismatch_is_refused(region: Region) -> None:
    code = code_for(region, BUS[0], verifier="a" * 50)
    before = len(refusals(region))
    answer = exchange(region, BUS[0], code, verifier="b" * 50)
    assert answer.status_code == 400
    assert answer.json()["error"] == "invalid_grant"
    assert _refused_since(region, before)[0]["reason"] == "Code challenge failed."
    # The refusal was the mismatch: the same exchange with the right verifier is accepted.
    good = code_for(region, BUS[0], verifier="a" * 50)
    assert exchange(region, BUS[0], good, verifier="a" * 50).status_code == 200


def test_a_reused_code_is_refused_and_revokes_what_it_gave(region: Region) -> None:
    code = code_for(region, BUS[0])
    first = exchange(region, BUS[0], code)
    assert first.status_code == 200, first.text
    bearer = {"Authorization": f"Bearer {first.json()['access_token']}"}
    assert httpx.get(f"{region.issuer}/userinfo", headers=bearer).status_code == 200
    before = len(refusals(region))
    second = exchange(region, BUS[0], code)
    assert second.status_code == 400
    assert second.json()["error"] == "invalid_grant"
    assert "already used" in second.json()["error_description"]
    assert "already used" in _refused_since(region, before)[0]["reason"]
    assert httpx.get(f"{region.issuer}/userinfo", headers=bearer).status_code == 401


def test_an_expired_code_is_refused(region: Region) -> None:
    code = code_for(region, BUS[0])
    engine = create_engine(f"sqlite:///{region.platform.data_dir / 'store.db'}")
    with engine.begin() as conn:  # the code's minute has passed
        conn.execute(
            text(
                "UPDATE regionid_codes SET expires_at = '2000-01-01 00:00:00' WHERE code_hash = :h"
            ),
            {"h": hashlib.sha256(code.encode()).hexdigest()},
        )
    engine.dispose()
    before = len(refusals(region))
    answer = exchange(region, BUS[0], code)
    assert answer.status_code == 400
    assert "expired" in answer.json()["error_description"]
    assert "expired" in _refused_since(region, before)[0]["reason"]


def test_a_code_is_refused_to_another_client_and_with_another_redirect_uri(region: Region) -> None:
    code = code_for(region, BUS[0])
    assert exchange(region, SUPER[0], code).json()["error"] == "invalid_grant"
    code = code_for(region, BUS[0])
    other = exchange(region, BUS[0], code, redirect_uri="https://bus.example.jp/other")
    assert other.status_code == 400 and other.json()["error"] == "invalid_grant"


def test_a_wrong_secret_is_refused(region: Region) -> None:
    code = code_for(region, BUS[0])
    answer = httpx.post(
        f"{region.issuer}/token",
        data={"grant_type": "authorization_code", "code": code, "redirect_uri": BUS[1],
              "code_verifier": "v" * 50},
        auth=(BUS[0], "not-the-secret"),
    )  # fmt: skip
    assert answer.status_code == 401
    assert answer.json()["error"] == "invalid_client"


def test_a_wrong_password_shows_the_form_again_and_is_audited(region: Region) -> None:
    before = len(refusals(region))
    answer = post_login(region, authorize_url(region, BUS[0]), password="wrong")
    assert answer.status_code == 401
    assert "wrong username or password" in answer.text
    assert "location" not in answer.headers
    refused = _refused_since(region, before)
    assert refused == [
        {"client": BUS[0], "error": "access_denied", "reason": "wrong username or password"}
    ]


def test_logout_never_redirects_to_an_unregistered_uri(region: Region) -> None:
    signed = sign_in(region, SUPER[0])
    out = httpx.get(
        f"{region.issuer}/logout",
        params={
            "id_token_hint": signed.tokens["id_token_jwt"],
            "post_logout_redirect_uri": "https://evil.example.com/",
        },
    )
    assert out.status_code == 200
    assert "location" not in out.headers
