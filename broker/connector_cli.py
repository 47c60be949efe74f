"""`tsunagu connector run <name>`: read a firm's export and publish it through the SDK."""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import typer

from broker.progress import Meter, progress
from broker.settings import Settings
from connectors.rejects import Rejects, rejects_path, write_rejects
from connectors.sdk import (
    BusSink,
    Connector,
    HttpSink,
    LocalSchemas,
    OutboxInUseError,
    PublishReport,
    RemoteSchemas,
    Schemas,
    Sink,
)
from connectors.sdk.rows import EventDraft, RowError
from connectors.services import SERVICES, Service

app = typer.Typer(help="Service connectors: publish a firm's exports.", no_args_is_help=True)
run_app = typer.Typer(
    help="Read files and publish them; bad rows are reported and kept in a rejects file, good "
    "rows go."
)
app.add_typer(run_app, name="run")

HttpOpt = Annotated[
    str | None,
    typer.Option(
        "--http",
        help="Publish through the platform's HTTP ingest at this base URL "
        "(default: straight to the bus of TSUNAGU_BUS).",
    ),
]
TokenOpt = Annotated[str | None, typer.Option("--token", envvar="TSUNAGU_CONNECTOR_TOKEN")]
KeyOpt = Annotated[
    str | None,
    typer.Option(
        "--key",
        envvar="TSUNAGU_CONNECTOR_KEY",
        help="The connector's bus key (`tsunagu token key --sub NAME`), with --token on the bus.",
    ),
]
OutboxOpt = Annotated[
    Path | None, typer.Option("--outbox", help="Outbox file (default: $DATA_DIR/outbox/<name>.db)")
]
EncodingOpt = Annotated[
    str,
    typer.Option(
        "--encoding",
        help="Encoding of the CSV files, e.g. cp932 (Shift_JIS); a GTFS feed's stops.txt too, "
        "unless it is UTF-8 as GTFS requires",
    ),
]
RejectsOpt = Annotated[
    Path | None,
    typer.Option(
        "--rejects",
        file_okay=False,
        help="Folder to keep each CSV's refused rows in, as <name>.rejected.csv with the "
        "export's header and encoding plus line and reason (default: beside the CSV)",
    ),
]
MetricsPortOpt = Annotated[
    int | None,
    typer.Option(
        "--metrics-port",
        min=0,
        max=65535,
        help="Serve Prometheus /metrics on this port while running, on TSUNAGU_HOST "
        "(default: TSUNAGU_CONNECTOR_METRICS_PORT; 0: none)",
    ),
]

#: Exit code when some rows were refused (the good rows were still published).
EXIT_ROWS_REFUSED = 3
#: Exit code when the platform refused the connector's token (everything stays queued).
EXIT_CREDENTIALS_REFUSED = 4
#: Exit code when an input cannot be read at all (nothing was published).
EXIT_BAD_INPUT = 2
#: Exit code when another process owns the outbox (nothing was read or published).
EXIT_OUTBOX_IN_USE = 5


@dataclass(frozen=True, slots=True)
class Input:
    """One file of a run, with what its reader makes of it; a CSV export names its encoding
    (its refused rows are kept in a rejects file), a feed without rows none."""

    file: Path
    items: Iterable[EventDraft | RowError]
    csv_encoding: str | None = None


#: The inputs of one run.
Inputs = list[Input]


