"""Valid CloudEvents for tests, built from the examples every shipped schema carries."""

from __future__ import annotations

import copy
import re
import uuid
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any

import orjson

from broker.auth.origin import connector_key, master_key_of
from broker.registry.catalogue import SchemaRegistry
from broker.settings import REPO_SCHEMAS, Settings
from contract.domains import DOMAINS
from contract.origin import OriginSigner

_SUBJECT = re.compile(r"^(res|prop|veh)-")


@cache
def registry() -> SchemaRegistry:
    """The shipped schemas."""
    return SchemaRegistry.from_directory(REPO_SCHEMAS)


@cache
def by_resident_id(event_type: str) -> int:
    """The latest version of the type naming residents by the platform's ``resident_id``
    (the latest, for a type about no resident): what the tests publish unless they say
    otherwise. A test of ID link asks for the version naming them by service ``subject``."""
    return registry().latest_naming(event_type, "resident_id").version


def example_data(event_type: str, version: int | None = None) -> dict[str, Any]:
    """A deep copy of the first example of the type's schema (``by_resident_id`` when not
    given)."""
    schema = registry().get(event_type, version or by_resident_id(event_type)).schema
    data: dict[str, Any] = copy.deepcopy(schema["examples"][0])
    return data


def _subject_of(data: dict[str, Any]) -> str:
    for value in data.values():
        if isinstance(value, str) and _SUBJECT.match(value):
            return value
    return "res-0000test"


def make_event(
    event_type: str = "transport.trip.completed",
    *,
    event_id: str | None = None,
    data: dict[str, Any] | None = None,
    version: int | None = None,
    **attributes: Any,
) -> dict[str, Any]:
    """A valid structured-mode CloudEvent of ``event_type`` (its ``version``, else the latest
    naming residents by ``resident_id``)."""
    version = version or by_resident_id(event_type)
    body = example_data(event_type, version) if data is None else data
    doc: dict[str, Any] = {
        "specversion": "1.0",
        "id": event_id or str(uuid.uuid4()),
        "source": "urn:tsunagu:connector:test",
        "type": event_type,
        "subject": _subject_of(body),
        "time": datetime.now(UTC).isoformat(),
        "datacontenttype": "application/json",
        "dataschema": registry().get(event_type, version).urn,
        "data": body,
    }
    doc.update(attributes)
    return doc


def encode(doc: dict[str, Any]) -> bytes:
    """JSON bytes of an event document."""
    return orjson.dumps(doc)


#: A test connector's registration: every event type of every domain.
ALL_EVENT_TYPES = tuple(f"{d}.*" for d in DOMAINS.names())


def connector_signer(
    data_dir: Path,
    source: str = "urn:tsunagu:connector:test",
    event_types: tuple[str, ...] = ALL_EVENT_TYPES,
) -> OriginSigner:
    """What a connector for ``source`` and ``event_types`` adds to each record it publishes
    (its token, and the record's MAC under its key), made with the keys of the platform whose
    data directory is ``data_dir`` (as its connectors have them)."""
    from broker.auth.issuer import EmbeddedIssuer
    from broker.auth.principals import Role

    issuer = EmbeddedIssuer.in_data_dir(data_dir, audience="tsunagu")
    token = issuer.issue(
        "test-connector", Role.CONNECTOR, sources=[source], event_types=event_types
    )
    master = master_key_of(Settings(data_dir=data_dir, connector_master_key=None))
    return OriginSigner(token, connector_key(master, "test-connector"))
