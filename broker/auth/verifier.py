"""Verify bearer tokens: signature by ``kid`` from a JWKS, issuer, audience, time, role.

Production trusts the region's OIDC provider, found from its issuer alone (OpenID Connect
Discovery: the metadata's ``jwks_uri``, see ``broker.auth.discovery``): its JWKS is fetched
and cached for ``jwks_cache_s`` and fetched again when a token names an unknown ``kid`` (key
rotation), so a key removed from the provider's set is refused once the cache has expired.
A token naming another issuer is refused before any key is looked up (it starts no fetch).
Only RS256 and ES256 are accepted (never ``none`` or an HMAC algorithm, whose "key" would be
public), and each key verifies only with the algorithm bound to it (its JWK's
``kty``/``crv``/``alg``): the token's header may name an algorithm, but it never chooses one.
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Protocol

import httpx
import jwt
from jwt import PyJWK, PyJWKSet
from jwt.types import Options

from broker.auth.claims import ClaimMapping, strings
from broker.auth.discovery import DiscoveryError, discover_jwks_uri
from broker.auth.errors import TokenRejectedError
from broker.auth.principals import Principal, Role

ALGORITHMS = ("RS256", "ES256")


class KeySource(Protocol):
    """Where verification keys come from."""

    def key(self, kid: str) -> PyJWK:
        """The key with this ``kid``, or raise TokenRejectedError."""
        ...

    def at_hand(self, kid: str) -> bool:
        """Whether ``key(kid)`` answers without waiting for the network."""
        ...

    def close(self) -> None:
        """Wait for any work of the source's own in flight (a fetch) to end."""
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

    def at_hand(self, kid: str) -> bool:
        """Always: the keys are in memory."""
        return True

    def close(self) -> None:
        """Nothing to wait for: the keys never leave memory."""


