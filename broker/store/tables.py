"""Every table of the store, imported so that SQLModel's metadata knows them all."""

from broker.store.ledger import IngestedEvent
from broker.store.projections.currency import CurrencyTransaction
from broker.store.projections.health import HealthPoints
from broker.store.projections.transport import (
    RideRequest,
    TransportStop,
    Trip,
    VehiclePosition,
)
from broker.store.projections.vacant_house import Inquiry, Listing
from broker.store.publications import PublishedStatistics

__all__ = [
    "CurrencyTransaction",
    "HealthPoints",
    "IngestedEvent",
    "Inquiry",
    "Listing",
    "PublishedStatistics",
    "RideRequest",
    "TransportStop",
    "Trip",
    "VehiclePosition",
]
