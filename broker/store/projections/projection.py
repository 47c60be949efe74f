"""What a domain's projection is: the function that writes its events and the tables it owns.

A domain names its projection in its declaration (``contract.domains.Domain.projection``,
``module:attribute``); ``broker.store.projections`` finds it there, for built-in and plug-in
domains alike.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from sqlalchemy import Connection, Table

from broker.store.projections.sealing import BatchKeys
from contract.cloudevents import CloudEvent

#: Writes one batch of a domain's events (validated, new, in bus order) inside the caller's tx.
Projector = Callable[[Connection, Sequence[CloudEvent], BatchKeys], None]


@dataclass(frozen=True, slots=True)
class Projection:
    """One domain's projection."""

    #: Writes the domain's events.
    project: Projector
    #: Every table it writes (created with the store when missing).
    tables: tuple[Table, ...]
    #: Those of its tables whose rows are about one person, named by ``subject_ref``: erasure
    #: deletes them.
    subject_tables: tuple[Table, ...] = ()

    def __post_init__(self) -> None:
        strays = [t.name for t in self.subject_tables if t not in self.tables]
        if strays:
            raise ValueError(f"subject tables {', '.join(strays)} are not among the tables")
        unnamed = [t.name for t in self.subject_tables if "subject_ref" not in t.c]
        if unnamed:
            raise ValueError(
                f"subject tables {', '.join(unnamed)} have no subject_ref column; erasure "
                "finds a person's rows by it"
            )
