"""The demo's consent side in process, on a real store and bus: the seed is idempotent, people
change their minds in a fixed round (never the demo resident), and a partner thread outlives
the API's refusals and ends with the platform."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import orjson
import pytest
from sqlalchemy import Engine, text

from broker.audit import AuditLog
from broker.auth.principals import Role
from broker.demo import PARTNERS, DemoLife, DemoPartner, IssueToken
from broker.demo.cast import HOUSING, TRANSPORT
from broker.demo.minds import MindChanges
from broker.demo.seed import DEMO_OPERATOR
from broker.runtime import Platform
from broker.settings import Settings
from connectors.region import Region
from tests.fixtures.platform import RunningPlatform

REGION = Region(seed=7, population=300)


@pytest.fixture
def local(tmp_path: Path) -> Iterator[Platform]:
    """A platform's parts in this process, on SQLite files in ``tmp_path``."""
    opened = Platform.open(Settings(data_dir=tmp_path))
    yield opened
    opened.close()


def _life(
    platform: Platform,
    *,
    base_url: str = "http://127.0.0.1:9",
    issue: IssueToken | None = None,
    partners: Sequence[DemoPartner] = PARTNERS,
    audit: AuditLog | None = None,
) -> DemoLife:
    return DemoLife(
        platform.consent,
        REGION,
        base_url=base_url,
        interval_s=0.1,
        token_ttl_s=3600,
        issue=issue,
        lifecycle=platform.lifecycle,
        partners=partners,
        audit=audit,
    )


def _chains(engine: Engine) -> list[tuple[str, str, str, str]]:
    with engine.connect() as conn:
        rows = conn.execute(
            text("SELECT id, subject_id, partner_id, change FROM consents ORDER BY id")
        ).all()
    return [(r.id, r.subject_id, r.partner_id, r.change) for r in rows]


def test_seeding_again_adds_no_partner_approval_or_consent(local: Platform) -> None:
    life = _life(local, audit=local.audit)
    life.seed()
    first = _chains(local.engine)
    # Owners wait for their listing, which no connector has sent here.
    assert {(s, p) for _, s, p, _ in first} == {
        (g.subject, g.partner.partner_id) for g in life.grants if g.partner is not HOUSING
    }
    _life(local, audit=local.audit).seed()
    assert _chains(local.engine) == first
    local.audit.flush()
    with local.engine.connect() as conn:
        municipal = conn.execute(
            text("SELECT fields FROM audit_entries WHERE actor = 'municipality'")
        ).scalars()
        assert len(list(municipal)) == 6  # three registrations, three approvals; once each
        operator = conn.execute(
            text("SELECT fields FROM audit_entries WHERE kind = 'admin_change' AND actor = :who"),
            {"who": DEMO_OPERATOR},
        ).scalars()
        actions = sorted(orjson.loads(f)["action"] for f in operator)
    # The operator is named once per registration and approval, as the admin API does.
    assert actions == ["partner_registered"] * 3 + ["purpose_approved"] * 3
    assert [p.id for p in local.consent.partners()] == sorted(p.partner_id for p in life.partners)


def test_minds_change_in_a_round_and_never_the_demo_residents(local: Platform) -> None:
    life = _life(local)
    life.seed()
    star = life.resident.resident_id
    minds = MindChanges(local.consent, TRANSPORT, keep={star}, seed=REGION.seed)
    made = [minds.next() for _ in range(8)]
    assert all(c is not None for c in made)
    changes = [c.change for c in made if c is not None]
    assert changes == ["paused", "resumed", "revoked", "granted"] * 2
    subjects = [c.subject_id for c in made if c is not None]
    assert subjects[0] == subjects[1] and subjects[2] == subjects[3]  # the one who paused resumes
    assert star not in subjects
    assert {(c.version, c.status) for c in local.consent.current(star)} == {(1, "active")}


def test_a_partner_thread_logs_refusals_goes_on_and_stops_with_the_platform(
    local: Platform, platform: RunningPlatform, caplog: pytest.LogCaptureFixture
) -> None:
    # A token the running API cannot verify: every read is refused with 401.
    life = _life(
        local,
        base_url=platform.base_url,
        partners=(TRANSPORT,),
        issue=lambda role, sub, ttl: "not-a-token" if role is Role.PARTNER else "",
    )
    life.seed()
    with caplog.at_level(logging.WARNING, logger="broker.demo"):
        life.start()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and len(_refusals(caplog)) < 6:
            time.sleep(0.1)
        assert life.alive()
        local.close()  # joins the platform's threads, the partner's among them
    assert not life.alive()
    # Six refusals logged, each naming the partner and the route (on a loaded machine a slow
    # answer may be logged between them too: the thread goes on after that as well).
    refused = _refusals(caplog)
    assert len(refused) >= 6, [r.getMessage() for r in caplog.records][:6]
    assert all(m.startswith("demo partner ptn-") and "GET /v1/" in m for m in refused)


def _refusals(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if ": 401 " in r.getMessage()]
