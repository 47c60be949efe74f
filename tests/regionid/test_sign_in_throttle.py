"""Password guessing at the region ID is slowed per account name (default settings: a burst
of 5 attempts, then one every 5 s), whoever tries; each throttled attempt is audited."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import create_engine

from broker.demo.logins import DEMO_AUDITOR_LOGIN, DEMO_RESIDENT_LOGIN, seed_logins
from broker.regionid.directory import Directory
from tests.fixtures.platform import RunningPlatform
from tests.regionid.test_provider import (
    BUS,
    Region,
    Registered,
    _add_client,
    _refused_since,
    authorize_url,
    post_login,
    refusals,
)

BURST = 5  # TSUNAGU_REGIONID_SIGN_IN_BURST's default


@pytest.fixture(scope="module")
def logins(platform: RunningPlatform) -> dict[str, str]:
    """The demo's accounts: name -> password."""
    engine = create_engine(f"sqlite:///{platform.data_dir / 'store.db'}")
    seeded = seed_logins(Directory(engine), platform.data_dir)
    engine.dispose()
    return {x.username: x.password for x in seeded}


@pytest.fixture(scope="module")
def region(platform: RunningPlatform, logins: dict[str, str]) -> Iterator[Region]:
    clients = {BUS[0]: Registered(BUS[0], _add_client(platform, *BUS), BUS[1])}
    issuer = f"{platform.base_url}/regionid"
    yield Region(platform, issuer, clients, DEMO_RESIDENT_LOGIN, logins[DEMO_RESIDENT_LOGIN])


def test_guessing_one_accounts_password_is_slowed_and_audited(
    region: Region, logins: dict[str, str]
) -> None:
    # The auditor's account is the one guessed at (the resident's is the next test's).
    region = Region(
        region.platform,
        region.issuer,
        region.clients,
        DEMO_AUDITOR_LOGIN,
        logins[DEMO_AUDITOR_LOGIN],
    )
    url = authorize_url(region, BUS[0])
    before = len(refusals(region))
    answers = [post_login(region, url, password=f"guess-{i}") for i in range(BURST + 1)]

    assert [a.status_code for a in answers] == [401] * BURST + [429]
    throttled = answers[-1]
    assert int(throttled.headers["retry-after"]) >= 1
    assert "location" not in throttled.headers
    assert "秒後にもう一度" in throttled.text
    # Even the right password waits: the throttle does not tell a guess from the owner.
    assert post_login(region, url).status_code == 429
    reasons = [r["reason"] for r in _refused_since(region, before)]
    assert (
        reasons
        == ["wrong username or password"] * BURST
        + ["too many sign-in attempts for one account name"] * 2
    )


def test_another_accounts_sign_in_is_not_slowed_by_guesses_at_one(region: Region) -> None:
    url = authorize_url(region, BUS[0])
    other = Region(region.platform, region.issuer, region.clients, "someone-else", "x")
    assert [post_login(other, url).status_code for _ in range(BURST + 1)][-1] == 429
    # The demo resident's own account is a bucket of its own: its sign-in goes through.
    answer = post_login(region, url)
    assert answer.status_code in (302, 303), answer.text
    assert answer.headers["location"].startswith(BUS[1])
