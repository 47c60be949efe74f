"""Every setting of the platform, read from the environment (prefix ``TSUNAGU_``)."""

from __future__ import annotations

import json
from functools import cached_property
from importlib.resources import files
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from broker.auth.claims import RoleSource
from broker.auth.principals import Role

#: The shared schemas and catalogues: the ``schemas`` package's data, found where it was
#: installed (the checkout's ``schemas/`` when running from one).
REPO_SCHEMAS = Path(str(files("schemas")))


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
    store_upgrade: Literal["auto", "on-start", "explicit"] = Field(
        default="auto",
        description="Who upgrades a store (and the vault) made by an older release: "
        "`on-start`, every process opening it; `explicit`, only `tsunagu db upgrade` (the "
        "others refuse, naming it); `auto`, on-start for the embedded SQLite store, explicit "
        "for any other (a PostgreSQL store shared by many processes). An empty store is "
        "always created.",
    )
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    api_processes: int = Field(
        default=1, ge=1, le=64, description="API server processes sharing the port (`up`)."
    )
    api_threads: int = Field(
        default=2, ge=1, le=256, description="Threads per API process for blocking store reads."
    )
    api_inline_reads: bool | None = Field(
        default=None,
        description="Partner views read the store on the event loop instead of a thread "
        "(faster where a read is CPU work); empty means on with SQLite, off with PostgreSQL.",
    )
    schemas_dir: Path = REPO_SCHEMAS
    topic_prefix: str = Field(
        default="",
        pattern=r"^[a-z0-9_.-]*$",
        description="Prefix of every topic name, to share one Kafka cluster between platforms.",
    )
    bus_retention_s: float = Field(
        default=14 * 24 * 3600.0,
        gt=0,
        description="The longest time the bus keeps a record: enforced on the SQLite log "
        "(hourly, records every group has committed past); on Kafka the topics' retention.ms "
        "(ops/kafka/topics.yaml) enforces it and this states it in erasure records.",
    )
    bus_probe_interval_s: float = Field(
        default=30.0,
        gt=0,
        description="Seconds between two readings of the ingest group's lag (the "
        "tsunagu_consumer_lag gauge), and for which /readyz reuses its check of the bus: "
        "each is an admin request to Kafka.",
    )
    ingest_group: str = Field(default="tsunagu-ingest", min_length=1)
    topic_partitions: int = Field(default=4, ge=1, le=256)
    ingest_batch_size: int = Field(default=2000, ge=1, le=100_000)
    ingest_stall_s: float = Field(
        default=60.0,
        gt=0,
        description="Seconds without progress after which /readyz calls the ingest worker stalled.",
    )
    ingest_require_token: bool = Field(
        default=True,
        description="Dead-letter bus records without a connector token naming their source.",
    )
    held_retention_s: float = Field(
        default=30 * 24 * 3600,
        gt=0,
        description="How long an event under a service subject no resident is linked with is "
        "held (sealed, unread) before it is discarded; the municipality sets it.",
    )
    held_sweep_interval_s: float = Field(
        default=5.0,
        gt=0,
        description="Seconds between two sweeps of the held events (release the linked, "
        "discard the expired).",
    )
    max_event_bytes: int = Field(default=1024 * 1024, ge=1024)
    http_max_body_bytes: int = Field(
        default=5 * 1024 * 1024, ge=1024, description="Largest HTTP ingest body (413 above)."
    )
    # -- identities (broker/auth) ------------------------------------------------------------
    oidc_issuer: str = Field(
        default="",
        description="Issuer of the region's OpenID provider, exactly as its tokens and metadata "
        "name it; its keys are discovered from <issuer>/.well-known/openid-configuration. "
        "Empty runs the embedded issuer.",
    )
    oidc_audience: str = Field(default="tsunagu", min_length=1)
    oidc_role_source: RoleSource = Field(
        default="role",
        description="Where an OpenID provider's tokens carry the caller's role: `role` (the "
        "`role` claim, or one of ours in `roles`), `realm_access` (Keycloak realm roles) or "
        "`resource_access` (Keycloak client roles of TSUNAGU_OIDC_ROLE_CLIENT).",
    )
    oidc_role_client: str = Field(
        default="",
        description="The client whose roles count with `resource_access`; empty means the "
        "audience (TSUNAGU_OIDC_AUDIENCE).",
    )
    oidc_role_map: Annotated[dict[str, Role], NoDecode] = Field(
        default_factory=dict,
        description='Provider role names to ours, as JSON ({"tsunagu-partner": "partner"}); '
        "empty means the provider uses our names. Unmapped roles are ignored.",
    )

    oidc_subject_claim: str = Field(
        default="sub",
        min_length=1,
        description="The claim naming the caller (e.g. `preferred_username` or `azp`).",
    )
    jwks_cache_s: float = Field(
        default=300.0, ge=0, description="How long fetched OIDC keys are trusted before refetch."
    )
    jwks_refetch_cooldown_s: float = Field(
        default=5.0, ge=0, description="Least time between refetches caused by unknown kids."
    )
    clock_skew_s: int = Field(default=30, ge=0, le=300)
    token_ttl_s: int = Field(default=3600, ge=60, description="Lifetime of embedded tokens.")
    # -- the region ID (broker/regionid) -------------------------------------------------------
    regionid_enabled: bool = Field(
        default=True,
        description="Run the region's embedded OpenID provider at /regionid (only in the "
        "embedded mode: off when TSUNAGU_OIDC_ISSUER names the region's own provider).",
    )
    regionid_issuer: str = Field(
        default="",
        pattern=r"^(https://.+|http://(127\.0\.0\.1|localhost|\[::1\])(:\d+)?/.*)?$",
        description="The region ID's issuer URL, as its clients reach it (https, or http on "
        "loopback); empty means http://<host>:<port>/regionid on this machine.",
    )
    regionid_sign_in_rate_per_s: float = Field(
        default=0.2,
        gt=0,
        description="Sustained sign-in attempts/s per account name (password guessing is "
        "slowed to this), per API process.",
    )
    regionid_sign_in_burst: int = Field(
        default=5, ge=1, description="Sign-in attempts an account name may make at once."
    )
    regionid_link_code_ttl_s: int = Field(
        default=14 * 24 * 3600,
        ge=60,
        description="How long a link code a service company hands a customer stays valid.",
    )
    # -- partner reads ------------------------------------------------------------------------
    connector_master_key: SecretStr | None = Field(
        default=None,
        description="Master key of connectors' record MACs (proof of origin on the bus); "
        "generated into $DATA_DIR/keys/connector-master.key when unset.",
    )
    pseudonym_key: SecretStr | None = Field(
        default=None, description="HMAC key of partners' pseudonyms; generated when unset."
    )
    k_anonymity: int = Field(default=10, ge=2, description="Smallest published statistic cell.")
    statistics_settle_days: int = Field(
        default=7,
        ge=0,
        le=366,
        description="Days after a JST month ends before its statistics are published (and "
        "frozen), so that late events (daily or weekly exports) are counted in it.",
    )
    partner_rate_per_s: float = Field(default=50.0, gt=0, description="Sustained reads/s/partner.")
    partner_burst: int = Field(default=100, ge=1, description="Reads a partner may burst.")
    schema_check_rate_per_s: float = Field(
        default=1.0, gt=0, description="Sustained schema compatibility checks/s per caller."
    )
    schema_check_burst: int = Field(
        default=20, ge=1, description="Schema compatibility checks a caller may burst."
    )
    # -- crypto-shredding ---------------------------------------------------------------------
    opendata_publisher: str = Field(
        default="三豊市",
        min_length=1,
        description="The open data's publisher and rights holder (the municipality), in Japanese.",
    )
    opendata_publisher_en: str = Field(
        default="Mitoyo City", min_length=1, description="The publisher's name in English."
    )
    opendata_publisher_url: str = Field(
        default="https://www.city.mitoyo.lg.jp/",
        pattern=r"^https?://",
        description="The publisher's web address (its identifier in the DCAT catalogue).",
    )
    opendata_organization: str = Field(
        default="mitoyo-city",
        pattern=r"^[a-z0-9_-]{2,100}$",
        description="The publisher's CKAN organization name.",
    )
    opendata_rate_per_s: float = Field(
        default=10.0, gt=0, description="Sustained open-data requests/s per client address."
    )
    opendata_burst: int = Field(
        default=60, ge=1, description="Open-data requests a client address may burst."
    )
    vault_url: str = Field(
        default="",
        description="SQLAlchemy URL of the subject-key vault, apart from the store so that "
        "store backups hold no keys; empty means SQLite in data_dir/keys.",
    )
    # -- partner webhooks ---------------------------------------------------------------------
    webhook_max_attempts: int = Field(
        default=50, ge=1, description="Tries before a notification is marked failed (~1 day)."
    )
    webhook_timeout_s: float = Field(default=10.0, gt=0)
    webhook_allow_private: bool = Field(
        default=False,
        description="Accept webhook URLs on loopback, private or link-local addresses.",
    )
    # -- operations: metrics and the audit chain's watch ---------------------------------------
    metrics_port: int = Field(
        default=9464,
        ge=0,
        le=65535,
        description="Port of `tsunagu worker`'s /metrics (on TSUNAGU_HOST); 0 serves none.",
    )
    connector_metrics_port: int = Field(
        default=0,
        ge=0,
        le=65535,
        description="Port of `tsunagu connector run`'s /metrics (on TSUNAGU_HOST); 0 serves "
        "none, so that several connectors on one machine do not collide.",
    )
    audit_verify_interval_s: float = Field(
        default=300.0,
        ge=0,
        description="Seconds between full verifications of the audit chain by the process "
        "that ingests (`up`, `worker`), published as metrics; 0 runs none.",
    )
    # -- the demo of `make run` ---------------------------------------------------------------
    demo_read_interval_s: float = Field(
        default=5.0, gt=0, description="Pause between the demo partners' rounds of API reads."
    )

    @field_validator("oidc_role_map", mode="before")
    @classmethod
    def _role_map_from_json(cls, value: Any) -> Any:
        """The map as JSON text in the environment; empty (compose's unset) means none."""
        if isinstance(value, str):
            return json.loads(value) if value.strip() else {}
        return value

    @cached_property
    def bus_url(self) -> str:
        """The bus URL, defaulting to the SQLite log in the data directory."""
        return self.bus or f"sqlite:///{self.data_dir.resolve() / 'bus.db'}"

    @cached_property
    def store_url(self) -> str:
        """The store's SQLAlchemy URL, defaulting to SQLite in the data directory."""
        return self.database_url or f"sqlite:///{self.data_dir.resolve() / 'store.db'}"

    def upgrades_on_start(self, url: str) -> bool:
        """Whether a process opening an older store (or vault) at ``url`` upgrades it (see
        ``store_upgrade``)."""
        if self.store_upgrade == "auto":
            return url.startswith("sqlite")
        return self.store_upgrade == "on-start"

    @property
    def inline_reads(self) -> bool:
        """Whether partner views read the store on the event loop (see broker.api.recording)."""
        if self.api_inline_reads is not None:
            return self.api_inline_reads
        return self.store_url.startswith("sqlite")

    @property
    def regionid_active(self) -> bool:
        """Whether this platform runs the region ID (embedded mode, and not turned off)."""
        return self.regionid_enabled and not self.oidc_issuer

    @property
    def regionid_issuer_url(self) -> str:
        """The region ID's issuer: the setting, or this machine's API with ``/regionid``."""
        if self.regionid_issuer:
            return self.regionid_issuer.rstrip("/")
        host = {"0.0.0.0": "127.0.0.1", "::": "[::1]"}.get(self.host, self.host)
        return f"http://{host}:{self.port}/regionid"

    @cached_property
    def vault_store_url(self) -> str:
        """The subject-key vault's URL, defaulting to SQLite beside the platform's keys."""
        return self.vault_url or f"sqlite:///{self.data_dir.resolve() / 'keys' / 'vault.db'}"
