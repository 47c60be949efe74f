"""A fifth service domain joins as a plug-in: the toy 防災 domain of tests/plugins/bousai/
(its declaration, one schema, one projection with its table) is installed beside the platform,
and a real `tsunagu up` finds it through its entry point - no product file edited. A plug-in
that takes a topic or a category already taken is refused at start, naming both."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from sqlalchemy import create_engine, text

from tests.fixtures.platform import RunningPlatform, start_platform, stop_platform

HERE = Path(__file__).parent
SOURCE = "urn:tsunagu:connector:takase-shelters"
EVENT_TYPE = "bousai.evacuation.checked_in"


def _install(plugin: str, target: Path) -> None:
    """``pip install --no-deps --target`` of one plug-in, built from a copy of its files
    (the build leaves nothing in the repository)."""
    source = target.parent / f"src-{plugin}"
    shutil.copytree(HERE / plugin, source)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--target",
            target,
            source,
        ],
        check=True,
        capture_output=True,
    )


def _pythonpath(site: Path) -> dict[str, str]:
    return {"PYTHONPATH": os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH")]))}


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningPlatform]:
    """`tsunagu up` with the 防災 plug-in installed in a site directory of its own."""
    site = tmp_path_factory.mktemp("plugins") / "site"
    _install("bousai", site)
    running = start_platform(tmp_path_factory.mktemp("platform"), _pythonpath(site))
    yield running
    stop_platform(running)


def _check_in(resident: str) -> dict[str, Any]:
    return {
        "specversion": "1.0",
        "id": str(uuid.uuid4()),
        "source": SOURCE,
        "type": EVENT_TYPE,
        "subject": resident,
        "time": datetime.now(UTC).isoformat(),
        "datacontenttype": "application/json",
        "dataschema": f"urn:tsunagu:schema:{EVENT_TYPE}:v1",
        "data": {
            "checkin_id": f"ci-{uuid.uuid4().hex[:12]}",
            "resident_id": resident,
            "shelter_id": "mitoyo-shelter-takase-01",
            "party_size": 3,
            "needs": ["infant"],
            "checked_in_at": "2025-09-01T10:15:00+09:00",
        },
    }


def _publish(platform: RunningPlatform, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Publish over HTTP ingest as the shelters' connector, registered for the new domain."""
    headers = {
        "content-type": "application/cloudevents-batch+json",
        **platform.auth(
            "connector", "takase-shelters", sources=(SOURCE,), event_types=("bousai.*",)
        ),
    }
    with platform.client() as http:
        r = http.post("/v1/events", content=orjson.dumps(events), headers=headers)
    assert r.status_code == 202, r.text
    results: list[dict[str, Any]] = r.json()["results"]
    return results


def _wait_for(what: str, found: Any, timeout_s: float = 20) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = found()
        if value:
            return value
        time.sleep(0.1)
    pytest.fail(f"not seen in {timeout_s} s: {what}")


def test_a_plugin_domains_event_flows_from_its_connector_to_its_table_and_the_flow_map(
    platform: RunningPlatform,
) -> None:
    resident = f"res-{uuid.uuid4().hex[:12]}"
    event = _check_in(resident)
    assert [r["status"] for r in _publish(platform, [event])] == ["accepted"]

    store = create_engine(f"sqlite:///{platform.data_dir / 'store.db'}")
    try:

        def projected() -> list[Any]:
            with store.connect() as conn:
                return list(
                    conn.execute(
                        text("SELECT * FROM bousai_check_ins WHERE event_id = :id"),
                        {"id": event["id"]},
                    ).mappings()
                )

        (row,) = _wait_for("the check-in in the plug-in's table", projected)
    finally:
        store.dispose()
    assert row["shelter_id"] == "mitoyo-shelter-takase-01"
    # The platform's rules hold for the newcomer: the resident by blind reference, sealed.
    assert resident not in row["subject_ref"] and b"infant" not in row["sealed"]

    auditor = platform.auth("auditor", "city-audit")
    with platform.client() as http:

        def mapped() -> dict[str, Any] | None:
            r = http.get("/v1/audit/flows", headers=auditor)
            assert r.status_code == 200, r.text
            edges = {(e["source"], e["target"]): e for e in r.json()["edges"]}
            published = edges.get((f"connector:{SOURCE}", "topic:bousai"))
            categorised = edges.get(("topic:bousai", "category:bousai.evacuations"))
            return (
                {"published": published, "categorised": categorised}
                if (published and categorised)
                else None
            )

        flows = _wait_for("the check-in in the auditor's flow map", mapped)
        assert flows["published"]["count"] == 1 and flows["categorised"]["count"] == 1
        # Its schema is served like the built-in ones.
        r = http.get(f"/v1/schemas/{EVENT_TYPE}/versions/latest")
        assert r.status_code == 200, r.text


