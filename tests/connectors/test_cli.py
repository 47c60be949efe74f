"""`tsunagu connector run <name>` on the shipped samples, and the demo of `make run`."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from broker.bus import open_bus
from broker.ingest.pipeline import IngestWorker
from broker.runtime import topic_specs
from broker.settings import Settings
from broker.store.database import make_engine
from connectors.services import SERVICES
from consent.vault import SubjectVault
from ops.kafka.broker import free_port
from tests.connectors.test_sdk_outbox import held_by_another_process
from tests.events import registry
from tests.fixtures.platform import start_platform, stop_platform
from tests.fixtures.terminal import assert_plain, run_in_terminal

SAMPLES = Path(__file__).resolve().parents[2] / "connectors" / "samples"

RUNS: dict[str, list[str]] = {
    "transport": [
        "--stops",
        str(SAMPLES / "transport" / "gtfs"),
        "--trips",
        str(SAMPLES / "transport" / "trips.csv"),
        "--requests",
        str(SAMPLES / "transport" / "ride_requests.csv"),
        "--positions",
        str(SAMPLES / "transport" / "vehicle_positions.pb"),
    ],
    "health": [
        "--activities",
        str(SAMPLES / "health" / "activities.csv"),
        "--redemptions",
        str(SAMPLES / "health" / "redemptions.csv"),
    ],
    "currency": ["--transactions", str(SAMPLES / "currency" / "transactions.csv")],
    "vacant_house": [
        "--listings",
        str(SAMPLES / "vacant_house" / "listings.csv"),
        "--inquiries",
        str(SAMPLES / "vacant_house" / "inquiries.csv"),
    ],
}


def _run(data_dir: Path, *args: str, prefix: str = "") -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "TSUNAGU_DATA_DIR": str(data_dir), "TSUNAGU_TOPIC_PREFIX": prefix}
    return subprocess.run(
        [sys.executable, "-m", "broker.cli", "connector", "run", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _project(data_dir: Path, prefix: str = "") -> dict[str, int]:
    """Run the ingest worker over everything published and count events by type."""
    settings = Settings(data_dir=data_dir, topic_prefix=prefix)
    bus = open_bus(settings.bus_url)
    bus.create_topics(topic_specs(settings))
    engine = make_engine(settings.store_url)
    vault = SubjectVault.open_url(settings.vault_store_url)
    worker = IngestWorker(bus, engine, registry(), vault, group="cli-test", topic_prefix=prefix)
    consumer = bus.consumer("cli-test", worker.topics)
    while records := consumer.poll(1000, 0.5):
        worker.process(records)
    consumer.close()
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT type, count(*) FROM ingested_events GROUP BY type"))
        counts = {t: int(n) for t, n in rows}
    engine.dispose()
    vault.close()
    bus.close()
    return counts


@pytest.mark.parametrize("name", list(RUNS))
def test_connector_run_publishes_every_sample_row_once(name: str, tmp_path: Path) -> None:
    first = _run(tmp_path, name, *RUNS[name])
    assert first.returncode == 0, first.stdout + first.stderr
    assert "0 rows refused" in first.stdout
    counts = _project(tmp_path)
    assert counts, "nothing arrived"
    assert all(t.startswith(name.split("_")[0]) for t in counts)
    # Running the same export again sends nothing new: stable ids, idempotent ingest.
    again = _run(tmp_path, name, *RUNS[name])
    assert again.returncode == 0, again.stdout + again.stderr
    assert _project(tmp_path) == counts


def test_connector_run_publishes_on_prefixed_topics(tmp_path: Path) -> None:
    result = _run(tmp_path, "currency", *RUNS["currency"], prefix="region-a.")
    assert result.returncode == 0, result.stdout + result.stderr
    bus = open_bus(f"sqlite:///{tmp_path / 'bus.db'}")
    assert sum(bus.end_offsets("region-a.currency").values()) > 0
    bus.close()
    assert sum(_project(tmp_path, "region-a.").values()) > 0


def test_connector_run_names_bad_rows_and_sends_the_good(tmp_path: Path) -> None:
    result = _run(
        tmp_path,
        "currency",
        "--transactions",
        str(SAMPLES / "currency" / "transactions_with_errors.csv"),
        "--rejects",
        str(tmp_path / "refused"),  # not beside the sample, in the checkout
    )
    assert result.returncode == 3, result.stdout + result.stderr
    assert "line " in result.stdout
    assert (tmp_path / "refused" / "transactions_with_errors.rejected.csv").exists()
    counts = _project(tmp_path)
    assert sum(counts.values()) > 0


def _payment(n: int, *, amount: str = "1280", category: str = "restaurant") -> str:
    """One payment row of a currency export, its merchant name quoted over two lines on row 5."""
    merchant = '"仁尾うどん\n本舗"' if n == 5 else "仁尾うどん本舗"
    return (
        f"pay-20250612-55319{n},payment,2025-06-12T12:3{n}:56+09:00,w-00012873,res-a1b2c3d4,"
        f"{amount},,,,mer-nio0031,{merchant},{category},nio,,,,,"
    )


def test_connector_run_names_the_file_line_of_each_refused_row(tmp_path: Path) -> None:
    header = (SAMPLES / "currency" / "transactions.csv").read_text().splitlines()[0]
    rows = [_payment(n) for n in range(1, 8)]
    rows[2] = _payment(3, amount="abc")  # the 3rd row: file line 4
    rows[6] = _payment(7, category="bookstore")  # the 7th row: file line 9, as row 5 spans two
    export = tmp_path / "transactions.csv"
    export.write_text("\n".join([header, *rows]) + "\n", encoding="utf-8")
    result = _run(tmp_path / "data", "currency", "--transactions", str(export))
    assert result.returncode == 3, result.stdout + result.stderr
    refused = [x.strip() for x in result.stdout.splitlines() if x.startswith("  ")]
    assert refused == [
        f"{export} line 4: column amount_jpy: 'abc' is not an integer",
        f"{export} line 9: column merchant_category: 'bookstore' is not one of grocery, "
        "restaurant, retail, pharmacy, fuel, transport, lodging, medical, services, "
        "farm_direct, other",
    ]
    assert "5 events queued" in result.stdout
    assert _project(tmp_path / "data") == {"currency.payment.settled": 5}


def _large_export(folder: Path, rows: int) -> Path:
    """A currency export of ``rows`` payments, one line each after the header."""
    header = (SAMPLES / "currency" / "transactions.csv").read_text().splitlines()[0]
    lines = [
        f"pay-20250612-{n:06d},payment,2025-06-12T12:30:56+09:00,w-00012873,res-a1b2c3d4,"
        "1280,,,,mer-nio0031,仁尾うどん本舗,restaurant,nio,,,,,"
        for n in range(rows)
    ]
    export = folder / "transactions.csv"
    export.write_text("\n".join([header, *lines]) + "\n", encoding="utf-8")
    return export


def test_connector_run_at_a_terminal_shows_the_lines_read_and_the_events_sent(
    tmp_path: Path,
) -> None:
    export = _large_export(tmp_path, 400)
    command = [sys.executable, "-m", "broker.cli", "connector", "run", "currency"]
    screen = run_in_terminal(
        [*command, "--transactions", str(export)],
        {**os.environ, "TSUNAGU_DATA_DIR": str(tmp_path / "data"), "TSUNAGU_TOPIC_PREFIX": ""},
    )
    assert screen.returncode == 0, screen.output
    assert "reading transactions.csv" in screen.output and "401/401" in screen.output
    assert "sending" in screen.output and "400/400" in screen.output
    assert "400 events queued, 0 already queued or sent, 0 rows refused" in screen.output


def test_connector_run_at_a_terminal_counts_the_items_of_a_feed_without_lines(
    tmp_path: Path,
) -> None:
    screen = run_in_terminal(
        [sys.executable, "-m", "broker.cli", "connector", "run", "transport", *RUNS["transport"]],
        {**os.environ, "TSUNAGU_DATA_DIR": str(tmp_path), "TSUNAGU_TOPIC_PREFIX": ""},
    )
    assert screen.returncode == 0, screen.output
    assert "reading trips.csv" in screen.output
    assert "reading vehicle_positions.pb" in screen.output and "/?" in screen.output


def test_connector_run_piped_prints_only_its_report(tmp_path: Path) -> None:
    export = _large_export(tmp_path, 400)
    result = _run(tmp_path / "data", "currency", "--transactions", str(export))
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout == (
        "400 events queued, 0 already queued or sent, 0 rows refused\n"
        "sent 400, already at the platform 0, refused by the platform 0, retries 0; "
        "still in the outbox 0\n"
    )
    assert result.stderr == ""
    assert_plain(result.stdout, result.stderr)


def test_connector_run_names_a_file_it_cannot_read_as_a_whole_not_line_0(tmp_path: Path) -> None:
    feed = tmp_path / "positions.pb"
    feed.write_bytes(b"x")  # not a GTFS-Realtime FeedMessage
    result = _run(tmp_path / "data", "transport", *RUNS["transport"][:2], "--positions", str(feed))
    assert result.returncode == 3, result.stdout + result.stderr
    assert f"  {feed}: not a GTFS-Realtime FeedMessage: " in result.stdout
    assert "line 0" not in result.stdout


def test_connector_run_refuses_an_outbox_another_process_owns(tmp_path: Path) -> None:
    outbox = tmp_path / "outbox" / "currency.db"  # the default, which the demo also uses
    with held_by_another_process(outbox) as holder:
        refused = _run(tmp_path, "currency", *RUNS["currency"])
        assert refused.returncode == 5, refused.stdout + refused.stderr
        assert refused.stderr.strip().splitlines() == [
            f"error: outbox {outbox} is in use by process {holder.pid}: one process owns an "
            "outbox at a time; stop that one (e.g. the demo of `tsunagu up`) or give this one "
            "its own outbox file"
        ]
    # Its owner gone, the outbox is free and the run publishes.
    result = _run(tmp_path, "currency", *RUNS["currency"])
    assert result.returncode == 0, result.stdout + result.stderr
    assert sum(_project(tmp_path).values()) > 0


def test_the_demo_refuses_to_start_on_an_outbox_a_connector_run_owns(tmp_path: Path) -> None:
    outbox = tmp_path / "outbox" / "health.db"
    with held_by_another_process(outbox) as holder:
        env = {**os.environ, "TSUNAGU_DATA_DIR": str(tmp_path), "TSUNAGU_PORT": str(free_port())}
        up = subprocess.run(
            [sys.executable, "-m", "broker.cli", "up", "--demo", "--population", "50"],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert up.returncode == 2, up.stdout + up.stderr
        assert "Traceback" not in up.stderr
        assert (
            f"tsunagu up: refused to start the demo: outbox {outbox} is in use by process "
            f"{holder.pid}" in up.stderr
        )


def _feed(folder: Path, stops: bytes) -> Path:
    """The sample GTFS feed, its stops.txt replaced by ``stops``."""
    folder.mkdir()
    for file in (SAMPLES / "transport" / "gtfs").iterdir():
        (folder / file.name).write_bytes(file.read_bytes())
    (folder / "stops.txt").write_bytes(stops)
    return folder


SAMPLE_STOPS = (SAMPLES / "transport" / "gtfs" / "stops.txt").read_text(encoding="utf-8")


def test_connector_run_reads_a_shift_jis_feed_in_the_encoding_given(tmp_path: Path) -> None:
    feed = _feed(tmp_path / "gtfs", SAMPLE_STOPS.encode("cp932"))
    trips = ["--trips", str(SAMPLES / "transport" / "trips_cp932.csv")]
    refused = _run(tmp_path, "transport", "--stops", str(feed), *trips)
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert "Traceback" not in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1  # naming file, line and column
    assert refused.stderr.startswith(
        f"error: {feed / 'stops.txt'} line 2: column stop_name: not utf-8-sig text"
    )
    result = _run(tmp_path, "transport", "--stops", str(feed), *trips, "--encoding", "cp932")
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith("stops.txt: ")
    assert _project(tmp_path).get("transport.trip.completed", 0) > 0


def test_connector_run_reports_stops_outside_the_region(tmp_path: Path) -> None:
    beyond = SAMPLE_STOPS + "tokyo-eki,,東京駅,,35.6812,139.7671,takuma,0,,1\n"
    feed = _feed(tmp_path / "gtfs", beyond.encode())
    result = _run(tmp_path, "transport", "--stops", str(feed), *RUNS["transport"][2:])
    assert result.returncode == 0, result.stdout + result.stderr
    [line] = [x for x in result.stdout.splitlines() if x.startswith("stops.txt: ")]
    assert ", 1 outside it (farther than 6 km from every town), not used: tokyo-eki 東京駅" in line


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (
            lambda stops: stops.replace(b"stop_lat", b"latitude"),
            "stops.txt line 1: header: missing column(s) stop_lat",
        ),
        (
            lambda stops: stops.replace(b"34.2313", b"34,2313", 1),
            "stops.txt line 2: 11 cells but the header has 10 (an unquoted comma?)",
        ),
        (
            lambda stops: stops.replace(b"34.2313", b"north", 1),
            "stops.txt line 2: column stop_lat: 'north' is not a number",
        ),
    ],
    ids=["missing column", "shifted cells", "bad number"],
)
def test_connector_run_ends_a_bad_feed_with_one_line(
    tmp_path: Path, damage: Callable[[bytes], bytes], message: str
) -> None:
    feed = _feed(tmp_path / "gtfs", damage(SAMPLE_STOPS.encode()))
    result = _run(tmp_path, "transport", "--stops", str(feed))
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.strip().splitlines() == [f"error: {feed}/{message}"]


def test_connector_run_ends_a_truncated_feed_zip_with_one_line(tmp_path: Path) -> None:
    zipped = tmp_path / "gtfs.zip"
    with zipfile.ZipFile(zipped, "w") as archive:
        for file in (SAMPLES / "transport" / "gtfs").iterdir():
            archive.write(file, file.name)
    zipped.write_bytes(zipped.read_bytes()[:-200])  # the download was cut short
    result = _run(tmp_path, "transport", "--stops", str(zipped))
    assert result.returncode == 2, result.stdout + result.stderr
    [line] = result.stderr.strip().splitlines()
    assert line.startswith(f"error: {zipped}: not a GTFS zip: ")


def test_connector_run_reads_a_cp932_export(tmp_path: Path) -> None:
    result = _run(
        tmp_path,
        "vacant_house",
        "--listings",
        str(SAMPLES / "vacant_house" / "listings_cp932.csv"),
        "--encoding",
        "cp932",
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert _project(tmp_path).get("vacant_house.listing.registered", 0) > 0


def test_connector_run_over_http_ingest(tmp_path: Path) -> None:
    platform = start_platform(tmp_path / "platform")
    source = SERVICES["currency"].source
    try:
        args = ["currency", *RUNS["currency"], "--http", platform.base_url]
        refused = _run(tmp_path / "connector", *args)
        other = platform.token("connector", "c", sources=("urn:tsunagu:connector:another",))
        wrong_source = _run(tmp_path / "connector", *args, "--token", other)
        token = platform.token("connector", "mitoyo-pay", sources=(source,))
        result = _run(tmp_path / "connector", *args, "--token", token)
        assert refused.returncode == 4, refused.stdout + refused.stderr
        assert "refused this connector's token" in refused.stderr
        assert "stay in the outbox" in refused.stderr
        # A token of another source: the platform rejects each event as source_not_allowed,
        # and the run names each refused row by its file and line.
        export = SAMPLES / "currency" / "transactions.csv"
        refused_rows = [
            x.strip().split(": ", 1) for x in wrong_source.stdout.splitlines() if x.startswith("  ")
        ]
        assert {where for where, _ in refused_rows} == {f"{export} line {n}" for n in range(2, 8)}
        assert all(why.startswith("source_not_allowed") for _, why in refused_rows)
        assert result.returncode == 0, result.stdout + result.stderr
        engine = create_engine(f"sqlite:///{platform.data_dir / 'store.db'}")
        deadline = time.monotonic() + 15
        n = 0
        while time.monotonic() < deadline and not n:
            with engine.connect() as conn:
                n = int(
                    conn.execute(
                        text("SELECT count(*) FROM ingested_events WHERE type LIKE 'currency.%'")
                    ).scalar_one()
                )
            time.sleep(0.2)
        engine.dispose()
        assert n > 0
    finally:
        stop_platform(platform)


def test_make_run_demo_streams_all_four_services(tmp_path: Path) -> None:
    platform = start_platform(
        tmp_path, args=["--demo", "--demo-speed", "1200", "--population", "300"]
    )
    try:
        engine = create_engine(f"sqlite:///{platform.data_dir / 'store.db'}")
        domains: set[str] = set()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and len(domains) < 4:
            with engine.connect() as conn:
                types = conn.execute(text("SELECT DISTINCT type FROM ingested_events")).scalars()
                domains = {t.split(".")[0] for t in types}
            time.sleep(0.5)
        engine.dispose()
        assert domains == {"transport", "health", "currency", "vacant_house"}
    finally:
        stop_platform(platform)
