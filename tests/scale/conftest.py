"""A fresh deployment per test: its own topics and consumer group on the session's Kafka broker, its
own PostgreSQL store and vault, its own keys; every process it started is killed after."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from broker.bus.kafka import KafkaBus
from broker.runtime import topic_specs
from broker.settings import Settings
from broker.store.database import make_engine
from tests.fixtures.databases import PG_ADMIN_DSN
from tests.fixtures.kafka import KafkaBroker
from tests.scale.deployment import Deployment


@pytest.fixture
def deployment(
    kafka_broker: KafkaBroker, postgres_url: str, tmp_path: Path
) -> Iterator[Deployment]:
    """Kafka, a PostgreSQL store and vault, and a data directory holding the platform's keys."""
    kafka_broker.start()  # again, if an earlier test stopped it
    tag = uuid.uuid4().hex[:8]
    base = postgres_url.rsplit("/", 1)[0]
    databases = [f"tsunagu_scale_{tag}_store", f"tsunagu_scale_{tag}_vault"]
    with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as admin:
        for name in databases:
            admin.execute(f'CREATE DATABASE "{name}"')
    prefix = f"scale{tag}."
    store_url = f"{base}/{databases[0]}"
    bus = KafkaBus([kafka_broker.bootstrap], client_id="tsunagu-scale-test", publish_timeout_s=15.0)
    # The topics and the store's tables exist before the processes start, as after a first
    # deployment step: processes that create the store's tables at the same moment on
    # PostgreSQL can fail (a unique violation in pg_type from concurrent CREATE TABLEs).
    bus.create_topics(topic_specs(Settings(topic_prefix=prefix)))
    store = make_engine(store_url)
    running = Deployment(
        kafka_broker=kafka_broker,
        bus=bus,
        store=store,
        store_url=store_url,
        vault_url=f"{base}/{databases[1]}",
        data_dir=tmp_path / "platform",
        prefix=prefix,
        group=f"ingest-{tag}",
    )
    running.data_dir.mkdir()
    running.signer()  # makes the issuer and master keys before any process could race to make it
    try:
        yield running
    finally:
        running.stop_everything()
        bus.close()
        store.dispose()
        with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as admin:
            for name in databases:
                admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
