"""What ingest records in the audit log: each batch per topic, and each rejected event.

Counts and ids of events and connectors only: an event's data (and the validator's message,
which may quote it) never enters the log.
"""

from __future__ import annotations

import collections
from collections.abc import Sequence

from broker.audit import EntryKind, NewEntry
from contract.bus import Record
from contract.cloudevents import CloudEvent
from contract.deadletter import Rejection, origin_of


def batch_entries(
    records: Sequence[Record],
    accepted: Sequence[tuple[str, CloudEvent]],
    rejections: Sequence[tuple[Record, Rejection]],
    fresh_ids: set[str],
    erased_ids: set[str],
    held_ids: frozenset[str] | set[str] = frozenset(),
) -> list[NewEntry]:
    """The audit entries of one batch: a ``publish_batch`` per topic, a ``dead_letter`` per
    rejected record. Counts, ids of events and connectors, never an event's data."""
    entries = [
        dead_letter_entry(record.topic, rejection, origin_of(record))
        for record, rejection in rejections
    ]
    by_topic: dict[str, list[Record]] = {}
    for record in records:
        by_topic.setdefault(record.topic, []).append(record)
    for topic, topic_records in by_topic.items():
        events = [e for t, e in accepted if t == topic]
        fresh = [
            e
            for e in events
            if e.id in fresh_ids and e.id not in erased_ids and e.id not in held_ids
        ]
        fields: dict[str, object] = {
            "topic": topic,
            "events": len(fresh),
            "duplicates": sum(1 for e in events if e.id not in fresh_ids),
            "dead_letters": len(topic_records) - len(events),
            "offsets": offset_ranges(topic_records),
            "sources": dict(collections.Counter(e.source for e in fresh)),
            "types": dict(collections.Counter(e.type for e in fresh)),
        }
        n_erased = sum(1 for e in events if e.id in erased_ids)
        if n_erased:
            fields["erased"] = n_erased
        held = [e for e in events if e.id in held_ids]
        if held:
            # Counted per connector source, as the flow map draws them; never whose.
            fields["held"] = len(held)
            fields["held_sources"] = dict(collections.Counter(e.source for e in held))
        entries.append(NewEntry(EntryKind.PUBLISH_BATCH, "ingest", fields))
    return entries


def dead_letter_entry(
    topic: str, rejection: Rejection, where: str, actor: str = "ingest"
) -> NewEntry:
    """The audit entry of one rejected event: where it was bound, why, what refused it, and
    who sent it when a verified token says so (then the actor too)."""
    fields: dict[str, object] = {"topic": topic, "reason": rejection.reason.value, "origin": where}
    for name, value in (
        ("event_id", rejection.event_id),
        ("source", rejection.source),
        ("sender", rejection.sender),
        ("path", rejection.path),
        ("schema", rejection.schema),
    ):
        if value:
            fields[name] = value
    return NewEntry(EntryKind.DEAD_LETTER, rejection.sender or actor, fields)


def offset_ranges(records: Sequence[Record]) -> list[str]:
    """The offsets ``records`` cover, as ``partition:first-last`` per partition."""
    spans: dict[int, tuple[int, int]] = {}
    for r in records:
        low, high = spans.get(r.partition, (r.offset, r.offset))
        spans[r.partition] = (min(low, r.offset), max(high, r.offset))
    return [f"{p}:{low}-{high}" for p, (low, high) in sorted(spans.items())]
