"""Proof of origin on the bus, the connector's side: the headers a connector adds to each
record it publishes, its token and the record's MAC (HMAC-SHA256 over the record's key and
value) under the key only that connector and the platform hold.

The platform derives each connector's key and checks the MAC (``broker.auth.origin``); a
connector only signs, with the key it was given (``tsunagu token key``).
"""

from __future__ import annotations

import base64
import hashlib
import hmac

from contract.bus import OutRecord

#: The connector's token on a bus record; never kept in a dead letter, where whoever reads
#: the DLQ could reuse it.
H_CONNECTOR_TOKEN = "tsunagu-connector-token"
#: The record's MAC under its connector's key: proof of origin.
H_CONNECTOR_MAC = "tsunagu-connector-mac"

_NO_KEY = b"\xff\xff\xff\xff"


def record_mac(key: bytes, record_key: bytes | None, value: bytes) -> bytes:
    """The MAC of a record's key and value, as its header carries it."""
    framed = _NO_KEY if record_key is None else len(record_key).to_bytes(4, "big") + record_key
    mac = hmac.digest(key, framed + value, "sha256")
    return base64.urlsafe_b64encode(mac).rstrip(b"=")


def encode_key(key: bytes) -> str:
    """A connector key as given to its operator (base64url)."""
    return base64.urlsafe_b64encode(key).rstrip(b"=").decode("ascii")


def decode_key(text: str) -> bytes:
    """A connector key from its printed form (ValueError when it is not one)."""
    key = base64.urlsafe_b64decode(text.strip() + "=" * (-len(text.strip()) % 4))
    if len(key) != hashlib.sha256().digest_size:
        raise ValueError("a connector key is 32 bytes, base64url-encoded")
    return key


class OriginSigner:
    """What a connector adds to each record it publishes: its token, and the record's MAC."""

    def __init__(self, token: str, key: bytes) -> None:
        self._token = (H_CONNECTOR_TOKEN, token.encode("ascii"))
        self._key = key

    def headers(self, record_key: bytes | None, value: bytes) -> list[tuple[str, bytes]]:
        """The token and MAC headers of one record."""
        return [self._token, (H_CONNECTOR_MAC, record_mac(self._key, record_key, value))]

    def sign(self, record: OutRecord) -> OutRecord:
        """``record`` with the token and MAC headers added to its own."""
        return OutRecord(
            record.key, record.value, [*record.headers, *self.headers(record.key, record.value)]
        )
