"""The HTTP ingest gateway binds a caller to its own CloudEvents source."""

from __future__ import annotations

from pathlib import Path

from broker.bus import DOMAIN_TOPICS, open_bus
from broker.ingest.gateway import IngestGateway, Outcome
from broker.store.database import make_engine
from tests.events import make_event, registry


def _gateway(tmp_path: Path) -> IngestGateway:
    bus = open_bus(f"sqlite:///{tmp_path / 'bus.db'}")
    engine = make_engine(f"sqlite:///{tmp_path / 'store.db'}")
    return IngestGateway(bus, engine, registry(), domains=DOMAIN_TOPICS)


def test_event_from_the_callers_own_source_is_accepted(tmp_path: Path) -> None:
    doc = make_event(source="urn:tsunagu:connector:mitoyo-ondemand")
    [result] = _gateway(tmp_path).submit(
        [doc], "t", frozenset({"urn:tsunagu:connector:mitoyo-ondemand"})
    )
    assert result.status is Outcome.ACCEPTED


def test_event_published_as_another_firm_is_rejected(tmp_path: Path) -> None:
    doc = make_event(source="urn:tsunagu:connector:other-taxi")
    [result] = _gateway(tmp_path).submit(
        [doc], "t", frozenset({"urn:tsunagu:connector:mitoyo-ondemand"})
    )
    assert result.status is Outcome.REJECTED
    assert result.reason is not None and result.reason.value == "source_not_allowed"
    assert result.path == "/source"
    assert "other-taxi" in (result.detail or "")
