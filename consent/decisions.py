"""The decision point: may this partner read this category of this subject's data, for this
purpose, now? Default deny; every answer carries a reason and the consent id, and is recorded.

These are the rules (``DecisionPoint._judge``, and ``check_purpose``: the one purpose approval
of every read path). A denial is either *refused* (the partner asked for the category, or its
consent covers it, and was denied) or *withheld* (a category the partner did not name, of a
view it read as a whole, that its consent never covered): ``Outcome``, decided in ``_judge``.
What they judge comes from ``consent.decision_cache`` (partners with their approved purposes,
each subject's current consents), which every consent change, in this process or another,
keeps true from the next request. Expiry and validity are compared with the clock at decision
time: nothing needs a background job.

Nothing here takes a role, a scope or an admin flag: no caller can override a refusal.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, NamedTuple

from prometheus_client import Counter
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from consent.catalogue import Catalogue
from consent.decision_cache import ConsentCache, CurrentConsent
from consent.errors import (
    PartnerNotRegisteredError,
    PurposeRequiredError,
    ReadNotApprovedError,
    UnknownPurposeError,
)
from consent.model import ConsentStatus

log = logging.getLogger(__name__)


class DecisionReason(StrEnum):
    """Why a decision went the way it did (the first failing check, in this order)."""

    PURPOSE_UNKNOWN = "purpose_unknown"
    CATEGORY_UNKNOWN = "category_unknown"
    PARTNER_UNKNOWN = "partner_unknown"
    PURPOSE_NOT_APPROVED = "purpose_not_approved"
    NOT_PERSONAL = "not_personal"  # allowed: a public category needs no consent
    NO_CONSENT = "no_consent"
    OWNER_CONSENT_MISSING = "owner_consent_missing"  # no consent of the owner covers it
    REVOKED = "revoked"
    EXPIRED = "expired"
    NOT_YET_VALID = "not_yet_valid"
    PAUSED = "paused"
    CATEGORY_NOT_COVERED = "category_not_covered"
    OUTSIDE_DATA_RANGE = "outside_data_range"
    UNAVAILABLE = "unavailable"  # the store could not be read: deny
    ALLOWED = "allowed"


class Outcome(StrEnum):
    """What a decision was, for the auditor: allowed, refused, or withheld.

    *Refused*: the partner asked for the data and was denied (revoked, paused or expired
    consent, purpose not approved, a category it named and has no consent for...): what an
    auditor looks at. *Withheld*: a category of a view the partner read as a whole, which its
    consent never covered; nothing was asked for, nothing was given: an ordinary read.
    """

    ALLOWED = "allowed"
    REFUSED = "refused"
    WITHHELD = "withheld"


class Decision(NamedTuple):
    """One answer of the decision point, as recorded for the audit log.

    Immutable; a NamedTuple because building a frozen dataclass costs about four times as
    much, and one is built on every read.
    """

    allowed: bool
    reason: DecisionReason
    consent_id: str | None
    partner: str
    purpose: str
    category: str
    subject: str
    decided_at: datetime
    #: When allowed under a consent with a data time range, only data of [data_from, data_to)
    #: may be read: the caller restricts its query to it.
    data_from: datetime | None = None
    data_to: datetime | None = None
    #: Denied as not part of the consent, without being asked for (see ``Outcome``).
    withheld: bool = False

    @property
    def outcome(self) -> Outcome:
        """Allowed, refused or withheld."""
        if self.allowed:
            return Outcome.ALLOWED
        return Outcome.WITHHELD if self.withheld else Outcome.REFUSED


DecisionRecorder = Callable[[Decision], None]

#: Allowed decisions' reasons; every other reason is a refusal, or (this one) withheld.
_ALLOWING = frozenset({DecisionReason.ALLOWED, DecisionReason.NOT_PERSONAL})
_WITHHOLDING = DecisionReason.CATEGORY_NOT_COVERED
#: The ``result`` label of each outcome in tsunagu_consent_decisions_total.
RESULT_LABEL = {Outcome.ALLOWED: "allow", Outcome.REFUSED: "deny", Outcome.WITHHELD: "withhold"}
DECISIONS = Counter(
    "tsunagu_consent_decisions",
    "Consent decisions, by result (allow, deny: refused, withhold: not part of the consent "
    "and not asked for) and reason",
    ["result", "reason"],
)
# A Counter, not a count kept aside, so that several API processes (prometheus-client's
# multiprocess mode) add up in /metrics. Its children are made once (labels() costs ~1 µs on
# a path that answers in ~2 µs), so every (result, reason) pair exists, and has a rate, from
# the start.
_COUNTS: dict[tuple[Outcome, DecisionReason], Any] = {
    (outcome, reason): DECISIONS.labels(RESULT_LABEL[outcome], reason.value)
    for outcome, reason in [
        (Outcome.ALLOWED if r in _ALLOWING else Outcome.REFUSED, r) for r in DecisionReason
    ]
    + [(Outcome.WITHHELD, _WITHHOLDING)]
}


class DecisionPoint:
    """``decide(partner, purpose, category, subject)``: the only way to read personal data."""

    def __init__(
        self,
        engine: Engine,
        catalogue: Catalogue | None = None,
        *,
        on_decision: DecisionRecorder | None = None,
        max_age_s: float | None = 60.0,
        max_subjects: int = 100_000,
        caching: bool = True,
    ) -> None:
        self.engine = engine
        self.catalogue = catalogue or Catalogue.load()
        self.on_decision = on_decision
        self._purposes = frozenset(self.catalogue.purposes)
        self._categories = frozenset(self.catalogue.categories)
        self._public = self.catalogue.public_categories()
        self._owner_only = self.catalogue.owner_categories()
        self.cache = ConsentCache(
            engine, max_age_s=max_age_s, max_subjects=max_subjects, caching=caching
        )

    # -- deciding ------------------------------------------------------------------------------

    def decide(
        self,
        partner: str,
        purpose: str,
        category: str,
        subject: str,
        at: datetime | None = None,
        *,
        data_at: datetime | None = None,
        asked: bool = True,
    ) -> Decision:
        """Allow or deny, with the reason and the consent id; recorded via ``on_decision``.

        ``at`` judges the current consents as of that moment (default: now); ``data_at`` is
        the time of the data to be read, checked against the consent's data range. ``asked``
        is false for a category the partner did not name (it read a view as a whole): one
        its consent does not cover is then withheld, not refused.
        """
        decision = self._evaluate(
            partner, purpose, category, subject, at, data_at=data_at, asked=asked
        )
        _COUNTS[decision.outcome, decision.reason].inc()
        recorder = self.on_decision
        if recorder is not None:
            recorder(decision)
        return decision

    def _evaluate(
        self,
        partner: str,
        purpose: str,
        category: str,
        subject: str,
        at: datetime | None = None,
        *,
        data_at: datetime | None = None,
        asked: bool = True,
    ) -> Decision:
        """The decision, not yet recorded (private: every decision must be recorded)."""
        now = time.time() if at is None else at.timestamp()
        try:
            reason, c = self._judge(partner, purpose, category, subject, now, data_at, asked)
        except SQLAlchemyError:
            log.exception("consent decision: the store could not be read; denying")
            reason, c = DecisionReason.UNAVAILABLE, None
        allowed = reason is DecisionReason.ALLOWED or reason is DecisionReason.NOT_PERSONAL
        return Decision(
            allowed,
            reason,
            None if c is None else c.consent_id,
            partner,
            purpose,
            category,
            subject,
            datetime.fromtimestamp(now, UTC) if at is None else at,
            c.data_from if allowed and c is not None else None,
            c.data_to if allowed and c is not None else None,
            # What _judge answers for a category the partner did not name and its consent
            # does not cover (asked for, it is a refusal).
            not asked and reason is _WITHHOLDING,
        )

    def _judge(
        self,
        partner: str,
        purpose: str,
        category: str,
        subject: str,
        now: float,
        data_at: datetime | None,
        asked: bool = True,
    ) -> tuple[DecisionReason, CurrentConsent | None]:
        """The reason, and the current consent it is about (if any).

        A category the partner did not name (``asked`` false) and its consent never covered is
        ``CATEGORY_NOT_COVERED`` whatever the consent's state: it was withheld, not refused.
        Named, or covered by the consent, it is judged in full: a revoked, paused or expired
        consent refuses what it covered; no consent at all refuses everything.
        """
        if purpose not in self._purposes:
            return DecisionReason.PURPOSE_UNKNOWN, None
        if category not in self._categories:
            return DecisionReason.CATEGORY_UNKNOWN, None
        approved = self.cache.approved(partner)
        if approved is None:
            return DecisionReason.PARTNER_UNKNOWN, None
        if purpose not in approved:
            return DecisionReason.PURPOSE_NOT_APPROVED, None
        if category in self._public:
            return DecisionReason.NOT_PERSONAL, None
        owner_only = category in self._owner_only
        c = self.cache.current(subject, partner, purpose)
        if c is None:
            missing = (
                DecisionReason.OWNER_CONSENT_MISSING if owner_only else DecisionReason.NO_CONSENT
            )
            return missing, None
        if not asked and not owner_only and category not in c.categories:
            return _WITHHOLDING, c
        if c.status == ConsentStatus.REVOKED:
            return DecisionReason.REVOKED, c
        if now >= c.expires_at:
            return DecisionReason.EXPIRED, c
        if now < c.valid_from:
            return DecisionReason.NOT_YET_VALID, c
        if c.status == ConsentStatus.PAUSED:
            return DecisionReason.PAUSED, c
        if owner_only and (category not in c.categories or not c.owner):
            # For owner details, "not covered" is exactly "the owner's consent is missing".
            return DecisionReason.OWNER_CONSENT_MISSING, c
        if category not in c.categories:
            return DecisionReason.CATEGORY_NOT_COVERED, c
        if data_at is not None and (
            (c.data_from is not None and data_at < c.data_from)
            or (c.data_to is not None and data_at >= c.data_to)
        ):
            return DecisionReason.OUTSIDE_DATA_RANGE, c
        return DecisionReason.ALLOWED, c

    def check_purpose(self, partner: str, purpose: str | None) -> str:
        """``purpose``, if it is in the catalogue and approved for ``partner`` now; else the
        partner's read is refused: the one purpose check of every read path (views, statistics,
        vacant houses, through ``broker.api.reads``), fresh in every process (``sync`` first:
        a withdrawal committed by another process holds from the next request, whether or
        not the bus has brought it yet)."""
        if purpose is None:
            raise PurposeRequiredError(
                "a partner names the purpose of its read: ?purpose=<a purpose approved for you>"
            )
        self.cache.sync()
        if purpose not in self._purposes:
            raise UnknownPurposeError(
                f"purpose {purpose!r} is not in the purpose catalogue: name one of "
                f"{', '.join(sorted(self._purposes))}"
            )
        approved = self.cache.approved(partner)
        if approved is None:
            raise PartnerNotRegisteredError(
                f"partner {partner} is not registered with the platform: ask the municipality "
                "to register it"
            )
        if purpose not in approved:
            raise ReadNotApprovedError(
                f"partner {partner} is not approved for purpose {purpose}: read for a purpose "
                "approved for you, or ask the municipality to approve this one"
            )
        return purpose
