"""Verify bearer tokens: signature by ``kid`` from a JWKS, issuer, audience, time, role.

Production trusts the region's OIDC provider: its JWKS is fetched and cached for
``jwks_cache_s`` and fetched again when a token names an unknown ``kid`` (key rotation), so a
key removed from the provider's set is refused once the cache has expired. Only RS256 and
ES256 are accepted (never ``none`` or an HMAC algorithm, whose "key" would be public), and
each key verifies only with the algorithm bound to it (its JWK's ``kty``/``crv``/``alg``): the
token's header may name an algorithm, but it never chooses one.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Protocol

import jwt
from jwt import PyJWK, PyJWKClient, PyJWKSet
from jwt.types import Options

from broker.auth.errors import TokenRejectedError
from broker.auth.principals import Principal, Role

ALGORITHMS = ("RS256", "ES256")


class KeySource(Protocol):
    """Where verification keys come from."""

    def key(self, kid: str) -> PyJWK:
        """The key with this ``kid``, or raise TokenRejectedError."""
        ...


class StaticKeys:
    """A fixed key set: the embedded issuer's own public keys."""

    def __init__(self, jwks: Mapping[str, Any]) -> None:
        self._set = PyJWKSet.from_dict(dict(jwks))

    def key(self, kid: str) -> PyJWK:
        """The key with this ``kid``."""
        try:
            return self._set[kid]
        except KeyError:
            raise TokenRejectedError(f"no key with kid {kid!r} is trusted") from None


class RemoteKeys:
    """An OIDC provider's JWKS, fetched over HTTP and cached (refetched on an unknown kid)."""

    def __init__(
        self, url: str, *, cache_s: float, cooldown_s: float = 5.0, timeout_s: float = 5.0
    ) -> None:
        self.url = url
        # PyJWKClient wants a positive lifespan; a tiny one means "refetch nearly always".
        # The cooldown bounds refetches caused by tokens naming unknown kids (a cheap DoS).
        self._client = PyJWKClient(
            url,
            cache_jwk_set=True,
            lifespan=max(cache_s, 0.001),
            timeout=timeout_s,
            cooldown_duration=cooldown_s,
        )

    def key(self, kid: str) -> PyJWK:
        """The key with this ``kid``, refetching the set once when it is not known."""
        try:
            return self._client.get_signing_key(kid)
        except jwt.PyJWKClientConnectionError as exc:
            raise TokenRejectedError(
                f"the identity provider's keys are unreachable: {exc}"
            ) from exc
        except jwt.PyJWKClientError as exc:
            raise TokenRejectedError(f"no key with kid {kid!r} is trusted: {exc}") from exc


def _role(claims: Mapping[str, Any]) -> Role:
    raw = claims.get("role")
    if raw is None and isinstance(claims.get("roles"), list):
        known = [r for r in claims["roles"] if r in Role.__members__.values()]
        if len(known) > 1:
            raise TokenRejectedError(f"the token carries several roles {known}; one is needed")
        raw = known[0] if known else None
    if raw is None:
        raise TokenRejectedError("the token carries no role claim")
    try:
        return Role(raw)
    except ValueError:
        raise TokenRejectedError(
            f"unknown role {raw!r}; one of {', '.join(r.value for r in Role)}"
        ) from None


def _strings(value: Any) -> frozenset[str]:
    if isinstance(value, str):
        return frozenset(value.split())
    if isinstance(value, list):
        return frozenset(v for v in value if isinstance(v, str))
    return frozenset()


