"""`tsunagu deadletters`: a service company lists, reads and replays its dead letters without
writing code, on the embedded bus and on Kafka; a replay goes through the authenticated path
and never launders a record nobody vouched for."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, text

from broker.auth.issuer import EmbeddedIssuer
from broker.auth.origin import connector_key, master_key_of
from broker.auth.principals import Role
from broker.auth.provider import open_identity
from broker.bus import open_bus
from broker.ingest.pipeline import IngestWorker
from broker.ingest.provenance import SourceAuthenticator
from broker.runtime import topic_specs
from broker.settings import Settings
from broker.store.database import make_engine
from connectors import health, transport
from consent.vault import SubjectVault
from contract.bus import Bus, OutRecord, next_offsets
from contract.cloudevents import STRUCTURED_HEADERS
from contract.origin import H_CONNECTOR_MAC, H_CONNECTOR_TOKEN, OriginSigner, encode_key
from tests.events import encode, example_data, make_event, registry
from tests.fixtures.kafka import KafkaBroker, unique_topic
from tests.fixtures.terminal import BAR, assert_plain, run_in_terminal

INGEST_GROUP = "tsunagu-ingest"


class Region:
    """A platform's bus and store with its ingest worker, and the command run against them."""

    def __init__(self, data_dir: Path, bus_url: str | None, prefix: str) -> None:
        self.data_dir = data_dir
        self.env = {
            **os.environ,
            "TSUNAGU_DATA_DIR": str(data_dir),
            "TSUNAGU_TOPIC_PREFIX": prefix,
            **({"TSUNAGU_BUS": bus_url} if bus_url else {}),
        }
        self.settings = Settings(data_dir=data_dir, bus=bus_url or "", topic_prefix=prefix)
        self.prefix = prefix
        self.bus: Bus = open_bus(self.settings.bus_url)
        self.bus.create_topics(topic_specs(self.settings))
        self.engine: Engine = make_engine(self.settings.store_url)
        self.vault = SubjectVault.open_url(self.settings.vault_store_url)
        self.identity = open_identity(self.settings)
        self.worker = IngestWorker(
            self.bus,
            self.engine,
            registry(),
            self.vault,
            group=INGEST_GROUP,
            topic_prefix=prefix,
            authenticate=SourceAuthenticator(self.identity.verifier, master_key_of(self.settings)),
        )
        self.consumer = self.bus.consumer(INGEST_GROUP, self.worker.topics)

    def close(self) -> None:
        self.consumer.close()
        self.identity.verifier.close()
        self.vault.close()
        self.engine.dispose()
        self.bus.close()

    def signer(self, source: str, event_types: tuple[str, ...]) -> OriginSigner:
        """What the connector of ``source`` signs with on this platform's machine."""
        token, key = self.credentials(source, event_types)
        return OriginSigner(token, key)

    def credentials(self, source: str, event_types: tuple[str, ...]) -> tuple[str, bytes]:
        issuer = EmbeddedIssuer.in_data_dir(self.data_dir, audience=self.settings.oidc_audience)
        token = issuer.issue(source, Role.CONNECTOR, sources=[source], event_types=event_types)
        return token, connector_key(master_key_of(self.settings), source)

    def publish(self, doc: dict[str, Any], signer: OriginSigner | None) -> None:
        record = OutRecord(doc["subject"].encode(), encode(doc), STRUCTURED_HEADERS)
        if signer is not None:
            record = signer.sign(record)
        self.bus.publish(self.prefix + doc["type"].split(".")[0], [record])

    def ingest(self) -> None:
        """Run the worker until it has committed everything on the domain topics."""
        deadline = time.monotonic() + 60
        while True:
            ends = {t: self.bus.end_offsets(t) for t in self.worker.topics}
            done = {t: self.bus.committed(INGEST_GROUP, t) for t in self.worker.topics}
            if all(done[t].get(p, 0) >= end for t in ends for p, end in ends[t].items()):
                return
            assert time.monotonic() < deadline, "ingest did not catch up"
            records = self.consumer.poll(1000, 0.5)
            if records:
                self.worker.process(records)
                self.consumer.commit(next_offsets(records))

    def _count(self, sql: str, event_id: str) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(text(sql), {"id": event_id}).scalar_one())

    def ingested(self, event_id: str) -> int:
        return self._count("SELECT COUNT(*) FROM ingested_events WHERE id = :id", event_id)

    def trips(self, event_id: str) -> int:
        return self._count("SELECT COUNT(*) FROM transport_trips WHERE event_id = :id", event_id)

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "broker.cli", "deadletters", *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
        )

    def listed(self, *args: str) -> list[dict[str, Any]]:
        done = self.run("list", "--json", *args)
        assert done.returncode == 0, done.stderr
        out: list[dict[str, Any]] = json.loads(done.stdout)
        return out


