"""The synthetic region: a seeded simulation of a Mitoyo-like region (seven former towns,
residents by age band, on-demand trips, walkers and check-ups, local-currency spending,
vacant houses and their owners, inquiries) that drives the four service connectors.
"""

from connectors.region.housing import House
from connectors.region.people import AGE_BANDS, Owner, Prospect, Resident
from connectors.region.places import MERCHANTS, STOPS, Merchant, PlaceStop
from connectors.region.simulator import COLUMNS, CONNECTORS, FEEDS, Batch, Region

__all__ = [
    "AGE_BANDS",
    "COLUMNS",
    "CONNECTORS",
    "FEEDS",
    "MERCHANTS",
    "STOPS",
    "Batch",
    "House",
    "Merchant",
    "Owner",
    "PlaceStop",
    "Prospect",
    "Region",
    "Resident",
]
