"""The domain registry: one declaration per service domain, the one place that names them.

A domain is what one kind of service publishes: its topic on the bus (a ``<topic>.dlq``
beside it), the data categories its events fill, the kinds of subject they are about, its
event types, where its schemas are and which projection writes its events to the store. The
bus, ingest, the store, the catalogue and the API ask this registry instead of listing domains.

Every domain, the four built-in ones included, is found the same way: a distribution declares
it under the entry point group ``tsunagu.domains`` (``DOMAINS`` loads them on first use). A
plug-in domain is a package of its own with such an entry point; nothing else is edited.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path

from contract.bus import TopicName

#: The entry point group under which distributions declare their domains.
ENTRY_POINT_GROUP = "tsunagu.domains"


class DomainError(ValueError):
    """A declaration that cannot join the registry; the message says what to change."""


@dataclass(frozen=True, slots=True)
class Domain:
    """One service domain, declared once."""

    #: The first part of its event types (``transport`` in ``transport.trip.completed``), and
    #: its topic: connectors route an event by its type alone, without this registry.
    name: str
    #: Data category codes of the catalogue (``catalogue/categories.json``) its events fill.
    categories: tuple[str, ...]
    #: What its events' subjects are: ``resident``, ``property``, ``vehicle``, ``merchant``.
    subject_kinds: tuple[str, ...]
    #: Its event types, ``<name>.<entity>.<action>``.
    event_types: tuple[str, ...]
    #: Its projection, as ``module:attribute`` naming a ``broker.store.projections.Projection``
    #: (a name, not the object: connectors read declarations without importing the broker).
    projection: str = ""
    #: A schemas tree of its own, laid out as the platform's ``schemas/``
    #: (``<name>/<entity>.<action>/v<N>.json`` and ``catalogue/categories.json``, optionally
    #: ``catalogue/purposes.json``); None when the platform's tree holds its schemas.
    schemas: Path | None = None
    #: Where the declaration came from (set when loaded from an entry point), for messages.
    origin: str = field(default="", compare=False)

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

    def __str__(self) -> str:
        return f"domain {self.name!r}" + (f" ({self.origin})" if self.origin else "")


TRANSPORT = Domain(
    name="transport",
    categories=("transport.trips", "transport.vehicles"),
    subject_kinds=("resident", "vehicle"),
    event_types=(
        "transport.ride.requested",
        "transport.trip.completed",
        "transport.vehicle.position",
    ),
    projection="broker.store.projections.transport:PROJECTION",
)
HEALTH = Domain(
    name="health",
    categories=("health.points",),
    subject_kinds=("resident",),
    event_types=("health.points.awarded", "health.points.redeemed"),
    projection="broker.store.projections.health:PROJECTION",
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
    projection="broker.store.projections.currency:PROJECTION",
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
    projection="broker.store.projections.vacant_house:PROJECTION",
)
#: The domains every region starts with (the ``tsunagu`` distribution declares them under
#: ``tsunagu.domains``, as a plug-in declares its own).
BUILTIN: tuple[Domain, ...] = (TRANSPORT, HEALTH, CURRENCY, VACANT_HOUSE)


class DomainRegistry:
    """The domains a platform knows, in declaration order; no topic or category twice."""

    def __init__(self, domains: Iterable[Domain] = ()) -> None:
        self._declared: dict[str, Domain] = {}
        #: Where the domains still to load come from (``installed``): read on first use.
        self._source: Callable[[], Iterable[Domain]] | None = None
        self._lock = threading.Lock()
        for domain in domains:
            self.add(domain)

    @classmethod
    def of(cls, *sources: Iterable[Domain]) -> DomainRegistry:
        """A registry of every domain that ``sources`` declare (built-ins, plug-ins, ...)."""
        return cls(domain for source in sources for domain in source)

    @classmethod
    def installed(cls, group: str = ENTRY_POINT_GROUP) -> DomainRegistry:
        """The domains installed distributions declare under ``group``, loaded on first use
        (``load`` loads them at once, so that a bad declaration stops a process at start)."""
        registry = cls()
        registry._source = lambda: declared_in(group)
        return registry

    def load(self) -> DomainRegistry:
        """Load the declared domains now if not yet done; DomainError names what is wrong."""
        if self._source is None:
            return self
        with self._lock:
            if self._source is not None:
                # All or nothing: a refused declaration leaves the registry unloaded, so that
                # every later use raises the same error rather than running on a partial set.
                loaded = DomainRegistry(self._source())
                self._declared = loaded._declared
                self._source = None
        return self

    @property
    def _domains(self) -> dict[str, Domain]:
        if self._source is not None:
            self.load()
        return self._declared

    def add(self, domain: Domain) -> None:
        """Declare ``domain``; refuses a topic or a category that another domain declares."""
        domains = self._domains
        known = domains.get(domain.name)
        if known is not None:
            if known == domain:
                return  # the same declaration reached us twice (e.g. two installed copies)
            raise DomainError(
                f"{domain} declares topic {domain.topic!r}, already taken by {known}; "
                f"give one of them another name (the name is the topic)"
            )
        for category in domain.categories:
            owner = next((d for d in domains.values() if category in d.categories), None)
            if owner is not None:
                raise DomainError(
                    f"{domain} declares category {category!r}, already taken by {owner}; "
                    f"a category belongs to one domain: name its own (e.g. "
                    f"{domain.name}.{category.rsplit('.', 1)[-1]})"
                )
        domains[domain.name] = domain

    def __iter__(self) -> Iterator[Domain]:
        return iter(list(self._domains.values()))

    def __contains__(self, name: object) -> bool:
        return name in self._domains

    def __len__(self) -> int:
        return len(self._domains)

    def get(self, name: str) -> Domain:
        """The domain called ``name`` (KeyError naming the known ones otherwise)."""
        domains = self._domains
        try:
            return domains[name]
        except KeyError:
            raise KeyError(f"no domain {name!r}; known: {', '.join(domains) or 'none'}") from None

    def names(self) -> tuple[str, ...]:
        """Every domain's name."""
        return tuple(self._domains)

    def topics(self) -> tuple[TopicName, ...]:
        """Every domain's topic (each has a ``<topic>.dlq`` beside it)."""
        return tuple(d.topic for d in self._domains.values())

    def of_type(self, event_type: str) -> Domain | None:
        """The domain an event type belongs to, or None when no domain claims its prefix."""
        return self._domains.get(event_type.split(".", 1)[0])


def declared_in(group: str = ENTRY_POINT_GROUP) -> list[Domain]:
    """The domains the installed distributions declare under ``group``, ordered by entry
    point name; each entry point names a :class:`Domain` (or an iterable of them)."""
    found: list[Domain] = []
    for ep in sorted(entry_points(group=group), key=lambda ep: (ep.name, ep.value)):
        where = _origin(ep)
        try:
            value = ep.load()
        except Exception as exc:  # an uninstallable plug-in names itself, not just its error
            raise DomainError(f"{where} cannot be loaded: {type(exc).__name__}: {exc}") from exc
        declared = [value] if isinstance(value, Domain) else list(value)
        for domain in declared:
            if not isinstance(domain, Domain):
                raise DomainError(
                    f"{where} gives {type(domain).__name__}, not a contract.domains.Domain"
                )
            found.append(replace(domain, origin=where))
    return found


def _origin(ep: EntryPoint) -> str:
    dist = f" of {ep.dist.name} {ep.dist.version}" if ep.dist is not None else ""
    return f"entry point {ep.group}:{ep.name} = {ep.value}{dist}"


#: The platform's domains: every one the installed distributions declare.
DOMAINS = DomainRegistry.installed()
