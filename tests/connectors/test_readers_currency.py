"""The local-currency connector's reader: one transaction export whose ``kind`` column makes
each row a top-up, a payment or a conversion of health points.
"""

from __future__ import annotations

from collections import Counter

import pytest

from connectors import currency
from connectors.currency import TRANSACTION_COLUMNS
from connectors.sdk.rows import RowError
from tests.connectors.test_readers_csv import SAMPLES, schema_problems, split

CURRENCY = SAMPLES / "currency"


def row(**cells: str) -> dict[str, str]:
    return dict.fromkeys(TRANSACTION_COLUMNS, "") | cells


def conversion(**cells: str) -> dict[str, str]:
    return (
        row(
            txn_id="cv-1",
            kind="conversion",
            occurred_at="2025-06-15T14:20:03+09:00",
            wallet_id="w-00012873",
            resident_id="res-a1b2c3d4",
            programme_id="mitoyo-kenko-2025",
            points="1000",
            rate_jpy_per_point="1",
        )
        | cells
    )


def test_the_sample_export_gives_each_kind_its_event() -> None:
    drafts, errors = split(currency.read_transactions_csv(CURRENCY / "transactions.csv"))
    assert errors == []
    assert schema_problems(drafts) == []
    assert Counter(d.event_type for d in drafts) == {
        "currency.wallet.topped_up": 2,
        "currency.payment.settled": 2,
        "currency.points.converted": 2,
    }
    assert all(d.subject == d.data["resident_id"] for d in drafts)
    topup, _, payment, kanji_town, _, computed = drafts
    assert topup.data["topup_id"] == topup.natural_key == "tu-20250601-88213"
    assert (topup.data["amount_jpy"], topup.data["bonus_jpy"]) == (10000, 1000)
    assert payment.data["merchant_category"] == "restaurant"
    assert payment.data["settled_at"] == "2025-06-12T12:34:56+09:00"
    assert (kanji_town.data["amount_jpy"], kanji_town.data["town"]) == (3480, "takase")
    assert computed.data["amount_jpy"] == 500  # empty cell: floor(500 × 1)
    assert computed.data["redemption_id"] == "rd-20250616-0001"


def test_bad_rows_are_named_and_the_good_rows_still_come() -> None:
    drafts, errors = split(
        currency.read_transactions_csv(CURRENCY / "transactions_with_errors.csv")
    )
    assert [e.line for e in errors] == [3, 4]
    assert errors[0].reason.startswith("column merchant_category: 'bookstore' is not one of")
    assert errors[1] == RowError(
        4, "column amount_jpy: 999 is not floor(points × rate) = floor(1000 × 1)"
    )
    assert [d.line for d in drafts] == [2, 5]


@pytest.mark.parametrize(
    ("points", "rate", "amount"),
    [("100", "0.29", 29), ("1000", "1", 1000), ("333", "1.5", 499), ("7", "0.1", 0)],
)
def test_a_conversion_credits_floor_of_points_times_rate_in_exact_decimals(
    points: str, rate: str, amount: int
) -> None:
    [draft] = list(
        currency.transaction_drafts([conversion(points=points, rate_jpy_per_point=rate)])
    )
    assert not isinstance(draft, RowError)
    assert draft.data["amount_jpy"] == amount
    assert schema_problems([draft]) == []


def test_a_conversion_rate_must_be_positive() -> None:
    [error] = list(currency.transaction_drafts([conversion(rate_jpy_per_point="0")]))
    assert error == RowError(2, "column rate_jpy_per_point: 0 is not in (0, 100]")


@pytest.mark.parametrize(
    ("cells", "reason"),
    [
        ({"kind": "refund"}, "column kind: 'refund' is not one of topup, payment, conversion"),
        ({"kind": "topup", "amount_jpy": "5000"}, "column method: required but empty"),
        ({"kind": "payment", "amount_jpy": "500"}, "column merchant_id: required but empty"),
        ({"kind": "conversion"}, "column points: required but empty"),
    ],
)
def test_each_kind_needs_its_own_columns(cells: dict[str, str], reason: str) -> None:
    base = row(
        txn_id="t1",
        occurred_at="2025-06-12T10:00:00+09:00",
        wallet_id="w-1",
        resident_id="res-a1b2c3d4",
    )
    assert list(currency.transaction_drafts([base | cells])) == [RowError(2, reason)]
