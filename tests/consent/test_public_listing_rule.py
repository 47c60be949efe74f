"""The property rule's public side: which listings the public (open data) may see at all."""

from __future__ import annotations

import pytest

from broker.store.projections.vacant_house import LISTED_FOR_ADMINS_ONLY, LISTED_FOR_PUBLIC
from consent.property_rule import shown_to_public


def test_a_listing_open_to_the_public_is_shown() -> None:
    assert shown_to_public(LISTED_FOR_PUBLIC, "available")


def test_a_listing_of_schema_v1_without_a_mark_is_shown() -> None:
    # Its `public` part was the public listing by that schema's contract.
    assert shown_to_public(None, "available")


@pytest.mark.parametrize("status", ["available", "under_negotiation", "preparing", None])
def test_an_admin_only_listing_is_never_shown_whatever_its_status(status: str | None) -> None:
    assert not shown_to_public(LISTED_FOR_ADMINS_ONLY, status)


def test_a_mark_the_rule_does_not_know_is_not_shown() -> None:
    assert not shown_to_public("公開", "available")


def test_a_withdrawn_listing_is_not_shown_even_when_open_to_the_public() -> None:
    assert not shown_to_public(LISTED_FOR_PUBLIC, "withdrawn")
