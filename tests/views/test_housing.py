"""The partner's vacant-house view filters standard (v2) listings as it filters v1 ones: by the
town of their address and by whether they are on offer (both stores)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine

from broker.bus.sqlite_log import SqliteLog
from broker.store.database import make_engine
from broker.views.housing import vacant_houses
from broker.views.statistics import add_months, jst_month_start
from consent.decisions import DecisionPoint
from consent.keys import KeyRing
from consent.service import ConsentService
from consent.vault import SubjectVault
from tests.consent.world import CATALOGUE, DUAL_RESIDENCE, HOUSING, register_partners
from tests.events import example_data, make_event
from tests.store.world import ingest

MONTH = add_months(jst_month_start(datetime.now(UTC)), -2)


@pytest.fixture
def engine(store_url: str) -> Iterator[Engine]:
    e = make_engine(store_url)
    yield e
    e.dispose()


@pytest.fixture
def vault(tmp_path: Path) -> Iterator[SubjectVault]:
    opened = SubjectVault.open_url(f"sqlite:///{tmp_path / 'keys' / 'vault.db'}")
    yield opened
    opened.close()


@pytest.fixture
def decisions(engine: Engine, tmp_path: Path, sqlite_bus: SqliteLog) -> DecisionPoint:
    """The housing corporation, approved for dual-residence support."""
    point = DecisionPoint(engine, CATALOGUE)
    service = ConsentService(
        engine,
        KeyRing.open(tmp_path / "signing"),
        sqlite_bus,
        catalogue=CATALOGUE,
        on_change=[point.cache.apply],
    )
    register_partners(service)
    return point


def _v1(listing_id: str, town: str, status: str) -> dict[str, Any]:
    data = example_data("vacant_house.listing.registered", 1)
    data["listing_id"] = listing_id
    data["public"] = {**data["public"], "town": town, "status": status}
    return make_event("vacant_house.listing.registered", data=data, subject=listing_id, version=1)


def _v2(listing_id: str, street_address: str, code: str = "372081") -> dict[str, Any]:
    data = example_data("vacant_house.listing.registered", 2)
    data["listing_id"] = listing_id
    data["public"] = {
        **data["public"],
        "localGovernmentCode": code,
        "streetAddress": street_address,
    }
    return make_event("vacant_house.listing.registered", data=data, subject=listing_id, version=2)


def _kept_to_admins(listing_id: str) -> dict[str, Any]:
    """The bank takes a listing off its public pages (under contract, sold): 管理者のみ閲覧."""
    data = example_data("vacant_house.listing.updated", 2)
    data["listing_id"] = listing_id
    data["public"] = {"vacantHouseListing": "管理者のみ閲覧"}
    data.pop("owner_details")
    return make_event("vacant_house.listing.updated", data=data, subject=listing_id, version=2)


@pytest.fixture
def listings(engine: Engine, vault: SubjectVault, sqlite_bus: SqliteLog) -> None:
    """v1 and v2 listings in 詫間 and 仁尾, on offer or not, and one of another municipality."""
    docs = [
        _v1("prop-v1takuma01", "takuma", "available"),
        _v1("prop-v1takuma02", "takuma", "contracted"),
        _v1("prop-v1nio0001", "nio", "available"),
        _v2("prop-v2takuma01", "詫間町粟島"),
        _v2("prop-v2takuma02", "詫間町松崎"),
        _v2("prop-v2nio0001", "仁尾町家の浦"),
        _v2("prop-v2kanonji1", "豊中町岡本", code="372030"),  # 観音寺市: in none of our towns
        _kept_to_admins("prop-v2takuma02"),
    ]
    outcome = ingest(sqlite_bus, engine, vault, docs)
    assert (outcome.projected, outcome.rejected) == (len(docs), 0)


def _ids(engine: Engine, vault: SubjectVault, decisions: DecisionPoint, **filters: Any) -> set[str]:
    page = vacant_houses(
        engine,
        vault,
        decisions,
        partner=HOUSING,
        purpose=DUAL_RESIDENCE,
        month=MONTH,
        k=10,
        settle_days=7,
        **filters,
    )
    assert page.listing_decision.allowed
    return {h.listing_id for h in page.houses}


@pytest.mark.usefixtures("listings")
def test_a_standard_listing_is_found_by_the_town_of_its_address(
    engine: Engine, vault: SubjectVault, decisions: DecisionPoint
) -> None:
    assert _ids(engine, vault, decisions, town="takuma") == {
        "prop-v1takuma01",
        "prop-v1takuma02",
        "prop-v2takuma01",
    }
    assert _ids(engine, vault, decisions, town="nio") == {"prop-v1nio0001", "prop-v2nio0001"}
    # An address of another municipality is in no town of ours, whatever its 町字 says.
    assert _ids(engine, vault, decisions, town="toyonaka") == set()


@pytest.mark.usefixtures("listings")
def test_available_only_finds_standard_listings_on_offer_and_not_one_off_the_bank(
    engine: Engine, vault: SubjectVault, decisions: DecisionPoint
) -> None:
    on_offer = _ids(engine, vault, decisions, available_only=True)
    assert on_offer == {
        "prop-v1takuma01",
        "prop-v1nio0001",
        "prop-v2takuma01",
        "prop-v2nio0001",
        "prop-v2kanonji1",
    }
    assert "prop-v1takuma02" in _ids(engine, vault, decisions)  # contracted: listed, not on offer
    both = _ids(engine, vault, decisions, town="takuma", available_only=True)
    assert both == {"prop-v1takuma01", "prop-v2takuma01"}
