"""Choose the identity provider from the settings: the region's OIDC provider or our own."""

from __future__ import annotations

from dataclasses import dataclass

from broker.auth.claims import ClaimMapping
from broker.auth.issuer import EmbeddedIssuer
from broker.auth.verifier import RemoteKeys, StaticKeys, TokenVerifier
from broker.settings import Settings


@dataclass(frozen=True, slots=True)
class Identity:
    """How this process verifies tokens, and the issuer when it runs its own."""

    verifier: TokenVerifier
    issuer: EmbeddedIssuer | None


def provider_claims(settings: Settings) -> ClaimMapping:
    """How the OpenID provider's tokens name the caller's role and subject (the settings)."""
    return ClaimMapping(
        role_source=settings.oidc_role_source,
        role_client=settings.oidc_role_client or settings.oidc_audience,
        role_map=dict(settings.oidc_role_map),
        subject_claim=settings.oidc_subject_claim,
    )


def open_identity(settings: Settings) -> Identity:
    """OIDC when ``TSUNAGU_OIDC_ISSUER`` is set, else the embedded issuer in the data dir."""
    if settings.oidc_issuer:
        keys = RemoteKeys(
            settings.oidc_issuer,
            cache_s=settings.jwks_cache_s,
            cooldown_s=settings.jwks_refetch_cooldown_s,
        )
        verifier = TokenVerifier(
            keys,
            issuer=settings.oidc_issuer,
            audience=settings.oidc_audience,
            claims=provider_claims(settings),
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
