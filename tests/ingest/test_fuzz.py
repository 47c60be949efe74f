"""Generated records and headers thrown at a running ingest worker on the embedded bus: every
record ends in the store or in the dead letters, none lost, and the worker stays alive."""

from __future__ import annotations

import json
import secrets
import threading
import time
from collections.abc import Iterator
from itertools import count
from pathlib import Path
from typing import Any

import jwt
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, text

from broker.auth.issuer import EmbeddedIssuer
from broker.auth.principals import Role
from broker.auth.verifier import StaticKeys, TokenVerifier
from broker.ingest.pipeline import IngestWorker
from broker.ingest.provenance import SourceAuthenticator
from consent.vault import SubjectVault
from contract.bus import Bus, Consumer, OutRecord
from contract.deadletter import H_ORIGIN
from contract.origin import H_CONNECTOR_TOKEN
from tests.auth.oidc import new_key
from tests.events import ALL_EVENT_TYPES, make_event, registry
from tests.ingest.conftest import TOPICS

SOURCE = "urn:tsunagu:connector:test"
UNIQUE = count()

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=30)
    | st.sampled_from(
        ["0001-01-01T00:00:00+09:00", "9999-12-31T23:59:59-05:00", "2025-06-12", "\x00", ""]
    ),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


def _nested(depth: int) -> dict[str, Any]:
    doc: dict[str, Any] = {"leaf": 1}
    for _ in range(depth):
        doc = {"a": doc}
    return doc


@st.composite
def event_values(draw: st.DrawFn) -> tuple[str, bytes]:
    """A topic and a record value: a valid event with one part replaced, or anything else."""
    kind = draw(st.sampled_from(["mutated", "mutated", "valid", "deep", "json", "bytes"]))
    event_type = draw(st.sampled_from(sorted(registry().types())))
    topic = event_type.split(".")[0]
    if kind == "bytes":
        return topic, draw(st.binary(max_size=200))
    if kind == "json":
        return topic, json.dumps(draw(json_values)).encode()
    doc = make_event(event_type, event_id=f"fz-{next(UNIQUE)}", source=SOURCE)
    if kind == "deep":
        doc["data"][draw(st.sampled_from(sorted(doc["data"])))] = _nested(
            draw(st.integers(min_value=20, max_value=400))
        )
    elif kind == "mutated":
        where = doc if draw(st.booleans()) else doc["data"]
        name = draw(st.sampled_from(sorted(where)) | st.text(max_size=8))
        where[name] = draw(json_values)
        if isinstance(doc.get("id"), str) and name == "id" and where is doc:
            doc["id"] += f"-{next(UNIQUE)}"  # a fresh id: a repeat would be a true duplicate
    if draw(st.booleans()):  # and sometimes on another domain's topic
        topic = draw(st.sampled_from(TOPICS))
    return topic, json.dumps(doc).encode()


@pytest.fixture
def issuer(tmp_path: Path) -> EmbeddedIssuer:
    return EmbeddedIssuer.in_data_dir(tmp_path / "issuer", audience="tsunagu")


def _tokens(issuer: EmbeddedIssuer) -> list[bytes]:
    """Connector tokens: valid, of another role, garbage, RS256 under the EC kid."""
    now = int(time.time())
    forged = jwt.encode(
        {"iss": issuer.issuer, "aud": "tsunagu", "sub": "x", "role": "connector", "iat": now}
        | {"exp": now + 600, "sources": [SOURCE], "event_types": list(ALL_EVENT_TYPES)},
        new_key("RS256").private,
        algorithm="RS256",
        headers={"kid": issuer.kid},
    )
    valid = issuer.issue("fz", Role.CONNECTOR, sources=[SOURCE], event_types=ALL_EVENT_TYPES)
    return [t.encode() for t in (valid, valid, forged, issuer.issue("p", Role.PARTNER))] + [
        b"garbage",
        b"\xff\xfe",
        b"a.b.c",
    ]


@pytest.fixture
def worker_thread(
    bus: Bus, engine: Engine, vault: SubjectVault, issuer: EmbeddedIssuer
) -> Iterator[threading.Thread]:
    verifier = TokenVerifier(StaticKeys(issuer.jwks()), issuer=issuer.issuer, audience="tsunagu")
    worker = IngestWorker(
        bus,
        engine,
        registry(),
        vault,
        group="fuzz",
        topics=TOPICS,
        batch_size=50,
        authenticate=SourceAuthenticator(verifier, secrets.token_bytes(32)),
    )
    stop = threading.Event()
    thread = threading.Thread(target=worker.run, args=(stop, 0.05), name="ingest-fuzz")
    thread.start()
    yield thread
    stop.set()
    thread.join(10)


class Ledger:
    """Where the records went: distinct dead letters (by origin) and rows in the ledger."""

    def __init__(self, bus: Bus, engine: Engine) -> None:
        self.engine = engine
        self.reader: Consumer = bus.consumer("fuzz-dlq", [f"{t}.dlq" for t in TOPICS])
        self.dead: set[bytes] = set()

    def settled(self) -> int:
        """Records accounted for so far."""
        for record in self.reader.poll(10_000, 0.05):
            self.dead.add(dict(record.headers)[H_ORIGIN])
        with self.engine.connect() as conn:
            ingested = conn.execute(text("SELECT count(*) FROM ingested_events")).scalar_one()
        return len(self.dead) + int(ingested)


def test_no_generated_record_is_lost_or_stops_the_worker(
    bus: Bus, engine: Engine, issuer: EmbeddedIssuer, worker_thread: threading.Thread
) -> None:
    tokens = _tokens(issuer)
    ledger = Ledger(bus, engine)
    published = [0]
    headers = st.lists(
        st.tuples(st.text(max_size=12), st.binary(max_size=20))
        | st.tuples(st.just(H_CONNECTOR_TOKEN), st.sampled_from(tokens)),
        max_size=3,
    )

    @settings(
        max_examples=40,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(st.lists(st.tuples(event_values(), headers), min_size=1, max_size=8))
    def throw(records: list[tuple[tuple[str, bytes], list[tuple[str, bytes]]]]) -> None:
        for (topic, value), record_headers in records:
            bus.publish(topic, [OutRecord(b"fuzz", value, record_headers)])
        published[0] += len(records)
        deadline = time.monotonic() + 30
        while ledger.settled() < published[0] and time.monotonic() < deadline:
            assert worker_thread.is_alive(), "the ingest worker died"
        assert worker_thread.is_alive(), "the ingest worker died"
        assert ledger.settled() == published[0], "a record is neither stored nor dead-lettered"

    try:
        throw()
    finally:
        ledger.reader.close()
