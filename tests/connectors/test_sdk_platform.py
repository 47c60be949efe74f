"""The SDK against a running platform (`tsunagu up`): remote schemas and HTTP ingest for real."""

from __future__ import annotations

import shutil
from pathlib import Path

import orjson

from broker.settings import REPO_SCHEMAS
from connectors.sdk import Connector, EventDraft, HttpSink, LocalSchemas, RemoteSchemas
from tests.connectors.test_sdk_publish import TRIP, trip_drafts, unique_source
from tests.events import example_data
from tests.fixtures.platform import RunningPlatform


def test_http_ingest_takes_valid_events_and_refuses_what_its_schema_refuses(
    platform: RunningPlatform, tmp_path: Path
) -> None:
    # A connector whose local copy of the trip schema is laxer than the platform's (it lost
    # the fare's minimum): the platform refuses such a row, and says why.
    local = tmp_path / "schemas"
    shutil.copytree(REPO_SCHEMAS, local)
    trip_schema = local / "transport" / "trip.completed" / "v1.json"
    doc = orjson.loads(trip_schema.read_bytes())
    del doc["properties"]["fare_jpy"]["minimum"]
    trip_schema.write_bytes(orjson.dumps(doc))
    negative = example_data(TRIP)
    negative["fare_jpy"] = -10
    drafts = [
        *trip_drafts(5),
        EventDraft(TRIP, "res-a1b2c3d4", negative, "trip-negative", trip_drafts(1)[0].time, 7),
    ]
    source = unique_source()
    sink = HttpSink(platform.base_url, platform.token("connector", "t", sources=(source,)))
    with Connector(source, [TRIP], LocalSchemas(local), tmp_path / "o.db", sink) as c:
        assert c.publish_all(drafts).accepted == 6
        report = c.drain(timeout_s=30)
        (refused,) = c.outbox.failed()
    sink.close()
    assert (report.sent, report.failed, report.remaining) == (5, 1, 0)
    assert refused.reason == ("schema_violation: data/fare_jpy: -10 is less than the minimum of 0")


def test_remote_schemas_come_from_the_platform_registry(
    platform: RunningPlatform, tmp_path: Path
) -> None:
    source = unique_source()
    schemas = RemoteSchemas(platform.base_url)
    sink = HttpSink(platform.base_url, platform.token("connector", "t", sources=(source,)))
    with Connector(source, [TRIP], schemas, tmp_path / "o.db", sink) as connector:
        assert connector.versions[TRIP].urn == "urn:tsunagu:schema:transport.trip.completed:v1"
        assert connector.publish_all(trip_drafts(3)).accepted == 3
        assert connector.drain(timeout_s=30).sent == 3
    schemas.close()
    sink.close()
