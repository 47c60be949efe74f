"""Assemble a process from the settings: bus, store, registry, ingest worker, API server."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from functools import partial

from sqlalchemy import Engine

from broker.audit import AuditLog, EntryKind
from broker.audit.metrics import unwatch_store, watch_store
from broker.audit.monitor import ChainMonitor
from broker.auth.origin import master_key_of
from broker.auth.provider import Identity, open_identity
from broker.bus import DOMAIN_TOPICS, Bus, BusError, Forgetting, TopicSpec, dlq_topic, open_bus
from broker.bus.sqlite_log import SqliteLog
from broker.ingest.deadletter import UNROUTED_DLQ
from broker.ingest.gateway import IngestGateway
from broker.ingest.heartbeat import Heartbeat
from broker.ingest.pipeline import IngestWorker
from broker.ingest.provenance import SourceAuthenticator
from broker.private_files import private_dir
from broker.registry.catalogue import SchemaRegistry
from broker.registry.stored import StoredRegistry
from broker.settings import Settings
from broker.store.database import make_engine
from broker.views.pseudonyms import Pseudonyms, key_of
from consent.catalogue import Catalogue
from consent.changes import CONSENT_CHANGES_TOPIC, ChangeScope, ConsentChange, changes_topic
from consent.decisions import DecisionPoint
from consent.keys import KeyRing
from consent.listener import ConsentChangeListener
from consent.service import ConsentService
from consent.vault import SubjectVault
from consent.webhooks import WebhookDispatcher

log = logging.getLogger(__name__)


def topic_specs(settings: Settings) -> list[TopicSpec]:
    """The platform's topics: one per domain and a dead-letter topic beside each."""
    domains = [settings.topic_prefix + t for t in DOMAIN_TOPICS]
    specs = [TopicSpec(t, settings.topic_partitions) for t in domains]
    specs += [TopicSpec(dlq_topic(t), 1) for t in domains]
    specs.append(TopicSpec(settings.topic_prefix + UNROUTED_DLQ, 1))
    specs.append(changes_topic(settings.topic_prefix + CONSENT_CHANGES_TOPIC))
    return specs


