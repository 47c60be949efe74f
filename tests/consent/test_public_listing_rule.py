"""The property rule's public side: which listings the public (open data) may see at all, and
which of their fields."""

from __future__ import annotations

from dataclasses import replace

import pytest

from broker.store.projections.vacant_house import LISTED_FOR_ADMINS_ONLY, LISTED_FOR_PUBLIC
from consent.catalogue import Catalogue
from consent.property_rule import (
    LISTING_REGISTERED,
    PROPERTY_DETAILS,
    public_listing_fields,
    shown_to_public,
)
from contract.vacant_house_bank import STANDARD_NAMES
from tests.consent.world import CATALOGUE

#: The standard's fields that identify the owner, as the catalogue gives its reasons for them.
OWNER_IDENTIFYING = (
    "fullAddress",
    "cityBlock",
    "latitude",
    "longitude",
    "contactPointName",
    "contactPointPhoneNumber",
    "remarks",
)


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


def test_the_public_sees_every_standard_field_but_those_that_identify_the_owner() -> None:
    public = public_listing_fields(CATALOGUE)
    assert [n for n in STANDARD_NAMES if n not in public] == list(OWNER_IDENTIFYING)


def test_a_field_the_owner_details_name_is_never_public_even_if_the_listing_names_it() -> None:
    details = CATALOGUE.category(PROPERTY_DETAILS)
    fields = dict(details.fields)
    fields[LISTING_REGISTERED] = (*fields[LISTING_REGISTERED], "/owner_details/floorPlan")
    stricter = Catalogue(
        CATALOGUE.purposes,
        {**CATALOGUE.categories, PROPERTY_DETAILS: replace(details, fields=fields)},
    )
    assert "floorPlan" in public_listing_fields(CATALOGUE)
    assert "floorPlan" not in public_listing_fields(stricter)
