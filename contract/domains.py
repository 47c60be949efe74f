"""The domain registry: one declaration per service domain, the one place that names them.

A domain is what one kind of service publishes: its topic on the bus (a ``<topic>.dlq``
beside it), the data categories its events fill, the kinds of subject they are about and
its event types. The bus, ingest and the API ask this registry instead of listing domains.

Declarations are plain values, so a domain can come from anywhere: today the built-in four
(``BUILTIN``); a plug-in only has to hand over a :class:`Domain` (``DomainRegistry.of``).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from contract.bus import TopicName


class DomainError(ValueError):
    """A declaration that cannot join the registry; the message says what to change."""


@dataclass(frozen=True, slots=True)
class Domain:
    """One service domain, declared once."""

    #: The first part of its event types (``transport`` in ``transport.trip.completed``).
    name: str
    #: Data category codes of ``schemas/catalogue/categories.json`` its events fill.
    categories: tuple[str, ...]
    #: What its events' subjects are: ``resident``, ``property``, ``vehicle``, ``merchant``.
    subject_kinds: tuple[str, ...]
    #: Its event types, ``<name>.<entity>.<action>``.
    event_types: tuple[str, ...]

    @property
    def topic(self) -> TopicName:
        """Its topic on the bus (before any deployment's topic prefix)."""
        return TopicName(self.name)

    def __post_init__(self) -> None:
        strays = [t for t in self.event_types if t.split(".", 1)[0] != self.name]
        if strays:
            raise DomainError(
                f"domain {self.name!r} declares event types of other domains: "
                f"{', '.join(strays)}; name them {self.name}.<entity>.<action>"
            )


TRANSPORT = Domain(
    name="transport",
    categories=("transport.trips", "transport.vehicles"),
    subject_kinds=("resident", "vehicle"),
    event_types=(
        "transport.ride.requested",
        "transport.trip.completed",
        "transport.vehicle.position",
    ),
)
HEALTH = Domain(
    name="health",
    categories=("health.points",),
    subject_kinds=("resident",),
    event_types=("health.points.awarded", "health.points.redeemed"),
)
CURRENCY = Domain(
    name="currency",
    categories=("currency.transactions",),
    subject_kinds=("resident",),
    event_types=(
        "currency.payment.settled",
        "currency.points.converted",
        "currency.wallet.topped_up",
    ),
)
VACANT_HOUSE = Domain(
    name="vacant_house",
    categories=("property.listing", "property.details", "property.inquiries"),
    subject_kinds=("property", "resident"),
    event_types=(
        "vacant_house.listing.registered",
        "vacant_house.listing.updated",
        "vacant_house.inquiry.received",
    ),
)
#: The domains every region starts with.
BUILTIN: tuple[Domain, ...] = (TRANSPORT, HEALTH, CURRENCY, VACANT_HOUSE)


class DomainRegistry:
    """The domains a platform knows, in declaration order."""

    def __init__(self, domains: Iterable[Domain] = ()) -> None:
        self._domains: dict[str, Domain] = {}
        for domain in domains:
            self.add(domain)

    @classmethod
    def of(cls, *sources: Iterable[Domain]) -> DomainRegistry:
        """A registry of every domain that ``sources`` declare (built-ins, plug-ins, ...)."""
        return cls(domain for source in sources for domain in source)

    def add(self, domain: Domain) -> None:
        """Declare ``domain``; refuses a second declaration of the same name."""
        if domain.name in self._domains and self._domains[domain.name] != domain:
            raise DomainError(f"domain {domain.name!r} is declared twice; keep one declaration")
        self._domains[domain.name] = domain

    def __iter__(self) -> Iterator[Domain]:
        return iter(self._domains.values())

    def __contains__(self, name: object) -> bool:
        return name in self._domains

    def __len__(self) -> int:
        return len(self._domains)

    def get(self, name: str) -> Domain:
        """The domain called ``name`` (KeyError naming the known ones otherwise)."""
        try:
            return self._domains[name]
        except KeyError:
            raise KeyError(
                f"no domain {name!r}; known: {', '.join(self._domains) or 'none'}"
            ) from None

    def names(self) -> tuple[str, ...]:
        """Every domain's name."""
        return tuple(self._domains)

    def topics(self) -> tuple[TopicName, ...]:
        """Every domain's topic (each has a ``<topic>.dlq`` beside it)."""
        return tuple(d.topic for d in self._domains.values())

    def of_type(self, event_type: str) -> Domain | None:
        """The domain an event type belongs to, or None when no domain claims its prefix."""
        return self._domains.get(event_type.split(".", 1)[0])


#: The platform's domains.
DOMAINS = DomainRegistry.of(BUILTIN)
