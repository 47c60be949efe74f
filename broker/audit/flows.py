"""The auditor's picture of the log: the data-flow map over a time window, and refusals over
time. Both are read from the entries themselves, so they say exactly what the chain proves.

The map has four columns, connector → topic → data category → partner:

* connector → topic: events projected (``publish_batch`` ``sources``), and refused ones
  (``dead_letter``, by reason);
* topic → category: events of the types each category covers (``publish_batch`` ``types``
  and the category catalogue);
* category → partner: partner reads that included the category (``partner_read``), refused
  consent decisions (``decision`` with ``allowed`` false, by reason), and withheld ones apart
  (``withheld`` true: a category of a view read as a whole that the consent never covered; an
  ordinary read, not a refusal). An entry written before ``withheld`` existed is a refusal.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, tzinfo
from enum import StrEnum
from typing import Any

import orjson
from sqlalchemy import Engine, and_, or_, select

from broker.audit import tables
from broker.audit.entries import EntryKind, timestamp
from consent.catalogue import Catalogue

#: A denied decision (refused or withheld), as its canonical fields text spells it (keys
#: sorted, no spaces).
DENIED = '%"allowed":false%'
#: The connector node of a dead letter whose source could not be read.
UNKNOWN_SOURCE = "(unknown)"


class NodeKind(StrEnum):
    """A column of the map."""

    CONNECTOR = "connector"
    TOPIC = "topic"
    CATEGORY = "category"
    PARTNER = "partner"


def node_id(kind: NodeKind, code: str) -> str:
    """A node's id: ``kind:code``."""
    return f"{kind.value}:{code}"


@dataclass(slots=True)
class Edge:
    """One flow between two nodes in the window."""

    source: str
    target: str
    count: int = 0
    refused: int = 0
    #: Decisions withheld (not part of the consent, not asked for): never refusals.
    withheld: int = 0
    reasons: dict[str, int] = field(default_factory=dict)
    purposes: dict[str, int] = field(default_factory=dict)
    last_seen: str | None = None

    def seen(self, at: str) -> None:
        """Note an entry of this flow at ``at``."""
        if self.last_seen is None or at > self.last_seen:
            self.last_seen = at

    def refuse(self, reason: str, at: str) -> None:
        """Count one refusal for ``reason``."""
        self.refused += 1
        self.reasons[reason] = self.reasons.get(reason, 0) + 1
        self.seen(at)


@dataclass(frozen=True, slots=True)
class FlowMap:
    """The map's nodes (kind, code) and edges over ``[since, until)``."""

    since: datetime
    until: datetime
    nodes: list[tuple[NodeKind, str]]
    edges: list[Edge]


class FlowBuilder:
    """Accumulates entries into a map."""

    def __init__(self, categories_of_type: Mapping[str, list[str]]) -> None:
        self._categories_of_type = categories_of_type
        self._edges: dict[tuple[str, str], Edge] = {}
        self._nodes: dict[str, tuple[NodeKind, str]] = {}

    def _edge(self, a: tuple[NodeKind, str], b: tuple[NodeKind, str]) -> Edge:
        source, target = node_id(*a), node_id(*b)
        self._nodes.setdefault(source, a)
        self._nodes.setdefault(target, b)
        edge = self._edges.get((source, target))
        if edge is None:
            edge = self._edges[(source, target)] = Edge(source, target)
        return edge

    def add(self, kind: str, at: str, fields: Mapping[str, Any]) -> None:
        """Count one entry."""
        if kind == EntryKind.PUBLISH_BATCH:
            topic = (NodeKind.TOPIC, fields["topic"])
            for source, n in fields.get("sources", {}).items():
                edge = self._edge((NodeKind.CONNECTOR, source), topic)
                edge.count += n
                edge.seen(at)
            for event_type, n in fields.get("types", {}).items():
                for category in self._categories_of_type.get(event_type, ()):
                    edge = self._edge(topic, (NodeKind.CATEGORY, category))
                    edge.count += n
                    edge.seen(at)
        elif kind == EntryKind.DEAD_LETTER:
            # An impersonation is drawn from the impersonator (``sender``), not its victim.
            source = fields.get("sender") or fields.get("source") or UNKNOWN_SOURCE
            edge = self._edge((NodeKind.CONNECTOR, source), (NodeKind.TOPIC, fields["topic"]))
            edge.refuse(fields["reason"], at)
        elif kind == EntryKind.PARTNER_READ:
            partner = (NodeKind.PARTNER, fields["partner"])
            for category in fields.get("categories", ()):
                edge = self._edge((NodeKind.CATEGORY, category), partner)
                edge.count += 1
                edge.purposes[fields["purpose"]] = edge.purposes.get(fields["purpose"], 0) + 1
                edge.seen(at)
        elif kind == EntryKind.DECISION and not fields.get("allowed", True):
            edge = self._edge(
                (NodeKind.CATEGORY, fields["category"]), (NodeKind.PARTNER, fields["partner"])
            )
            if fields.get("withheld", False):
                edge.withheld += 1
                edge.seen(at)
            else:
                edge.refuse(fields["reason"], at)

    def build(self, since: datetime, until: datetime) -> FlowMap:
        """The map so far, nodes in column order then by code."""
        order = list(NodeKind)
        nodes = sorted(self._nodes.values(), key=lambda n: (order.index(n[0]), n[1]))
        edges = sorted(self._edges.values(), key=lambda e: (e.source, e.target))
        return FlowMap(since, until, nodes, edges)


