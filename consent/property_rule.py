"""The property rule (dual-residence law, 2024): a vacant house's owner-identifying details
(exact address, lot number, owner name and contact: category ``property.details``) go to a
partner only with an active consent of *that house's owner* for *that partner and purpose*.
Without it the partner gets the public listing only (``property.listing``). Which fields
identify the owner is the catalogue's split (``categories.json``: ``property.details``, with
the reason for each of the standard model's owner-identifying fields in ``field_reasons``).

And a listing its bank marked 管理者のみ閲覧 (the standard model's ``vacantHouseListing``) is
never shown to a partner or the public at all, with or without any consent (``listing_shown``).

The owner is the listing's ``owner_id`` as the store holds it, never an id the partner
supplies. There is deliberately no parameter for a role, a scope, an admin token or any
other override: nothing can lift this refusal, and code that wants owner details has no
other way to ask (``DecisionPoint.decide`` applies the same rule to ``property.details``).
"""

from __future__ import annotations

from datetime import datetime

from broker.store.projections.vacant_house import LISTED_FOR_PUBLIC, WITHDRAWN
from consent.catalogue import Catalogue
from consent.decisions import Decision, DecisionPoint
from consent.ids import CategoryCode

PROPERTY_DETAILS = CategoryCode("property.details")
PROPERTY_LISTING = CategoryCode("property.listing")
#: The event whose fields the catalogue splits into the public listing and the owner details.
LISTING_REGISTERED = "vacant_house.listing.registered"


def listing_shown(publication: str | None) -> bool:
    """The property rule for a whole listing: shown to partners and the public only when its
    bank published it (一般へ公開), never when marked 管理者のみ閲覧 or any value this rule does
    not know. A v1 listing carries no status: that schema's ``public`` part is the public
    listing by contract."""
    return publication is None or publication == LISTED_FOR_PUBLIC


def property_details_allowed(
    decision_point: DecisionPoint,
    partner: str,
    purpose: str,
    listing_owner_id: str,
    *,
    at: datetime | None = None,
) -> Decision:
    """The property rule: may ``partner`` see the owner details of a listing owned by
    ``listing_owner_id``, for ``purpose``? Recorded like every decision.

    Allowed only under an active, unexpired consent of that owner, given as owner, for that
    partner and purpose and covering ``property.details``, with the partner approved for the
    purpose. Refused with ``owner_consent_missing`` when the owner has no such consent (none
    at all, or one not covering the details), or with the specific reason (``revoked``,
    ``expired``, ``paused``, ``purpose_not_approved``, ...) when that says more.
    """
    return decision_point.decide(partner, purpose, PROPERTY_DETAILS, listing_owner_id, at=at)


def shown_to_public(listing_mark: str | None, status: str | None) -> bool:
    """The public side of the property rule: may a listing's public part be published to
    anyone (open data)? Only a listing shown at all (``listing_shown``) and not withdrawn from
    the bank."""
    return listing_shown(listing_mark) and status != WITHDRAWN


def public_listing_fields(catalogue: Catalogue) -> tuple[str, ...]:
    """The public side of the property rule, field by field: the fields of a listing's public
    part anyone may see, in the catalogue's order.

    Those the public listing (``property.listing``) names under ``/public/``, and never one
    whose name the owner details (``property.details``) give to a field that identifies the
    owner: a field in neither, or in both, is not public.
    """

    def pointers(code: CategoryCode) -> tuple[str, ...]:
        return catalogue.category(code).fields.get(LISTING_REGISTERED, ())

    identifying = {pointer.rsplit("/", 1)[-1] for pointer in pointers(PROPERTY_DETAILS)}
    public = []
    for pointer in pointers(PROPERTY_LISTING):
        name = pointer.removeprefix("/public/")
        if pointer.startswith("/public/") and "/" not in name and name not in identifying:
            public.append(name)
    return tuple(public)
