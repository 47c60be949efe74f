"""The HTTP ingest gateway binds a caller to its own CloudEvents source and event types."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from broker.auth.principals import Principal, Role
from broker.bus import open_bus
from broker.ingest.gateway import IngestGateway, Outcome
from broker.store.database import make_engine
from contract.domains import DOMAINS
from tests.events import make_event, registry


def _gateway(tmp_path: Path) -> IngestGateway:
    bus = open_bus(f"sqlite:///{tmp_path / 'bus.db'}")
    engine = make_engine(f"sqlite:///{tmp_path / 'store.db'}")
    return IngestGateway(bus, engine, registry(), domains=DOMAINS.topics())


def _connector(source: str, *event_types: str) -> Principal:
    """A verified connector registered for ``source`` and ``event_types``."""
    return Principal(
        "odt",
        Role.CONNECTOR,
        "urn:tsunagu:issuer:embedded",
        datetime.now(UTC),
        sources=frozenset({source}),
        event_types=frozenset(event_types or ("transport.*",)),
    )


def test_event_from_the_callers_own_source_is_accepted(tmp_path: Path) -> None:
    doc = make_event(source="urn:tsunagu:connector:mitoyo-ondemand")
    [result] = _gateway(tmp_path).submit(
        [doc], "t", _connector("urn:tsunagu:connector:mitoyo-ondemand")
    )
    assert result.status is Outcome.ACCEPTED


def test_event_published_as_another_firm_is_rejected(tmp_path: Path) -> None:
    doc = make_event(source="urn:tsunagu:connector:other-taxi")
    [result] = _gateway(tmp_path).submit(
        [doc], "t", _connector("urn:tsunagu:connector:mitoyo-ondemand")
    )
    assert result.status is Outcome.REJECTED
    assert result.reason is not None and result.reason.value == "source_not_allowed"
    assert result.path == "/source"
    assert "other-taxi" in (result.detail or "")


def test_accepted_event_goes_on_the_bus_as_sent_with_its_extensions(tmp_path: Path) -> None:
    import orjson

    gateway = _gateway(tmp_path)
    doc = make_event(traceparent="00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
    [result] = gateway.submit([doc], "t")
    assert result.status is Outcome.ACCEPTED
    consumer = gateway.bus.consumer("reader", ["transport"])
    records = consumer.poll(10, 2.0)
    consumer.close()
    assert [orjson.loads(r.value) for r in records] == [doc]
    assert records[0].key == doc["subject"].encode()