def _publish(
    name: str,
    inputs: Inputs,
    http: str | None,
    token: str | None,
    outbox: Path | None,
    metrics_port: int | None,
    key: str | None = None,
    rejects: Path | None = None,
) -> None:
    settings = Settings()
    service = SERVICES[name]
    _serve_metrics(name, settings, metrics_port)
    sink: Sink
    schemas: Schemas
    if http:
        sink, schemas = HttpSink(http, token), RemoteSchemas(http, token=token)
    else:
        from broker.bus import open_bus

        sink, schemas = (
            BusSink(open_bus(settings.bus_url), *bus_credentials(service, token, key)),
            LocalSchemas(settings.schemas_dir),
        )
    path = outbox or settings.data_dir / "outbox" / f"{name}.db"
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        connector = Connector(
            service.source,
            service.event_types,
            schemas,
            path,
            sink,
            topic_prefix=settings.topic_prefix,
        )
    except OutboxInUseError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(EXIT_OUTBOX_IN_USE) from None
    started = time.time()
    with connector:
        report = PublishReport()
        kept: list[Rejects] = []
        for given in inputs:  # each refused row named by its file and line
            with progress(f"reading {given.file.name}") as meter:
                read = _read(given.file, given.items, meter)
                refused = connector.publish_all(read, file=str(given.file))
            report.add(refused)
            if given.csv_encoding is not None:
                to = rejects_path(given.file, rejects)
                written = write_rejects(given.file, refused.errors, to, encoding=given.csv_encoding)
                kept += [written] if written else []
        typer.echo(report.summary())
        for written in kept:
            typer.echo(
                f"refused rows kept in {written.path} ({written.rows}): fix them there and "
                "run it again (its line and reason columns are ignored)"
            )
        with progress("sending") as meter:
            queued = connector.depth()
            # The outbox reports each delivery (and each refusal) as its depth falls.
            connector.outbox.on_depth(lambda depth: meter(max(0, queued - depth), queued))
            drained = connector.drain(give_up_on_credentials=True)
        if drained.refused_credentials:
            typer.echo(
                f"the platform refused this connector's token: {drained.refused_credentials}\n"
                f"{connector.depth()} events stay in the outbox; run again with --token "
                "(a connector token naming this connector's source)",
                err=True,
            )
            raise typer.Exit(EXIT_CREDENTIALS_REFUSED)
        typer.echo(
            f"sent {drained.sent}, already at the platform {drained.duplicates}, "
            f"refused by the platform {drained.failed}, retries {drained.retries}; "
            f"still in the outbox {connector.depth()}"
        )
        for failed in connector.outbox.failed():
            if failed.failed_at >= started:  # refused in this run: name the row
                typer.echo(f"  {failed.origin or failed.event_id}: {failed.reason}")
    if not report.ok:
        raise typer.Exit(EXIT_ROWS_REFUSED)


def _read(
    file: Path, items: Iterable[EventDraft | RowError], meter: Meter
) -> Iterator[EventDraft | RowError]:
    """``items`` read from ``file``, moving ``meter`` to each one's line of the file (a CSV's
    lines are counted first, only when a bar is shown) or, without lines, by one per item."""
    lines = _count_lines(file) if meter.shown and file.suffix.lower() == ".csv" else None
    meter(0, lines)
    for item in items:
        yield item
        if lines is not None and item.line:
            meter(item.line, lines)
        else:
            meter.advance()
    if lines is not None:
        meter(lines, lines)  # blank lines at the end are read too


def _count_lines(file: Path) -> int:
    """Lines of ``file`` (the last one also without a line break)."""
    count, last = 0, b"\n"
    with file.open("rb") as f:
        while block := f.read(1 << 20):
            count += block.count(b"\n")
            last = block[-1:]
    return count + (last != b"\n")


def _serve_metrics(name: str, settings: Settings, port: int | None) -> None:
    """Serve /metrics (outbox depth, sent, retries) while the connector runs, if asked."""
    from broker.api.metrics import serve_metrics

    port = settings.connector_metrics_port if port is None else port
    if serve_metrics(settings.host, port, f"connector {name}"):
        typer.echo(f"metrics on http://{settings.host}:{port}/metrics")


def bus_credentials(
    service: Service, token: str | None, key: str | None
) -> tuple[str | None, bytes | None]:
    """The token and MAC key the connector publishes with on the bus: the given ones, or on
    the platform's own machine (embedded identity) its own, made from the data directory."""
    from broker.auth.origin import connector_key, master_key_of
    from contract.origin import decode_key

    if token is not None:
        if key is None:
            typer.echo("--token on the bus needs --key (tsunagu token key --sub NAME)", err=True)
            raise typer.Exit(2)
        try:
            return token, decode_key(key)
        except ValueError as exc:
            typer.echo(f"--key: {exc}", err=True)
            raise typer.Exit(2) from None
    embedded = _embedded_token(service)
    if embedded is None:
        return None, None
    return embedded, connector_key(master_key_of(Settings()), service.source)


def _embedded_token(service: Service) -> str | None:
    """On the platform's own machine (embedded identity), a token registering ``service`` for
    its source and event types, signed with the data directory's issuer key; None when the
    platform trusts an external provider."""
    from broker.auth.issuer import EmbeddedIssuer
    from broker.auth.principals import Role

    settings = Settings()
    if settings.oidc_issuer:
        return None
    issuer = EmbeddedIssuer.in_data_dir(settings.data_dir, audience=settings.oidc_audience)
    return issuer.issue(
        service.source,
        Role.CONNECTOR,
        sources=[service.source],
        event_types=service.event_types,
        ttl_s=settings.token_ttl_s,
    )


