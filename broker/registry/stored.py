"""Versions registered at run time, kept in the store so every process sees them."""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, Column, Engine, select
from sqlalchemy.exc import IntegrityError
from sqlmodel import Field, SQLModel

from broker.registry.catalogue import SchemaRegistry
from contract.catalogue import SchemaVersion


class StoredSchemaVersion(SQLModel, table=True):
    """A schema version accepted by the registry after the shipped ones."""

    __tablename__ = "schema_versions"

    event_type: str = Field(primary_key=True, max_length=100)
    version: int = Field(primary_key=True)
    schema_doc: dict[str, Any] = Field(sa_column=Column("schema", JSON, nullable=False))
    registered_at: datetime


_table = StoredSchemaVersion.__table__  # type: ignore[attr-defined]


class SchemaVersionConflictError(Exception):
    """Another process registered a version of this type at the same moment."""


class StoredRegistry:
    """A registry backed by the shipped files plus the versions stored at run time."""

    def __init__(self, registry: SchemaRegistry, engine: Engine, min_reload_s: float = 1.0):
        self.registry = registry
        self.engine = engine
        self.min_reload_s = min_reload_s
        self._last_reload = 0.0
        self._lock = threading.Lock()
        self.reload()

    def reload(self) -> None:
        """Add the versions other processes have stored since the last look."""
        with self.engine.connect() as conn:
            rows = conn.execute(select(_table)).all()
        self.registry.add_versions(SchemaVersion(r.event_type, r.version, r.schema) for r in rows)
        self._last_reload = time.monotonic()

    def reload_if_stale(self) -> bool:
        """Reload at most every ``min_reload_s`` (an unknown schema may be brand new)."""
        with self._lock:
            if time.monotonic() - self._last_reload < self.min_reload_s:
                return False
            self.reload()
            return True

    def register(self, event_type: str, schema: Mapping[str, Any]) -> SchemaVersion:
        """Check and add ``schema`` as the next version, and store it for every process."""
        self.reload()
        if event_type in self.registry.types():
            latest = self.registry.get(event_type)
            if latest.schema == schema:
                return latest  # registering the latest again changes nothing
        version = self.registry.register(event_type, schema)
        try:
            with self.engine.begin() as conn:
                conn.execute(
                    _table.insert().values(
                        event_type=event_type,
                        version=version.version,
                        schema=dict(schema),
                        registered_at=datetime.now(UTC),
                    )
                )
        except IntegrityError:
            self.registry.remove_version(version)
            self.reload()
            raise SchemaVersionConflictError(
                f"{event_type} v{version.version} was registered concurrently; retry"
            ) from None
        return version
