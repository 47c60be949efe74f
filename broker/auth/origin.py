"""Proof of origin on the bus, the platform's side: who published a record, in a way a reader
of the topic cannot replay to forge other events.

A connector's token says who it is and what it may publish, but a token stays in the topic
for its retention, readable by anyone who may read the topic. So each record also carries a
MAC (HMAC-SHA256) over its own key and value (``contract.origin``, the connector's side), made
with a key only that connector and the platform hold: ``connector_key(master, connector)``,
derived from the platform's connector master key (``TSUNAGU_CONNECTOR_MASTER_KEY`` or
``$DATA_DIR/keys/connector-master.key``), so nothing per connector is stored. Copying a
record's headers onto other bytes fails the MAC; a record replayed whole is the same event,
which ingest drops by its id.
"""

from __future__ import annotations

import hmac

from broker.settings import Settings
from consent.keys import load_or_create_key
from contract.bus import Headers
from contract.origin import H_CONNECTOR_MAC, record_mac

_LABEL = b"tsunagu connector mac v1\x00"


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


def mac_matches(key: bytes, record_key: bytes | None, value: bytes, headers: Headers) -> bool:
    """Whether the record's MAC header is the MAC of its bytes under ``key``."""
    given = next((v for name, v in headers if name == H_CONNECTOR_MAC), None)
    return given is not None and hmac.compare_digest(given, record_mac(key, record_key, value))
