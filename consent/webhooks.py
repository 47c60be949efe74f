"""Delivering partner notifications: signed webhooks, retried with backoff, at least once.

A ``WebhookDispatcher`` thread scans the consents for what is due (``consent.notifications``),
then POSTs each pending notification as JSON to its partner's ``webhook_url``, the way an
Account Aggregator notifies data users:

* ``x-jws-signature``: a detached JWS (RFC 7515 Appendix F, ``<header>..<signature>``; the
  payload is the body, base64url-encoded for signing as in any JWS), alg ``Ed25519`` (RFC 9864)
  with the platform's current key, its ``kid`` in the header; it verifies against
  ``/.well-known/jwks.json`` (``verify_notification``);
* ``Tsunagu-Notification-Id``: the same on every retry of one notification;
* ``Tsunagu-Delivery-Id``: new on every attempt, and signed in the body (``delivery_id``) with
  the recipient (``partner_id``) and the moment of sending (``sent_at``).

A partner verifies a POST with ``verify_notification(body, signature, jwks, recipient=...)``:
the signature, that the notification is addressed to it (a notification captured from another
partner's webhook does not verify), and that ``sent_at`` is within ``window_s`` of its clock
(300 s by default), so a captured POST replays only inside that window; a ``SeenDeliveries``
passed as ``seen`` refuses a delivery id seen before within the window, which closes it.

A 2xx response is delivery. Anything else, a timeout or a refused connection is retried after
an exponential backoff with full jitter (base 1 s, cap 1 h) until ``max_attempts`` (50 by
default: about a day); then the row is ``failed`` with its last error, kept and logged.
410 Gone fails at once. A partner whose POST failed is not tried again in the same pass, so an
unreachable partner costs one timeout per pass and cannot hold up the others' notifications.

Delivery is **at least once**: several processes may run dispatchers, and each claims a row
(a compare-and-set on ``next_attempt_at`` that also leases it) before posting it, so one
notification is not sent twice at the same time; but a process dying after the partner got
the POST and before recording it sends it again later. Partners drop repeats by the
notification id.

A revocation made in this process goes out at once: ``on_change`` (a ``ConsentService``
change hook) wakes the dispatcher. The scan stays the source of truth, so revocations made in
other processes and expiries go out on the next poll.
"""

from __future__ import annotations

import base64
import logging
import random
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import jwt
import orjson
from prometheus_client import Counter
from sqlalchemy import Engine, func, literal_column, select, update
from sqlalchemy.exc import SQLAlchemyError

from consent import notifications
from consent.changes import ConsentChange
from consent.errors import NotificationInvalidError
from consent.keys import JWS_ALG, Jwks, KeyRing, SigningKey, verifying_key
from consent.model import Consent, ConsentChangeKind, Partner
from consent.notifications import DeliveryStatus, NotificationKind, PartnerNotification, iso

log = logging.getLogger(__name__)

#: The ``typ`` of the signature's protected header: not a receipt, not a JWT.
MEDIA_TYPE = "consent-notification+jws"
SIGNATURE_HEADER = "x-jws-signature"
ID_HEADER = "Tsunagu-Notification-Id"
DELIVERY_HEADER = "Tsunagu-Delivery-Id"
#: How far a notification's signed ``sent_at`` may be from the receiver's clock, by default.
REPLAY_WINDOW_S = 300.0
USER_AGENT = "tsunagu-webhooks/1"

#: ``pseudonym(partner_id, subject_id)``: the subject's pairwise pseudonym for that partner.
Pseudonym = Callable[[str, str], str]

DELIVERED = Counter(
    "tsunagu_consent_notifications_delivered_total",
    "Partner notifications delivered (2xx from the partner's webhook)",
    ["kind"],
)
RETRIED = Counter(
    "tsunagu_consent_notifications_retried_total",
    "Partner notification attempts that failed and will be retried after a backoff",
    ["kind"],
)
FAILED = Counter(
    "tsunagu_consent_notifications_failed_total",
    "Partner notifications given up on (kept in partner_notifications with status failed)",
    ["kind"],
)

