"""Put the demo's partners, their approvals and the planned consents in the store, through the
consent service (so receipts, ``consent.changes`` and audit entries are the real ones).
Idempotent: what is already there is left alone, so a second `make run` adds nothing."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Sequence
from contextlib import suppress
from datetime import UTC, datetime, timedelta

from broker.audit import AuditLog, EntryKind
from broker.demo.cast import DemoPartner, PlannedGrant
from consent.errors import NotPropertyOwnerError, PartnerExistsError
from consent.service import ConsentService

log = logging.getLogger(__name__)

#: Who approves the demo partners' purposes (``approved_by``, as an admin's token subject).
DEMO_OPERATOR = "demo-ops"
#: How long the demo's consents run.
CONSENT_TERM = timedelta(days=365)


def seed_partners(
    service: ConsentService, partners: Iterable[DemoPartner], audit: AuditLog | None = None
) -> None:
    """Register each partner and approve its purpose, as the admin API does (with its admin
    change entries), unless done."""
    registered = {p.id for p in service.partners()}
    for partner in partners:
        pid = partner.partner_id
        if pid not in registered:
            # Another process may register it meanwhile: the same partner, so that is fine.
            with suppress(PartnerExistsError):
                service.register_partner(partner.name_ja, partner.name_en, partner_id=pid)
                _record(audit, "partner_registered", pid)
        if partner.purpose not in {a.purpose for a in service.approvals(pid)}:
            service.approve_purpose(pid, partner.purpose, approved_by=DEMO_OPERATOR)
            _record(audit, "purpose_approved", f"{pid}/{partner.purpose}")


def _record(audit: AuditLog | None, action: str, target: str) -> None:
    if audit is not None:
        audit.append_now(EntryKind.ADMIN_CHANGE, actor=DEMO_OPERATOR, action=action, target=target)


def grant_missing(
    service: ConsentService,
    grants: Sequence[PlannedGrant],
    *,
    stop: threading.Event | None = None,
) -> list[PlannedGrant]:
    """Grant each planned consent whose chain does not exist yet (whatever its status: a
    resident who revoked stays revoked). Returns the grants that must wait: owners whose
    listing the platform has not received yet."""
    existing: dict[str, set[str]] = {}
    for partner in {g.partner for g in grants}:
        existing[partner.partner_id] = {
            c.subject_id
            for c in service.for_partner(partner.partner_id)
            if c.purpose == partner.purpose
        }
    expires_at = datetime.now(UTC) + CONSENT_TERM
    waiting: list[PlannedGrant] = []
    granted = 0
    for index, grant in enumerate(grants):
        if stop is not None and stop.is_set():
            waiting.extend(grants[index:])
            break
        if grant.subject in existing[grant.partner.partner_id]:
            continue
        try:
            service.grant(
                grant.subject,
                grant.partner.partner_id,
                grant.partner.purpose,
                list(grant.categories),
                expires_at=expires_at,
            )
        except NotPropertyOwnerError:
            waiting.append(grant)  # the owner's listing is still on its way through ingest
            continue
        granted += 1
    if granted:
        log.info("demo: consents granted: %d; waiting for their listing: %d", granted, len(waiting))
    return waiting
