"""The local-currency connector's reader: the currency operator's transaction export, one CSV
whose ``kind`` column says what each row is:

- ``topup``: a resident paid money into a wallet → ``currency.wallet.topped_up``;
- ``payment``: a resident paid a merchant → ``currency.payment.settled``;
- ``conversion``: health points became currency → ``currency.points.converted``
  (``amount_jpy`` = floor(points × rate); computed when the cell is empty, checked when not).

Column formats: ``connectors/samples/README.md``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from typing import Any

from connectors.readers import (
    CsvSource,
    Fields,
    Row,
    Seen,
    iso,
    map_rows,
    numbered,
    read_csv,
)
from connectors.sdk.rows import EventDraft, RowError

__all__ = [
    "EVENT_TYPES",
    "PAYMENT_SETTLED",
    "POINTS_CONVERTED",
    "SOURCE",
    "WALLET_TOPPED_UP",
    "read_transactions_csv",
    "transaction_drafts",
]

SOURCE = "urn:tsunagu:connector:mitoyo-coin"
WALLET_TOPPED_UP = "currency.wallet.topped_up"
PAYMENT_SETTLED = "currency.payment.settled"
POINTS_CONVERTED = "currency.points.converted"
EVENT_TYPES: tuple[str, ...] = (WALLET_TOPPED_UP, PAYMENT_SETTLED, POINTS_CONVERTED)

KINDS = ("topup", "payment", "conversion")
METHODS = ("cash", "bank_account", "credit_card", "convenience_store", "payroll")
MERCHANT_CATEGORIES = (
    "grocery",
    "restaurant",
    "retail",
    "pharmacy",
    "fuel",
    "transport",
    "lodging",
    "medical",
    "services",
    "farm_direct",
    "other",
)

#: Columns every transactions export must have (each kind needs more: see the README).
TRANSACTION_REQUIRED = ("txn_id", "kind", "occurred_at", "wallet_id", "resident_id", "amount_jpy")
#: Every column the reader reads, in the documented order: common, topup, payment, conversion.
TRANSACTION_COLUMNS = (
    *TRANSACTION_REQUIRED,
    "bonus_jpy",
    "method",
    "place_name",
    "merchant_id",
    "merchant_name",
    "merchant_category",
    "town",
    "redemption_id",
    "programme_id",
    "programme_name",
    "points",
    "rate_jpy_per_point",
)


def transaction_drafts(rows: Iterable[Row]) -> Iterator[EventDraft | RowError]:
    """Currency drafts from transaction rows (first row = line 2)."""
    return _transactions(numbered(rows))


def read_transactions_csv(
    source: CsvSource, *, encoding: str = "utf-8-sig"
) -> Iterator[EventDraft | RowError]:
    """Currency drafts from the operator's transaction CSV."""
    return _transactions(read_csv(source, TRANSACTION_REQUIRED, encoding=encoding))


def _transactions(rows: Iterable[tuple[int, Row] | RowError]) -> Iterator[EventDraft | RowError]:
    seen = Seen()

    def convert(line: int, f: Fields) -> EventDraft:
        txn_id = f.record_id("txn_id")
        seen.once(f, "txn_id", txn_id, line)
        kind = f.choice("kind", KINDS)
        at = f.timestamp("occurred_at")
        wallet_id = f.record_id("wallet_id")
        resident_id = f.resident_id("resident_id")
        if kind == "topup":
            event_type, data = WALLET_TOPPED_UP, _topup(f, txn_id, wallet_id, resident_id)
            data["topped_up_at"] = iso(at)
        elif kind == "payment":
            event_type, data = PAYMENT_SETTLED, _payment(f, txn_id, wallet_id, resident_id)
            data["settled_at"] = iso(at)
        else:
            event_type, data = POINTS_CONVERTED, _conversion(f, txn_id, wallet_id, resident_id)
            data["converted_at"] = iso(at)
        return EventDraft(event_type, resident_id, data, txn_id, at, line)

    return map_rows(rows, convert)


def _topup(f: Fields, txn_id: str, wallet_id: str, resident_id: str) -> dict[str, Any]:
    data: dict[str, Any] = {
        "topup_id": txn_id,
        "wallet_id": wallet_id,
        "resident_id": resident_id,
        "amount_jpy": f.integer("amount_jpy", 1, 500_000),
    }
    if f.has("bonus_jpy"):
        data["bonus_jpy"] = f.integer("bonus_jpy", 0, 100_000)
    data["method"] = f.choice("method", METHODS)
    if f.has("place_name"):
        data["place_name"] = f.text("place_name")
    return data


def _payment(f: Fields, txn_id: str, wallet_id: str, resident_id: str) -> dict[str, Any]:
    return {
        "payment_id": txn_id,
        "wallet_id": wallet_id,
        "resident_id": resident_id,
        "merchant_id": f.merchant_id("merchant_id"),
        "merchant_name": f.text("merchant_name"),
        "merchant_category": f.choice("merchant_category", MERCHANT_CATEGORIES),
        "amount_jpy": f.integer("amount_jpy", 1, 1_000_000),
        "town": f.town("town"),
    }


def _conversion(f: Fields, txn_id: str, wallet_id: str, resident_id: str) -> dict[str, Any]:
    data: dict[str, Any] = {"conversion_id": txn_id}
    if f.has("redemption_id"):
        data["redemption_id"] = f.record_id("redemption_id")
    points = f.integer("points", 1, 1_000_000)
    rate = f.decimal("rate_jpy_per_point")
    if not 0 < rate <= 100:
        raise f.fail("rate_jpy_per_point", f"{rate} is not in (0, 100]")
    # Decimal, not float: 0.29 yen × 100 points is 29 yen, where float gives 28.999….
    amount = math.floor(rate * points)
    if amount > 1_000_000:
        raise f.fail("points", f"{points} points at {rate} yen is more than 1000000 yen")
    if f.has("amount_jpy"):
        given = f.integer("amount_jpy", 0, 1_000_000)
        if given != amount:
            raise f.fail(
                "amount_jpy", f"{given} is not floor(points × rate) = floor({points} × {rate})"
            )
    data |= {
        "resident_id": resident_id,
        "wallet_id": wallet_id,
        "programme_id": f.record_id("programme_id"),
    }
    if f.has("programme_name"):
        data["programme_name"] = f.text("programme_name")
    data |= {
        "points": points,
        "rate_jpy_per_point": int(rate) if rate == rate.to_integral_value() else float(rate),
        "amount_jpy": amount,
    }
    return data
