"""The decision point: may this partner read this category of this subject's data, for this
purpose, now? Default deny; every answer carries a reason and the consent id, and is recorded.

Answers come from an in-process cache (partners with their approved purposes; each subject's
current consents), filled lazily from the store. A change drops the entries it touches: the
process making it drops them synchronously (``ConsentService`` hooks), every other process
when its ``ConsentChangeListener`` reads the change from ``consent.changes``. The next
decision reloads from the store, so a revocation holds on the next request in every process.
Expiry and validity are compared with the clock at decision time: nothing needs a background
job. ``max_age_s`` bounds how long an entry is trusted even if a change never arrives.

Nothing here takes a role, a scope or an admin flag: no caller can override a refusal.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import NamedTuple, TypeVar

from prometheus_client.core import REGISTRY, CounterMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import Engine, select
from sqlalchemy.exc import SQLAlchemyError

from consent import epoch
from consent.catalogue import Catalogue
from consent.changes import ChangeScope, ConsentChange
from consent.errors import (
    PartnerNotRegisteredError,
    PurposeRequiredError,
    ReadNotApprovedError,
    UnknownPurposeError,
)
from consent.ids import SUBJECT_ID
from consent.model import Consent, ConsentStatus, Partner, PartnerPurpose, SubjectKind

log = logging.getLogger(__name__)

_partners = Partner.__table__  # type: ignore[attr-defined]
_approvals = PartnerPurpose.__table__  # type: ignore[attr-defined]
_consents = Consent.__table__  # type: ignore[attr-defined]


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


DecisionRecorder = Callable[[Decision], None]

#: Allowed decisions' reasons; every other reason is a refusal.
_ALLOWING = frozenset({DecisionReason.ALLOWED, DecisionReason.NOT_PERSONAL})
# Decisions per reason, for tsunagu_consent_decisions_total. A labelled Counter's inc() costs
# ~0.3 µs (a lock) on a path that answers in ~2 µs; next() on itertools.count is one C call,
# atomic under the GIL (``d[k] += 1`` is not: two threads can both read, both store +1).
_COUNTS: dict[DecisionReason, itertools.count[int]] = {r: itertools.count() for r in DecisionReason}


class _DecisionCounts(Collector):
    """Exposes ``_COUNTS`` as tsunagu_consent_decisions_total{result,reason}."""

    def collect(self) -> Iterator[Metric]:
        """Every (result, reason) pair, zeros included, so rates exist before a first refusal."""
        family = CounterMetricFamily(
            "tsunagu_consent_decisions",
            "Consent decisions, by result (allow/deny) and reason",
            labels=["result", "reason"],
        )
        for reason, counter in _COUNTS.items():
            result = "allow" if reason in _ALLOWING else "deny"
            family.add_metric([result, reason.value], _current(counter))
        yield family


def _current(counter: itertools.count[int]) -> int:
    """How often ``next`` was called on ``counter`` (itertools.count shows it only in its repr)."""
    return int(repr(counter)[len("count(") : -1])


REGISTRY.register(_DecisionCounts())


@dataclass(frozen=True, slots=True)
class _Current:
    """A current consent, reduced to what decisions compare (times as POSIX seconds)."""

    consent_id: str
    status: str
    owner: bool
    categories: frozenset[str]
    valid_from: float
    expires_at: float
    data_from: datetime | None
    data_to: datetime | None


_Key = tuple[str, str]  # (partner, purpose)
_T = TypeVar("_T")


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
        self.max_age_s = max_age_s
        self.max_subjects = max_subjects
        self._purposes = frozenset(self.catalogue.purposes)
        self._categories = frozenset(self.catalogue.categories)
        self._public = self.catalogue.public_categories()
        self._owner_only = self.catalogue.owner_categories()
        # partner -> (loaded at, approved purposes or None for an unknown partner)
        self._partners: dict[str, tuple[float, frozenset[str] | None]] = {}
        # subject -> (loaded at, current consent per (partner, purpose))
        self._subjects: dict[str, tuple[float, dict[_Key, _Current]]] = {}
        self._lock = threading.Lock()
        # Bumped by every invalidation: a load that raced with one is used once, not cached.
        self._generation = 0
        self._caching = caching
        self.loads = 0  # store reads (cache misses), for benchmarks and tests
        # The store's consent epoch up to which every change has been applied here, and the
        # epochs applied beyond a gap (a change from another process not heard of yet).
        self._applied = 0
        self._ahead: set[int] = set()
        try:
            with engine.connect() as conn:
                self._applied = epoch.current(conn)
        except SQLAlchemyError:
            pass  # a store that cannot be read: the first sync drops the cache, reads deny
        self.resyncs = 0  # caches dropped because a change had not arrived yet

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
    ) -> Decision:
        """Allow or deny, with the reason and the consent id; recorded via ``on_decision``.

        ``at`` judges the current consents as of that moment (default: now); ``data_at`` is
        the time of the data to be read, checked against the consent's data range.
        """
        decision = self._evaluate(partner, purpose, category, subject, at, data_at=data_at)
        next(_COUNTS[decision.reason])
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
    ) -> Decision:
        """The decision, not yet recorded (private: every decision must be recorded)."""
        now = time.time() if at is None else at.timestamp()
        try:
            reason, c = self._judge(partner, purpose, category, subject, now, data_at)
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
        )

    def _judge(
        self,
        partner: str,
        purpose: str,
        category: str,
        subject: str,
        now: float,
        data_at: datetime | None,
    ) -> tuple[DecisionReason, _Current | None]:
        """The reason, and the current consent it is about (if any)."""
        if purpose not in self._purposes:
            return DecisionReason.PURPOSE_UNKNOWN, None
        if category not in self._categories:
            return DecisionReason.CATEGORY_UNKNOWN, None
        approved = self._approved(partner)
        if approved is None:
            return DecisionReason.PARTNER_UNKNOWN, None
        if purpose not in approved:
            return DecisionReason.PURPOSE_NOT_APPROVED, None
        if category in self._public:
            return DecisionReason.NOT_PERSONAL, None
        owner_only = category in self._owner_only
        c = self._current(subject, partner, purpose)
        if c is None:
            missing = (
                DecisionReason.OWNER_CONSENT_MISSING if owner_only else DecisionReason.NO_CONSENT
            )
            return missing, None
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

    def check_purpose(self, partner: str, purpose: str | None) -> None:
        """Refuse a partner's read unless it names a ``purpose`` in the catalogue, approved
        for ``partner`` now: the one purpose check of every read path (views, statistics,
        vacant houses, through ``broker.api.reads``), fresh in every process (``sync`` first:
        a withdrawal committed by another process holds from the next request, whether or
        not the bus has brought it yet)."""
        if purpose is None:
            raise PurposeRequiredError(
                "a partner names the purpose of its read: ?purpose=<a purpose approved for you>"
            )
        self.sync()
        if purpose not in self._purposes:
            raise UnknownPurposeError(
                f"purpose {purpose!r} is not in the purpose catalogue: name one of "
                f"{', '.join(sorted(self._purposes))}"
            )
        approved = self._approved(partner)
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

    # -- the cache -----------------------------------------------------------------------------

    def _approved(self, partner: str) -> frozenset[str] | None:
        entry = self._partners.get(partner)
        if entry is None or self._stale(entry[0]):
            return self._load_partner(partner)
        return entry[1]

    def _current(self, subject: str, partner: str, purpose: str) -> _Current | None:
        entry = self._subjects.get(subject)
        if entry is None or self._stale(entry[0]):
            return self._load_subject(subject).get((partner, purpose))
        return entry[1].get((partner, purpose))

    def _stale(self, loaded_at: float) -> bool:
        return self.max_age_s is not None and time.monotonic() - loaded_at > self.max_age_s

    def _load_partner(self, partner: str) -> frozenset[str] | None:
        generation = self._generation
        with self.engine.connect() as conn:
            known = conn.execute(select(_partners.c.id).where(_partners.c.id == partner)).first()
            purposes: frozenset[str] | None = None
            if known is not None:
                purposes = frozenset(
                    conn.execute(
                        select(_approvals.c.purpose).where(
                            _approvals.c.partner_id == partner, _approvals.c.revoked_at.is_(None)
                        )
                    ).scalars()
                )
        self._store(self._partners, partner, (time.monotonic(), purposes), generation)
        return purposes

    def _load_subject(self, subject: str) -> dict[_Key, _Current]:
        generation = self._generation
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(_consents).where(
                    _consents.c.subject_id == subject, _consents.c.superseded_by.is_(None)
                )
            ).all()
        consents = {
            (r.partner_id, r.purpose): _Current(
                consent_id=r.id,
                status=r.status,
                owner=r.subject_kind == SubjectKind.OWNER,
                categories=frozenset(r.categories),
                valid_from=r.valid_from.timestamp(),
                expires_at=r.expires_at.timestamp(),
                data_from=r.data_from,
                data_to=r.data_to,
            )
            for r in rows
        }
        self._store(self._subjects, subject, (time.monotonic(), consents), generation)
        return consents

    def _store(self, cache: dict[str, _T], key: str, value: _T, generation: int) -> None:
        """Cache ``value`` unless an invalidation ran since its load began (it may be stale)."""
        with self._lock:
            self.loads += 1
            if not self._caching or generation != self._generation:
                return
            if key not in cache and len(cache) >= self.max_subjects:
                del cache[next(iter(cache))]  # oldest first: dicts keep insertion order
            cache[key] = value

    # -- invalidation --------------------------------------------------------------------------

    def apply(self, change: ConsentChange) -> None:
        """Drop what ``change`` makes stale (called by the service and by the listener)."""
        if change.scope is ChangeScope.SUBJECT:
            self.invalidate_subject(change.key)
        elif change.scope is ChangeScope.CONSENT:
            self.invalidate_consent(change.key)
        elif change.scope is ChangeScope.ERASURE:
            self.clear()
        elif change.scope is ChangeScope.PARTNER:
            self.invalidate_partner(change.key)
        if change.epoch is not None:
            with self._lock:
                self._ahead.add(change.epoch)
                while self._applied + 1 in self._ahead:
                    self._applied += 1
                    self._ahead.discard(self._applied)
                self._ahead = {e for e in self._ahead if e > self._applied}

    @property
    def applied_epoch(self) -> int:
        """The consent epoch up to which every change has been applied here."""
        return self._applied

    def sync(self) -> None:
        """Before a read: if the store has committed a change this process has not applied
        yet, forget everything, so this read decides from the store (see ``consent.epoch``).
        One single-row read; the bus still says which entries to drop in the usual case."""
        try:
            with self.engine.connect() as conn:
                now: int | None = epoch.current(conn)
        except SQLAlchemyError:
            now = None  # unknown: decide from the store, which answers or denies
        with self._lock:
            if now is not None and now <= self._applied:
                return
            self.resyncs += 1
            self._generation += 1
            self._subjects.clear()
            self._partners.clear()
            if now is not None:
                # Whatever arrives later up to ``now`` is in what the store will answer.
                self._applied = now
                self._ahead = {e for e in self._ahead if e > now}

    def invalidate_subject(self, subject: str) -> None:
        """Forget the subject's consents; the next decision reads them from the store."""
        with self._lock:
            self._generation += 1
            self._subjects.pop(subject, None)

    def invalidate_consent(self, consent_id: str) -> None:
        """Forget the consents of the subject of ``consent_id`` (found in the store); forget
        every subject when it cannot be told whose it is (scrubbed by an erasure)."""
        try:
            with self.engine.connect() as conn:
                subject = conn.execute(
                    select(_consents.c.subject_id).where(_consents.c.id == consent_id)
                ).scalar_one_or_none()
        except SQLAlchemyError:
            subject = None
        if subject is None or not SUBJECT_ID.fullmatch(subject):
            self.clear()
        else:
            self.invalidate_subject(subject)

    def invalidate_partner(self, partner: str) -> None:
        """Forget the partner and its approvals."""
        with self._lock:
            self._generation += 1
            self._partners.pop(partner, None)

    def clear(self) -> None:
        """Forget everything."""
        with self._lock:
            self._generation += 1
            self._subjects.clear()
            self._partners.clear()

    @property
    def caching(self) -> bool:
        """Whether answers are served from the cache (else every decision reads the store)."""
        return self._caching

    def suspend_cache(self) -> None:
        """Stop caching and forget everything: changes may be missed (no live change feed)."""
        with self._lock:
            self._caching = False
            self._generation += 1
            self._subjects.clear()
            self._partners.clear()

    def resume_cache(self) -> None:
        """Cache again: the change feed is live and caught up."""
        with self._lock:
            self._caching = True