def _broken_trip(source: str = transport.SOURCE) -> dict[str, Any]:
    """A trip whose data lacks its fare: dead-lettered as a schema violation."""
    data = example_data("transport.trip.completed")
    del data["fare_jpy"]
    return make_event("transport.trip.completed", data=data, source=source)


@pytest.fixture
def region(tmp_path: Path) -> Iterator[Region]:
    """The embedded platform: the SQLite log and SQLite store of one data directory."""
    r = Region(tmp_path / "data", None, "")
    yield r
    r.close()


@pytest.fixture
def kafka_region(tmp_path: Path, kafka_broker: KafkaBroker) -> Iterator[Region]:
    """The platform on the session's Kafka broker, with topics of its own."""
    kafka_broker.start()
    r = Region(tmp_path / "data", f"kafka://{kafka_broker.bootstrap}", unique_topic("dlq") + ".")
    yield r
    r.close()


def _fixed(tmp_path: Path, doc: dict[str, Any], **changes: Any) -> Path:
    fixed = {**doc, "data": {**doc["data"], "fare_jpy": 300}, **changes}
    path = tmp_path / "fixed.json"
    path.write_bytes(encode(fixed))
    return path


# -- list and show ----------------------------------------------------------------------------


def test_list_names_each_dead_letter_with_its_reason_and_path_newest_first(
    region: Region,
) -> None:
    signer = region.signer(transport.SOURCE, transport.EVENT_TYPES)
    first, second = _broken_trip(), _broken_trip()
    region.publish(first, signer)
    region.publish(second, signer)
    region.publish(make_event("transport.trip.completed", source=transport.SOURCE), signer)
    region.ingest()

    listed = region.listed()
    assert [d["event_id"] for d in listed] == [second["id"], first["id"]]
    assert listed[0]["reason"] == "schema_violation"
    assert listed[0]["path"] == "/data"  # a missing property is the object's fault
    assert listed[0]["source"] == transport.SOURCE
    assert listed[0]["type"] == "transport.trip.completed"
    assert listed[0]["ref"].startswith("transport.dlq/")

    lines = region.run("list").stdout.splitlines()
    assert len(lines) == 2
    assert listed[0]["ref"] in lines[0] and "schema_violation" in lines[0]


def test_list_filters_by_domain_source_reason_and_limit(region: Region) -> None:
    signer = region.signer(transport.SOURCE, transport.EVENT_TYPES)
    region.publish(_broken_trip(), signer)
    region.publish(make_event(source=transport.SOURCE), None)  # no token: unauthenticated
    region.ingest()

    assert len(region.listed()) == 2
    assert [d["reason"] for d in region.listed("--reason", "unauthenticated")] == [
        "unauthenticated"
    ]
    assert len(region.listed("--limit", "1")) == 1
    assert len(region.listed("--domain", "transport")) == 2
    assert region.listed("--domain", "health") == []
    assert region.listed("--source", health.SOURCE) == []
    assert region.listed("--since", "2999-01-01T00:00+09:00") == []
    assert len(region.listed("--since", "1h")) == 2


def test_list_refuses_an_unknown_domain_reason_or_zoneless_moment(region: Region) -> None:
    for args, named in [
        (["--domain", "trains"], "no domain"),
        (["--reason", "bad"], "no reason"),
        (["--since", "2026-11-02T09:00"], "with its zone"),
    ]:
        done = region.run("list", *args)
        assert done.returncode == 2
        assert named in done.stderr and len(done.stderr.strip().splitlines()) == 1


def test_show_gives_reason_path_detail_and_the_event_but_no_token_or_mac(
    region: Region,
) -> None:
    doc = _broken_trip()
    region.publish(doc, region.signer(transport.SOURCE, transport.EVENT_TYPES))
    region.ingest()
    (listed,) = region.listed()

    done = region.run("show", listed["ref"], "--json")
    assert done.returncode == 0, done.stderr
    shown = json.loads(done.stdout)
    assert shown["reason"] == "schema_violation"
    assert "fare_jpy" in shown["detail"]
    assert shown["event"] == doc
    assert H_CONNECTOR_TOKEN not in shown["headers"] and H_CONNECTOR_MAC not in shown["headers"]
    assert "fare_jpy" in region.run("show", listed["ref"]).stdout


