"""Assemble a process from the settings: bus, store, registry, ingest worker, API server."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from functools import partial
from types import TracebackType

from sqlalchemy import Engine

from broker.audit import AuditLog, EntryKind
from broker.audit.metrics import unwatch_store, watch_store
from broker.audit.monitor import ChainMonitor
from broker.auth.origin import master_key_of
from broker.auth.provider import Identity, open_identity
from broker.bus import open_bus
from broker.ingest.gateway import IngestGateway
from broker.ingest.heartbeat import Heartbeat
from broker.ingest.held import HeldEvents
from broker.ingest.pipeline import IngestWorker
from broker.ingest.provenance import SourceAuthenticator
from broker.lifecycle import Lifecycle
from broker.regionid.server import RegionId
from broker.registry.catalogue import SchemaRegistry
from broker.registry.stored import StoredRegistry
from broker.settings import Settings
from broker.store.database import make_engine
from broker.store.projections import create_tables
from broker.views.pseudonyms import Pseudonyms, key_of
from consent.catalogue import Catalogue
from consent.changes import CONSENT_CHANGES_TOPIC, ChangeScope, ConsentChange, changes_topic
from consent.decisions import DecisionPoint
from consent.keys import KeyRing
from consent.listener import ConsentChangeListener
from consent.service import ConsentService
from consent.vault import SubjectVault
from consent.webhooks import WebhookDispatcher
from contract.bus import Bus, BusError, Forgetting, TopicSpec, dlq_topic
from contract.deadletter import UNROUTED_DLQ
from contract.domains import DOMAINS
from contract.private_files import private_dir

log = logging.getLogger(__name__)


#: Kafka topic config: records carry the broker's append time, not the producer's.
APPEND_TIME = {"message.timestamp.type": "LogAppendTime"}


def topic_specs(settings: Settings) -> list[TopicSpec]:
    """The platform's topics: one per domain and a dead-letter topic beside each."""
    domains = [settings.topic_prefix + t for t in DOMAINS.topics()]
    # The broker stamps each record when appending it: a connector's token is judged at
    # that time, never at one the producer chose (broker.ingest.provenance).
    specs = [TopicSpec(t, settings.topic_partitions, configs=APPEND_TIME) for t in domains]
    specs += [TopicSpec(dlq_topic(t), 1) for t in domains]
    specs.append(TopicSpec(settings.topic_prefix + UNROUTED_DLQ, 1))
    specs.append(changes_topic(settings.topic_prefix + CONSENT_CHANGES_TOPIC))
    return specs


