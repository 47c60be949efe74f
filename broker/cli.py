"""The `tsunagu` command: run the platform, its worker, and check schemas."""

from __future__ import annotations

import logging
import signal
import threading
from pathlib import Path
from typing import Annotated, Any

import typer

from broker.settings import Settings
from connectors.cli import app as connector_app

app = typer.Typer(help="Tsunagu: a regional data-linkage platform.", no_args_is_help=True)
schemas_app = typer.Typer(help="The shared JSON Schemas.", no_args_is_help=True)
app.add_typer(schemas_app, name="schemas")
app.add_typer(connector_app, name="connector")


def _logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")


@app.command()
def up(
    demo: Annotated[
        bool, typer.Option(help="Stream the synthetic region through the four connectors.")
    ] = False,
    demo_speed: Annotated[
        float, typer.Option(help="Simulated seconds per real second of the demo.")
    ] = 120.0,
    population: Annotated[int, typer.Option(help="Residents of the demo region.")] = 2000,
) -> None:
    """Run the embedded platform: ingest worker and API together (and the demo region)."""
    import uvicorn

    from broker.api.app import create_app
    from broker.runtime import Platform

    _logging()
    settings = Settings()
    platform = Platform.open(settings)
    api = create_app(platform)
    api.state.worker_thread = platform.start_worker_thread()
    demo_thread = _start_demo(platform, demo_speed, population) if demo else None
    base = f"http://{settings.host}:{settings.port}"
    token_source = (
        "$TSUNAGU_ADMIN_TOKEN" if settings.admin_token else str(settings.data_dir / "admin-token")
    )
    typer.echo(
        "\nTsunagu is running.\n"
        f"  API docs        {base}/docs\n"
        f"  OpenAPI         {base}/openapi.json\n"
        f"  Schemas         {base}/v1/schemas\n"
        f"  Health          {base}/healthz  {base}/readyz\n"
        f"  Metrics         {base}/metrics\n"
        f"  Bus             {settings.bus_url}\n"
        f"  Store           {settings.store_url}\n"
        f"  Admin token     {token_source}\n"
        + (
            f"  Demo            the synthetic region ({population:,} residents) streams through "
            f"the four connectors at {demo_speed:g}x; outboxes in {settings.data_dir / 'outbox'}\n"
            if demo
            else ""
        )
    )
    try:
        uvicorn.run(api, host=settings.host, port=settings.port, log_level="warning")
    finally:
        platform.stop.set()
        if demo_thread is not None:
            demo_thread.join(30)  # let the connectors stop before the bus closes
        platform.close()


def _start_demo(platform: Any, speed: float, population: int) -> threading.Thread:
    from connectors.demo import open_connectors, stream_region
    from connectors.region import Region
    from connectors.sdk import BusSink, LocalSchemas

    settings = platform.settings
    connectors = open_connectors(
        LocalSchemas(settings.schemas_dir),
        BusSink(platform.bus),
        settings.data_dir / "outbox",
        settings.topic_prefix,
    )
    region = Region(seed=7, population=population)
    thread = threading.Thread(
        target=stream_region,
        args=(region, connectors, platform.stop, speed),
        name="demo-region",
        daemon=True,
    )
    thread.start()
    return thread


@app.command()
def worker() -> None:
    """Run one ingest worker (join the consumer group; scale by running more)."""
    from broker.runtime import Platform

    _logging()
    platform = Platform.open(Settings())

    def _stop(*_: Any) -> None:
        platform.stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    typer.echo(f"ingest worker consuming {platform.settings.bus_url}")
    try:
        platform.worker().run(platform.stop)
    finally:
        platform.close()


@schemas_app.command("check")
def schemas_check(
    directory: Annotated[
        Path | None, typer.Argument(help="The schemas directory (default: the shipped one).")
    ] = None,
) -> None:
    """Check every schema against the meta-schema and every version chain against its mode."""
    from broker.registry.catalogue import check_directory

    root = directory or Settings().schemas_dir
    if not root.is_dir():
        typer.echo(f"{root}: no such directory", err=True)
        raise typer.Exit(2)
    problems = check_directory(root)
    for problem in problems:
        typer.echo(problem, err=True)
    if problems:
        typer.echo(f"{len(problems)} problem(s) in {root}", err=True)
        raise typer.Exit(1)
    typer.echo(f"{root}: every schema and version chain is valid")


def main() -> None:
    """Entry point for `python -m broker.cli`."""
    app()


if __name__ == "__main__":
    main()
