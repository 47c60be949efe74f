"""A demo partner's own system, reading the broker API over HTTP with the partner's token:
who consented, a few of them in detail, vacant houses, a statistic. What it gets is what
any partner would get, refusals included; failures are logged and the next round goes on."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any

import httpx

from broker.demo.cast import ACTIVITY_CATEGORIES, DemoPartner

log = logging.getLogger(__name__)

#: The period a partner reads activity over, from the region's first day: the region's events
#: are dated from its own calendar (April 2025 on), so the API's default of the last 90 days
#: would find nothing.
ACTIVITY_SPAN = timedelta(days=3 * 365)
#: The period a statistic covers, from the region's first day (the API counts whole months).
STATISTICS_SPAN = timedelta(days=365)
#: Residents read in detail per round: the longest-standing consent and the next in turn.
READS_PER_ROUND = 3
#: The most residents one listing page asks for (the API's maximum).
PAGE_LIMIT = 1000

Params = Sequence[tuple[str, str]]


class ApiUnreachableError(Exception):
    """The API does not accept connections (not up yet, or shutting down): the round ends."""


class RenewingToken:
    """A partner token, issued again shortly before it expires (each issue is audited)."""

    def __init__(
        self,
        issue: Callable[[], str],
        ttl_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._issue = issue
        self._ttl_s = ttl_s
        self._clock = clock
        self._token: str | None = None
        self._renew_at = 0.0

    def __call__(self) -> str:
        """The current token."""
        now = self._clock()
        if self._token is None or now >= self._renew_at:
            self._token = self._issue()
            self._renew_at = now + self._ttl_s * 0.9  # well before `exp`, despite clock skew
        return self._token


class PartnerReader:
    """One demo partner reading the API; ``round()`` is one round of reads."""

    def __init__(
        self,
        http: httpx.Client,
        partner: DemoPartner,
        token: Callable[[], str],
        *,
        region_start: datetime,
    ) -> None:
        self.http = http
        self.partner = partner
        self._token = token
        self._period = [
            ("from", region_start.isoformat()),
            ("to", (region_start + ACTIVITY_SPAN).isoformat()),
        ]
        self._months = [
            ("from", region_start.isoformat()),
            ("to", (region_start + STATISTICS_SPAN).isoformat()),
        ]
        # Pseudonym → categories, as of the last listing, in the listing's order.
        self._listed: dict[str, list[str]] = {}
        self._turn = 0

    def round(self) -> None:
        """Who consented, a few of them in detail, the houses (if it reads them), a statistic."""
        listed = self._residents()
        gone: dict[str, list[str]] = {}
        if listed is not None:
            # Gone from the list since the last round (paused or revoked): the partner's batch
            # job has not heard yet and asks once more, and is refused.
            gone = {p: c for p, c in self._listed.items() if p not in listed}
            self._listed = listed
        for pseudonym, categories in [*gone.items(), *self._pick()]:
            self._activity(pseudonym, categories)
        if self.partner.reads_houses:
            # The houses it can still offer newcomers; one page, like a caseworker's screen.
            self._get(
                "/v1/partner/vacant-houses",
                [
                    ("purpose", self.partner.purpose),
                    *self._period,
                    ("available", "true"),
                    ("limit", "20"),
                ],
            )
        self._get(
            f"/v1/statistics/{self.partner.statistic}",
            [("purpose", self.partner.purpose), *self._months],
        )

    def _residents(self) -> dict[str, list[str]] | None:
        listed: dict[str, list[str]] = {}
        cursor: str | None = None
        while True:
            params = [("purpose", self.partner.purpose), ("limit", str(PAGE_LIMIT))]
            if cursor is not None:
                params.append(("cursor", cursor))
            page = self._get("/v1/partner/residents", params)
            if page is None:
                return None
            for resident in page["residents"]:
                listed[resident["resident"]] = resident["categories"]
            cursor = page["next_cursor"]
            if cursor is None:
                return listed

    def _pick(self) -> list[tuple[str, list[str]]]:
        """The first listed (the oldest consent: the demo resident's, for whom it was granted
        first) and the next ones in turn, among those sharing a category of the view."""
        viewable = [(p, c) for p, c in self._listed.items() if ACTIVITY_CATEGORIES.intersection(c)]
        if not viewable:
            return []
        first, rest = viewable[0], viewable[1:]
        count = min(len(rest), READS_PER_ROUND - 1)
        chosen = [rest[(self._turn + i) % len(rest)] for i in range(count)]
        self._turn += count
        return [first, *chosen]

    def _activity(self, pseudonym: str, categories: list[str]) -> None:
        wanted = [("category", c) for c in categories if c in ACTIVITY_CATEGORIES]
        if not wanted:
            return
        self._get(
            f"/v1/partner/residents/{pseudonym}/activity",
            [("purpose", self.partner.purpose), *self._period, ("limit", "50"), *wanted],
        )

    def _get(self, path: str, params: Params) -> Any:
        """The JSON body of a 200, or None (logged) for any other answer or a failure."""
        try:
            response = self.http.get(
                path, params=list(params), headers={"Authorization": f"Bearer {self._token()}"}
            )
        except httpx.ConnectError as exc:
            raise ApiUnreachableError(str(exc)) from exc
        except httpx.HTTPError as exc:
            log.warning("demo partner %s: GET %s failed: %s", self.partner.partner_id, path, exc)
            return None
        if response.status_code != 200:
            log.warning(
                "demo partner %s: GET %s: %d %s",
                self.partner.partner_id,
                path,
                response.status_code,
                _detail(response),
            )
            return None
        return response.json()


def _detail(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:200]
    return str(body.get("detail", body)) if isinstance(body, dict) else str(body)[:200]
