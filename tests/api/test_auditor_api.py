"""The auditor's API on a running platform: the flow map, refusals over time, the log
filtered, the chain's state, and exports that verify offline."""

from __future__ import annotations

import csv
import io
import json
import sqlite3
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from broker.audit.flows import UNKNOWN_SOURCE
from tests.api.test_audit_trail import _cli
from tests.api.test_partner_views import PLANNING, _activity, _grant, _id, _pseudonyms, _trip
from tests.fixtures.platform import RunningPlatform, register_partner, start_platform, stop_platform

TEST_SOURCE = "urn:tsunagu:connector:test"


def _auditor(platform: RunningPlatform) -> dict[str, str]:
    return platform.auth("auditor", "city-audit")


def _wait_for(predicate: Any, what: str, timeout_s: float = 10) -> Any:
    """Poll until ``predicate()`` is truthy (decisions reach the log within ~0.1 s)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    pytest.fail(f"not seen in {timeout_s} s: {what}")


def _edge(flows: dict[str, Any], source: str, target: str) -> dict[str, Any] | None:
    return next(
        (e for e in flows["edges"] if e["source"] == source and e["target"] == target), None
    )


@pytest.fixture(scope="module")
def story(platform: RunningPlatform) -> dict[str, str]:
    """A resident consents, their trip is ingested, a partner reads, the resident revokes,
    the partner reads again (refused), and a connector sends one bad event."""
    resident = _id("res")
    with platform.client() as http:
        partner = register_partner(platform, http, PLANNING)
        consent = _grant(platform, http, resident, partner, PLANNING, ["transport.trips"])
        platform.ingest([_trip(resident, 6)])
        (pseudonym,) = _pseudonyms(platform, http, partner)
        _activity(platform, http, partner, pseudonym).raise_for_status()
        revoked = http.post(
            f"/v1/me/consents/{consent}/revoke", headers=platform.auth("resident", resident)
        )
        assert revoked.status_code == 200, revoked.text
        again = _activity(platform, http, partner, pseudonym)
        assert again.status_code == 200, again.text
        withheld = {c["category"]: c for c in again.json()["categories"]}
        assert withheld["transport.trips"]["included"] is False
        bad = _trip(resident, 7)
        bad["data"]["fare_jpy"] = "free"
        r = http.post(
            "/v1/events",
            json=bad,
            headers={
                "content-type": "application/cloudevents+json",
                **platform.auth("connector", "odt", sources=(TEST_SOURCE,)),
            },
        )
        assert r.status_code == 202 and r.json()["rejected"] == 1, r.text
    return {"resident": resident, "partner": partner, "consent": consent}


def test_the_flow_map_shows_each_hop_with_counts_and_the_refusal_with_its_reason(
    platform: RunningPlatform, story: dict[str, str]
) -> None:
    partner = f"partner:{story['partner']}"
    with platform.client() as http:

        def refused_edge() -> dict[str, Any] | None:
            r = http.get("/v1/audit/flows", headers=_auditor(platform))
            assert r.status_code == 200, r.text
            edge = _edge(r.json(), "category:transport.trips", partner)
            return r.json() if edge and edge["refused"] >= 1 else None

        flows = _wait_for(refused_edge, "the refused read in the map")
    ids = {n["id"]: n for n in flows["nodes"]}
    assert ids[partner]["kind"] == "partner"
    published = _edge(flows, f"connector:{TEST_SOURCE}", "topic:transport")
    assert published is not None and published["count"] >= 1 and published["last_seen"]
    # The bad event: refused on the same connector's flow, with the dead-letter reason.
    assert published["refused"] >= 1 and published["reasons"]["schema_violation"] >= 1
    categorised = _edge(flows, "topic:transport", "category:transport.trips")
    assert categorised is not None and categorised["count"] >= 1
    read = _edge(flows, "category:transport.trips", partner)
    assert read is not None
    assert read["count"] == 1 and read["purposes"] == {PLANNING: 1}  # the one allowed read
    assert read["refused"] == 1 and read["reasons"] == {"revoked": 1}
    assert read["withheld"] == 0
    # A category the consent never covered, of a view read as a whole, was withheld on both
    # reads (before and after the revocation), never refused.
    health = _edge(flows, "category:health.points", partner)
    assert health is not None and health["count"] == 0
    assert (health["refused"], health["withheld"], health["reasons"]) == (0, 2, {})


def _partner_edges(platform: RunningPlatform, http: Any, partner: str) -> dict[str, Any]:
    """The map's category → ``partner`` edges, by category."""
    r = http.get("/v1/audit/flows", headers=_auditor(platform))
    assert r.status_code == 200, r.text
    return {
        e["source"].removeprefix("category:"): e
        for e in r.json()["edges"]
        if e["target"] == f"partner:{partner}"
    }


