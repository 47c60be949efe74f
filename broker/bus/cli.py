"""``tsunagu topics``: make the bus hold the topics of ``ops/kafka/topics.yaml``.

Exit codes: 0 every topic is as defined (after applying; as found, with ``--dry-run``),
1 differences remain (printed as ``cannot`` or ``failed``; with ``--dry-run``, any
difference), 2 an error (no file, a bad file, the bus unreachable).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from broker.bus import open_bus
from broker.bus.grants import GrantsFileError, parse_producers
from broker.bus.topics import (
    REPO_TOPICS_FILE,
    TopicsFileError,
    apply_topics,
    parse_topics,
    read_topics_file,
)
from broker.settings import Settings
from contract.bus import BusError

topics_app = typer.Typer(
    help="The bus's topics, as ops/kafka/topics.yaml defines them.", no_args_is_help=True
)

EXIT_DIFFERENCES = 1
EXIT_ERROR = 2


@topics_app.command("apply")
def apply(
    file: Annotated[
        Path,
        typer.Option(
            "--file",
            help="The topic definitions (default: the checkout's ops/kafka/topics.yaml).",
            show_default=False,
        ),
    ] = REPO_TOPICS_FILE,
    bus: Annotated[
        str | None, typer.Option("--bus", help="Bus URL (default: TSUNAGU_BUS).")
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Report what differs; change nothing.")
    ] = False,
    replication_factor: Annotated[
        int | None,
        typer.Option(
            "--replication-factor",
            min=1,
            help="Copies of each partition, instead of the file's (1 on a one-broker cluster).",
        ),
    ] = None,
) -> None:
    """Create missing topics, set configs and add partitions where they differ, and report
    what Kafka cannot change (fewer partitions, another replication factor); give each of
    the file's producers exactly the ACLs to write its topics."""
    settings = Settings()
    if not file.is_file():
        # The default is the repository's file: an installed package has no ops/ beside it.
        typer.echo(f"error: no topics file at {file}; pass --file ops/kafka/topics.yaml", err=True)
        raise typer.Exit(EXIT_ERROR)
    try:
        document = read_topics_file(file)
        specs = parse_topics(
            document,
            source=str(file),
            prefix=settings.topic_prefix,
            replication_factor=replication_factor,
        )
        producers = parse_producers(document, source=str(file), prefix=settings.topic_prefix)
    except (TopicsFileError, GrantsFileError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(EXIT_ERROR) from None
    url = bus or settings.bus_url
    try:
        target = open_bus(url)
        try:
            report = apply_topics(target, specs, producers=producers, dry_run=dry_run)
        finally:
            target.close()
    except BusError as exc:
        typer.echo(f"error: {url}: {exc}", err=True)
        raise typer.Exit(EXIT_ERROR) from None
    typer.echo(f"{url}{' (dry run: nothing changed)' if dry_run else ''}")
    for line in report.lines():
        typer.echo(line)
    if not report.in_sync:
        raise typer.Exit(EXIT_DIFFERENCES)
