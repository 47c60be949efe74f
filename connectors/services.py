"""The four service connectors by name: their source ids and the event types they publish."""

from __future__ import annotations

from dataclasses import dataclass

from connectors import currency, health, transport, vacant_house


@dataclass(frozen=True, slots=True)
class Service:
    """A service connector's identity."""

    name: str
    source: str
    event_types: tuple[str, ...]


SERVICES: dict[str, Service] = {
    m.__name__.rsplit(".", 1)[1]: Service(m.__name__.rsplit(".", 1)[1], m.SOURCE, m.EVENT_TYPES)
    for m in (transport, health, currency, vacant_house)
}
