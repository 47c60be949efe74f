"""The audited read: the one dependency of every route that returns personal data or figures
computed from it (partner views, statistics).

A route declares it (``PartnerReadDep``, ``StatisticsReadDep`` in ``broker.api.deps``) and is
handed a ``PartnerRead``: the caller, authenticated, of an admitted role, within its rate, and
(for a partner) approved for the purpose it names by the one purpose check of
``consent.decisions``. The route does its store work in ``PartnerRead.run``, which refuses to
answer unless the work recorded its audit entries, and waits until they are stored: no data
leaves before its read is in the audit log. ``tests/api/test_audited_reads.py`` walks every
route of the app and proves each that can return personal data declares this dependency.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import Future
from typing import Annotated, Any, TypeVar

from fastapi import Depends, Query, Request
from starlette.concurrency import run_in_threadpool

from broker.api.identity import check_role, current_principal
from broker.api.limits import charge
from broker.api.services import Services, services_of
from broker.audit import EntryKind
from broker.auth.principals import Principal, Role
from broker.views.statistics import MUNICIPAL_PURPOSE

T = TypeVar("T")


class UnauditedReadError(RuntimeError):
    """A route's read recorded no audit entry: a bug, refused rather than answered."""


class PartnerRead:
    """One read by one caller for one purpose; its answer leaves only once it is audited."""

    __slots__ = ("_tickets", "caller", "purpose", "services")

    def __init__(self, caller: Principal, purpose: str, services: Services) -> None:
        self.caller = caller
        self.purpose = purpose
        self.services = services
        self._tickets: list[Future[int]] = []

    @property
    def partner(self) -> str:
        """The caller's id: the partner, or the auditor or admin reading statistics."""
        return self.caller.subject

    def record(
        self, view: str, categories: Sequence[str], *, subject: str | None = None, **fields: Any
    ) -> None:
        """Queue the audit entry of what this read returns (one per subject it concerns)."""
        self._tickets.append(
            self.services.recorder.append(
                EntryKind.PARTNER_READ,
                actor=self.caller.subject,
                subject=subject,
                partner=self.caller.subject,
                purpose=self.purpose,
                categories=list(categories),
                view=view,
                **fields,
            )
        )

    async def run(self, work: Callable[[], T]) -> T:
        """``work()`` (on the event loop or in a worker thread, see ``broker.api.recording``),
        returned once every entry it recorded is stored; 503 if they cannot be."""
        recorder = self.services.recorder
        result = await recorder.run(work)
        if not self._tickets:
            raise UnauditedReadError(
                f"a read for {self.caller.subject} recorded no audit entry: record() it"
            )
        for ticket in self._tickets:
            await recorder.recorded(ticket)
        return result


class AuditedRead:
    """The dependency every personal-data route declares (see the module's docstring)."""

    def __init__(self, *roles: Role) -> None:
        self.roles = frozenset(roles)

    async def open(self, request: Request, caller: Principal, purpose: str | None) -> PartnerRead:
        """Check the role and the partner's rate, approve the purpose."""
        services = services_of(request.app)
        check_role(caller, self.roles)
        if caller.role is not Role.PARTNER:
            # Auditors and admins read statistics as the municipality, for no partner purpose.
            return PartnerRead(caller, purpose or MUNICIPAL_PURPOSE, services)
        charge(services.partner_buckets, caller, "partner", "requests")
        decisions = services.decisions
        # The one purpose check of every read path, fresh in every process (it syncs first).
        if services.recorder.inline:
            approved = decisions.check_purpose(caller.subject, purpose)
        else:
            approved = await run_in_threadpool(decisions.check_purpose, caller.subject, purpose)
        return PartnerRead(caller, approved, services)


# Authenticated first, as a sub-dependency: a request without a valid token is a 401 before
# its parameters (a missing purpose) are looked at.
_Caller = Annotated[Principal, Depends(current_principal)]


class PartnerViewRead(AuditedRead):
    """A partner's read of a view: the purpose is required."""

    async def __call__(
        self,
        request: Request,
        caller: _Caller,
        purpose: Annotated[
            str,
            Query(
                description="The purpose of this read, from the purpose catalogue; approved "
                "for you",
                examples=["transport.planning"],
                min_length=1,
                max_length=100,
            ),
        ],
    ) -> PartnerRead:
        """The partner's read, approved for ``purpose``."""
        return await self.open(request, caller, purpose)


class StatisticsRead(AuditedRead):
    """A read of statistics: a partner names its purpose; auditors and admins need none."""

    async def __call__(
        self,
        request: Request,
        caller: _Caller,
        purpose: Annotated[
            str | None,
            Query(
                description="The purpose of the read, approved for you; required for partners",
                examples=["transport.planning"],
                min_length=1,
                max_length=100,
            ),
        ] = None,
    ) -> PartnerRead:
        """The caller's read, a partner's approved for ``purpose``."""
        return await self.open(request, caller, purpose)


#: The one audited read of partner views, and of statistics.
partner_view_read = PartnerViewRead(Role.PARTNER)
statistics_read = StatisticsRead(Role.PARTNER, Role.AUDITOR, Role.ADMIN)
