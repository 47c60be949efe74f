"""Proof of origin on the bus: who published a record, in a way a reader of the topic cannot
replay to forge other events.

A connector's token says who it is and what it may publish, but a token stays in the topic
for its retention, readable by anyone who may read the topic. So each record also carries a
MAC (HMAC-SHA256) over its own key and value, made with a key only that connector and the
platform hold: ``connector_key(master, connector)``, derived from the platform's connector
master key (``TSUNAGU_CONNECTOR_MASTER_KEY`` or ``$DATA_DIR/keys/connector-master.key``), so
nothing per connector is stored. Copying a record's headers onto other bytes fails the MAC; a
record replayed whole is the same event, which ingest drops by its id.
"""

from __future__ import annotations

import base64
import hashlib
import hmac

from broker.bus.base import Headers, OutRecord
from broker.ingest.deadletter import H_CONNECTOR_MAC, H_CONNECTOR_TOKEN
from broker.settings import Settings
from consent.keys import load_or_create_key

_LABEL = b"tsunagu connector mac v1\x00"
_NO_KEY = b"\xff\xff\xff\xff"


def master_key_of(settings: Settings) -> bytes:
    """``TSUNAGU_CONNECTOR_MASTER_KEY`` (UTF-8, 32 bytes or more), or the generated key file."""
    if settings.connector_master_key is not None:
        key = settings.connector_master_key.get_secret_value().encode()
        if len(key) < 32:
            raise ValueError("TSUNAGU_CONNECTOR_MASTER_KEY needs at least 32 bytes")
        return key
    return load_or_create_key(settings.data_dir / "keys" / "connector-master.key")


def connector_key(master: bytes, connector: str) -> bytes:
    """The MAC key of one connector (its token's subject), derived from the master key."""
    return hmac.digest(master, _LABEL + connector.encode("utf-8"), "sha256")


def record_mac(key: bytes, record_key: bytes | None, value: bytes) -> bytes:
    """The MAC of a record's key and value, as its header carries it."""
    framed = _NO_KEY if record_key is None else len(record_key).to_bytes(4, "big") + record_key
    mac = hmac.digest(key, framed + value, "sha256")
    return base64.urlsafe_b64encode(mac).rstrip(b"=")


def mac_matches(key: bytes, record_key: bytes | None, value: bytes, headers: Headers) -> bool:
    """Whether the record's MAC header is the MAC of its bytes under ``key``."""
    given = next((v for name, v in headers if name == H_CONNECTOR_MAC), None)
    return given is not None and hmac.compare_digest(given, record_mac(key, record_key, value))


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
