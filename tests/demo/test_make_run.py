"""`tsunagu up --demo` (what `make run` starts), as a subprocess: the printed resident and
auditor pages sign in with tokens the API accepts for their roles, the demo partners' reads
and the refusals after someone changes their mind are in the audit log, and a second start
on the same data directory seeds nothing twice."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import orjson
import pytest
from sqlalchemy import create_engine, text

from broker.demo import demo_resident
from broker.demo.cast import HEALTH, HOUSING, TRANSPORT
from broker.regionid import SignInError
from broker.regionid.directory import Directory
from broker.regionid.proofing import Proofing
from connectors.region import Region
from tests.fixtures.platform import RunningPlatform, start_platform, stop_platform

POPULATION = 300
ARGS = ["--demo", "--demo-speed", "1200", "--population", str(POPULATION)]
#: Rounds of partner reads five times a second: a change of mind every second.
ENV = {"TSUNAGU_DEMO_READ_INTERVAL_S": "0.2"}
STAR = demo_resident(Region(seed=7, population=POPULATION)).resident_id


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningPlatform]:
    """`tsunagu up --demo` on a small, fast region, once for the module."""
    running = start_platform(tmp_path_factory.mktemp("demo"), ENV, ARGS)
    yield running
    stop_platform(running)


def _page(platform: RunningPlatform, name: str) -> tuple[str, str]:
    """The URL the summary printed for a page, and the token in its fragment."""
    found = re.search(rf"{name} page\s+(\S+)", platform.output.read_text(encoding="utf-8"))
    assert found, f"no {name} page in the summary"
    url = found.group(1)
    base, _, token = url.partition("#token=")
    return base, token


def _entries(platform: RunningPlatform, kind: str) -> list[dict[str, Any]]:
    engine = create_engine(f"sqlite:///{platform.data_dir / 'store.db'}")
    with engine.connect() as conn:
        rows = conn.execute(
            text("SELECT fields, actor FROM audit_entries WHERE kind = :k ORDER BY seq"),
            {"k": kind},
        ).all()
    engine.dispose()
    return [{**orjson.loads(fields), "_actor": actor} for fields, actor in rows]


def _eventually(check: Callable[[], bool], timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, "not within the time allowed"
        time.sleep(0.2)


def test_the_printed_pages_sign_in_as_the_demo_resident_and_an_auditor(
    demo: RunningPlatform,
) -> None:
    resident_url, resident = _page(demo, "Resident")
    auditor_url, auditor = _page(demo, "Auditor")
    assert resident_url == f"{demo.base_url}/resident"
    assert auditor_url == f"{demo.base_url}/auditor"
    claims = jwt.decode(resident, options={"verify_signature": False})
    assert (claims["role"], claims["sub"]) == ("resident", STAR)
    assert claims["exp"] - claims["iat"] == 12 * 3600
    with demo.client() as http:
        mine = http.get("/v1/me/consents", headers={"Authorization": f"Bearer {resident}"})
        assert mine.status_code == 200, mine.text
        assert {(c["partner_id"], c["purpose"], c["status"]) for c in mine.json()} == {
            (TRANSPORT.partner_id, TRANSPORT.purpose, "active"),
            (HEALTH.partner_id, HEALTH.purpose, "active"),
        }
        as_auditor = {"Authorization": f"Bearer {auditor}"}
        assert http.get("/v1/catalogue/categories", headers=as_auditor).status_code == 200
        # Statistics are for partners, auditors and admins: the role is what lets it in.
        stats = "/v1/statistics/trips-by-town-month"
        assert http.get(stats, headers=as_auditor).status_code == 200
        as_resident = {"Authorization": f"Bearer {resident}"}
        assert http.get(stats, headers=as_resident).status_code == 403
    # Issued like `tsunagu token issue`: both are in the audit log.
    issued = {e["jti"]: e for e in _entries(demo, "token_issued")}
    assert issued[claims["jti"]]["role"] == "resident" and "sub" not in issued[claims["jti"]]
    auditor_jti = jwt.decode(auditor, options={"verify_signature": False})["jti"]
    assert issued[auditor_jti]["sub"] == "demo-auditor"


def test_the_printed_region_id_logins_sign_in_the_demo_resident_and_the_auditor(
    demo: RunningPlatform,
) -> None:
    summary = demo.output.read_text(encoding="utf-8")
    assert f"{demo.base_url}/regionid/.well-known/openid-configuration" in summary
    logins = dict(
        (m.group(1), (m.group(2), m.group(3)))
        for m in re.finditer(r"Region ID login\s+(\w+): (\S+) / (\S+)", summary)
    )
    assert set(logins) == {"resident", "auditor"}
    engine = create_engine(f"sqlite:///{demo.data_dir / 'store.db'}")
    try:
        directory = Directory(engine)
        for role, (username, password) in logins.items():
            assert directory.sign_in(username, password).role == role
            with pytest.raises(SignInError):
                directory.sign_in(username, password + "x")
        resident = directory.sign_in(*logins["resident"])
        assert resident.identity.proofing is Proofing.MYNUMBER_CARD
    finally:
        engine.dispose()


def test_partners_read_over_http_and_are_refused_after_a_change_of_mind(
    demo: RunningPlatform,
) -> None:
    def everyone_read() -> bool:
        views = {(e["_actor"], e.get("view")) for e in _entries(demo, "partner_read")}
        return {
            (TRANSPORT.partner_id, "residents"),
            (TRANSPORT.partner_id, "activity"),
            (HEALTH.partner_id, "activity"),
            (HOUSING.partner_id, "vacant_houses"),
        } <= views

    _eventually(everyone_read)

    def refused() -> bool:
        return any(
            not d["allowed"] and d["reason"] in ("paused", "revoked")
            for d in _entries(demo, "decision")
        )

    _eventually(refused)
    changes = {(e["_actor"], e["event"]) for e in _entries(demo, "consent_change")}
    assert {("resident", "granted"), ("resident", "paused")} <= changes
    # The demo resident sees the partners' reads of their data.
    _, token = _page(demo, "Resident")

    def seen_by_the_demo_resident() -> bool:
        with demo.client() as http:
            log = http.get("/v1/me/access-log", headers={"Authorization": f"Bearer {token}"})
        return {TRANSPORT.partner_id, HEALTH.partner_id} <= {
            r["partner"] for r in log.json()["reads"]
        }

    _eventually(seen_by_the_demo_resident)


def test_a_second_start_on_the_same_data_seeds_nothing_twice(tmp_path: Path) -> None:
    first = start_platform(tmp_path, ENV, ARGS)
    try:
        _eventually(lambda: bool(_entries(first, "partner_read")))
    finally:
        stop_platform(first)
    before = _consents(tmp_path)
    again = start_platform(tmp_path, ENV, ARGS)
    try:
        _page(again, "Resident")  # the summary is printed again, with fresh tokens
        with again.client() as http:
            r = http.get("/readyz")
            assert r.status_code == 200
    finally:
        stop_platform(again)
    after = _consents(tmp_path)
    # Every consent chain of the first run is still one chain; the demo resident's are untouched.
    assert {c[1:3] for c in after if c[2] != HOUSING.partner_id} == {
        c[1:3] for c in before if c[2] != HOUSING.partner_id
    }
    assert [c for c in after if c[1] == STAR] == [c for c in before if c[1] == STAR]
    changes = _entries(again, "consent_change")
    municipal = sorted(e["event"] for e in changes if e["_actor"] == "municipality")
    assert municipal == ["partner_registered"] * 3 + ["purpose_approved"] * 3
    verified = subprocess.run(
        [sys.executable, "-m", "broker.cli", "audit", "verify"],
        env={**os.environ, "TSUNAGU_DATA_DIR": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert verified.returncode == 0, verified.stdout + verified.stderr


def _consents(data_dir: Path) -> list[tuple[str, str, str, int]]:
    engine = create_engine(f"sqlite:///{data_dir / 'store.db'}")
    with engine.connect() as conn:
        rows = conn.execute(
            text("SELECT id, subject_id, partner_id, version FROM consents ORDER BY id")
        ).all()
    engine.dispose()
    return [(r.id, r.subject_id, r.partner_id, r.version) for r in rows]


def test_under_an_oidc_provider_the_pages_say_where_tokens_come_from(tmp_path: Path) -> None:
    provider = "http://127.0.0.1:9/realms/mitoyo"  # never asked: nobody signs in here
    running = start_platform(tmp_path, {**ENV, "TSUNAGU_OIDC_ISSUER": provider}, ARGS)
    try:
        summary = running.output.read_text(encoding="utf-8")
        assert f"{running.base_url}/resident  (sign in with a token of {provider})" in summary
        assert f"{running.base_url}/auditor  (sign in with a token of {provider})" in summary
        assert "#token=" not in summary
        assert "no reads: partner tokens come from the OIDC provider" in summary
        # The region's own provider is trusted instead of the embedded one.
        assert "Region ID" not in summary
        assert httpx.get(f"{running.base_url}/regionid/jwks.json").status_code == 404
    finally:
        stop_platform(running)
    assert _entries(running, "token_issued") == []


def test_the_printed_token_command_runs_as_printed_in_the_shell_that_started_it(
    demo: RunningPlatform,
) -> None:
    found = re.search(r"Tokens\s+embedded; (.+)$", demo.output.read_text(encoding="utf-8"), re.M)
    assert found, "no token command in the summary"
    command = found.group(1)
    venv_bin = str(Path(sys.executable).parent)
    if venv_bin not in os.environ["PATH"].split(os.pathsep):  # as under `make run`
        assert command.startswith(venv_bin), command
    out = subprocess.run(
        command,
        shell=True,
        env={**os.environ, "TSUNAGU_DATA_DIR": str(demo.data_dir)},
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr
    assert jwt.decode(out.stdout.strip(), options={"verify_signature": False})["role"] == "admin"