def test_ordinary_reads_of_the_whole_view_show_as_allowed_and_withheld_not_refused(
    platform: RunningPlatform,
) -> None:
    resident, reads = _id("res"), 5
    with platform.client() as http:
        partner = register_partner(platform, http, PLANNING)
        _grant(platform, http, resident, partner, PLANNING, ["transport.trips"])
        platform.ingest([_trip(resident, 8)])
        (pseudonym,) = _pseudonyms(platform, http, partner)
        for _ in range(reads):
            _activity(platform, http, partner, pseudonym).raise_for_status()

        def withheld_seen() -> dict[str, Any] | None:
            edges = _partner_edges(platform, http, partner)
            money = edges.get("currency.transactions")
            return edges if money and money["withheld"] == reads else None

        edges = _wait_for(withheld_seen, "the withheld decisions in the map")
    assert (edges["transport.trips"]["count"], edges["transport.trips"]["refused"]) == (reads, 0)
    for category in ("health.points", "currency.transactions"):
        edge = edges[category]
        assert (edge["count"], edge["refused"], edge["withheld"]) == (0, 0, reads)
        assert edge["reasons"] == {}


def test_a_category_asked_for_by_name_without_consent_is_refused(
    platform: RunningPlatform,
) -> None:
    resident = _id("res")
    with platform.client() as http:
        partner = register_partner(platform, http, PLANNING)
        _grant(platform, http, resident, partner, PLANNING, ["transport.trips"])
        (pseudonym,) = _pseudonyms(platform, http, partner)
        r = _activity(platform, http, partner, pseudonym, category=["health.points"])
        assert r.status_code == 200, r.text
        (part,) = r.json()["categories"]
        assert part["included"] is False
        assert part["withheld"]["reason"] == "category_not_covered"

        def refusal_seen() -> dict[str, Any] | None:
            edge = _partner_edges(platform, http, partner).get("health.points")
            return edge if edge and edge["refused"] else None

        edge = _wait_for(refusal_seen, "the refusal in the map")
    assert (edge["refused"], edge["withheld"]) == (1, 0)
    assert edge["reasons"] == {"category_not_covered": 1}


def test_a_window_before_the_story_shows_none_of_it(
    platform: RunningPlatform, story: dict[str, str]
) -> None:
    until = datetime.now(UTC) - timedelta(days=2)
    with platform.client() as http:
        r = http.get(
            "/v1/audit/flows",
            params={"until": until.isoformat(), "since": (until - timedelta(days=1)).isoformat()},
            headers=_auditor(platform),
        )
    assert r.status_code == 200, r.text
    assert r.json()["edges"] == [] and r.json()["nodes"] == []


def test_refusals_over_time_count_this_hours_refusals_and_fill_empty_hours(
    platform: RunningPlatform, story: dict[str, str]
) -> None:
    now = datetime.now(UTC)
    with platform.client() as http:
        r = http.get(
            "/v1/audit/refusals",
            params={"since": (now - timedelta(hours=5)).isoformat(), "bucket": "hour"},
            headers=_auditor(platform),
        )
    assert r.status_code == 200, r.text
    assert r.json()["tz"] == "Asia/Tokyo"
    series = r.json()["series"]
    assert series[0]["start"].endswith("+09:00")
    assert len(series) == 6  # five whole hours back, and this one
    assert [s["refused"] + s["dead_letters"] for s in series[:-2]] == [0, 0, 0, 0]
    current = series[-1] if series[-1]["refused"] else series[-2]  # the hour may just turn
    assert current["refused"] >= 1 and current["reasons"]["revoked"] >= 1
    # The story's four withheld decisions (two categories, two reads) are not refusals.
    assert sum(s["withheld"] for s in series) >= 4
    assert sum(s["dead_letters"] for s in series) >= 1


