"""The consent-and-partner side of the demo, beside the streaming region: the seed, then one
thread per partner that reads the API every few seconds while, every few rounds, one of the
people who consented to it changes their mind. The platform's lifecycle owns the threads:
they end when it closes."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from datetime import datetime
from datetime import time as clock_time
from functools import partial

import httpx

from broker.audit import AuditLog
from broker.auth.principals import Role
from broker.demo.cast import PARTNERS, DemoPartner, PlannedGrant, demo_resident, planned_grants
from broker.demo.minds import MindChanges
from broker.demo.reads import ApiUnreachableError, PartnerReader, RenewingToken
from broker.demo.seed import grant_missing, seed_partners
from broker.lifecycle import Lifecycle
from connectors.readers import JST
from connectors.region import Region
from consent.service import ConsentService

log = logging.getLogger(__name__)

#: Issues a token (role, subject, lifetime in seconds) and records the issue in the audit log.
IssueToken = Callable[[Role, str, int], str]

#: Every how many rounds one of a partner's consenting people changes their mind.
CHANGE_EVERY = 5
#: Lifetime of the page tokens `tsunagu up --demo` prints: a working day of demonstrating.
PAGE_TOKEN_TTL_S = 12 * 3600
#: The auditor the printed auditor page signs in as.
DEMO_AUDITOR = "demo-auditor"


class DemoLife:
    """Seeds the demo's partners and consents, then runs its partners until the platform closes."""

    def __init__(
        self,
        service: ConsentService,
        region: Region,
        *,
        base_url: str,
        interval_s: float,
        token_ttl_s: int,
        issue: IssueToken | None,
        lifecycle: Lifecycle,
        partners: Sequence[DemoPartner] = PARTNERS,
        audit: AuditLog | None = None,
    ) -> None:
        self.service = service
        self.audit = audit  # where the partners' registrations are recorded as admin changes
        self.region = region
        self.base_url = base_url
        self.interval_s = interval_s
        self.token_ttl_s = token_ttl_s
        self.issue = issue  # None under an OIDC provider: no partner tokens, no reads
        self.lifecycle = lifecycle  # starts the partners' threads and stops them on close
        self.stop = lifecycle.stop
        self.partners = tuple(partners)
        self.resident = demo_resident(region)
        self.grants = [g for g in planned_grants(region) if g.partner in self.partners]
        self._waiting: list[PlannedGrant] = []
        self._threads: list[threading.Thread] = []

    def seed(self) -> None:
        """Register the partners, approve their purposes and grant the planned consents that
        are not there yet; owners whose listing has not arrived are granted by later rounds."""
        seed_partners(self.service, self.partners, self.audit)
        self._waiting = grant_missing(self.service, self.grants, stop=self.stop)

    def start(self) -> None:
        """Start one thread per partner, owned by the platform's lifecycle."""
        for partner in self.partners:
            self._threads.append(
                self.lifecycle.spawn(f"demo-{partner.partner_id}", partial(self._run, partner))
            )

    def alive(self) -> bool:
        """Whether any partner thread still runs."""
        return any(thread.is_alive() for thread in self._threads)

    def _run(self, partner: DemoPartner, stop: threading.Event) -> None:
        waiting = [g for g in self._waiting if g.partner is partner]
        minds = MindChanges(
            self.service, partner, keep={self.resident.resident_id}, seed=self.region.seed
        )
        with httpx.Client(base_url=self.base_url, timeout=10) as http:
            reader = self._reader(http, partner)
            if reader is not None and not self._ready(http):
                return
            rounds = 0
            while not stop.is_set():
                rounds += 1
                try:
                    if waiting:
                        waiting = grant_missing(self.service, waiting, stop=stop)
                    if rounds % CHANGE_EVERY == 0:
                        minds.next()
                    if reader is not None:
                        reader.round()
                except ApiUnreachableError:
                    # The API is in this process: it stops answering only when the platform
                    # stops, which is no news. Wait for it as at the start.
                    if not self._ready(http):
                        break
                    continue
                except Exception:
                    if stop.is_set():
                        break  # the platform is closing under us: nothing to report
                    log.exception("demo partner %s: round failed", partner.partner_id)
                stop.wait(self.interval_s)

    def _reader(self, http: httpx.Client, partner: DemoPartner) -> PartnerReader | None:
        issue = self.issue
        if issue is None:
            return None
        token = RenewingToken(
            lambda: issue(Role.PARTNER, partner.partner_id, self.token_ttl_s), self.token_ttl_s
        )
        start = datetime.combine(self.region.start, clock_time(0), JST)
        return PartnerReader(http, partner, token, region_start=start)

    def _ready(self, http: httpx.Client) -> bool:
        """Wait until the API answers /readyz (it starts after the demo); False on stop."""
        while not self.stop.is_set():
            try:
                if http.get("/readyz").status_code == 200:
                    return True
            except httpx.HTTPError:
                pass  # not listening yet
            self.stop.wait(0.5)
        return False