def test_a_plugin_domains_bad_event_is_refused_by_its_own_schema(
    platform: RunningPlatform,
) -> None:
    bad = _check_in(f"res-{uuid.uuid4().hex[:12]}")
    bad["data"]["party_size"] = 0
    (result,) = _publish(platform, [bad])
    assert result["status"] == "rejected" and result["reason"] == "schema_violation"
    assert result["path"] == "/data/party_size"


def test_an_event_of_a_domain_nobody_installed_is_refused_naming_the_known_ones(
    platform: RunningPlatform,
) -> None:
    stray = _check_in(f"res-{uuid.uuid4().hex[:12]}")
    stray["type"] = "kosodate.checkup.completed"
    stray["dataschema"] = "urn:tsunagu:schema:kosodate.checkup.completed:v1"
    headers = {
        "content-type": "application/cloudevents-batch+json",
        **platform.auth(
            "connector", "takase-shelters", sources=(SOURCE,), event_types=("kosodate.*",)
        ),
    }
    with platform.client() as http:
        r = http.post("/v1/events", content=orjson.dumps([stray]), headers=headers)
    (result,) = r.json()["results"]
    assert result["reason"] == "unknown_type"
    assert result["detail"].startswith(
        "no domain declares event type 'kosodate.checkup.completed'; the platform's domains "
        "are bousai, currency, health, transport, vacant_house"
    )


@pytest.mark.parametrize(
    ("plugin", "message"),
    [
        (
            "clash_topic",
            "domain 'transport' (entry point tsunagu.domains:transport_again = "
            "tsunagu_clash_topic:DOMAIN of tsunagu-clash-topic 0.1.0) declares topic "
            "'transport', already taken by domain 'transport' (entry point "
            "tsunagu.domains:transport = contract.domains:TRANSPORT of tsunagu 0.1.0)",
        ),
        (
            "clash_category",
            "domain 'kosodate' (entry point tsunagu.domains:kosodate = "
            "tsunagu_clash_category:DOMAIN of tsunagu-clash-category 0.1.0) declares category "
            "'health.points', already taken by domain 'health' (entry point "
            "tsunagu.domains:health = contract.domains:HEALTH of tsunagu 0.1.0)",
        ),
    ],
)
def test_a_plugin_taking_a_topic_or_category_already_taken_is_refused_at_start(
    tmp_path: Path, plugin: str, message: str
) -> None:
    site = tmp_path / "site"
    _install(plugin, site)
    data_dir = tmp_path / "data"
    started = subprocess.run(
        [sys.executable, "-m", "broker.cli", "up"],
        env={**os.environ, **_pythonpath(site), "TSUNAGU_DATA_DIR": str(data_dir)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert started.returncode == 2, started.stderr[-2000:]
    assert f"tsunagu up: refused to start: {message}" in started.stderr
    assert "Traceback" not in started.stderr
    # Refused before anything was made: no bus, no store.
    assert not (data_dir / "store.db").exists()
