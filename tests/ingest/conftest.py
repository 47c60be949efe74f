"""The ingest tests' parts: an embedded bus with the domain topics, the store (SQLite and
PostgreSQL), and a subject-key vault."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine

from broker.bus import open_bus
from broker.store.database import make_engine
from consent.vault import SubjectVault
from contract.bus import Bus, TopicSpec
from contract.domains import DOMAINS

#: The domain topics the ingest tests publish to (each with its dead-letter topic).
TOPICS = list(DOMAINS.topics())


@pytest.fixture
def bus(tmp_path: Path) -> Iterator[Bus]:
    """An embedded bus with two partitions per domain topic."""
    b = open_bus(f"sqlite:///{tmp_path / 'bus.db'}")
    b.create_topics([TopicSpec(t, 2) for t in TOPICS] + [TopicSpec(f"{t}.dlq") for t in TOPICS])
    yield b
    b.close()


@pytest.fixture
def engine(store_url: str) -> Iterator[Engine]:
    """The store, on each backend."""
    e = make_engine(store_url)
    yield e
    e.dispose()


@pytest.fixture
def vault(tmp_path: Path) -> Iterator[SubjectVault]:
    """A subject-key vault in its own file."""
    v = SubjectVault.open_url(f"sqlite:///{tmp_path / 'keys' / 'vault.db'}")
    yield v
    v.close()