_notifications = PartnerNotification.__table__  # type: ignore[attr-defined]
_consents = Consent.__table__  # type: ignore[attr-defined]
_partners = Partner.__table__  # type: ignore[attr-defined]

_ERROR_SNIPPET = 200  # bytes of a partner's error page kept in last_error


def _utc_now() -> datetime:
    return datetime.now(UTC)


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


# -- signatures ----------------------------------------------------------------------------------


def sign_detached(body: bytes, key: SigningKey) -> str:
    """The detached JWS (``<header>..<signature>``) of ``body``, signed with ``key``."""
    # Appendix F detaches an ordinary JWS, so any JOSE library verifies it. PyJWT's own
    # is_payload_detached signs the unencoded payload instead (RFC 7797, b64=false + crit),
    # which many verifiers refuse.
    compact = jwt.api_jws.encode(
        body, key.private_key, algorithm=JWS_ALG, headers={"kid": key.kid, "typ": MEDIA_TYPE}
    )
    header, _, signature = compact.split(".")
    return f"{header}..{signature}"


class SeenDeliveries:
    """The delivery ids a receiver has accepted within the replay window (in memory)."""

    def __init__(self, window_s: float = REPLAY_WINDOW_S) -> None:
        self.window_s = window_s
        self._seen: dict[str, datetime] = {}  # delivery id -> its sent_at
        self._lock = threading.Lock()

    def first_time(self, delivery_id: str, sent_at: datetime, now: datetime) -> bool:
        """Record ``delivery_id``; False when it was accepted before (a replay)."""
        with self._lock:
            horizon = now - timedelta(seconds=self.window_s)
            # Ids whose sent_at left the window can go: their deliveries fail the window.
            for old in [d for d, at in self._seen.items() if at < horizon]:
                del self._seen[old]
            if delivery_id in self._seen:
                return False
            self._seen[delivery_id] = sent_at
            return True


def verify_notification(
    body: bytes,
    signature: str,
    jwks: Jwks,
    *,
    recipient: str,
    now: datetime | None = None,
    window_s: float = REPLAY_WINDOW_S,
    seen: SeenDeliveries | None = None,
) -> dict[str, Any]:
    """The verified notification in ``body`` for partner ``recipient``, sent within
    ``window_s`` of ``now``, using only ``jwks``; NotificationInvalidError otherwise."""
    parts = signature.strip().split(".")
    if len(parts) != 3 or parts[1] or not parts[0] or not parts[2]:
        raise NotificationInvalidError("malformed", "not a detached JWS (<header>..<signature>)")
    compact = f"{parts[0]}.{_b64url(body)}.{parts[2]}"
    try:
        header = jwt.get_unverified_header(compact)
    except jwt.DecodeError as exc:
        raise NotificationInvalidError("malformed", f"unreadable protected header: {exc}") from exc
    if "crit" in header or "b64" in header:
        raise NotificationInvalidError("unsupported_header", "crit/b64 headers are not used")
    if header.get("typ") != MEDIA_TYPE:
        # A receipt's signature over its own claims must not pass for a notification.
        raise NotificationInvalidError("wrong_type", f"typ {header.get('typ')!r}")
    alg, key = verifying_key(jwks, header, NotificationInvalidError)
    try:
        jwt.api_jws.decode(compact, key, [alg])
    except jwt.InvalidSignatureError as exc:
        raise NotificationInvalidError("bad_signature", "the signature does not match") from exc
    except jwt.InvalidTokenError as exc:
        raise NotificationInvalidError("malformed", str(exc)) from exc
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise NotificationInvalidError("bad_payload", f"not JSON: {exc}") from exc
    kinds = {k.value for k in NotificationKind}
    if (
        not isinstance(payload, dict)
        or payload.get("type") not in kinds
        or not isinstance(payload.get("notification_id"), str)
    ):
        raise NotificationInvalidError("bad_payload", "not a consent notification")
    if payload.get("partner_id") != recipient:
        raise NotificationInvalidError(
            "wrong_recipient",
            f"addressed to {payload.get('partner_id')!r}, not to {recipient!r}",
        )
    try:
        sent_at = datetime.fromisoformat(str(payload.get("sent_at")))
    except ValueError:
        raise NotificationInvalidError("bad_payload", "no valid sent_at") from None
    if sent_at.tzinfo is None:
        raise NotificationInvalidError("bad_payload", "sent_at has no time zone")
    moment = now or _utc_now()
    if abs((moment - sent_at).total_seconds()) > window_s:
        raise NotificationInvalidError(
            "outside_window",
            f"sent at {sent_at.isoformat()}, more than {window_s:g} s from {moment.isoformat()}",
        )
    delivery_id = payload.get("delivery_id")
    if not isinstance(delivery_id, str) or not delivery_id:
        raise NotificationInvalidError("bad_payload", "no delivery_id")
    if seen is not None and not seen.first_time(delivery_id, sent_at, moment):
        raise NotificationInvalidError("replayed", f"delivery {delivery_id} was received before")
    return payload


