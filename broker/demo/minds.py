"""Residents of the demo changing their minds about one partner, in a fixed round: someone
pauses, a paused consent is resumed, someone revokes, a revoked one is granted again. The
partner's next reads of them are refused, which the audit log and the flow map show."""

from __future__ import annotations

import logging
import random
from collections.abc import Collection
from datetime import UTC, datetime

from broker.demo.cast import DemoPartner
from broker.demo.seed import CONSENT_TERM
from consent.model import Consent, ConsentStatus
from consent.service import ConsentService

log = logging.getLogger(__name__)

#: The round of changes; each call of ``MindChanges.next`` makes the next one.
ROUND: tuple[str, ...] = ("pause", "resume", "revoke", "grant_again")
_FROM = {
    "pause": ConsentStatus.ACTIVE,
    "resume": ConsentStatus.PAUSED,
    "revoke": ConsentStatus.ACTIVE,
    "grant_again": ConsentStatus.REVOKED,
}


class MindChanges:
    """One change at a time to the consents given to ``partner`` (never those of ``keep``)."""

    def __init__(
        self,
        service: ConsentService,
        partner: DemoPartner,
        *,
        keep: Collection[str],
        seed: int,
    ) -> None:
        self.service = service
        self.partner = partner
        self.keep = frozenset(keep)
        self._rng = random.Random(f"tsunagu-demo/{seed}/minds/{partner.partner_id}")
        self._turn = 0

    def next(self) -> Consent | None:
        """Make the round's next change; the new consent, or None when no one is in the state
        it starts from (nobody paused yet, say)."""
        action = ROUND[self._turn % len(ROUND)]
        self._turn += 1
        now = datetime.now(UTC)
        candidates = sorted(
            (
                c
                for c in self.service.for_partner(self.partner.partner_id)
                if c.purpose == self.partner.purpose
                and c.subject_id not in self.keep
                and c.effective_status(now) is _FROM[action]
            ),
            key=lambda c: c.subject_id,
        )
        if not candidates:
            return None
        old = self._rng.choice(candidates)
        changed = self._apply(action, old, now)
        log.info(
            "demo: a%s %s changed their mind about %s: %s (%s)",
            "n" if old.subject_kind == "owner" else "",
            old.subject_kind,
            self.partner.partner_id,
            action,
            changed.id,
        )
        return changed

    def _apply(self, action: str, old: Consent, now: datetime) -> Consent:
        subject = old.subject_id
        if action == "pause":
            return self.service.pause(subject, old.id)
        if action == "resume":
            return self.service.resume(subject, old.id)
        if action == "revoke":
            return self.service.revoke(subject, old.id)
        return self.service.grant(
            subject,
            old.partner_id,
            old.purpose,
            list(old.categories),
            expires_at=now + CONSENT_TERM,
        )
