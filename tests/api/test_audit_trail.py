"""What the running platform writes to the audit log: partner reads a resident can see in
their data tracker, refused decisions, issued tokens; and the chain verifies."""

from __future__ import annotations

import copy
import os
import subprocess
import sys
import time

import orjson
from sqlalchemy import create_engine, text

from broker.audit import SubjectRefs
from tests.api.test_partner_views import (
    HOUSING,
    PLANNING,
    _activity,
    _grant,
    _houses,
    _id,
    _listing,
    _pseudonyms,
    _trip,
)
from tests.events import registry
from tests.fixtures.platform import RunningPlatform, register_partner

MUNICIPAL = "statistics.municipal"


def _entries(platform: RunningPlatform, kind: str) -> list[dict[str, object]]:
    engine = create_engine(f"sqlite:///{platform.data_dir / 'store.db'}")
    with engine.connect() as conn:
        rows = conn.execute(
            text("SELECT fields, subject_ref, actor FROM audit_entries WHERE kind = :k"),
            {"k": kind},
        ).all()
    engine.dispose()
    return [
        {**orjson.loads(fields), "_subject_ref": ref, "_actor": actor}
        for fields, ref, actor in rows
    ]


def _cli(platform: RunningPlatform, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "broker.cli", *args],
        env={**os.environ, "TSUNAGU_DATA_DIR": str(platform.data_dir)},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_a_partner_read_is_in_the_residents_data_tracker_and_no_one_elses(
    platform: RunningPlatform,
) -> None:
    resident, neighbour = _id("res"), _id("res")
    with platform.client() as http:
        partner = register_partner(platform, http, PLANNING)
        consent = _grant(platform, http, resident, partner, PLANNING, ["transport.trips"])
        platform.ingest([_trip(resident, 6)])
        (pseudonym,) = _pseudonyms(platform, http, partner)
        _activity(platform, http, partner, pseudonym).raise_for_status()
        mine = http.get("/v1/me/access-log", headers=platform.auth("resident", resident)).json()[
            "reads"
        ]
        theirs = http.get("/v1/me/access-log", headers=platform.auth("resident", neighbour))
    (read,) = [r for r in mine if r["view"] == "activity"]
    assert read["partner"] == partner
    assert read["purpose"] == PLANNING
    assert read["categories"] == ["transport.trips"]  # the withheld ones were not read
    assert read["consent_ids"] == [consent]
    assert read["rows"] >= 1
    assert theirs.json() == {"reads": [], "next_cursor": None}


def test_refused_decisions_are_recorded_with_their_reason_and_no_subject_id(
    platform: RunningPlatform,
) -> None:
    resident = _id("res")
    with platform.client() as http:
        partner = register_partner(platform, http, PLANNING)
        _grant(platform, http, resident, partner, PLANNING, ["transport.trips"])
        (pseudonym,) = _pseudonyms(platform, http, partner)
        _activity(platform, http, partner, pseudonym).raise_for_status()
    deadline = time.monotonic() + 5
    mine: list[dict[str, object]] = []
    while time.monotonic() < deadline and len(mine) < 3:
        mine = [d for d in _entries(platform, "decision") if d["partner"] == partner]
        time.sleep(0.1)  # decisions are flushed by the log's writer within ~0.1 s
    by_category = {d["category"]: d for d in mine}
    assert by_category["transport.trips"]["allowed"] is True
    assert by_category["health.points"]["allowed"] is False
    assert by_category["health.points"]["reason"] == "category_not_covered"
    # Not named by the partner, not in its consent: withheld, not a refusal.
    assert by_category["health.points"]["withheld"] is True
    assert "withheld" not in by_category["transport.trips"]
    assert all(d["_subject_ref"] for d in mine)
    assert resident not in str(_entries(platform, "decision"))


def test_issued_tokens_are_recorded_and_the_chain_verifies(platform: RunningPlatform) -> None:
    issued = _cli(platform, "token", "issue", "--role", "auditor", "--sub", "city-audit")
    assert issued.returncode == 0, issued.stderr
    tokens = [t for t in _entries(platform, "token_issued") if t.get("sub") == "city-audit"]
    assert tokens and tokens[-1]["role"] == "auditor"
    verified = _cli(platform, "audit", "verify")
    assert verified.returncode == 0, verified.stdout + verified.stderr


