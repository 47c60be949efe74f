"""The embedded identity provider: an ES256 key generated at first run, and tokens it signs.

Production verifies the region's OIDC provider instead (``TSUNAGU_OIDC_ISSUER``); this one
exists so that the single-machine default and development need no external service. Its key
lives in ``$TSUNAGU_DATA_DIR/keys/issuer.pem`` (mode 0600, never in the repository) and its
public half is served in the platform's JWKS.
"""

from __future__ import annotations

import base64
import hashlib
import json
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from jwt.algorithms import ECAlgorithm

from broker.auth.principals import Role
from consent.errors import KeyStoreError
from consent.keys import create_private_file_once, read_private_pem

#: The ``iss`` of tokens the embedded provider signs.
EMBEDDED_ISSUER = "urn:tsunagu:issuer:embedded"
ALGORITHM = "ES256"


def _thumbprint(jwk: dict[str, Any]) -> str:
    """RFC 7638 thumbprint of an EC public key, used as its ``kid``."""
    members = {name: jwk[name] for name in ("crv", "kty", "x", "y")}
    canonical = json.dumps(members, separators=(",", ":"), sort_keys=True).encode()
    return base64.urlsafe_b64encode(hashlib.sha256(canonical).digest()).rstrip(b"=").decode()


def load_or_create_p256(path: Path) -> ec.EllipticCurvePrivateKey:
    """The P-256 signing key at ``path`` (mode 0600), generated there on first use."""
    try:
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            pem = ec.generate_private_key(ec.SECP256R1()).private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
            create_private_file_once(path, pem)
        key = read_private_pem(path)
    except OSError as exc:
        raise KeyStoreError(f"issuer key {path}: {exc}") from exc
    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != "secp256r1":
        raise KeyStoreError(f"{path} is not a P-256 key")
    return key


def public_jwk(key: ec.EllipticCurvePrivateKey) -> dict[str, Any]:
    """The public JWK of ``key`` for ES256 signatures, its ``kid`` the RFC 7638 thumbprint."""
    public: dict[str, Any] = json.loads(ECAlgorithm.to_jwk(key.public_key()))
    return {**public, "kid": _thumbprint(public), "alg": ALGORITHM, "use": "sig"}


class EmbeddedIssuer:
    """Signs tokens for the embedded default; ``jwks()`` is what verifiers trust."""

    def __init__(self, key_path: Path, *, issuer: str = EMBEDDED_ISSUER, audience: str) -> None:
        self.issuer = issuer
        self.audience = audience
        self._key = load_or_create_p256(key_path)
        self._jwk = public_jwk(self._key)
        self.kid: str = self._jwk["kid"]

    @classmethod
    def in_data_dir(cls, data_dir: Path, *, audience: str) -> EmbeddedIssuer:
        """The issuer whose key is ``<data_dir>/keys/issuer.pem``, generated when missing."""
        return cls(data_dir / "keys" / "issuer.pem", audience=audience)

    def jwks(self) -> dict[str, list[dict[str, Any]]]:
        """The public key set verifiers of these tokens use."""
        return {"keys": [dict(self._jwk)]}

    def issue(
        self,
        subject: str,
        role: Role,
        *,
        sources: Iterable[str] = (),
        event_types: Iterable[str] = (),
        scopes: Iterable[str] = (),
        ttl_s: int = 3600,
        now: datetime | None = None,
    ) -> str:
        """A signed token for ``subject`` in ``role``; a connector's registers it for its
        sources and event types (exact, or ``<domain>.*``)."""
        sources = sorted(set(sources))
        types = sorted(set(event_types))
        if role is Role.CONNECTOR and not sources:
            raise ValueError("a connector token must name the CloudEvents source(s) it publishes")
        if role is Role.CONNECTOR and not types:
            raise ValueError(
                "a connector token must name the event types it publishes "
                "(--event-type TYPE, or DOMAIN.* for all of a domain's)"
            )
        if role is not Role.CONNECTOR and (sources or types):
            raise ValueError("only a connector token binds sources and event types")
        issued = now or datetime.now(UTC)
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "aud": self.audience,
            "sub": subject,
            "role": role.value,
            "iat": issued,
            "nbf": issued,
            "exp": issued + timedelta(seconds=ttl_s),
            "jti": uuid.uuid4().hex,
        }
        if sources:
            claims["sources"] = sources
            claims["event_types"] = types
        scope_list = sorted(set(scopes))
        if scope_list:
            claims["scope"] = " ".join(scope_list)
        return jwt.encode(claims, self._key, algorithm=ALGORITHM, headers={"kid": self.kid})
