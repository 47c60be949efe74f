"""Health projections: points awarded (with the rule that gave them) and redeemed."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Index
from sqlmodel import Field, SQLModel

from broker.cloudevents import CloudEvent
from broker.store.bulk import insert_many
from broker.store.projections.timestamps import UtcDateTime, day_start_jst, parse_time


class HealthPoints(SQLModel, table=True):
    """One award (positive points) or redemption (negative points) of a resident."""

    __tablename__ = "health_points"
    __table_args__ = (Index("ix_health_resident_occurred", "resident_id", "occurred_at"),)

    event_id: str = Field(primary_key=True, max_length=128)
    resident_id: str = Field(max_length=64)
    programme_id: str = Field(max_length=64)
    kind: str = Field(max_length=16)  # awarded | redeemed
    points: int  # signed: a redemption is negative, so a sum is the balance
    reason: str | None = Field(default=None, max_length=32)
    rule_id: str | None = Field(default=None, max_length=64)
    steps: int | None = None
    checkup_kind: str | None = Field(default=None, max_length=64)
    reward: str | None = Field(default=None, max_length=64)
    occurred_at: datetime = Field(sa_type=UtcDateTime)


_table = HealthPoints.__table__  # type: ignore[attr-defined]


def _row(e: CloudEvent) -> dict[str, Any]:
    d = e.data
    common = {"event_id": e.id, "resident_id": d["resident_id"], "programme_id": d["programme_id"]}
    if e.type == "health.points.awarded":
        return {
            **common,
            "kind": "awarded",
            "points": d["points"],
            "reason": d["reason"],
            "rule_id": d["rule_id"],
            "steps": d.get("steps"),
            "checkup_kind": d.get("checkup_kind"),
            "reward": None,
            "occurred_at": day_start_jst(d["date"]),
        }
    return {
        **common,
        "kind": "redeemed",
        "points": -d["points"],
        "reason": None,
        "rule_id": None,
        "steps": None,
        "checkup_kind": None,
        "reward": d["reward"],
        "occurred_at": parse_time(d["redeemed_at"]),
    }


def project_health(conn: Connection, events: Sequence[CloudEvent]) -> None:
    """Write health events to the points table."""
    rows = [_row(e) for e in events]
    if rows:
        insert_many(conn, _table, rows)
