"""Password hashes with scrypt (RFC 7914) from the standard library: a stolen table is slow
to guess from, and no extra dependency."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

# OWASP's scrypt minimum (N=2^17, r=8, p=1): about 128 MiB and a tenth of a second per check.
_N, _R, _P = 2**17, 8, 1
_MAXMEM = 256 * 1024 * 1024


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def hash_password(password: str) -> str:
    """``scrypt$N$r$p$salt$digest`` of ``password`` under a fresh salt."""
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=_N, r=_R, p=_P, maxmem=_MAXMEM)
    return f"scrypt${_N}${_R}${_P}${_b64(salt)}${_b64(digest)}"


def check_password(password: str, stored: str) -> bool:
    """Whether ``password`` is the one ``stored`` was made from (constant-time compare)."""
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        found = hashlib.scrypt(
            password.encode(), salt=_unb64(salt), n=int(n), r=int(r), p=int(p), maxmem=_MAXMEM
        )
    except ValueError:
        return False
    return hmac.compare_digest(found, _unb64(digest))
