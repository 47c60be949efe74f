"""Every setting of the platform, read from the environment (prefix ``TSUNAGU_``)."""

from __future__ import annotations

from functools import cached_property
from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

#: Where `schemas/` lives when running from a checkout or an editable install.
REPO_SCHEMAS = Path(__file__).resolve().parent.parent / "schemas"


class Settings(BaseSettings):
    """One typed settings object; the defaults give the embedded single-machine mode."""

    model_config = SettingsConfigDict(env_prefix="TSUNAGU_", extra="ignore")

    data_dir: Path = Field(
        default=Path("var"), description="Where the embedded default keeps its files."
    )
    bus: str = Field(
        default="",
        description="sqlite:///path/to/log.db or kafka://host:port[,host:port]; "
        "empty means sqlite in data_dir.",
    )
    database_url: str = Field(
        default="", description="SQLAlchemy URL of the store; empty means SQLite in data_dir."
    )
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    schemas_dir: Path = REPO_SCHEMAS
    topic_prefix: str = Field(
        default="",
        pattern=r"^[a-z0-9_.-]*$",
        description="Prefix of every topic name, to share one Kafka cluster between platforms.",
    )
    ingest_group: str = Field(default="tsunagu-ingest", min_length=1)
    topic_partitions: int = Field(default=4, ge=1, le=256)
    ingest_batch_size: int = Field(default=2000, ge=1, le=100_000)
    max_event_bytes: int = Field(default=1024 * 1024, ge=1024)
    http_max_body_bytes: int = Field(
        default=5 * 1024 * 1024, ge=1024, description="Largest HTTP ingest body (413 above)."
    )
    admin_token: SecretStr | None = Field(
        default=None, description="Operator bearer token; generated into data_dir when unset."
    )

    @cached_property
    def bus_url(self) -> str:
        """The bus URL, defaulting to the SQLite log in the data directory."""
        return self.bus or f"sqlite:///{self.data_dir.resolve() / 'bus.db'}"

    @cached_property
    def store_url(self) -> str:
        """The store's SQLAlchemy URL, defaulting to SQLite in the data directory."""
        return self.database_url or f"sqlite:///{self.data_dir.resolve() / 'store.db'}"