def categories_by_type(catalogue: Catalogue) -> dict[str, list[str]]:
    """Each event type's data categories, from the catalogue's field lists."""
    by_type: dict[str, list[str]] = {}
    for category in catalogue.categories.values():
        for event_type in category.fields:
            by_type.setdefault(event_type, []).append(category.code)
    return by_type


def _flow_rows(engine: Engine, since: datetime, until: datetime) -> Iterator[tuple[str, str, str]]:
    """(kind, at, fields) of the entries the map is drawn from, oldest first."""
    e = tables.entries
    in_window = and_(e.c.at >= timestamp(since), e.c.at < timestamp(until))
    wanted = or_(
        e.c.kind.in_([EntryKind.PUBLISH_BATCH, EntryKind.DEAD_LETTER, EntryKind.PARTNER_READ]),
        and_(e.c.kind == EntryKind.DECISION, e.c.fields.like(DENIED)),
    )
    query = select(e.c.kind, e.c.at, e.c.fields).where(in_window, wanted).order_by(e.c.seq)
    with engine.connect() as conn:
        yield from conn.execute(query.execution_options(yield_per=5000)).tuples()


def flow_map(engine: Engine, catalogue: Catalogue, since: datetime, until: datetime) -> FlowMap:
    """The data-flow map of the entries appended in ``[since, until)``."""
    builder = FlowBuilder(categories_by_type(catalogue))
    for kind, at, fields in _flow_rows(engine, since, until):
        builder.add(kind, at, orjson.loads(fields))
    return builder.build(since, until)


class Bucket(StrEnum):
    """The width of a bar in refusals over time."""

    HOUR = "hour"
    DAY = "day"


WIDTH = {Bucket.HOUR: timedelta(hours=1), Bucket.DAY: timedelta(days=1)}
#: The most bars one answer carries.
MAX_BUCKETS = 1000


@dataclass(slots=True)
class RefusalBar:
    """Refusals in one bucket: refused consent decisions, dead letters, both by reason; and
    apart, withheld decisions (not refusals: not asked for, not part of the consent)."""

    start: datetime
    refused: int = 0
    dead_letters: int = 0
    withheld: int = 0
    reasons: dict[str, int] = field(default_factory=dict)


class TooManyBucketsError(ValueError):
    """A window holding more than MAX_BUCKETS buckets."""


def floor_to(moment: datetime, bucket: Bucket, zone: tzinfo) -> datetime:
    """The start of the bucket holding ``moment``, on the wall clock of ``zone``."""
    moment = moment.astimezone(zone).replace(minute=0, second=0, microsecond=0)
    return moment.replace(hour=0) if bucket is Bucket.DAY else moment


def boundaries(since: datetime, until: datetime, bucket: Bucket, zone: tzinfo) -> list[datetime]:
    """The starts of the buckets covering ``[since, until)``, in ``zone``."""
    start = floor_to(since, bucket, zone)
    starts: list[datetime] = []
    while start < until:
        if len(starts) == MAX_BUCKETS:
            raise TooManyBucketsError(
                f"more than {MAX_BUCKETS} {bucket.value} buckets in the window; at most "
                f"{MAX_BUCKETS}: choose a wider bucket or a shorter window"
            )
        starts.append(start)
        # A day is the next calendar day on the zone's clock (23 or 25 hours across DST).
        start = (
            # An hour is an hour of real time (aware arithmetic in one zone is wall-clock).
            (start.astimezone(UTC) + WIDTH[bucket]).astimezone(zone)
            if bucket is Bucket.HOUR
            else floor_to(start.replace(hour=12) + WIDTH[bucket], bucket, zone)
        )
    return starts


def refusals_over_time(
    engine: Engine, since: datetime, until: datetime, bucket: Bucket, zone: tzinfo = UTC
) -> list[RefusalBar]:
    """Every bucket from ``since`` to ``until`` (days and hours of ``zone``), zeros included."""
    starts = boundaries(since, until, bucket, zone)
    bars = [RefusalBar(start) for start in starts]
    e = tables.entries
    query = select(e.c.kind, e.c.at, e.c.fields).where(
        e.c.at >= timestamp(since),
        e.c.at < timestamp(until),
        or_(
            e.c.kind == EntryKind.DEAD_LETTER,
            and_(e.c.kind == EntryKind.DECISION, e.c.fields.like(DENIED)),
        ),
    )
    with engine.connect() as conn:
        for kind, at, fields in conn.execute(query.execution_options(yield_per=5000)):
            bar = bars[bisect_right(starts, datetime.fromisoformat(at)) - 1]
            entry = orjson.loads(fields)
            if kind == EntryKind.DEAD_LETTER:
                bar.dead_letters += 1
            elif entry.get("withheld", False):
                bar.withheld += 1
                continue
            else:
                bar.refused += 1
            reason = entry["reason"]
            bar.reasons[reason] = bar.reasons.get(reason, 0) + 1
    return bars
