"""The `tsunagu` command: run the platform, its worker, and check schemas."""

from __future__ import annotations

import logging
import signal
from pathlib import Path
from typing import Annotated, Any

import typer

from broker.settings import Settings

app = typer.Typer(help="Tsunagu: a regional data-linkage platform.", no_args_is_help=True)
schemas_app = typer.Typer(help="The shared JSON Schemas.", no_args_is_help=True)
app.add_typer(schemas_app, name="schemas")


def _logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")


@app.command()
def up() -> None:
    """Run the embedded platform: ingest worker and API together."""
    import uvicorn

    from broker.api.app import create_app
    from broker.runtime import Platform

    _logging()
    settings = Settings()
    platform = Platform.open(settings)
    api = create_app(platform)
    api.state.worker_thread = platform.start_worker_thread()
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
    )
    try:
        uvicorn.run(api, host=settings.host, port=settings.port, log_level="warning")
    finally:
        platform.close()


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
