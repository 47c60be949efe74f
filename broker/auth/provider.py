"""Choose the identity provider from the settings: the region's OIDC provider or our own."""

from __future__ import annotations

from dataclasses import dataclass

from broker.auth.issuer import EmbeddedIssuer
from broker.auth.verifier import RemoteKeys, StaticKeys, TokenVerifier
from broker.settings import Settings


@dataclass(frozen=True, slots=True)
class Identity:
    """How this process verifies tokens, and the issuer when it runs its own."""

    verifier: TokenVerifier
    issuer: EmbeddedIssuer | None


def open_identity(settings: Settings) -> Identity:
    """OIDC when ``TSUNAGU_OIDC_ISSUER`` is set, else the embedded issuer in the data dir."""
    if settings.oidc_issuer:
        url = settings.oidc_jwks_url or (
            settings.oidc_issuer.rstrip("/") + "/.well-known/jwks.json"
        )
        keys = RemoteKeys(
            url, cache_s=settings.jwks_cache_s, cooldown_s=settings.jwks_refetch_cooldown_s
        )
        verifier = TokenVerifier(
            keys,
            issuer=settings.oidc_issuer,
            audience=settings.oidc_audience,
            leeway_s=settings.clock_skew_s,
            # A verified token is trusted no longer than its key is: a key removed upstream
            # is refused once the key cache has expired, for tokens seen before too.
            cache_s=settings.jwks_cache_s,
        )
        return Identity(verifier, None)
    issuer = EmbeddedIssuer.in_data_dir(settings.data_dir, audience=settings.oidc_audience)
    verifier = TokenVerifier(
        StaticKeys(issuer.jwks()),
        issuer=issuer.issuer,
        audience=settings.oidc_audience,
        leeway_s=settings.clock_skew_s,
    )
    return Identity(verifier, issuer)
