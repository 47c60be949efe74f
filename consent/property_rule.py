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

from consent.decisions import Decision, DecisionPoint
from consent.ids import CategoryCode

PROPERTY_DETAILS = CategoryCode("property.details")
PROPERTY_LISTING = CategoryCode("property.listing")

#: The standard's publication status of a listing for the bank's administrators alone.
ADMIN_ONLY = "管理者のみ閲覧"


def listing_shown(publication: str | None) -> bool:
    """The property rule for a whole listing: shown to partners and the public unless its
    bank marked it 管理者のみ閲覧 (a v1 listing, without the status, was published)."""
    return publication != ADMIN_ONLY


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


#: 空き家バンクへの掲載 (the standard model's ``vacantHouseListing``): the two values.
LISTED_FOR_PUBLIC = "一般へ公開"
LISTED_FOR_ADMINS_ONLY = "管理者のみ閲覧"

#: A listing status under which the bank no longer shows it (掲載取下げ).
WITHDRAWN = "withdrawn"


def shown_to_public(listing_mark: str | None, status: str | None) -> bool:
    """The public side of the property rule: may a listing's public part be published to
    anyone (open data)? Never when marked ``管理者のみ閲覧`` or withdrawn from the bank.

    ``listing_mark`` is the listing's 空き家バンクへの掲載 as the store keeps it. A listing of
    schema v1 carries none: that schema's ``public`` part is the public listing by contract, so
    only an explicit 管理者のみ閲覧 (or any value this rule does not know) keeps it back.
    """
    if listing_mark not in (None, LISTED_FOR_PUBLIC):
        return False
    return status != WITHDRAWN