@dataclass
class Platform:
    """The parts one process runs, opened from the settings; ``close`` (or leaving a ``with``
    block) stops every thread it started and releases the bus and the store."""

    settings: Settings
    bus: Bus
    engine: Engine
    registry: SchemaRegistry
    stored: StoredRegistry
    identity: Identity
    keys: KeyRing
    decisions: DecisionPoint
    consent: ConsentService
    vault: SubjectVault
    pseudonyms: Pseudonyms
    audit: AuditLog
    #: The owner of every thread this platform starts and of what must close after them.
    lifecycle: Lifecycle = field(default_factory=Lifecycle)
    listener: ConsentChangeListener | None = None
    webhooks: WebhookDispatcher | None = None
    chain_monitor: ChainMonitor | None = None
    regionid: RegionId | None = None

    @classmethod
    def open(cls, settings: Settings) -> Platform:
        """Open the bus and the store, creating topics and tables as needed."""
        private_dir(settings.data_dir, tighten=True)
        # Every installed domain, plug-ins too: a refused declaration stops the start here.
        DOMAINS.load()
        lifecycle = Lifecycle()
        try:
            return cls._open(settings, lifecycle)
        except BaseException:
            lifecycle.close()  # what opened before the failure
            raise

    @classmethod
    def _open(cls, settings: Settings, lifecycle: Lifecycle) -> Platform:
        # Each part's closer is registered as soon as it opens; they run in reverse order.
        bus = open_bus(settings.bus_url, retention_s=settings.bus_retention_s)
        lifecycle.on_close("bus", bus.close)
        bus.create_topics(topic_specs(settings))
        engine = make_engine(
            settings.store_url, upgrade=settings.upgrades_on_start(settings.store_url)
        )
        lifecycle.on_close("store", engine.dispose)
        create_tables(engine)  # each domain's projection tables (a plug-in's on its first start)
        # Apart from the store, so that no backup of the store holds a subject key.
        vault = SubjectVault.open_url(
            settings.vault_store_url, upgrade=settings.upgrades_on_start(settings.vault_store_url)
        )
        lifecycle.on_close("vault", vault.close)
        registry = SchemaRegistry.from_directory(settings.schemas_dir, DOMAINS)
        catalogue = Catalogue.load(settings.schemas_dir, DOMAINS)
        keys = KeyRing.in_data_dir(settings.data_dir)
        decisions = DecisionPoint(engine, catalogue)
        consent = ConsentService(
            engine,
            keys,
            bus.publish,  # the topic was created above
            catalogue=catalogue,
            topic=settings.topic_prefix + CONSENT_CHANGES_TOPIC,
            on_change=[decisions.cache.apply],
            allow_private_webhooks=settings.webhook_allow_private,
        )
        # Every decision, allow or deny, goes to the hash-chained audit log.
        audit = AuditLog(engine, keys)
        lifecycle.on_close("audit log", audit.close)  # writes what is still queued
        watch_store(engine)  # this process's /metrics reports the audit checkpoint's age
        lifecycle.on_close("store metrics", partial(unwatch_store, engine))
        decisions.on_decision = audit.record_decision
        consent.add_change_hook(partial(_audit_consent_change, audit))
        pseudonyms = Pseudonyms(key_of(settings))
        consent.add_change_hook(partial(_forget_erased_pseudonyms, pseudonyms))
        identity = open_identity(settings)
        lifecycle.on_close("token verifier", identity.verifier.close)
        return cls(
            settings,
            bus,
            engine,
            registry,
            StoredRegistry(registry, engine),
            identity,
            keys,
            decisions,
            consent,
            vault,
            pseudonyms,
            audit,
            lifecycle,
            regionid=(
                RegionId(
                    engine,
                    audit,
                    settings.regionid_issuer_url,
                    settings.data_dir / "keys",
                    link_code_ttl_s=settings.regionid_link_code_ttl_s,
                )
                if settings.regionid_active
                else None
            ),
        )

    @property
    def stop(self) -> threading.Event:
        """Set when the platform closes: every thread it started returns when it sees it."""
        return self.lifecycle.stop

    def worker(self) -> IngestWorker:
        """An ingest worker over this platform's bus and store."""
        return IngestWorker(
            self.bus,
            self.engine,
            self.registry,
            self.vault,
            group=self.settings.ingest_group,
            topic_prefix=self.settings.topic_prefix,
            batch_size=self.settings.ingest_batch_size,
            refresh_registry=self.stored.reload_if_stale,
            max_event_bytes=self.settings.max_event_bytes,
            authenticate=SourceAuthenticator(
                self.identity.verifier,
                master_key_of(self.settings),
            )
            if self.settings.ingest_require_token
            else None,
            audit=self.audit,
            heartbeat=self.ingest_heartbeat(),
            lag_interval_s=self.settings.bus_probe_interval_s,
            held=HeldEvents.in_keys_dir(
                self.settings.data_dir / "keys", self.settings.held_retention_s
            ),
            held_sweep_interval_s=self.settings.held_sweep_interval_s,
        )

    def ingest_heartbeat(self) -> Heartbeat:
        """The heartbeat of this platform's ingest worker (written by it, read by readiness)."""
        return Heartbeat.in_data_dir(self.settings.data_dir, stall_s=self.settings.ingest_stall_s)

    def gateway(self) -> IngestGateway:
        """HTTP ingest over this platform's bus."""
        return IngestGateway(
            self.bus,
            self.engine,
            self.registry,
            domains=DOMAINS.topics(),
            topic_prefix=self.settings.topic_prefix,
            max_event_bytes=self.settings.max_event_bytes,
            refresh_registry=self.stored.reload_if_stale,
            audit=self.audit,
            master_key=master_key_of(self.settings),
        )

    def start_worker_thread(self) -> threading.Thread:
        """Run an ingest worker in a background thread until the platform closes (and, as
        every process that ingests does, verify the audit chain periodically)."""
        thread = self.lifecycle.spawn("ingest", self.worker().run)
        self.start_chain_verifier()
        self.start_bus_retention()
        return thread

    def start_bus_retention(self, interval_s: float = 3600.0) -> None:
        """On the SQLite log, delete expired records now and every ``interval_s`` (Kafka
        enforces its topics' retention itself)."""
        bus = self.bus
        if not isinstance(bus, Forgetting):
            return

        def enforce(stop: threading.Event) -> None:
            while True:
                try:
                    dropped = bus.enforce_retention()
                    if dropped:
                        log.info("bus retention: %d expired records deleted", dropped)
                except BusError as exc:
                    log.warning("bus retention: failed, will retry: %s", exc)
                if stop.wait(interval_s):
                    return

        self.lifecycle.spawn("bus-retention", enforce)

    def start_chain_verifier(self) -> None:
        """Verify the whole audit chain now and every ``audit_verify_interval_s`` (0: never),
        publishing the result as metrics."""
        interval = self.settings.audit_verify_interval_s
        if not interval or self.chain_monitor is not None:
            return
        self.chain_monitor = ChainMonitor(self.engine, self.keys, interval_s=interval)
        self.lifecycle.spawn("audit-verify", self.chain_monitor.watch)

    def start_change_listener(self) -> None:
        """Apply other processes' consent changes here: decisions, and the subject keys of
        erased subjects (an erasure elsewhere holds here at once, not when a cache ages)."""
        if self.listener is not None:
            return
        listener = ConsentChangeListener(
            self.bus,
            self.decisions,
            topic=self.settings.topic_prefix + CONSENT_CHANGES_TOPIC,
            also=[self._evict_subject_key],
        )
        listener.subscribe()
        self.lifecycle.on_close("consent change listener", listener.leave)
        self.lifecycle.spawn(f"consent-changes-{listener.group}", listener.run)
        self.listener = listener

    def _evict_subject_key(self, change: ConsentChange) -> None:
        if change.scope is ChangeScope.SUBJECT:
            self.vault.evict(change.key)
        elif change.scope is ChangeScope.ERASURE:
            # The topic does not say whom: every cached key and pseudonym goes.
            self.vault.evict_all()
            self.pseudonyms.forget()

    def start_consent_threads(self) -> None:
        """Apply other processes' consent changes here, publish this process's, and notify
        partners of revocations and expiries (signed webhooks, retried)."""
        self.start_change_listener()
        if self.webhooks is not None:
            return
        self.lifecycle.spawn("consent-relay", self.consent.relay)
        webhooks = WebhookDispatcher(
            self.engine,
            self.keys,
            max_attempts=self.settings.webhook_max_attempts,
            timeout_s=self.settings.webhook_timeout_s,
            pseudonym=self.pseudonyms.of,
        )
        self.lifecycle.on_close("partner webhooks", webhooks.close)
        self.consent.add_change_hook(webhooks.on_change)
        self.lifecycle.spawn("partner-webhooks", webhooks.run, wake=webhooks.wake)
        self.webhooks = webhooks

    def close(self) -> None:
        """Stop and join every thread the platform started, then release the bus, the store
        and the rest (logging threads that did not stop in time). A second call does nothing."""
        self.lifecycle.close()

    def __enter__(self) -> Platform:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _forget_erased_pseudonyms(pseudonyms: Pseudonyms, change: ConsentChange) -> None:
    """An erasure made here: the erased subject's pseudonyms stop resolving at once."""
    if change.event == "erased":
        pseudonyms.forget()


def _audit_consent_change(audit: AuditLog, change: ConsentChange) -> None:
    """Record a consent or partner change (subjects only by their audit reference)."""
    if change.event == "erased":
        return  # the erasure entry records it, deliberately without whose
    fields = {
        "consent_id": change.consent_id,
        "supersedes": change.supersedes,
        "partner": change.partner_id,
        "purpose": change.purpose,
        "status": change.status,
    }
    subject = change.key if change.scope is ChangeScope.SUBJECT else None
    audit.append(
        EntryKind.CONSENT_CHANGE,
        actor="resident" if subject else "municipality",
        subject=subject,
        event=change.event,
        **{k: v for k, v in fields.items() if v is not None},
    )