# -- delivery ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Due:
    """A pending notification, with where it goes and whom it is about."""

    id: str
    partner_id: str
    kind: str
    payload: dict[str, Any]
    attempts: int
    next_attempt_at: datetime
    webhook_url: str | None
    subject_id: str | None


@dataclass(frozen=True, slots=True)
class _Outcome:
    delivered: bool
    error: str | None = None
    final: bool = False  # no retry will help (410 Gone, no webhook_url)


class WebhookDispatcher:
    """Enqueues due notifications and POSTs them, signed, to partners' webhooks (a thread)."""

    def __init__(
        self,
        engine: Engine,
        keys: KeyRing,
        *,
        max_attempts: int = 50,
        timeout_s: float = 10.0,
        pseudonym: Pseudonym | None = None,
        client: httpx.Client | None = None,
        base_delay_s: float = 1.0,
        max_delay_s: float = 3600.0,
        lease_s: float | None = None,
        poll_interval_s: float = 1.0,
        scan_margin: timedelta = timedelta(minutes=15),
        full_scan_every: timedelta = timedelta(hours=1),
        batch: int = 100,
        per_partner: int = 10,
        clock: Callable[[], datetime] = _utc_now,
        rng: random.Random | None = None,
    ) -> None:
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        self.engine = engine
        self.keys = keys
        self.max_attempts = max_attempts
        self.timeout_s = timeout_s
        #: Without one, ``subject_pseudonym`` is null: the platform's subject id is never sent.
        self.pseudonym = pseudonym
        self.base_delay_s = base_delay_s
        self.max_delay_s = max_delay_s
        # A claimed row is someone else's to retry only once its POST must have timed out.
        self.lease = timedelta(seconds=lease_s if lease_s is not None else max(60.0, 3 * timeout_s))
        self.poll_interval_s = poll_interval_s
        self.scan_margin = scan_margin
        self.full_scan_every = full_scan_every
        self.batch = batch
        self.per_partner = per_partner
        self._clock = clock
        self._rng = rng or random.Random()
        self._own_client = client is None
        self._client = client or httpx.Client(
            timeout=timeout_s, follow_redirects=False, headers={"User-Agent": USER_AGENT}
        )
        self._wake = threading.Event()
        self._scan_lock = threading.Lock()
        self._watermark: datetime | None = None
        self._last_full_scan: datetime | None = None
        #: Completed scan-and-deliver passes of ``run`` (for health checks).
        self.passes = 0

    # -- waking --------------------------------------------------------------------------------

    def wake(self) -> None:
        """Make ``run`` scan and deliver now instead of at the end of its poll interval."""
        self._wake.set()

    def on_change(self, change: ConsentChange) -> None:
        """A ``ConsentService`` change hook: a revocation wakes the dispatcher."""
        if change.event == ConsentChangeKind.REVOKED:
            self.wake()

    # -- the loop ------------------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        """Scan, deliver, then wait for a wake-up or the poll interval, until ``stop`` is set."""
        while not stop.is_set():
            self._wake.clear()  # before the pass: a change during it wakes the next one
            more = False
            try:
                now = self._clock()
                self.enqueue_due(now)
                more = self._deliver_batch(now)[0] >= self.batch
            except SQLAlchemyError as exc:
                # The thread outlives a database outage; the next scan catches up.
                log.warning("partner notifications: store unavailable, will retry: %s", exc)
            except Exception:
                log.exception("partner notifications: pass failed, will retry")
            self.passes += 1
            if not more:
                self._idle(stop)

    def _idle(self, stop: threading.Event) -> None:
        deadline = time.monotonic() + self.poll_interval_s
        while not stop.is_set() and not self._wake.is_set():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            self._wake.wait(min(remaining, 0.1))  # short slices so ``stop`` is seen soon

    def close(self) -> None:
        """Close the HTTP client if the dispatcher made it."""
        if self._own_client:
            self._client.close()

    # -- scanning ------------------------------------------------------------------------------

    def enqueue_due(self, now: datetime | None = None) -> int:
        """Insert notifications for revocations and expiries due by ``now``; returns how many."""
        now = now or self._clock()
        with self._scan_lock:
            # Incremental scans look back from the last one by a margin that covers slow
            # transactions and clock skew; a periodic full scan catches anything older.
            full = (
                self._watermark is None
                or self._last_full_scan is None
                or now < self._watermark
                or now - self._last_full_scan >= self.full_scan_every
            )
            since = None if full or self._watermark is None else self._watermark - self.scan_margin
            count = notifications.enqueue_due(self.engine, now, since=since)
            self._watermark = now
            if full:
                self._last_full_scan = now
        return count

    # -- delivering ----------------------------------------------------------------------------

    def deliver_due(self, now: datetime | None = None) -> int:
        """POST up to ``batch`` notifications due by ``now`` once each; returns how many
        were delivered."""
        return self._deliver_batch(now or self._clock())[1]

    def _deliver_batch(self, now: datetime) -> tuple[int, int]:
        """(attempted, delivered) for one batch of due notifications."""
        attempted = delivered = 0
        failing: set[str] = set()
        for due in self._due(now):
            if due.partner_id in failing:
                # One timeout per unreachable partner and pass, so it cannot hold up the others.
                continue
            # Time passes while earlier rows are posted; never lease or back off from the past.
            at = max(now, self._clock())
            lease_until = self._claim(due, at)
            if lease_until is None:
                continue  # another dispatcher has it
            attempted += 1
            outcome = self._attempt(due, at)
            self._record(due, outcome, at, lease_until)
            delivered += outcome.delivered
            if not outcome.delivered:
                failing.add(due.partner_id)
        return attempted, delivered

    def _due(self, now: datetime) -> list[_Due]:
        n = _notifications
        pending_due = (n.c.status == literal_column("'pending'"), n.c.next_attempt_at <= now)
        # At most ``per_partner`` rows of each partner, so one partner's backlog cannot fill
        # the batch (and, with the skip in _deliver_batch, cannot delay the others).
        ranked = (
            select(
                n.c.id,
                func.row_number()
                .over(partition_by=n.c.partner_id, order_by=(n.c.next_attempt_at, n.c.id))
                .label("rank"),
            )
            .where(*pending_due)
            .subquery()
        )
        query = (
            select(
                n.c.id,
                n.c.partner_id,
                n.c.kind,
                n.c.payload,
                n.c.attempts,
                n.c.next_attempt_at,
                _partners.c.webhook_url,
                _consents.c.subject_id,
            )
            .join(ranked, ranked.c.id == n.c.id)
            .join(_partners, _partners.c.id == n.c.partner_id)
            .outerjoin(_consents, _consents.c.id == n.c.consent_id)
            .where(ranked.c.rank <= self.per_partner)
            .order_by(n.c.next_attempt_at, n.c.id)
            .limit(self.batch)
        )
        with self.engine.connect() as conn:
            return [_Due(**r._mapping) for r in conn.execute(query)]

    def _claim(self, due: _Due, at: datetime) -> datetime | None:
        """Lease ``due`` to this dispatcher (compare-and-set), counting the attempt."""
        n = _notifications
        lease_until = at + self.lease
        with self.engine.begin() as conn:
            claimed = conn.execute(
                update(n)
                .where(
                    n.c.id == due.id,
                    n.c.status == DeliveryStatus.PENDING.value,
                    n.c.next_attempt_at == due.next_attempt_at,
                )
                .values(next_attempt_at=lease_until, attempts=n.c.attempts + 1)
            ).rowcount
        return lease_until if claimed == 1 else None

    def _attempt(self, due: _Due, at: datetime) -> _Outcome:
        if due.webhook_url is None:
            return _Outcome(False, "the partner has no webhook_url any more", final=True)
        delivery_id = uuid.uuid4().hex
        try:
            body = self._body(due, at, delivery_id)
            signature = sign_detached(body, self.keys.signing_key)
        except Exception as exc:
            # A failing pseudonym service is an attempt that failed: recorded and retried.
            return _Outcome(False, f"preparing the notification: {type(exc).__name__}: {exc}")
        headers = {
            "Content-Type": "application/json",
            SIGNATURE_HEADER: signature,
            ID_HEADER: due.id,
            DELIVERY_HEADER: delivery_id,
        }
        try:
            with self._client.stream(
                "POST", due.webhook_url, content=body, headers=headers, timeout=self.timeout_s
            ) as response:
                if response.is_success:
                    return _Outcome(True)
                snippet = b""
                for chunk in response.iter_bytes():  # an error page may be large: keep its start
                    snippet += chunk
                    if len(snippet) >= _ERROR_SNIPPET:
                        break
                text = snippet[:_ERROR_SNIPPET].decode("utf-8", "replace")
                error = f"HTTP {response.status_code}: {text}".rstrip(": ")
                return _Outcome(False, error, final=response.status_code == 410)
        except httpx.HTTPError as exc:
            return _Outcome(False, f"{type(exc).__name__}: {exc}")

    def _body(self, due: _Due, at: datetime, delivery_id: str) -> bytes:
        # An erasure writes the pseudonym into the notice before scrubbing the consent.
        subject_pseudonym = due.payload.get("subject_pseudonym")
        if subject_pseudonym is None and self.pseudonym is not None and due.subject_id:
            subject_pseudonym = self.pseudonym(due.partner_id, due.subject_id)
        return orjson.dumps(
            {
                **due.payload,
                "subject_pseudonym": subject_pseudonym,
                "sent_at": iso(at),
                "delivery_id": delivery_id,
            }
        )

    def _backoff(self, attempts: int) -> timedelta:
        """Full jitter: uniform in [0, min(cap, base * 2^(attempts-1))]."""
        ceiling = min(self.max_delay_s, self.base_delay_s * 2.0 ** min(attempts - 1, 62))
        return timedelta(seconds=self._rng.uniform(0.0, ceiling))

    def _record(self, due: _Due, outcome: _Outcome, at: datetime, lease_until: datetime) -> None:
        n = _notifications
        attempts = due.attempts + 1
        where: list[Any] = [n.c.id == due.id, n.c.status == DeliveryStatus.PENDING.value]
        values: dict[str, Any]
        if outcome.delivered:
            # Delivered is delivered, even if the lease ran out and another dispatcher claimed it.
            values = {
                "status": DeliveryStatus.DELIVERED.value,
                "delivered_at": at,
                "last_error": None,
            }
            DELIVERED.labels(due.kind).inc()
        else:
            where.append(n.c.next_attempt_at == lease_until)  # only while the claim is ours
            if outcome.final or attempts >= self.max_attempts:
                values = {"status": DeliveryStatus.FAILED.value, "last_error": outcome.error}
                FAILED.labels(due.kind).inc()
                log.warning(
                    "partner notification %s (%s) to %s failed after %d attempt(s): %s",
                    due.id,
                    due.kind,
                    due.partner_id,
                    attempts,
                    outcome.error,
                )
            else:
                values = {
                    "next_attempt_at": at + self._backoff(attempts),
                    "last_error": outcome.error,
                }
                RETRIED.labels(due.kind).inc()
                log.info("notification %s: attempt %d failed: %s", due.id, attempts, outcome.error)
        with self.engine.begin() as conn:
            conn.execute(update(n).where(*where).values(**values))