class RemoteKeys:
    """An OIDC provider's JWKS, discovered from its issuer, fetched off the request path, cached.

    A slow or failing provider must not take the API with it, so:

    - **one fetch in flight**, on its own short-lived thread; requests never fetch, and never
      hold a lock across the network;
    - **refresh ahead**: once the set is half its life old, the next request starts a
      background refresh and carries on with the keys it has;
    - **known keys never wait**: a key of a fresh set answers at once, whatever the provider
      is doing; only an unknown ``kid`` (or an expired set) waits, at most ``timeout_s``, for
      the fetch in flight;
    - **negative cache**: after a fetch (failed or not) an unknown ``kid`` starts no other one
      for ``cooldown_s``; until then it is refused at once with the reason (unknown kid, or
      the provider unreachable and the error it gave).

    A key removed from the provider's set is refused once the set is ``cache_s`` old and a
    refetch without it completed (or failed: keys are never trusted past ``cache_s``). The
    metadata's ``jwks_uri`` is kept as long, and discovered again by the fetch after.
    """

    def __init__(
        self, issuer: str, *, cache_s: float, cooldown_s: float = 5.0, timeout_s: float = 5.0
    ) -> None:
        self.issuer = issuer
        self.cache_s = cache_s
        self.cooldown_s = cooldown_s
        self.timeout_s = timeout_s
        self._keys: dict[str, PyJWK] = {}
        self._fetched_at = -math.inf  # monotonic time of the last successful fetch
        self._attempted_at = -math.inf  # ... and of the last attempt, successful or not
        self._error: str | None = None  # why the last attempt failed
        self._inflight: threading.Event | None = None  # set when the fetch in flight ends
        self._lock = threading.Lock()  # guards the fields above; never held across I/O
        # Only the fetch thread (one at a time) reads and writes these.
        self._jwks_uri: str | None = None
        self._discovered_at = -math.inf

    def at_hand(self, kid: str) -> bool:
        """Whether ``kid`` is in a fresh key set (starting a refresh ahead when it is due)."""
        with self._lock:
            return self._fresh_key(kid, time.monotonic()) is not None

    def key(self, kid: str) -> PyJWK:
        """The key with this ``kid``; an unknown one waits for (or starts) one refetch."""
        with self._lock:
            now = time.monotonic()
            found = self._fresh_key(kid, now)
            if found is not None:
                return found
            done = self._inflight
            if done is None and now - self._attempted_at >= self.cooldown_s:
                done = self._start_fetch(now)
        if done is not None:
            done.wait(self.timeout_s + 1.0)
        with self._lock:
            now = time.monotonic()
            found = self._fresh_key(kid, now)
            if found is not None:
                return found
            if self._error is not None and self._inflight is None:
                retry = max(0.0, self._attempted_at + self.cooldown_s - now)
                raise TokenRejectedError(
                    f"the identity provider's keys are unreachable ({self._error}); "
                    f"the next attempt is in {retry:.0f} s"
                )
            if self._inflight is not None:
                raise TokenRejectedError(
                    f"the identity provider did not answer within {self.timeout_s:g} s for "
                    f"key {kid!r}; retry shortly"
                )
        raise TokenRejectedError(
            f"no key with kid {kid!r} is trusted: the identity provider's key set does not list it"
        )

    def close(self) -> None:
        """Wait for the fetch in flight, if any (it ends within ``timeout_s``)."""
        with self._lock:
            done = self._inflight
        if done is not None:
            done.wait(self.timeout_s + 1.0)

    def _fresh_key(self, kid: str, now: float) -> PyJWK | None:
        """``kid``'s key if the set is younger than ``cache_s``; refreshes ahead (locked)."""
        age = now - self._fetched_at
        if age >= self.cache_s:
            return None
        if (
            age >= self.cache_s / 2
            and self._inflight is None
            and now - self._attempted_at >= self.cooldown_s
        ):
            self._start_fetch(now)
        return self._keys.get(kid)

    def _start_fetch(self, now: float) -> threading.Event:
        """Start the one fetch in flight on its own thread (locked); set when it ends."""
        done = threading.Event()
        self._inflight = done
        self._attempted_at = now
        # Owned by this object: it ends after at most ``timeout_s``, only one runs at once,
        # and ``close`` waits for it.
        threading.Thread(target=self._fetch, args=(done,), name="jwks-fetch", daemon=True).start()
        return done

    def _discovered_jwks_uri(self) -> str:
        """The metadata's ``jwks_uri``, discovered again once ``cache_s`` old (fetch thread)."""
        now = time.monotonic()
        if self._jwks_uri is None or now - self._discovered_at >= self.cache_s:
            self._jwks_uri = discover_jwks_uri(self.issuer, timeout_s=self.timeout_s)
            self._discovered_at = now
        return self._jwks_uri

    def _fetch(self, done: threading.Event) -> None:
        keys: dict[str, PyJWK] | None = None
        error: str | None = None
        try:
            response = httpx.get(self._discovered_jwks_uri(), timeout=self.timeout_s)
            response.raise_for_status()
            fetched = PyJWKSet.from_dict(response.json())
            keys = {k.key_id: k for k in fetched.keys if k.key_id}
        except DiscoveryError as exc:
            error = str(exc)
        except (httpx.HTTPError, ValueError, jwt.PyJWTError) as exc:
            error = f"{type(exc).__name__}: {exc}"
        finally:
            with self._lock:
                now = time.monotonic()
                self._attempted_at = now
                if keys is not None:
                    self._keys, self._fetched_at, self._error = keys, now, None
                else:
                    self._error = error or "the fetch failed"
                self._inflight = None
            done.set()


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
        claims: ClaimMapping | None = None,
    ) -> None:
        self.keys = keys
        self.claims = claims or ClaimMapping()
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

    def close(self) -> None:
        """Wait for the key source's work in flight (a JWKS fetch), if it has any."""
        self.keys.close()

    def cached(self, token: str) -> Principal | None:
        """The principal of a token verified recently and still valid, without any I/O."""
        with self._lock:
            hit = self._verified.get(token)
        if hit is not None and time.time() < hit[0]:
            return hit[1]
        return None

    def keys_at_hand(self, token: str) -> bool:
        """Whether verifying ``token`` needs no key from the network (false for a non-JWT too:
        it is refused without any, wherever it is verified)."""
        try:
            kid = jwt.get_unverified_header(token).get("kid")
        except jwt.PyJWTError:
            return True
        return not isinstance(kid, str) or self.keys.at_hand(kid)

    def _refuse_other_issuer(self, token: str) -> None:
        """Refuse a token naming another issuer before its key is sought (no fetch for it);
        the signed ``iss`` is checked again with the signature."""
        try:
            claimed = jwt.decode(token, options={"verify_signature": False}).get("iss")
        except jwt.PyJWTError:
            return  # malformed: refused with the reason by the full check
        if claimed != self.issuer:
            raise TokenRejectedError(
                f"the token was not issued by {self.issuer!r} (it names {claimed!r}): "
                "ask this platform's identity provider for a token"
            )

    def _verify(self, token: str, at: datetime | None) -> Principal:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.DecodeError as exc:
            # The library's own words ("Not enough segments") say nothing a caller can act on.
            raise TokenRejectedError(
                "the bearer token is not a JWT (header.payload.signature, each part base64url): "
                "send the token the identity provider issued, unchanged"
            ) from exc
        if header.get("alg") not in self.algorithms:
            raise TokenRejectedError(
                f"algorithm {header.get('alg')!r} is not accepted; "
                f"use one of {', '.join(self.algorithms)}"
            )
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise TokenRejectedError("the token header names no key (kid)")
        self._refuse_other_issuer(token)
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
        except jwt.MissingRequiredClaimError as exc:
            raise TokenRejectedError(
                f"the token lacks the {exc.claim!r} claim; tokens need exp, iat, iss, aud and sub"
            ) from None
        except jwt.DecodeError:
            raise TokenRejectedError(
                "the token's payload or signature is not base64url JSON: send the token the "
                "identity provider issued, unchanged"
            ) from None
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
        role = self.claims.role(claims)
        return Principal(
            subject=self.claims.subject(claims),
            role=role,
            issuer=self.issuer,
            expires_at=datetime.fromtimestamp(claims["exp"], UTC),
            sources=strings(claims.get("sources", claims.get("source")))
            if role is Role.CONNECTOR
            else frozenset(),
            event_types=strings(claims.get("event_types"))
            if role is Role.CONNECTOR
            else frozenset(),
            scopes=strings(claims.get("scope")),
            token_id=claims.get("jti"),
        )
