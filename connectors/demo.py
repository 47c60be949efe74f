"""The live demo of `make run`: the synthetic region streaming through the four connectors."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import datetime, time
from pathlib import Path

from connectors.readers import JST
from connectors.region import Region
from connectors.sdk import Connector, Schemas, Sink
from connectors.services import SERVICES

log = logging.getLogger(__name__)


def open_connectors(
    schemas: Schemas,
    sink: Sink | Callable[[str], Sink],
    outbox_dir: Path,
    topic_prefix: str = "",
) -> dict[str, Connector]:
    """The four service connectors, each with its own outbox file in ``outbox_dir``; ``sink``
    is shared, or made per connector from its source (each with its own token)."""
    outbox_dir.mkdir(parents=True, exist_ok=True)
    return {
        name: Connector(
            service.source,
            service.event_types,
            schemas,
            outbox_dir / f"{name}.db",
            sink(service.source) if callable(sink) else sink,
            topic_prefix=topic_prefix,
        )
        for name, service in SERVICES.items()
    }


def stream_region(
    region: Region, connectors: dict[str, Connector], stop: threading.Event, speed: float
) -> None:
    """Feed the region's batches to the connectors at ``speed`` until ``stop`` is set."""
    for connector in connectors.values():
        connector.start()  # background senders drain each outbox as it fills
    # Start the day at 07:00, when the first buses and walkers are out.
    start = datetime.combine(region.start, time(7), JST)

    def pause(seconds: float) -> None:
        stop.wait(seconds)  # wakes at once when the platform stops

    try:
        for batch in region.stream(start, speed, sleep=pause):
            if stop.is_set():
                break
            report = connectors[batch.connector].publish_all(region.drafts(batch))
            if not report.ok:
                log.warning("%s/%s: %s", batch.connector, batch.feed, report.summary())
    finally:
        for connector in connectors.values():
            connector.stop()
            connector.close()
