"""Pairwise pseudonyms: each partner's own stable id for a resident, useless to any other.

``psn-`` + HMAC-SHA256(platform key, partner id, resident id), truncated to 128 bits. Without
the key nobody can link two partners' pseudonyms, or a pseudonym to the platform's id. The
key comes from ``TSUNAGU_PSEUDONYM_KEY`` or is generated into ``$DATA_DIR/keys/pseudonym.key``
(mode 0600) at first run; changing it changes every partner's pseudonyms.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import threading
import time
from collections.abc import Callable, Iterable

from broker.settings import Settings
from consent.keys import load_or_create_key

PREFIX = "psn-"


def key_of(settings: Settings) -> bytes:
    """``TSUNAGU_PSEUDONYM_KEY`` (UTF-8, 32 bytes or more), or the generated key file."""
    if settings.pseudonym_key is not None:
        return settings.pseudonym_key.get_secret_value().encode()
    return load_or_create_key(settings.data_dir / "keys" / "pseudonym.key")


class Pseudonyms:
    """Computes pseudonyms, and resolves a partner's pseudonym back to a resident it may know."""

    def __init__(self, key: bytes, *, rebuild_every_s: float = 1.0) -> None:
        if len(key) < 32:
            raise ValueError("a pseudonym key needs at least 32 bytes")
        self._key = key
        self._rebuild_every_s = rebuild_every_s
        # partner -> (built at, pseudonym -> subject)
        self._index: dict[str, tuple[float, dict[str, str]]] = {}
        self._lock = threading.Lock()

    def of(self, partner: str, subject: str) -> str:
        """The partner's pseudonym for ``subject``."""
        mac = hmac.new(self._key, f"{partner}\x00{subject}".encode(), hashlib.sha256).digest()
        return PREFIX + base64.b32encode(mac[:16]).decode().rstrip("=").lower()

    def forget(self) -> None:
        """Drop every partner's index: someone was erased, and their pseudonyms must stop
        resolving now, not at the next rebuild."""
        with self._lock:
            self._index.clear()

    def resolve(
        self, partner: str, pseudonym: str, subjects: Callable[[], Iterable[str]]
    ) -> str | None:
        """The subject behind ``pseudonym`` among ``subjects()`` (those who consented to the
        partner), or None. The per-partner index is rebuilt on a miss, at most once per
        ``rebuild_every_s``, so a guessed pseudonym cannot make every request rebuild it.
        """
        if not pseudonym.startswith(PREFIX):
            return None
        with self._lock:
            built_at, index = self._index.get(partner, (0.0, {}))
        found = index.get(pseudonym)
        if found is not None or time.monotonic() - built_at < self._rebuild_every_s:
            return found
        fresh = {self.of(partner, s): s for s in set(subjects())}
        with self._lock:
            self._index[partner] = (time.monotonic(), fresh)
        return fresh.get(pseudonym)