def test_a_schema_registration_is_an_admin_change_naming_who(platform: RunningPlatform) -> None:
    latest = registry().get("currency.payment.settled")
    schema = copy.deepcopy(dict(latest.schema))
    urn = f"urn:tsunagu:schema:currency.payment.settled:v{latest.version + 1}"
    schema["$id"] = urn
    schema["properties"]["receipt_no"] = {"type": "string", "maxLength": 40}
    with platform.client() as http:
        r = http.post(
            "/v1/schemas/currency.payment.settled/versions",
            json=schema,
            headers=platform.auth("admin", "city-ops"),
        )
    assert r.status_code == 201, r.text
    (change,) = [
        e for e in _entries(platform, "admin_change") if e["action"] == "schema_registered"
    ]
    assert change["target"] == urn
    assert change["_actor"] == "city-ops"


def test_partner_register_and_approvals_are_admin_changes_naming_the_operator(
    platform: RunningPlatform,
) -> None:
    with platform.client() as http:
        partner = register_partner(platform, http, PLANNING)
        r = http.delete(
            f"/v1/partners/{partner}/purposes/{PLANNING}",
            headers=platform.auth("admin", "city-ops"),
        )
        assert r.status_code == 200, r.text
        refused = http.post(
            "/v1/partners",
            json={"name_ja": "x", "name_en": "x"},
            headers=platform.auth("partner", partner),
        )
    assert refused.status_code == 403
    mine = [e for e in _entries(platform, "admin_change") if partner in str(e["target"])]
    assert [(e["action"], e["target"], e["_actor"]) for e in mine] == [
        ("partner_registered", partner, "city-ops"),
        ("purpose_approved", f"{partner}/{PLANNING}", "city-ops"),
        ("purpose_withdrawn", f"{partner}/{PLANNING}", "city-ops"),
    ]


def test_each_partner_view_records_exactly_its_reads_and_a_refused_read_as_refused(
    platform: RunningPlatform,
) -> None:
    resident, owner = _id("res"), _id("res")
    listing = _listing(owner, _id("stop"))
    refs = SubjectRefs.in_data_dir(platform.data_dir)
    with platform.client() as http:
        partner = register_partner(platform, http, PLANNING, HOUSING, MUNICIPAL)
        consent = _grant(platform, http, resident, partner, PLANNING, ["transport.trips"])
        platform.ingest([_trip(resident, 6), listing])  # an owner once their listing is in
        owner_consent = _grant(platform, http, owner, partner, HOUSING, ["property.details"])
        (pseudonym,) = _pseudonyms(platform, http, partner)  # 1: the residents list
        _activity(platform, http, partner, pseudonym).raise_for_status()  # 2: the activity
        _houses(platform, http, partner)  # 3: the listings, 4: the one owner's details
        r = http.get(  # 5: a statistic
            "/v1/statistics/trips-by-town-month",
            params={"purpose": MUNICIPAL},
            headers=platform.auth("partner", partner),
        )
        assert r.status_code == 200, r.text
        http.post(
            f"/v1/me/consents/{consent}/revoke", headers=platform.auth("resident", resident)
        ).raise_for_status()
        _activity(platform, http, partner, pseudonym).raise_for_status()  # 6: refused
    reads = [e for e in _entries(platform, "partner_read") if e["partner"] == partner]
    assert [(e["view"], e["categories"], e["_subject_ref"]) for e in reads] == [
        ("residents", [], None),
        ("activity", ["transport.trips"], refs.of(resident)),
        ("vacant_houses", ["property.listing"], None),
        ("vacant_houses", ["property.details"], refs.of(owner)),
        ("statistics/trips-by-town-month", ["transport.trips"], None),
        ("activity", [], refs.of(resident)),
    ]
    assert reads[1]["consent_ids"] == [consent] and reads[1]["pseudonym"] == pseudonym
    assert reads[3]["consent_ids"] == [owner_consent]
    assert reads[5]["consent_ids"] == [] and reads[5]["rows"] == 0
    deadline = time.monotonic() + 5
    mine: list[dict[str, object]] = []
    while time.monotonic() < deadline and len(mine) < 6:
        mine = [
            d
            for d in _entries(platform, "decision")
            if d["partner"] == partner and d["_subject_ref"] == refs.of(resident)
        ]
        time.sleep(0.1)  # decisions are flushed by the log's writer within ~0.1 s
    trips = [(d["allowed"], d["reason"]) for d in mine if d["category"] == "transport.trips"]
    assert trips == [(True, "allowed"), (False, "revoked")]
    assert len(mine) == 6  # three categories, two reads