def test_too_many_buckets_is_a_problem_naming_the_limit(platform: RunningPlatform) -> None:
    with platform.client() as http:
        r = http.get(
            "/v1/audit/refusals",
            params={"since": "2020-01-01T00:00:00Z", "bucket": "hour"},
            headers=_auditor(platform),
        )
        unknown_zone = http.get(
            "/v1/audit/refusals", params={"tz": "Mars/Olympus"}, headers=_auditor(platform)
        )
        empty = http.get(
            "/v1/audit/flows",
            params={"since": "2026-01-02T00:00:00Z", "until": "2026-01-01T00:00:00Z"},
            headers=_auditor(platform),
        )
    assert r.status_code == 422
    assert r.headers["content-type"].startswith("application/problem+json")
    assert "at most 1000" in r.json()["detail"]
    assert unknown_zone.status_code == 422 and "Mars/Olympus" in unknown_zone.json()["detail"]
    assert empty.status_code == 422 and "empty" in empty.json()["detail"]


def test_entries_filter_by_kind_and_page_newest_first(
    platform: RunningPlatform, story: dict[str, str]
) -> None:
    with platform.client() as http:
        first = http.get(
            "/v1/audit/entries",
            params={"kind": "decision", "actor": story["partner"], "limit": 2},
            headers=_auditor(platform),
        ).json()
        rest = http.get(
            "/v1/audit/entries",
            params={
                "kind": "decision",
                "actor": story["partner"],
                "cursor": first["next_cursor"],
                "limit": 1000,
            },
            headers=_auditor(platform),
        ).json()
        reads = http.get(
            "/v1/audit/entries", params={"kind": "partner_read"}, headers=_auditor(platform)
        ).json()
    decisions = first["entries"] + rest["entries"]
    assert len(first["entries"]) == 2 and first["next_cursor"] is not None
    seqs = [d["seq"] for d in decisions]
    assert seqs == sorted(seqs, reverse=True) and len(set(seqs)) == len(seqs)
    assert len(decisions) == 6  # two reads of three categories each
    assert {d["kind"] for d in decisions} == {"decision"}
    assert rest["next_cursor"] is None
    assert all(d["subject_ref"] and story["resident"] not in json.dumps(d) for d in decisions)
    assert {r["kind"] for r in reads["entries"]} == {"partner_read"}
    assert any(r["fields"]["partner"] == story["partner"] for r in reads["entries"])


@pytest.mark.parametrize(
    ("path", "params"),
    [
        ("/v1/audit/entries", {}),
        ("/v1/audit/flows", {}),
        ("/v1/audit/refusals", {}),
        ("/v1/audit/verification", {}),
        ("/v1/audit/export", {"format": "csv"}),
    ],
)
def test_only_auditors_read_the_log(
    platform: RunningPlatform, path: str, params: dict[str, str]
) -> None:
    with platform.client() as http:
        anonymous = http.get(path, params=params)
        partner = http.get(path, params=params, headers=platform.auth("partner", "ptn-x"))
        resident = http.get(path, params=params, headers=platform.auth("resident", "res-x"))
        auditor = http.get(path, params=params, headers=_auditor(platform))
    assert anonymous.status_code == 401
    assert partner.status_code == 403 and resident.status_code == 403
    assert "auditor" in partner.json()["detail"]
    assert auditor.status_code == 200, auditor.text


def test_the_chain_verifies_and_the_state_says_how_far(
    platform: RunningPlatform, story: dict[str, str]
) -> None:
    with platform.client() as http:
        r = http.get("/v1/audit/verification", params={"fresh": "true"}, headers=_auditor(platform))
    assert r.status_code == 200, r.text
    state = r.json()
    assert state["ok"] is True and state["problem"] is None
    assert state["entries"] == state["last_seq"] > 10
    assert state["unsigned_tail"] == state["last_seq"] - state["last_checkpoint_seq"]


