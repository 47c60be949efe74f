"""Synthetic events for benchmarks: every shipped type, distinct ids and subjects."""

from __future__ import annotations

import base64
import copy
import hashlib
import random
from datetime import UTC, datetime
from typing import Any

import orjson

from broker.registry.catalogue import SchemaRegistry
from connectors.sdk.schemas import Identity
from contract.bus import OutRecord
from contract.cloudevents import STRUCTURED_HEADERS
from contract.origin import OriginSigner

# The mix a region produces: mostly trips, steps and payments; few listings.
MIX = {
    "transport.trip.completed": 30,
    "transport.ride.requested": 10,
    "transport.vehicle.position": 15,
    "health.points.awarded": 20,
    "currency.payment.settled": 20,
    "currency.wallet.topped_up": 3,
    "vacant_house.inquiry.received": 2,
}


#: The CloudEvents source of every benchmark event.
SOURCE = "urn:tsunagu:connector:bench"


#: Residents the events are about.
RESIDENTS = 2000


def resident(i: int) -> str:
    """The platform id of the bench's resident ``i``."""
    return f"res-{i:05d}"


def service_subject(resident_id: str) -> str:
    """The bench connector's pairwise subject for ``resident_id`` (43 characters, as the
    region ID's)."""
    digest = hashlib.sha256(b"bench\x00" + resident_id.encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def make_records(
    registry: SchemaRegistry,
    n: int,
    seed: int = 7,
    signer: OriginSigner | None = None,
    identity: Identity = "resident_id",
) -> dict[str, list[OutRecord]]:
    """``n`` valid events as bus records, grouped by topic (signed by ``signer``'s connector:
    its token and each record's MAC); residents named by their platform id, or by the
    connector's subject for them (``service_subject``, ID link)."""
    rng = random.Random(seed)
    types = list(MIX)
    weights = [MIX[t] for t in types]
    versions = {t: registry.latest_naming(t, identity) for t in types}
    examples = {t: v.schema["examples"][0] for t, v in versions.items()}
    urns = {t: v.urn for t, v in versions.items()}
    now = datetime.now(UTC).isoformat()
    by_topic: dict[str, list[OutRecord]] = {}
    for i, event_type in enumerate(rng.choices(types, weights, k=n)):
        data: dict[str, Any] = copy.deepcopy(examples[event_type])
        if "resident_id" in data:
            data["resident_id"] = subject = resident(rng.randrange(RESIDENTS))
        elif "subject" in data:
            data["subject"] = subject = service_subject(resident(rng.randrange(RESIDENTS)))
        elif "vehicle_id" in data:
            data["vehicle_id"] = subject = f"veh-{rng.randrange(40):03d}"
        else:
            subject = resident(rng.randrange(RESIDENTS))
        doc = {
            "specversion": "1.0",
            "id": f"bench-{seed}-{i:09d}",
            "source": SOURCE,
            "type": event_type,
            "subject": subject,
            "time": now,
            "dataschema": urns[event_type],
            "data": data,
        }
        topic = event_type.split(".", 1)[0]
        record = OutRecord(subject.encode(), orjson.dumps(doc), STRUCTURED_HEADERS)
        by_topic.setdefault(topic, []).append(signer.sign(record) if signer else record)
    return by_topic
