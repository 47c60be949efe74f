"""What a route may ask for, as ``Annotated`` dependencies: a route's signature says what it
needs (``EngineDep``, ``ConsentDep``...) and the composition root (``create_app``) decides what
it gets. Personal data is not among them: a route reads it only through the audited read
(``PartnerReadDep``, ``StatisticsReadDep``; see ``broker.api.reads``).

The getters are ``async``: FastAPI runs a plain ``def`` dependency in a worker thread, which
costs more than the attribute it reads.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, HTTPException, Request
from sqlalchemy import Engine

from broker.api.reads import PartnerRead, partner_view_read, statistics_read
from broker.api.services import Services, services_of
from broker.audit import AuditLog
from broker.audit.monitor import ChainMonitor
from broker.ingest.gateway import IngestGateway
from broker.regionid.server import RegionId
from broker.registry.catalogue import SchemaRegistry
from broker.registry.stored import StoredRegistry
from broker.settings import Settings
from consent.catalogue import Catalogue
from consent.service import ConsentService


async def get_services(request: Request) -> Services:
    """Every service of the process (for routes that use several)."""
    return services_of(request.app)


async def get_engine(request: Request) -> Engine:
    """The store."""
    return services_of(request.app).engine


async def get_audit(request: Request) -> AuditLog:
    """The audit log."""
    return services_of(request.app).audit


async def get_settings(request: Request) -> Settings:
    """The process's settings."""
    return services_of(request.app).settings


async def get_consent_service(request: Request) -> ConsentService:
    """The consent service."""
    return services_of(request.app).consent


async def get_catalogue(request: Request) -> Catalogue:
    """The purpose and category catalogues."""
    return services_of(request.app).catalogue


async def get_registry(request: Request) -> SchemaRegistry:
    """The schema registry."""
    return services_of(request.app).registry


async def get_stored_registry(request: Request) -> StoredRegistry:
    """The schema registry with its stored versions."""
    return services_of(request.app).stored_registry


async def get_gateway(request: Request) -> IngestGateway:
    """HTTP ingest."""
    return services_of(request.app).gateway


async def get_chain_monitor(request: Request) -> ChainMonitor:
    """The audit chain's monitor."""
    return services_of(request.app).chain_monitor


async def get_regionid(request: Request) -> RegionId:
    """The region ID, or 404 where the platform trusts an external provider instead."""
    regionid = services_of(request.app).regionid
    if regionid is None:
        raise HTTPException(
            404,
            "the region ID is off here: TSUNAGU_OIDC_ISSUER names an external provider, or "
            "TSUNAGU_REGIONID_ENABLED=false",
        )
    return regionid


ServicesDep = Annotated[Services, Depends(get_services)]
RegionIdDep = Annotated[RegionId, Depends(get_regionid)]
EngineDep = Annotated[Engine, Depends(get_engine)]
AuditDep = Annotated[AuditLog, Depends(get_audit)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
ConsentDep = Annotated[ConsentService, Depends(get_consent_service)]
CatalogueDep = Annotated[Catalogue, Depends(get_catalogue)]
RegistryDep = Annotated[SchemaRegistry, Depends(get_registry)]
StoredRegistryDep = Annotated[StoredRegistry, Depends(get_stored_registry)]
GatewayDep = Annotated[IngestGateway, Depends(get_gateway)]
ChainMonitorDep = Annotated[ChainMonitor, Depends(get_chain_monitor)]

#: A partner's read of a view, approved for its purpose and audited.
PartnerReadDep = Annotated[PartnerRead, Depends(partner_view_read)]
#: A read of statistics (partner, auditor or admin), approved and audited.
StatisticsReadDep = Annotated[PartnerRead, Depends(statistics_read)]