def test_a_jsonl_export_verifies_offline_and_the_export_is_on_record(
    platform: RunningPlatform, story: dict[str, str], tmp_path: Path
) -> None:
    with platform.client() as http:
        r = http.get("/v1/audit/export", params={"format": "jsonl"}, headers=_auditor(platform))
        jwks = http.get("/.well-known/jwks.json").json()
        taken = http.get(
            "/v1/audit/entries", params={"kind": "audit_export"}, headers=_auditor(platform)
        ).json()
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/x-ndjson")
    assert "attachment" in r.headers["content-disposition"]
    export, jwks_file = tmp_path / "audit.jsonl", tmp_path / "jwks.json"
    export.write_bytes(r.content)
    jwks_file.write_text(json.dumps(jwks))
    lines = r.content.splitlines()
    assert json.loads(lines[0])["type"] == "header"
    assert any(json.loads(line)["type"] == "checkpoint" for line in lines)
    verified = _cli(platform, "audit", "verify", "--export", str(export), "--jwks", str(jwks_file))
    assert verified.returncode == 0, verified.stdout + verified.stderr
    # One line edited: the same check names it.
    doctored = [json.loads(line) for line in lines]
    victim = next(d for d in doctored if d["type"] == "entry" and d["kind"] == "partner_read")
    victim["actor"] = "someone-else"
    export.write_text("\n".join(json.dumps(d) for d in doctored) + "\n")
    refused = _cli(platform, "audit", "verify", "--export", str(export), "--jwks", str(jwks_file))
    assert refused.returncode != 0
    assert f"seq {victim['seq']}" in refused.stdout + refused.stderr
    (entry, *_) = taken["entries"]
    assert entry["actor"] == "city-audit" and entry["fields"] == {"format": "jsonl"}


def test_a_csv_export_has_one_row_per_entry(
    platform: RunningPlatform, story: dict[str, str]
) -> None:
    with platform.client() as http:
        r = http.get("/v1/audit/export", params={"format": "csv"}, headers=_auditor(platform))
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(r.text)))
    seqs = [int(row["seq"]) for row in rows]
    assert seqs == list(range(1, len(rows) + 1))
    assert any(row["kind"] == "partner_read" for row in rows)


def test_the_partner_catalogue_is_public_and_names_approved_purposes(
    platform: RunningPlatform, story: dict[str, str]
) -> None:
    with platform.client() as http:
        r = http.get("/v1/catalogue/partners")
    assert r.status_code == 200, r.text
    (mine,) = [p for p in r.json() if p["id"] == story["partner"]]
    assert mine["purposes"] == [PLANNING] and mine["name_en"]


# -- a platform of its own: its store gets tampered with ---------------------------------------


@pytest.fixture(scope="module")
def tampered_platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningPlatform]:
    running = start_platform(tmp_path_factory.mktemp("tampered"))
    yield running
    stop_platform(running)


def test_an_edited_entry_turns_the_state_red_naming_its_seq(
    tampered_platform: RunningPlatform,
) -> None:
    platform = tampered_platform
    with platform.client() as http:
        register_partner(platform, http, PLANNING)

        def verified() -> dict[str, Any] | None:
            state: dict[str, Any] = http.get(
                "/v1/audit/verification", params={"fresh": "true"}, headers=_auditor(platform)
            ).json()
            return state if state["last_seq"] >= 2 else None  # changes are flushed in ~0.1 s

        before = _wait_for(verified, "the partner's registration in the log")
    assert before["ok"] is True
    with sqlite3.connect(platform.data_dir / "store.db") as db:
        db.execute("UPDATE audit_entries SET actor = 'nobody' WHERE seq = 2")
    with platform.client() as http:
        cached = http.get("/v1/audit/verification", headers=_auditor(platform)).json()
        after = http.get(
            "/v1/audit/verification", params={"fresh": "true"}, headers=_auditor(platform)
        ).json()
    assert cached["ok"] is True  # answered from the verification just made
    assert after["ok"] is False
    assert after["problem"]["seq"] == 2 and after["problem"]["kind"] == "edited"


def test_unknown_connector_source_is_named_in_the_map(platform: RunningPlatform) -> None:
    with platform.client() as http:
        r = http.post(
            "/v1/events",
            content=b'[{"no": "envelope"}]',
            headers={
                "content-type": "application/cloudevents-batch+json",
                **platform.auth("connector", "odt", sources=(TEST_SOURCE,)),
            },
        )
        assert r.status_code == 202, r.text

        def unknown() -> dict[str, Any] | None:
            flows = http.get("/v1/audit/flows", headers=_auditor(platform)).json()
            return _edge(flows, f"connector:{UNKNOWN_SOURCE}", "topic:unrouted")

        edge = _wait_for(unknown, "the unattributed dead letter")
    assert edge["refused"] >= 1 and edge["reasons"]["invalid_envelope"] >= 1
