"""The decision cache: partners with their approved purposes, and each subject's current
consents, filled lazily from the store for ``consent.decisions`` to judge.

A change drops the entries it touches: the process making it drops them synchronously
(``ConsentService`` hooks), every other process when its ``ConsentChangeListener`` reads the
change from ``consent.changes``. The next decision reloads from the store, so a revocation
holds on the next request in every process; ``sync`` (one single-row read of the store's
consent epoch) drops everything when another process committed a change not heard of yet.
``max_age_s`` bounds how long an entry is trusted even if a change never arrives.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from datetime import datetime
from typing import TypeVar

from sqlalchemy import Engine, select
from sqlalchemy.exc import SQLAlchemyError

from consent import epoch
from consent.changes import ChangeScope, ConsentChange
from consent.ids import SUBJECT_ID
from consent.model import Consent, Partner, PartnerPurpose, SubjectKind

_partners = Partner.__table__  # type: ignore[attr-defined]
_approvals = PartnerPurpose.__table__  # type: ignore[attr-defined]
_consents = Consent.__table__  # type: ignore[attr-defined]

_Key = tuple[str, str]  # (partner, purpose)
_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class CurrentConsent:
    """A current consent, reduced to what decisions compare (times as POSIX seconds)."""

    consent_id: str
    status: str
    owner: bool
    categories: frozenset[str]
    valid_from: float
    expires_at: float
    data_from: datetime | None
    data_to: datetime | None


class ConsentCache:
    """What decisions read, cached per partner and per subject, dropped on every change."""

    def __init__(
        self,
        engine: Engine,
        *,
        max_age_s: float | None = 60.0,
        max_subjects: int = 100_000,
        caching: bool = True,
    ) -> None:
        self.engine = engine
        self.max_age_s = max_age_s
        self.max_subjects = max_subjects
        # partner -> (loaded at, approved purposes or None for an unknown partner)
        self._partners: dict[str, tuple[float, frozenset[str] | None]] = {}
        # subject -> (loaded at, current consent per (partner, purpose))
        self._subjects: dict[str, tuple[float, dict[_Key, CurrentConsent]]] = {}
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

    def approved(self, partner: str) -> frozenset[str] | None:
        """The purposes approved for ``partner`` now; None for a partner not registered."""
        entry = self._partners.get(partner)
        if entry is None or self._stale(entry[0]):
            return self._load_partner(partner)
        return entry[1]

    def current(self, subject: str, partner: str, purpose: str) -> CurrentConsent | None:
        """The subject's current consent to ``partner`` for ``purpose``, if any."""
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

    def _load_subject(self, subject: str) -> dict[_Key, CurrentConsent]:
        generation = self._generation
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(_consents).where(
                    _consents.c.subject_id == subject, _consents.c.superseded_by.is_(None)
                )
            ).all()
        consents = {
            (r.partner_id, r.purpose): CurrentConsent(
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

    def suspend(self) -> None:
        """Stop caching and forget everything: changes may be missed (no live change feed)."""
        with self._lock:
            self._caching = False
            self._generation += 1
            self._subjects.clear()
            self._partners.clear()

    def resume(self) -> None:
        """Cache again: the change feed is live and caught up."""
        with self._lock:
            self._caching = True