@dataclass
class Platform:
    """The parts one process runs, opened from the settings."""

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
    stop: threading.Event = field(default_factory=threading.Event)
    listener: ConsentChangeListener | None = None
    webhooks: WebhookDispatcher | None = None
    chain_monitor: ChainMonitor | None = None

    @classmethod
    def open(cls, settings: Settings) -> Platform:
        """Open the bus and the store, creating topics and tables as needed."""
        private_dir(settings.data_dir, tighten=True)
        bus = open_bus(settings.bus_url, retention_s=settings.bus_retention_s)
        bus.create_topics(topic_specs(settings))
        engine = make_engine(
            settings.store_url, upgrade=settings.upgrades_on_start(settings.store_url)
        )
        registry = SchemaRegistry.from_directory(settings.schemas_dir)
        catalogue = Catalogue.load(settings.schemas_dir)
        keys = KeyRing.in_data_dir(settings.data_dir)
        decisions = DecisionPoint(engine, catalogue)
        consent = ConsentService(
            engine,
            keys,
            bus.publish,  # the topic was created above
            catalogue=catalogue,
            topic=settings.topic_prefix + CONSENT_CHANGES_TOPIC,
            on_change=[decisions.apply],
            allow_private_webhooks=settings.webhook_allow_private,
        )
        # Every decision, allow or deny, goes to the hash-chained audit log.
        audit = AuditLog(engine, keys)
        watch_store(engine)  # this process's /metrics reports the audit checkpoint's age
        decisions.on_decision = audit.record_decision
        consent.add_change_hook(partial(_audit_consent_change, audit))
        pseudonyms = Pseudonyms(key_of(settings))
        consent.add_change_hook(partial(_forget_erased_pseudonyms, pseudonyms))
        # Apart from the store, so that no backup of the store holds a subject key.
        vault = SubjectVault.open_url(
            settings.vault_store_url, upgrade=settings.upgrades_on_start(settings.vault_store_url)
        )
        return cls(
            settings,
            bus,
            engine,
            registry,
            StoredRegistry(registry, engine),
            open_identity(settings),
            keys,
            decisions,
            consent,
            vault,
            pseudonyms,
            audit,
        )

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
                # The embedded log stamps records as it appends them; Kafka's CreateTime is
                # the producer's to choose, so there tokens are judged on arrival.
                append_time_stamped=isinstance(self.bus, SqliteLog),
            )
            if self.settings.ingest_require_token
            else None,
            audit=self.audit,
            heartbeat=self.ingest_heartbeat(),
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
            domains=DOMAIN_TOPICS,
            topic_prefix=self.settings.topic_prefix,
            max_event_bytes=self.settings.max_event_bytes,
            refresh_registry=self.stored.reload_if_stale,
            audit=self.audit,
            master_key=master_key_of(self.settings),
        )

    def start_worker_thread(self) -> threading.Thread:
        """Run an ingest worker in a background thread until ``stop`` is set (and, as every
        process that ingests does, verify the audit chain periodically)."""
        thread = threading.Thread(
            target=self.worker().run, args=(self.stop,), name="ingest", daemon=True
        )
        thread.start()
        self.start_chain_verifier()
        self.start_bus_retention()
        return thread

    def start_bus_retention(self, interval_s: float = 3600.0) -> None:
        """On the SQLite log, delete expired records now and every ``interval_s`` (Kafka
        enforces its topics' retention itself)."""
        bus = self.bus
        if not isinstance(bus, Forgetting):
            return

        def enforce() -> None:
            while True:
                try:
                    dropped = bus.enforce_retention()
                    if dropped:
                        log.info("bus retention: %d expired records deleted", dropped)
                except BusError as exc:
                    log.warning("bus retention: failed, will retry: %s", exc)
                if self.stop.wait(interval_s):
                    return

        threading.Thread(target=enforce, name="bus-retention", daemon=True).start()

    def start_chain_verifier(self) -> None:
        """Verify the whole audit chain now and every ``audit_verify_interval_s`` (0: never),
        publishing the result as metrics."""
        interval = self.settings.audit_verify_interval_s
        if not interval or self.chain_monitor is not None:
            return
        self.chain_monitor = ChainMonitor(self.engine, self.keys, interval_s=interval)
        threading.Thread(
            target=self.chain_monitor.watch, args=(self.stop,), name="audit-verify", daemon=True
        ).start()

    def start_change_listener(self) -> None:
        """Apply other processes' consent changes here: decisions, and the subject keys of
        erased subjects (an erasure elsewhere holds here at once, not when a cache ages)."""
        self.listener = ConsentChangeListener(
            self.bus,
            self.decisions,
            topic=self.settings.topic_prefix + CONSENT_CHANGES_TOPIC,
            also=[self._evict_subject_key],
        )
        self.listener.start()

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
        threading.Thread(
            target=self.consent.relay, args=(self.stop,), name="consent-relay", daemon=True
        ).start()
        self.webhooks = WebhookDispatcher(
            self.engine,
            self.keys,
            max_attempts=self.settings.webhook_max_attempts,
            timeout_s=self.settings.webhook_timeout_s,
            pseudonym=self.pseudonyms.of,
        )
        self.consent.add_change_hook(self.webhooks.on_change)
        threading.Thread(
            target=self.webhooks.run, args=(self.stop,), name="partner-webhooks", daemon=True
        ).start()

    def close(self) -> None:
        """Stop the worker and release the bus and the store."""
        self.stop.set()
        if self.listener is not None:
            self.listener.stop()
        if self.webhooks is not None:
            self.webhooks.wake()
            self.webhooks.close()
        self.audit.close()  # writes what is still queued
        unwatch_store(self.engine)
        self.bus.close()
        self.engine.dispose()
        self.vault.close()


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