@run_app.command("transport")
def run_transport(
    stops: Annotated[
        Path, typer.Option(exists=True, help="GTFS (GTFS-JP) static feed: zip or folder")
    ],
    trips: Annotated[
        Path | None, typer.Option(exists=True, dir_okay=False, help="Operator's trip export (CSV)")
    ] = None,
    requests: Annotated[
        Path | None, typer.Option(exists=True, dir_okay=False, help="Ride requests (CSV)")
    ] = None,
    positions: Annotated[
        Path | None, typer.Option(exists=True, dir_okay=False, help="GTFS-Realtime feed (.pb)")
    ] = None,
    encoding: EncodingOpt = "utf-8-sig",
    http: HttpOpt = None,
    token: TokenOpt = None,
    key: KeyOpt = None,
    outbox: OutboxOpt = None,
    rejects: RejectsOpt = None,
    metrics_port: MetricsPortOpt = None,
) -> None:
    """On-demand trips and ride requests (CSV), vehicle positions (GTFS-Realtime)."""
    from connectors import transport

    try:
        table = transport.read_gtfs_stops(stops, encoding=encoding)
    except transport.GtfsError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(EXIT_BAD_INPUT) from None
    typer.echo(table.summary())
    inputs: Inputs = []
    if requests:
        items = transport.read_ride_requests_csv(requests, table, encoding=encoding)
        inputs.append(Input(requests, items, encoding))
    if trips:
        inputs.append(
            Input(trips, transport.read_trips_csv(trips, table, encoding=encoding), encoding)
        )
    if positions:
        inputs.append(Input(positions, transport.read_vehicle_positions(positions)))
    _publish("transport", inputs, http, token, outbox, metrics_port, key, rejects)


@run_app.command("health")
def run_health(
    activities: Annotated[
        Path | None, typer.Option(exists=True, dir_okay=False, help="Steps and check-ups (CSV)")
    ] = None,
    redemptions: Annotated[
        Path | None, typer.Option(exists=True, dir_okay=False, help="Point redemptions (CSV)")
    ] = None,
    rules: Annotated[
        Path | None, typer.Option(exists=True, dir_okay=False, help="The programme's rules (JSON)")
    ] = None,
    encoding: EncodingOpt = "utf-8-sig",
    http: HttpOpt = None,
    token: TokenOpt = None,
    key: KeyOpt = None,
    outbox: OutboxOpt = None,
    rejects: RejectsOpt = None,
    metrics_port: MetricsPortOpt = None,
) -> None:
    """Health points computed by the programme's published rules, and redemptions."""
    from connectors import health

    programme = health.load_programme(rules) if rules else health.load_programme()
    inputs: Inputs = []
    if activities:
        items = health.read_activities_csv(activities, programme, encoding=encoding)
        inputs.append(Input(activities, items, encoding))
    if redemptions:
        items = health.read_redemptions_csv(redemptions, programme, encoding=encoding)
        inputs.append(Input(redemptions, items, encoding))
    _publish("health", inputs, http, token, outbox, metrics_port, key, rejects)


@run_app.command("currency")
def run_currency(
    transactions: Annotated[
        Path,
        typer.Option(exists=True, dir_okay=False, help="The operator's transaction export (CSV)"),
    ],
    encoding: EncodingOpt = "utf-8-sig",
    http: HttpOpt = None,
    token: TokenOpt = None,
    key: KeyOpt = None,
    outbox: OutboxOpt = None,
    rejects: RejectsOpt = None,
    metrics_port: MetricsPortOpt = None,
) -> None:
    """Wallet top-ups, merchant payments and health-point conversions."""
    from connectors import currency

    _publish(
        "currency",
        [
            Input(
                transactions,
                currency.read_transactions_csv(transactions, encoding=encoding),
                encoding,
            )
        ],
        http,
        token,
        outbox,
        metrics_port,
        key,
        rejects,
    )


@run_app.command("vacant_house")
def run_vacant_house(
    listings: Annotated[
        Path | None,
        typer.Option(exists=True, dir_okay=False, help="Vacant-house bank listings (CSV)"),
    ] = None,
    inquiries: Annotated[
        Path | None, typer.Option(exists=True, dir_okay=False, help="Inquiries (CSV)")
    ] = None,
    encoding: EncodingOpt = "utf-8-sig",
    http: HttpOpt = None,
    token: TokenOpt = None,
    key: KeyOpt = None,
    outbox: OutboxOpt = None,
    rejects: RejectsOpt = None,
    metrics_port: MetricsPortOpt = None,
) -> None:
    """Listings of the vacant-house bank (空き家バンク), with owner details, and inquiries."""
    from connectors import vacant_house

    inputs: Inputs = []
    if listings:
        inputs.append(
            Input(listings, vacant_house.read_listings_csv(listings, encoding=encoding), encoding)
        )
    if inquiries:
        inputs.append(
            Input(
                inquiries, vacant_house.read_inquiries_csv(inquiries, encoding=encoding), encoding
            )
        )
    _publish("vacant_house", inputs, http, token, outbox, metrics_port, key, rejects)
