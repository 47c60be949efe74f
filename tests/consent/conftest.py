"""Fixtures of the consent tests: a real store (SQLite and PostgreSQL), the SQLite bus, keys."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine

from broker.bus.sqlite_log import SqliteLog
from broker.store.database import make_engine
from consent.decisions import Decision, DecisionPoint
from consent.keys import KeyRing
from consent.service import ConsentService
from tests.consent.world import CATALOGUE, OWNER, add_listing, register_partners


@pytest.fixture
def engine(store_url: str) -> Iterator[Engine]:
    """The store, with one vacant house owned by OWNER."""
    engine = make_engine(store_url)
    add_listing(engine, "prop-house0001", OWNER)
    yield engine
    engine.dispose()


@pytest.fixture
def keys(tmp_path: Path) -> KeyRing:
    """The platform's signing keys, generated into a fresh directory."""
    return KeyRing.open(tmp_path / "keys")


@pytest.fixture
def recorded() -> list[Decision]:
    """Every decision the decision point made (what the audit log will receive)."""
    return []


@pytest.fixture
def decision_point(engine: Engine, recorded: list[Decision]) -> DecisionPoint:
    """This process's decision point, recording into ``recorded``."""
    return DecisionPoint(engine, CATALOGUE, on_decision=recorded.append)


@pytest.fixture
def service(
    engine: Engine, keys: KeyRing, sqlite_bus: SqliteLog, decision_point: DecisionPoint
) -> ConsentService:
    """The consent service, invalidating this process's decision point on each change."""
    # Partners' webhooks in these tests are local receivers (127.0.0.1).
    svc = ConsentService(
        engine,
        keys,
        sqlite_bus,
        catalogue=CATALOGUE,
        on_change=[decision_point.cache.apply],
        allow_private_webhooks=True,
    )
    register_partners(svc)
    return svc
