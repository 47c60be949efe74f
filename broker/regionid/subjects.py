"""Pairwise subject identifiers (OpenID Connect Core §8.1): one resident is a different,
stable ``sub`` to each sector (a service company), so that two firms cannot join their
customers on it."""

from __future__ import annotations

import base64
import hashlib
import hmac


class PairwiseSubjects:
    """``sub = HMAC-SHA256(secret, sector || 0x00 || local account id)``, base64url."""

    def __init__(self, secret: bytes) -> None:
        if len(secret) < 32:
            raise ValueError("the pairwise subject secret must be at least 32 bytes")
        self._secret = secret

    def subject(self, sector: str, account_id: str) -> str:
        """The ``sub`` the clients of ``sector`` know the account ``account_id`` by."""
        # The separator keeps ("a.b", "c") and ("a", "b.c") apart.
        message = sector.encode() + b"\x00" + account_id.encode()
        digest = hmac.new(self._secret, message, hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