def test_show_of_an_unknown_or_malformed_reference_says_so_in_one_line(region: Region) -> None:
    for ref, named in [("transport.dlq/0/99", "no dead letter"), ("nonsense", "<topic>/")]:
        done = region.run("show", ref)
        assert done.returncode == 3
        assert named in done.stderr and len(done.stderr.strip().splitlines()) == 1


def test_a_wrong_bus_url_is_one_clear_line(region: Region) -> None:
    done = region.run("list", "--bus", "redis://localhost")
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "error: unsupported bus URL 'redis://localhost': use sqlite:///path or kafka://host:port"
    ]


def test_list_at_a_terminal_shows_the_dead_letters_read(region: Region) -> None:
    signer = region.signer(transport.SOURCE, transport.EVENT_TYPES)
    for _ in range(3):
        region.publish(_broken_trip(), signer)
    region.ingest()

    screen = run_in_terminal(
        [sys.executable, "-m", "broker.cli", "deadletters", "list"], region.env
    )
    assert screen.returncode == 0, screen.output
    assert "reading dead letters" in screen.output and "3/3" in screen.output
    assert BAR in screen.output
    # The listing itself is the one a pipe gets.
    piped = region.run("list")
    for line in piped.stdout.splitlines():
        assert line in screen.output


def test_list_piped_prints_only_the_listing(region: Region) -> None:
    signer = region.signer(transport.SOURCE, transport.EVENT_TYPES)
    for _ in range(3):
        region.publish(_broken_trip(), signer)
    region.ingest()

    piped, as_json = region.run("list"), region.run("list", "--json")
    assert piped.returncode == as_json.returncode == 0
    assert len(piped.stdout.splitlines()) == 3 and piped.stdout.endswith("\n")
    assert len(json.loads(as_json.stdout)) == 3 and as_json.stdout.endswith("]\n")
    assert piped.stderr == as_json.stderr == ""
    assert_plain(piped.stdout, as_json.stdout)


# -- replay -----------------------------------------------------------------------------------


def _replays_a_fixed_event_once(region: Region, tmp_path: Path) -> None:
    doc = _broken_trip()
    region.publish(doc, region.signer(transport.SOURCE, transport.EVENT_TYPES))
    region.ingest()
    (listed,) = region.listed()
    assert region.ingested(doc["id"]) == 0

    fixed = _fixed(tmp_path, doc)
    for _ in range(2):
        done = region.run("replay", listed["ref"], "--file", str(fixed))
        assert done.returncode == 0, done.stderr
        region.ingest()
    # Ingested once, projected once: the event id is kept and ingest drops the repeat.
    assert region.ingested(doc["id"]) == 1
    assert region.trips(doc["id"]) == 1
    assert len(region.listed()) == 1  # neither replay was dead-lettered again


def test_a_fixed_event_replayed_twice_is_ingested_once(region: Region, tmp_path: Path) -> None:
    _replays_a_fixed_event_once(region, tmp_path)


def test_a_replay_still_invalid_is_refused_naming_reason_and_path(
    region: Region, tmp_path: Path
) -> None:
    doc = _broken_trip()
    region.publish(doc, region.signer(transport.SOURCE, transport.EVENT_TYPES))
    region.ingest()
    (listed,) = region.listed()
    ends = region.bus.end_offsets("transport")

    done = region.run("replay", listed["ref"])  # not fixed
    assert done.returncode == 5
    assert "schema_violation at /data" in done.stderr and "fare_jpy" in done.stderr
    assert region.bus.end_offsets("transport") == ends  # nothing was published


def test_a_replay_that_changes_the_event_id_is_refused(region: Region, tmp_path: Path) -> None:
    doc = _broken_trip()
    region.publish(doc, region.signer(transport.SOURCE, transport.EVENT_TYPES))
    region.ingest()
    (listed,) = region.listed()

    done = region.run("replay", listed["ref"], "--file", str(_fixed(tmp_path, doc, id="new")))
    assert done.returncode == 4
    assert "keep the id" in done.stderr


