"""What the composition root hands the routes: one typed object of the platform's services.

``create_app`` builds a ``Services`` from the platform and gives it to ``TsunaguAPI``; routes
never see the app, only the dependencies of ``broker.api.deps`` that read it from here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from fastapi import FastAPI
from starlette.types import ASGIApp

# Types only: the services' modules import the API's helpers (limits, recording), not this.
if TYPE_CHECKING:
    import threading

    from sqlalchemy import Engine

    from broker.api.limits import TokenBuckets
    from broker.api.recording import ReadRecorder
    from broker.audit import AuditLog
    from broker.audit.monitor import ChainMonitor
    from broker.auth.issuer import EmbeddedIssuer
    from broker.auth.verifier import TokenVerifier
    from broker.bus.probe import BusProbe
    from broker.ingest.gateway import IngestGateway
    from broker.ingest.heartbeat import Heartbeat
    from broker.regionid.server import RegionId
    from broker.registry.catalogue import SchemaRegistry
    from broker.registry.stored import StoredRegistry
    from broker.settings import Settings
    from broker.views.pseudonyms import Pseudonyms
    from consent.catalogue import Catalogue
    from consent.decisions import DecisionPoint
    from consent.keys import KeyRing
    from consent.service import ConsentService
    from consent.vault import SubjectVault
    from contract.bus import Bus


@dataclass(frozen=True, slots=True)
class Readiness:
    """What ``/readyz`` reports on beside the store and the bus: the ingest worker, when one
    runs in this process (its thread) or beside it (its heartbeat file)."""

    heartbeat: Heartbeat | None = None
    worker: threading.Thread | None = None


@dataclass(frozen=True, slots=True)
class Services:
    """The platform's parts one API process serves from, typed."""

    settings: Settings
    engine: Engine
    bus: Bus
    registry: SchemaRegistry
    stored_registry: StoredRegistry
    gateway: IngestGateway
    verifier: TokenVerifier
    issuer: EmbeddedIssuer | None
    keys: KeyRing
    catalogue: Catalogue
    consent: ConsentService
    decisions: DecisionPoint
    vault: SubjectVault
    pseudonyms: Pseudonyms
    audit: AuditLog
    recorder: ReadRecorder
    chain_monitor: ChainMonitor
    partner_buckets: TokenBuckets
    schema_check_buckets: TokenBuckets
    opendata_buckets: TokenBuckets
    #: Sign-in attempts at the region ID, per account name.
    sign_in_buckets: TokenBuckets
    readiness: Readiness
    bus_probe: BusProbe
    regionid: RegionId | None = None


class TsunaguAPI(FastAPI):
    """The FastAPI application, holding the services its routes are handed."""

    def __init__(self, services: Services, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.services = services


def services_of(app: ASGIApp) -> Services:
    """The services of the application serving a request (``request.app``)."""
    if not isinstance(app, TsunaguAPI):
        raise TypeError(f"{type(app).__name__} is not the Tsunagu API: it has no services")
    return app.services
