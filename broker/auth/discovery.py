"""OpenID Connect Discovery 1.0: find an issuer's key set from its provider metadata.

The metadata is at ``<issuer>/.well-known/openid-configuration`` (§4, a trailing ``/`` of the
issuer removed first); its ``issuer`` must be exactly the configured one (§4.3), or a
document served elsewhere could name keys of its choosing; its ``jwks_uri`` is where the keys
are.
"""

from __future__ import annotations

from urllib.parse import urlsplit

import httpx

WELL_KNOWN = "/.well-known/openid-configuration"


class DiscoveryError(ValueError):
    """The provider metadata is missing, malformed or names another issuer."""


def metadata_url(issuer: str) -> str:
    """Where ``issuer``'s provider metadata is (Discovery §4.1)."""
    return issuer.rstrip("/") + WELL_KNOWN


def discover_jwks_uri(issuer: str, *, timeout_s: float) -> str:
    """The ``jwks_uri`` of ``issuer``'s metadata, after checking the metadata is its own."""
    url = metadata_url(issuer)
    response = httpx.get(url, timeout=timeout_s, headers={"Accept": "application/json"})
    if response.status_code != 200:
        raise DiscoveryError(f"{url} answered {response.status_code}, not the provider metadata")
    try:
        document = response.json()
    except ValueError:
        raise DiscoveryError(f"{url} did not answer JSON") from None
    if not isinstance(document, dict):
        raise DiscoveryError(f"{url} did not answer a JSON object")
    if document.get("issuer") != issuer:
        raise DiscoveryError(
            f"the provider metadata at {url} names issuer {document.get('issuer')!r}, not the "
            f"configured {issuer!r} (OpenID Connect Discovery §4.3): set TSUNAGU_OIDC_ISSUER "
            "to exactly the provider's issuer"
        )
    jwks_uri = document.get("jwks_uri")
    if not isinstance(jwks_uri, str) or urlsplit(jwks_uri).scheme not in ("https", "http"):
        raise DiscoveryError(f"the provider metadata at {url} names no jwks_uri")
    return jwks_uri
