"""Partner firms and the purposes their municipality approves them for: registering,
approving and withdrawing, each change published like a consent's."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime

from sqlalchemy import Connection, Engine, select
from sqlalchemy.exc import IntegrityError

from consent.catalogue import Catalogue
from consent.changes import ChangeScope, ConsentChange
from consent.errors import (
    ConcurrentChangeError,
    InvalidPartnerError,
    PartnerExistsError,
    PurposeNotApprovedError,
    UnknownPartnerError,
)
from consent.ids import PARTNER_ID, new_partner_id
from consent.model import Partner, PartnerPurpose
from consent.relay import ChangeHook, ChangeRelay, Publish
from consent.webhook_targets import check_webhook_url
from contract.bus import Bus

_partners = Partner.__table__  # type: ignore[attr-defined]
_approvals = PartnerPurpose.__table__  # type: ignore[attr-defined]


class PartnerRegistry(ChangeRelay):
    """Partners and their approved purposes in the store (the municipality's side)."""

    def __init__(
        self,
        engine: Engine,
        publisher: Bus | Publish,
        *,
        catalogue: Catalogue,
        topic: str,
        on_change: Iterable[ChangeHook],
        clock: Callable[[], datetime],
        allow_private_webhooks: bool,
    ) -> None:
        super().__init__(engine, publisher, topic=topic, on_change=on_change, clock=clock)
        self.allow_private_webhooks = allow_private_webhooks
        self.catalogue = catalogue

    def register_partner(
        self,
        name_ja: str,
        name_en: str,
        *,
        partner_id: str | None = None,
        webhook_url: str | None = None,
    ) -> Partner:
        """Register a partner firm; its id is generated unless given."""
        pid = partner_id or new_partner_id()
        if not PARTNER_ID.fullmatch(pid):
            raise InvalidPartnerError(f"partner id {pid!r} does not match {PARTNER_ID.pattern}")
        if webhook_url is not None:
            check_webhook_url(webhook_url, allow_private=self.allow_private_webhooks)
        partner = Partner(
            id=pid,
            name_ja=name_ja,
            name_en=name_en,
            webhook_url=webhook_url,
            created_at=self._clock(),
        )
        change = self._partner_change(pid, "partner_registered")
        try:
            with self.engine.begin() as conn:
                conn.execute(_partners.insert().values(**partner.model_dump()))
                change = self._enqueue(conn, change)
        except IntegrityError as exc:
            raise PartnerExistsError(f"partner {pid!r} is already registered") from exc
        self._after_commit(change)
        return partner

    def partner(self, partner_id: str) -> Partner:
        """The partner ``partner_id``, or UnknownPartnerError."""
        with self.engine.connect() as conn:
            return self._partner(conn, partner_id)

    def partners(self) -> list[Partner]:
        """Every registered partner."""
        with self.engine.connect() as conn:
            rows = conn.execute(select(_partners).order_by(_partners.c.id)).all()
        return [Partner(**r._mapping) for r in rows]

    def approve_purpose(self, partner_id: str, purpose: str, *, approved_by: str) -> PartnerPurpose:
        """Approve ``purpose`` for the partner (returns the standing approval if there is one)."""
        self.catalogue.purpose(purpose)
        change = self._partner_change(partner_id, "purpose_approved", purpose)
        try:
            with self.engine.begin() as conn:
                self._partner(conn, partner_id)
                standing = self._standing_approval(conn, partner_id, purpose)
                if standing is not None:
                    return standing
                approval = PartnerPurpose(
                    partner_id=partner_id,
                    purpose=purpose,
                    approved_by=approved_by,
                    approved_at=self._clock(),
                )
                values = approval.model_dump(exclude={"id"})
                approval.id = conn.execute(
                    _approvals.insert().values(**values).returning(_approvals.c.id)
                ).scalar_one()
                change = self._enqueue(conn, change)
        except IntegrityError as exc:
            raise ConcurrentChangeError(
                f"{purpose} was approved for {partner_id} meanwhile"
            ) from exc
        self._after_commit(change)
        return approval

    def withdraw_purpose(
        self, partner_id: str, purpose: str, *, withdrawn_by: str
    ) -> PartnerPurpose:
        """Withdraw the partner's approval for ``purpose``: its consents stop allowing reads."""
        change = self._partner_change(partner_id, "purpose_withdrawn", purpose)
        with self.engine.begin() as conn:
            self._partner(conn, partner_id)
            standing = self._standing_approval(conn, partner_id, purpose)
            if standing is None:
                raise PurposeNotApprovedError(f"{purpose} is not approved for {partner_id}")
            standing.revoked_by, standing.revoked_at = withdrawn_by, self._clock()
            conn.execute(
                _approvals.update()
                .where(_approvals.c.id == standing.id)
                .values(revoked_by=standing.revoked_by, revoked_at=standing.revoked_at)
            )
            change = self._enqueue(conn, change)
        self._after_commit(change)
        return standing

    def approvals(
        self, partner_id: str, *, include_withdrawn: bool = False
    ) -> list[PartnerPurpose]:
        """The partner's approvals (standing ones, or all of them with the withdrawn)."""
        query = select(_approvals).where(_approvals.c.partner_id == partner_id)
        if not include_withdrawn:
            query = query.where(_approvals.c.revoked_at.is_(None))
        with self.engine.connect() as conn:
            self._partner(conn, partner_id)
            rows = conn.execute(query.order_by(_approvals.c.id)).all()
        return [PartnerPurpose(**r._mapping) for r in rows]

    def _partner_change(
        self, partner_id: str, event: str, purpose: str | None = None
    ) -> ConsentChange:
        return ConsentChange(
            scope=ChangeScope.PARTNER,
            key=partner_id,
            event=event,
            at=self._clock().isoformat(),
            partner_id=partner_id,
            purpose=purpose,
        )

    @staticmethod
    def _partner(conn: Connection, partner_id: str) -> Partner:
        row = conn.execute(select(_partners).where(_partners.c.id == partner_id)).first()
        if row is None:
            raise UnknownPartnerError(f"no partner {partner_id!r}")
        return Partner(**row._mapping)

    @staticmethod
    def _standing_approval(
        conn: Connection, partner_id: str, purpose: str
    ) -> PartnerPurpose | None:
        row = conn.execute(
            select(_approvals).where(
                _approvals.c.partner_id == partner_id,
                _approvals.c.purpose == purpose,
                _approvals.c.revoked_at.is_(None),
            )
        ).first()
        return None if row is None else PartnerPurpose(**row._mapping)
