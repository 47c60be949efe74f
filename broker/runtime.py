"""Assemble a process from the settings: bus, store, registry, ingest worker, API server."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field

from sqlalchemy import Engine

from broker.bus import DOMAIN_TOPICS, Bus, TopicSpec, dlq_topic, open_bus
from broker.ingest.deadletter import UNROUTED_DLQ
from broker.ingest.gateway import IngestGateway
from broker.ingest.pipeline import IngestWorker
from broker.registry.catalogue import SchemaRegistry
from broker.registry.stored import StoredRegistry
from broker.settings import Settings
from broker.store.database import make_engine

log = logging.getLogger(__name__)


def topic_specs(settings: Settings) -> list[TopicSpec]:
    """The platform's topics: one per domain and a dead-letter topic beside each."""
    domains = [settings.topic_prefix + t for t in DOMAIN_TOPICS]
    specs = [TopicSpec(t, settings.topic_partitions) for t in domains]
    specs += [TopicSpec(dlq_topic(t), 1) for t in domains]
    specs.append(TopicSpec(settings.topic_prefix + UNROUTED_DLQ, 1))
    return specs


@dataclass
class Platform:
    """The parts one process runs, opened from the settings."""

    settings: Settings
    bus: Bus
    engine: Engine
    registry: SchemaRegistry
    stored: StoredRegistry
    stop: threading.Event = field(default_factory=threading.Event)

    @classmethod
    def open(cls, settings: Settings) -> Platform:
        """Open the bus and the store, creating topics and tables as needed."""
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        bus = open_bus(settings.bus_url)
        bus.create_topics(topic_specs(settings))
        engine = make_engine(settings.store_url)
        registry = SchemaRegistry.from_directory(settings.schemas_dir)
        return cls(settings, bus, engine, registry, StoredRegistry(registry, engine))

    def worker(self) -> IngestWorker:
        """An ingest worker over this platform's bus and store."""
        return IngestWorker(
            self.bus,
            self.engine,
            self.registry,
            group=self.settings.ingest_group,
            topic_prefix=self.settings.topic_prefix,
            batch_size=self.settings.ingest_batch_size,
            refresh_registry=self.stored.reload_if_stale,
            max_event_bytes=self.settings.max_event_bytes,
        )

    def gateway(self) -> IngestGateway:
        """HTTP ingest over this platform's bus."""
        return IngestGateway(
            self.bus,
            self.engine,
            self.registry,
            domains=DOMAIN_TOPICS,
            topic_prefix=self.settings.topic_prefix,
            max_event_bytes=self.settings.max_event_bytes,
            refresh_registry=self.stored.reload_if_stale,
        )

    def start_worker_thread(self) -> threading.Thread:
        """Run an ingest worker in a background thread until ``stop`` is set."""
        thread = threading.Thread(
            target=self.worker().run, args=(self.stop,), name="ingest", daemon=True
        )
        thread.start()
        return thread

    def close(self) -> None:
        """Stop the worker and release the bus and the store."""
        self.stop.set()
        self.bus.close()
        self.engine.dispose()
