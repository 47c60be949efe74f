"""Why a token was refused; the API answers 401 with this detail."""

from __future__ import annotations


class TokenRejectedError(Exception):
    """A bearer token that is missing, malformed, forged, expired or not for us."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class IssuerUnavailableError(Exception):
    """This deployment verifies an external OIDC provider's tokens and issues none itself."""
