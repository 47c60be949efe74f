"""Shelter check-ins: which shelter, when (in clear, for counts per shelter); the resident
only by their blind row reference, their party size and needs sealed under their key."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import Connection, LargeBinary, String
from sqlmodel import Field, SQLModel

from broker.store.bulk import insert_many
from broker.store.projections.projection import Projection
from broker.store.projections.sealing import REF_LENGTH, BatchKeys
from broker.store.projections.timestamps import UtcDateTime, parse_time
from contract.cloudevents import CloudEvent


class ShelterCheckIn(SQLModel, table=True):
    """One resident's check-in at a shelter. Sealed: party_size, needs."""

    __tablename__ = "bousai_check_ins"

    event_id: str = Field(primary_key=True, max_length=128)
    subject_ref: str = Field(sa_type=String(REF_LENGTH), index=True)
    shelter_id: str = Field(max_length=64)
    checked_in_at: datetime = Field(sa_type=UtcDateTime)
    sealed: bytes = Field(sa_type=LargeBinary)


_table = ShelterCheckIn.__table__  # type: ignore[attr-defined]


def project_bousai(conn: Connection, events: Sequence[CloudEvent], keys: BatchKeys) -> None:
    """Write check-in events to their table."""
    rows = []
    for e in events:
        key = keys[e.data["resident_id"]]  # the platform keys a resident's events by this field
        rows.append(
            {
                "event_id": e.id,
                "subject_ref": key.ref,
                "shelter_id": e.data["shelter_id"],
                "checked_in_at": parse_time(e.data["checked_in_at"]),
                "sealed": key.seal(
                    {"party_size": e.data["party_size"], "needs": e.data.get("needs", [])}
                ),
            }
        )
    insert_many(conn, _table, rows)


#: What the domain's declaration names: the projector, its tables, and those about a person
#: (erasure deletes their rows).
PROJECTION = Projection(project_bousai, tables=(_table,), subject_tables=(_table,))
