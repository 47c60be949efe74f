"""A stand-in for the region's OIDC provider: RS256 and ES256 keys, its discovery metadata
and JWKS over real HTTP (tests/auth/keycloak.py runs a real Keycloak)."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey


@dataclass
class ProviderKey:
    """One signing key of the provider."""

    kid: str
    alg: str
    private: PrivateKey

    def jwk(self) -> dict[str, Any]:
        """The public JWK."""
        key = self.private.public_key()
        text = (
            RSAAlgorithm.to_jwk(key)
            if isinstance(key, rsa.RSAPublicKey)
            else ECAlgorithm.to_jwk(key)
        )
        public = json.loads(text)
        return {**public, "kid": self.kid, "alg": self.alg, "use": "sig"}


def new_key(alg: str) -> ProviderKey:
    """A fresh RS256 or ES256 key."""
    private: PrivateKey = (
        rsa.generate_private_key(public_exponent=65537, key_size=2048)
        if alg == "RS256"
        else ec.generate_private_key(ec.SECP256R1())
    )
    return ProviderKey(f"{alg.lower()}-{uuid.uuid4().hex[:8]}", alg, private)


@dataclass
class Provider:
    """The provider's issuer, published keys and a counter of JWKS fetches."""

    issuer: str
    keys: list[ProviderKey] = field(default_factory=list)
    fetches: int = 0
    #: Cleared to make the provider slow: each JWKS request then waits until it is set again.
    gate: threading.Event = field(default_factory=threading.Event)
    #: What the JWKS endpoint answers: 200 with the keys, or this error status.
    status: int = 200
    #: Set when a JWKS request has arrived (and is perhaps waiting at the gate).
    asked: threading.Event = field(default_factory=threading.Event)
    #: The issuer the discovery metadata names, when it should not be the provider's own.
    metadata_issuer: str | None = None

    def __post_init__(self) -> None:
        self.gate.set()

    @property
    def jwks_url(self) -> str:
        """Where the JWKS is served."""
        return self.issuer + "/.well-known/jwks.json"

    def sign(
        self,
        key: ProviderKey,
        *,
        role: str | None = "partner",
        sub: str = "ptn-test",
        audience: str = "tsunagu",
        issuer: str | None = None,
        lifetime: timedelta = timedelta(minutes=5),
        not_before: datetime | None = None,
        **claims: Any,
    ) -> str:
        """A token signed by ``key`` with these claims."""
        now = datetime.now(UTC)
        body = {
            "iss": issuer or self.issuer,
            "aud": audience,
            "sub": sub,
            "role": role,
            "iat": now,
            "exp": now + lifetime,
            **({"nbf": not_before} if not_before else {}),
            **claims,
        }
        return jwt.encode(body, key.private, algorithm=key.alg, headers={"kid": key.kid})


@contextmanager
def running_provider(*algs: str) -> Iterator[Provider]:
    """Serve a provider with one key per ``alg`` on a free loopback port."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    provider = Provider(f"http://127.0.0.1:{server.server_address[1]}", [new_key(a) for a in algs])

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path == "/.well-known/openid-configuration":
                metadata = {
                    "issuer": provider.metadata_issuer or provider.issuer,
                    "jwks_uri": provider.jwks_url,
                }
                self._send(json.dumps(metadata).encode())
                return
            if self.path != "/.well-known/jwks.json":
                self.send_error(404)
                return
            provider.fetches += 1
            provider.asked.set()
            provider.gate.wait()
            if provider.status != 200:
                self.send_error(provider.status)
                return
            self._send(json.dumps({"keys": [k.jwk() for k in provider.keys]}).encode())

        def _send(self, body: bytes) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server.RequestHandlerClass = Handler
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield provider
    finally:
        provider.gate.set()  # no request stays parked at the gate
        server.shutdown()
        server.server_close()