def test_an_unauthenticated_dead_letter_is_never_replayed(region: Region, tmp_path: Path) -> None:
    doc = make_event("transport.trip.completed", source=transport.SOURCE)  # valid, but unsigned
    region.publish(doc, None)
    region.ingest()
    (listed,) = region.listed()
    assert listed["reason"] == "unauthenticated"

    for args in ([], ["--file", str(_fixed(tmp_path, doc))]):
        done = region.run("replay", listed["ref"], *args)
        assert done.returncode == 4
        assert "unauthenticated" in done.stderr and "cannot be replayed" in done.stderr
    region.ingest()
    assert region.ingested(doc["id"]) == 0


def test_an_impersonation_is_never_replayed_as_its_victim(region: Region) -> None:
    # The health connector's own token, on an event claiming the transport connector's source.
    doc = make_event("transport.trip.completed", source=transport.SOURCE)
    region.publish(doc, region.signer(health.SOURCE, ("transport.*",)))
    region.ingest()
    (listed,) = region.listed()
    assert listed["reason"] == "source_not_allowed"

    done = region.run("replay", listed["ref"])  # the transport connector's credentials
    assert done.returncode == 4
    assert "source_not_allowed" in done.stderr
    region.ingest()
    assert region.ingested(doc["id"]) == 0


def test_a_replay_with_a_token_not_naming_the_source_is_refused(
    region: Region, tmp_path: Path
) -> None:
    doc = _broken_trip()
    region.publish(doc, region.signer(transport.SOURCE, transport.EVENT_TYPES))
    region.ingest()
    (listed,) = region.listed()
    token, key = region.credentials(health.SOURCE, ("transport.*",))

    done = region.run(
        "replay",
        listed["ref"],
        "--file",
        str(_fixed(tmp_path, doc)),
        "--token",
        token,
        "--key",
        encode_key(key),
    )
    assert done.returncode == 4
    assert f"may publish as {health.SOURCE}" in done.stderr
    region.ingest()
    assert region.ingested(doc["id"]) == 0

    # The same replay with the transport connector's own token goes in.
    token, key = region.credentials(transport.SOURCE, transport.EVENT_TYPES)
    done = region.run(
        "replay",
        listed["ref"],
        "--file",
        str(_fixed(tmp_path, doc)),
        "--token",
        token,
        "--key",
        encode_key(key),
    )
    assert done.returncode == 0, done.stderr
    region.ingest()
    assert region.ingested(doc["id"]) == 1


def test_a_replay_signed_with_a_wrong_key_is_dead_lettered_again_not_ingested(
    region: Region, tmp_path: Path
) -> None:
    doc = _broken_trip()
    region.publish(doc, region.signer(transport.SOURCE, transport.EVENT_TYPES))
    region.ingest()
    (listed,) = region.listed()
    token, _ = region.credentials(transport.SOURCE, transport.EVENT_TYPES)

    done = region.run(
        "replay",
        listed["ref"],
        "--file",
        str(_fixed(tmp_path, doc)),
        "--token",
        token,
        "--key",
        encode_key(b"\x01" * 32),
    )
    assert done.returncode == 0, done.stderr  # the command cannot tell; ingest can
    region.ingest()
    assert region.ingested(doc["id"]) == 0
    assert [d["reason"] for d in region.listed()] == ["unauthenticated", "schema_violation"]


# -- on Kafka ---------------------------------------------------------------------------------


def test_on_kafka_list_show_and_a_double_replay_ingest_once(
    kafka_region: Region, tmp_path: Path
) -> None:
    region = kafka_region
    _replays_a_fixed_event_once(region, tmp_path)
    (listed,) = region.listed("--domain", "transport")
    shown = json.loads(region.run("show", listed["ref"], "--json").stdout)
    assert shown["reason"] == "schema_violation"
    assert shown["topic"] == region.prefix + "transport.dlq"


def test_on_kafka_an_unauthenticated_dead_letter_is_never_replayed(
    kafka_region: Region,
) -> None:
    region = kafka_region
    doc = make_event("transport.trip.completed", source=transport.SOURCE)
    region.publish(doc, None)
    region.ingest()
    (listed,) = region.listed()
    assert listed["reason"] == "unauthenticated"

    done = region.run("replay", listed["ref"])
    assert done.returncode == 4
    assert "cannot be replayed" in done.stderr
    assert region.run("show", f"{region.prefix}transport.dlq/0/999").returncode == 3
