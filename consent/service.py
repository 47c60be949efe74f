"""Granting and changing consents: a subject's side of the service. ``ConsentService`` is also
the partner registry (``consent.partners``: partners and their approved purposes) and the
relay of changes (``consent.relay``): every change is one store transaction that also writes it
to the outbox, holds in this process at once and reaches every other through
``consent.changes``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Engine, and_, select
from sqlalchemy.exc import IntegrityError

from broker.store.projections.vacant_house import Listing
from consent.catalogue import Catalogue
from consent.changes import CONSENT_CHANGES_TOPIC, ChangeScope, ConsentChange
from consent.errors import (
    ConcurrentChangeError,
    ConsentNotFoundError,
    InvalidConsentError,
    InvalidTransitionError,
    NotPropertyOwnerError,
    PurposeNotApprovedError,
)
from consent.ids import SUBJECT_ID, CategoryCode, new_consent_id
from consent.keys import Jwks, KeyRing
from consent.model import (
    Consent,
    ConsentChangeKind,
    ConsentStatus,
    Partner,
    SubjectKind,
)
from consent.partners import PartnerRegistry
from consent.receipts import Controller, receipt_claims, sign_receipt
from consent.relay import ChangeHook, Publish
from contract.bus import Bus

_consents = Consent.__table__  # type: ignore[attr-defined]
_listings = Listing.__table__  # type: ignore[attr-defined]


def utc_now() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(UTC)


def _aware(name: str, moment: datetime | None) -> None:
    if moment is not None and moment.tzinfo is None:
        raise InvalidConsentError(f"{name} needs a UTC offset (got a naive datetime)")


class ConsentService(PartnerRegistry):
    """Consents and partners in the store, every change published on ``consent.changes``."""

    def __init__(
        self,
        engine: Engine,
        keys: KeyRing,
        publisher: Bus | Publish,
        *,
        catalogue: Catalogue | None = None,
        controller: Controller | None = None,
        topic: str = CONSENT_CHANGES_TOPIC,
        on_change: Iterable[ChangeHook] = (),
        clock: Callable[[], datetime] = utc_now,
        allow_private_webhooks: bool = False,
    ) -> None:
        super().__init__(
            engine,
            publisher,
            catalogue=catalogue or Catalogue.load(),
            topic=topic,
            on_change=on_change,
            clock=clock,
            allow_private_webhooks=allow_private_webhooks,
        )
        self.keys = keys
        self.controller = controller or Controller()

    # -- consents (the subject) ----------------------------------------------------------------

    def grant(
        self,
        subject_id: str,
        partner_id: str,
        purpose: str,
        categories: Sequence[str],
        *,
        expires_at: datetime,
        valid_from: datetime | None = None,
        data_from: datetime | None = None,
        data_to: datetime | None = None,
    ) -> Consent:
        """Grant a consent with its signed receipt; it supersedes the chain's current consent.

        Refused when the subject id is malformed, the partner unknown, the purpose or a
        category unknown, a category not personal (it needs no consent), the partner not
        approved for the purpose, the dates out of order or already past, or when owner
        categories (``property.details``) come from someone who owns no listing.
        """
        if not SUBJECT_ID.fullmatch(subject_id):
            raise InvalidConsentError(f"subject id {subject_id!r} is not a platform id")
        now = self._clock()
        valid_from = valid_from or now
        for name, moment in (
            ("expires_at", expires_at),
            ("valid_from", valid_from),
            ("data_from", data_from),
            ("data_to", data_to),
        ):
            _aware(name, moment)
        kind = self._check_terms(categories, purpose, valid_from, expires_at, data_from, data_to)
        if expires_at <= now:
            raise InvalidConsentError("expires_at is already past")
        with self.engine.begin() as conn:
            partner = self._partner(conn, partner_id)
            if self._standing_approval(conn, partner_id, purpose) is None:
                raise PurposeNotApprovedError(
                    f"partner {partner_id} is not approved for purpose {purpose}"
                )
            # _check_terms let only personal categories through: what is left is the owners'.
            refused = sorted(set(categories) - self._grantable(conn, subject_id))
            if refused:
                raise NotPropertyOwnerError(
                    f"{subject_id} owns no listing: only an owner can consent to"
                    f" {', '.join(refused)}; leave {'it' if len(refused) == 1 else 'them'} out"
                )
            current = self._current_of_chain(conn, subject_id, partner_id, purpose)
            live = current is not None and current.effective_status(now) in (
                ConsentStatus.ACTIVE,
                ConsentStatus.PAUSED,
            )
            consent = Consent(
                id=new_consent_id(),
                subject_id=subject_id,
                subject_kind=kind,
                partner_id=partner_id,
                purpose=purpose,
                categories=sorted(set(categories)),
                valid_from=valid_from,
                expires_at=expires_at,
                data_from=data_from,
                data_to=data_to,
                status=ConsentStatus.ACTIVE,
                change=ConsentChangeKind.AMENDED if live else ConsentChangeKind.GRANTED,
                version=current.version + 1 if current else 1,
                created_at=now,
                supersedes=current.id if current else None,
                receipt="",
            )
            change = self._write(conn, consent, current, partner)
        self._after_commit(change)
        return consent

    def grantable_categories(self, subject_id: str) -> frozenset[CategoryCode]:
        """The categories ``subject_id`` may consent to (the rule ``grant`` applies)."""
        with self.engine.connect() as conn:
            return self._grantable(conn, subject_id)

    def pause(self, subject_id: str, consent_id: str) -> Consent:
        """Pause an active consent (a new consent, status paused, supersedes it)."""
        return self._transition(
            subject_id, consent_id, ConsentChangeKind.PAUSED, {ConsentStatus.ACTIVE}
        )

    def resume(self, subject_id: str, consent_id: str) -> Consent:
        """Resume a paused consent (a new consent, status active, supersedes it)."""
        return self._transition(
            subject_id, consent_id, ConsentChangeKind.RESUMED, {ConsentStatus.PAUSED}
        )

    def revoke(self, subject_id: str, consent_id: str) -> Consent:
        """Revoke a consent, also a paused or expired one (a new, revoked consent supersedes it)."""
        return self._transition(
            subject_id,
            consent_id,
            ConsentChangeKind.REVOKED,
            {ConsentStatus.ACTIVE, ConsentStatus.PAUSED, ConsentStatus.EXPIRED},
        )

    def get(self, consent_id: str) -> Consent:
        """One consent row (current or superseded), or ConsentNotFoundError."""
        with self.engine.connect() as conn:
            row = conn.execute(select(_consents).where(_consents.c.id == consent_id)).first()
        if row is None:
            raise ConsentNotFoundError(f"no consent {consent_id!r}")
        return Consent(**row._mapping)

    def history(self, subject_id: str) -> list[Consent]:
        """Every consent row of the subject, superseded ones included, oldest first."""
        query = (
            select(_consents)
            .where(_consents.c.subject_id == subject_id)
            .order_by(_consents.c.created_at, _consents.c.version)
        )
        with self.engine.connect() as conn:
            return [Consent(**r._mapping) for r in conn.execute(query)]

    def current(self, subject_id: str) -> list[Consent]:
        """The subject's current consent of each chain (whatever its status)."""
        query = (
            select(_consents)
            .where(_consents.c.subject_id == subject_id, _consents.c.superseded_by.is_(None))
            .order_by(_consents.c.partner_id, _consents.c.purpose)
        )
        with self.engine.connect() as conn:
            return [Consent(**r._mapping) for r in conn.execute(query)]

    def for_partner(self, partner_id: str, *, current_only: bool = True) -> list[Consent]:
        """Consents given to the partner: the current ones, or every row."""
        query = select(_consents).where(_consents.c.partner_id == partner_id)
        if current_only:
            query = query.where(_consents.c.superseded_by.is_(None))
        with self.engine.connect() as conn:
            self._partner(conn, partner_id)
            rows = conn.execute(query.order_by(_consents.c.created_at)).all()
        return [Consent(**r._mapping) for r in rows]

    def announce_erasure(self, subject_id: str) -> None:
        """Tell every process that ``subject_id`` was erased, so each drops what it cached of
        them (decisions and the subject's key) at once rather than when its cache ages out."""
        change = ConsentChange(
            scope=ChangeScope.SUBJECT, key=subject_id, event="erased", at=self._clock().isoformat()
        )
        with self.engine.begin() as conn:
            change = self._enqueue(conn, change)
        self._after_commit(change)

    def jwks(self) -> Jwks:
        """The public keys receipts verify against (serve at ``/.well-known/jwks.json``)."""
        return self.keys.jwks()

    # -- internals -----------------------------------------------------------------------------

    def _check_terms(
        self,
        categories: Sequence[str],
        purpose: str,
        valid_from: datetime,
        expires_at: datetime,
        data_from: datetime | None,
        data_to: datetime | None,
    ) -> SubjectKind:
        """Validate the terms against the catalogue; returns who must be giving them."""
        self.catalogue.purpose(purpose)
        if not categories:
            raise InvalidConsentError("a consent covers at least one data category")
        found = [self.catalogue.category(c) for c in categories]
        public = [c.code for c in found if not c.personal]
        if public:
            raise InvalidConsentError(f"{', '.join(public)} is not personal: it needs no consent")
        if expires_at <= valid_from:
            raise InvalidConsentError("expires_at must be after valid_from")
        if data_from is not None and data_to is not None and data_to <= data_from:
            raise InvalidConsentError("data_to must be after data_from")
        owner = any(c.subject == "owner" for c in found)
        return SubjectKind.OWNER if owner else SubjectKind.RESIDENT

    def _transition(
        self,
        subject_id: str,
        consent_id: str,
        change_kind: ConsentChangeKind,
        allowed_from: set[ConsentStatus],
    ) -> Consent:
        now = self._clock()
        new_status = {
            ConsentChangeKind.PAUSED: ConsentStatus.PAUSED,
            ConsentChangeKind.RESUMED: ConsentStatus.ACTIVE,
            ConsentChangeKind.REVOKED: ConsentStatus.REVOKED,
        }[change_kind]
        with self.engine.begin() as conn:
            row = conn.execute(select(_consents).where(_consents.c.id == consent_id)).first()
            # Someone else's consent is "not found": its existence is not theirs to learn.
            if row is None or row.subject_id != subject_id:
                raise ConsentNotFoundError(f"no consent {consent_id!r} of {subject_id}")
            old = Consent(**row._mapping)
            if old.superseded_by is not None:
                raise InvalidTransitionError(
                    f"{consent_id} was superseded by {old.superseded_by}; change the current one"
                )
            status = old.effective_status(now)
            if status not in allowed_from:
                raise InvalidTransitionError(f"cannot {change_kind.rstrip('d')} a {status} consent")
            consent = old.model_copy(
                update={
                    "id": new_consent_id(),
                    "status": new_status,
                    "change": change_kind,
                    "version": old.version + 1,
                    "created_at": now,
                    "supersedes": old.id,
                    "superseded_by": None,
                    "receipt": "",
                }
            )
            change = self._write(conn, consent, old, self._partner(conn, old.partner_id))
        self._after_commit(change)
        return consent

    def _write(
        self, conn: Connection, consent: Consent, old: Consent | None, partner: Partner
    ) -> ConsentChange:
        """Sign, insert ``consent`` over ``old`` and queue the change, in ``conn``'s transaction."""
        claims = receipt_claims(consent, partner, self.catalogue, self.controller, self._clock())
        consent.receipt = sign_receipt(claims, self.keys.signing_key)
        try:
            if old is not None:
                # The old row stops being current first, so the partial unique index holds.
                updated = conn.execute(
                    _consents.update()
                    .where(and_(_consents.c.id == old.id, _consents.c.superseded_by.is_(None)))
                    .values(superseded_by=consent.id)
                ).rowcount
                if updated != 1:
                    raise ConcurrentChangeError(f"{old.id} was changed meanwhile; read it again")
                old.superseded_by = consent.id
            conn.execute(_consents.insert().values(**consent.model_dump()))
        except IntegrityError as exc:
            raise ConcurrentChangeError(
                f"the consent of {consent.subject_id} for {consent.partner_id}/{consent.purpose}"
                " was changed meanwhile; read it again"
            ) from exc
        change = ConsentChange(
            scope=ChangeScope.SUBJECT,
            key=consent.subject_id,
            event=consent.change,
            at=consent.created_at.isoformat(),
            consent_id=consent.id,
            supersedes=consent.supersedes,
            partner_id=consent.partner_id,
            purpose=consent.purpose,
            status=consent.status,
        )
        change = self._enqueue(conn, change)
        return change

    @staticmethod
    def _current_of_chain(
        conn: Connection, subject_id: str, partner_id: str, purpose: str
    ) -> Consent | None:
        row = conn.execute(
            select(_consents).where(
                _consents.c.subject_id == subject_id,
                _consents.c.partner_id == partner_id,
                _consents.c.purpose == purpose,
                _consents.c.superseded_by.is_(None),
            )
        ).first()
        return None if row is None else Consent(**row._mapping)

    def _grantable(self, conn: Connection, subject_id: str) -> frozenset[CategoryCode]:
        """Who may consent to what: every personal category, but the owner categories
        (``property.details``) only someone who owns a listing (dual-residence law, 2024)."""
        personal = frozenset(c.code for c in self.catalogue.categories.values() if c.personal)
        if self._owns_a_listing(conn, subject_id):
            return personal
        return personal - self.catalogue.owner_categories()

    @staticmethod
    def _owns_a_listing(conn: Connection, subject_id: str) -> bool:
        found: Any = conn.execute(
            select(_listings.c.listing_id).where(_listings.c.owner_id == subject_id).limit(1)
        ).first()
        return found is not None