class TokenVerifier:
    """Turns a bearer token into a ``Principal``, or refuses it with the reason."""

    def __init__(
        self,
        keys: KeySource,
        *,
        issuer: str,
        audience: str,
        leeway_s: int = 30,
        algorithms: Sequence[str] = ALGORITHMS,
        cache_s: float | None = None,
        cache_size: int = 10_000,
    ) -> None:
        self.keys = keys
        self.issuer = issuer
        self.audience = audience
        self.leeway_s = leeway_s
        self.algorithms = tuple(algorithms)
        # Verified tokens, so a client's next request skips the signature check: kept until
        # the token expires, or ``cache_s`` (the key cache's life) when keys can be removed.
        self.cache_s = cache_s
        self.cache_size = cache_size
        self._verified: OrderedDict[str, tuple[float, Principal]] = OrderedDict()
        self._lock = threading.Lock()

    def verify(self, token: str, at: datetime | None = None) -> Principal:
        """The principal of a valid token; TokenRejectedError says what is wrong otherwise.

        ``at`` checks expiry and not-before as of that moment instead of now (a bus record's
        arrival, or the bus's append time).
        """
        if at is None:
            cached = self.cached(token)
            if cached is not None:
                return cached
            now = time.time()
            principal = self._verify(token, None)
            until = principal.expires_at.timestamp() + self.leeway_s
            if self.cache_s is not None:
                until = min(until, now + self.cache_s)
            with self._lock:
                self._verified[token] = (until, principal)
                if len(self._verified) > self.cache_size:
                    self._verified.popitem(last=False)
            return principal
        return self._verify(token, at)

    def cached(self, token: str) -> Principal | None:
        """The principal of a token verified recently and still valid, without any I/O."""
        with self._lock:
            hit = self._verified.get(token)
        if hit is not None and time.time() < hit[0]:
            return hit[1]
        return None

    def _verify(self, token: str, at: datetime | None) -> Principal:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.DecodeError as exc:
            raise TokenRejectedError(f"the bearer token is not a JWT: {exc}") from exc
        if header.get("alg") not in self.algorithms:
            raise TokenRejectedError(
                f"algorithm {header.get('alg')!r} is not accepted; "
                f"use one of {', '.join(self.algorithms)}"
            )
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise TokenRejectedError("the token header names no key (kid)")
        key = self.keys.key(kid)
        # The key decides the algorithm: an RS256 header naming an EC key (or the reverse)
        # is a forgery attempt, refused here rather than fed to the wrong verifier.
        alg = key.algorithm_name
        if alg not in self.algorithms:
            raise TokenRejectedError(
                f"key {kid!r} is for algorithm {alg!r}, which is not accepted; "
                f"sign with a key for one of {', '.join(self.algorithms)}"
            )
        if header.get("alg") != alg:
            raise TokenRejectedError(
                f"the token's header says algorithm {header.get('alg')!r}, but key {kid!r} "
                f"verifies only {alg}: sign with {alg}"
            )
        options: Options = {"require": ["exp", "iat", "iss", "aud", "sub"]}
        if at is not None:  # judged below against ``at`` instead of now
            options["verify_exp"] = options["verify_nbf"] = False
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key=key.key,
                algorithms=[alg],
                audience=self.audience,
                issuer=self.issuer,
                leeway=self.leeway_s,
                options=options,
            )
        except jwt.ExpiredSignatureError:
            raise TokenRejectedError("the token has expired") from None
        except jwt.ImmatureSignatureError:
            raise TokenRejectedError("the token is not valid yet (nbf/iat in the future)") from None
        except jwt.InvalidAudienceError:
            raise TokenRejectedError(f"the token is not for audience {self.audience!r}") from None
        except jwt.InvalidIssuerError:
            raise TokenRejectedError(f"the token was not issued by {self.issuer!r}") from None
        except jwt.InvalidSignatureError:
            raise TokenRejectedError("the token's signature does not verify") from None
        except jwt.PyJWTError as exc:
            raise TokenRejectedError(f"the token is invalid: {exc}") from exc
        except (TypeError, ValueError) as exc:
            # A token the library could not even judge is as refused as a forged one (a 401,
            # never a 500); the message may quote the token, so only the type is kept.
            raise TokenRejectedError(
                f"the token could not be verified ({type(exc).__name__})"
            ) from exc
        if at is not None:
            moment = at.timestamp()
            if moment > claims["exp"] + self.leeway_s:
                raise TokenRejectedError(
                    "the connector token had expired when the record reached ingest; "
                    "publish with a fresh one"
                )
            if moment < claims.get("nbf", claims["iat"]) - self.leeway_s:
                raise TokenRejectedError(
                    "the token was not valid yet when the record was published"
                )
        role = _role(claims)
        return Principal(
            subject=str(claims["sub"]),
            role=role,
            issuer=self.issuer,
            expires_at=datetime.fromtimestamp(claims["exp"], UTC),
            sources=_strings(claims.get("sources", claims.get("source")))
            if role is Role.CONNECTOR
            else frozenset(),
            event_types=_strings(claims.get("event_types"))
            if role is Role.CONNECTOR
            else frozenset(),
            scopes=_strings(claims.get("scope")),
            token_id=claims.get("jti"),
        )
