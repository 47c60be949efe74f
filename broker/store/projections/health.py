"""Health projections: points awarded (with the rule that gave them) and redeemed.

In clear: programme, kind, signed points, reason, age band and day (what balances and
statistics need); sealed under the resident's key: rule, steps, check-up kind, reward.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Index, LargeBinary, String
from sqlmodel import Field, SQLModel

from broker.store.bulk import insert_many
from broker.store.projections.projection import Projection
from broker.store.projections.sealing import REF_LENGTH, BatchKeys
from broker.store.projections.timestamps import UtcDateTime, day_start_jst, parse_time
from contract.cloudevents import CloudEvent


class HealthPoints(SQLModel, table=True):
    """One award (positive points) or redemption (negative points) of a resident.

    Sealed: rule_id, steps, checkup_kind, reward.
    """

    __tablename__ = "health_points"
    __table_args__ = (Index("ix_health_subject_occurred", "subject_ref", "occurred_at"),)

    event_id: str = Field(primary_key=True, max_length=128)
    subject_ref: str = Field(sa_type=String(REF_LENGTH))
    programme_id: str = Field(max_length=64)
    kind: str = Field(max_length=16)  # awarded | redeemed
    points: int  # signed: a redemption is negative, so a sum is the balance
    reason: str | None = Field(default=None, max_length=32)
    age_band: str | None = Field(default=None, max_length=32)  # optional in the event
    occurred_at: datetime = Field(sa_type=UtcDateTime)
    sealed: bytes = Field(sa_type=LargeBinary)


_table = HealthPoints.__table__  # type: ignore[attr-defined]


def _row(e: CloudEvent, keys: BatchKeys) -> dict[str, Any]:
    d = e.data
    key = keys[d["resident_id"]]
    if e.type == "health.points.awarded":
        kind, points, reason, at = "awarded", d["points"], d["reason"], day_start_jst(d["date"])
        sealed = {
            "rule_id": d["rule_id"],
            "steps": d.get("steps"),
            "checkup_kind": d.get("checkup_kind"),
            "reward": None,
        }
    else:
        kind, points, reason, at = "redeemed", -d["points"], None, parse_time(d["redeemed_at"])
        sealed = {"rule_id": None, "steps": None, "checkup_kind": None, "reward": d["reward"]}
    return {
        "event_id": e.id,
        "subject_ref": key.ref,
        "programme_id": d["programme_id"],
        "kind": kind,
        "points": points,
        "reason": reason,
        "age_band": d.get("age_band"),
        "occurred_at": at,
        "sealed": key.seal(sealed),
    }


def project_health(conn: Connection, events: Sequence[CloudEvent], keys: BatchKeys) -> None:
    """Write health events to the points table."""
    rows = [_row(e, keys) for e in events]
    if rows:
        insert_many(conn, _table, rows)


#: Named by the domain's declaration (``contract.domains``).
PROJECTION = Projection(project_health, tables=(_table,), subject_tables=(_table,))
