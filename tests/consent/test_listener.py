"""The change listener: every process applies ``consent.changes`` to its own decision point,
and caches only while it is known to be caught up with the topic."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import pytest
from sqlalchemy import Engine

from broker.bus.sqlite_log import SqliteLog
from consent.changes import CONSENT_CHANGES_TOPIC
from consent.decisions import DecisionPoint, DecisionReason
from consent.keys import KeyRing
from consent.listener import ConsentChangeListener
from consent.service import ConsentService
from contract.bus import OutRecord
from tests.consent.world import (
    ALICE,
    BUS_FIRM,
    CATALOGUE,
    PLANNING,
    TRIPS,
    days,
    now,
    register_partners,
)


@pytest.fixture
def elsewhere(engine: Engine, keys: KeyRing, sqlite_bus: SqliteLog) -> ConsentService:
    """A service that tells this process's decision point nothing directly (another process)."""
    service = ConsentService(engine, keys, sqlite_bus, catalogue=CATALOGUE)
    register_partners(service)
    return service


@pytest.fixture
def following(
    engine: Engine, sqlite_bus: SqliteLog, elsewhere: ConsentService
) -> Iterator[tuple[DecisionPoint, ConsentChangeListener]]:
    """A decision point fed only by its listener on the SQLite bus."""
    decision_point = DecisionPoint(engine, CATALOGUE)
    listener = ConsentChangeListener(sqlite_bus, decision_point)
    listener.start()
    assert listener.wait_ready(10)
    yield decision_point, listener
    listener.stop()


def _eventually(check: Callable[[], bool], timeout_s: float = 10) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


def test_a_change_made_elsewhere_reaches_this_process_through_the_bus(
    elsewhere: ConsentService, following: tuple[DecisionPoint, ConsentChangeListener]
) -> None:
    decision_point, listener = following
    consent = elsewhere.grant(ALICE, BUS_FIRM, PLANNING, [TRIPS], expires_at=now() + days(9))
    _eventually(lambda: decision_point.decide(BUS_FIRM, PLANNING, TRIPS, ALICE).allowed)
    elsewhere.revoke(ALICE, consent.id)
    _eventually(
        lambda: (
            decision_point.decide(BUS_FIRM, PLANNING, TRIPS, ALICE).reason is DecisionReason.REVOKED
        )
    )
    assert listener.applied >= 2


def test_the_cache_is_used_only_while_the_listener_follows_the_topic(
    following: tuple[DecisionPoint, ConsentChangeListener],
) -> None:
    decision_point, listener = following
    assert listener.ready and decision_point.cache.caching
    listener.stop()
    assert not decision_point.cache.caching  # nobody would tell it about changes any more
    decision_point.decide(BUS_FIRM, PLANNING, TRIPS, ALICE)
    loads = decision_point.cache.loads
    decision_point.decide(BUS_FIRM, PLANNING, TRIPS, ALICE)
    assert decision_point.cache.loads > loads  # straight from the store


def test_a_record_the_listener_cannot_read_clears_the_whole_cache(
    sqlite_bus: SqliteLog, following: tuple[DecisionPoint, ConsentChangeListener]
) -> None:
    decision_point, _ = following
    decision_point.decide(BUS_FIRM, PLANNING, TRIPS, ALICE)
    loads = decision_point.cache.loads
    sqlite_bus.publish(CONSENT_CHANGES_TOPIC, [OutRecord(ALICE.encode(), b"not json")])

    def reloaded() -> bool:
        decision_point.decide(BUS_FIRM, PLANNING, TRIPS, ALICE)
        return decision_point.cache.loads > loads

    _eventually(reloaded)
