"""Local-currency projections: top-ups, payments at merchants, conversions of health points.

In clear: kind, amount, merchant category, town, points and time (what statistics group by);
sealed under the resident's key: wallet, merchant id and merchant name (where they shop).
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
from broker.store.projections.timestamps import UtcDateTime, parse_time
from contract.cloudevents import CloudEvent


class CurrencyTransaction(SQLModel, table=True):
    """One wallet movement of a resident.

    Sealed: wallet_id, merchant_id, merchant_name.
    """

    __tablename__ = "currency_transactions"
    __table_args__ = (
        Index("ix_currency_subject_occurred", "subject_ref", "occurred_at"),
        Index("ix_currency_category_occurred", "merchant_category", "occurred_at"),
    )

    event_id: str = Field(primary_key=True, max_length=128)
    subject_ref: str = Field(sa_type=String(REF_LENGTH))
    kind: str = Field(max_length=16)  # topped_up | payment | conversion
    amount_jpy: int
    merchant_category: str | None = Field(default=None, max_length=32)
    town: str | None = Field(default=None, max_length=32)
    points: int | None = None
    occurred_at: datetime = Field(sa_type=UtcDateTime)
    sealed: bytes = Field(sa_type=LargeBinary)


_table = CurrencyTransaction.__table__  # type: ignore[attr-defined]

_KIND_AND_TIME = {
    "currency.wallet.topped_up": ("topped_up", "topped_up_at"),
    "currency.payment.settled": ("payment", "settled_at"),
    "currency.points.converted": ("conversion", "converted_at"),
}


def _row(e: CloudEvent, keys: BatchKeys) -> dict[str, Any]:
    d = e.data
    kind, time_field = _KIND_AND_TIME[e.type]
    key = keys[d["resident_id"]]
    return {
        "event_id": e.id,
        "subject_ref": key.ref,
        "kind": kind,
        "amount_jpy": d["amount_jpy"],
        "merchant_category": d.get("merchant_category"),
        "town": d.get("town"),
        "points": d.get("points"),
        "occurred_at": parse_time(d[time_field]),
        "sealed": key.seal(
            {
                "wallet_id": d["wallet_id"],
                "merchant_id": d.get("merchant_id"),
                "merchant_name": d.get("merchant_name"),
            }
        ),
    }


def project_currency(conn: Connection, events: Sequence[CloudEvent], keys: BatchKeys) -> None:
    """Write currency events to the transactions table."""
    rows = [_row(e, keys) for e in events]
    if rows:
        insert_many(conn, _table, rows)


#: Named by the domain's declaration (``contract.domains``).
PROJECTION = Projection(project_currency, tables=(_table,), subject_tables=(_table,))
