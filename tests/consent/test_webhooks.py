"""Partner notifications: a revocation or expiry reaches the partner's webhook as one signed
POST, retried after failures with the same notification id, failed visibly after the last
attempt; nothing is sent to partners without a webhook, and nothing twice by two dispatchers.

The partner is a real HTTP server on 127.0.0.1; the store is SQLite and PostgreSQL.
"""

from __future__ import annotations

import hashlib
import json
import random
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, cast

import joserfc.jwk
import joserfc.jws
import jwt
import pytest
from sqlalchemy import Engine

from broker.store.database import make_engine
from consent.errors import NotificationInvalidError
from consent.keys import Jwks, KeyRing, SigningKey
from consent.model import Consent
from consent.notifications import (
    DeliveryStatus,
    PartnerNotification,
    iso,
    list_notifications,
)
from consent.service import ConsentService
from consent.webhooks import (
    DELIVERY_HEADER,
    ID_HEADER,
    SIGNATURE_HEADER,
    SeenDeliveries,
    WebhookDispatcher,
    sign_detached,
    verify_notification,
)
from tests.consent.world import ALICE, BOB, BUS_FIRM, PLANNING, TRIPS, days, now

TAXI = "ptn-mitoyotaxi01"  # a partner with a webhook


@dataclass(frozen=True)
class Received:
    """One POST the partner's server got."""

    path: str
    headers: dict[str, str]  # names lower-cased
    body: bytes


class PartnerServer:
    """A partner's webhook endpoint: records every POST; fails or hangs when told to."""

    def __init__(self) -> None:
        self.received: list[Received] = []
        self.fail_first = 0  # answer this many POSTs with ``fail_status``
        self.fail_status = 500
        self.hang = False  # answer nothing until the test ends
        self.released = threading.Event()
        self._arrived = threading.Condition()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        """Where the partner registered its webhook."""
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/hooks/consent"

    def wait_for(self, count: int, timeout_s: float = 10.0) -> bool:
        """Whether ``count`` POSTs arrived within ``timeout_s``."""
        with self._arrived:
            return self._arrived.wait_for(lambda: len(self.received) >= count, timeout_s)

    def close(self) -> None:
        """Release hanging requests and stop serving."""
        self.released.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(5)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                received = Received(
                    self.path, {k.lower(): v for k, v in self.headers.items()}, body
                )
                with server._arrived:
                    server.received.append(received)
                    failing = server.fail_first > 0
                    server.fail_first -= failing
                    server._arrived.notify_all()
                if server.hang:
                    server.released.wait(30)
                status = server.fail_status if failing else 204
                try:
                    self.send_response(status)
                    payload = b"boom" if failing else b""
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except OSError:
                    pass  # the dispatcher timed out and went away

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler


def pseudonym(partner_id: str, subject_id: str) -> str:
    """A stand-in pairwise pseudonym."""
    digest = hashlib.sha256(f"{partner_id}/{subject_id}".encode()).hexdigest()
    return f"psn-{digest[:20]}"


def published(keys: KeyRing) -> Jwks:
    """The JWKS as a partner fetches it from /.well-known/jwks.json."""
    loaded: Jwks = json.loads(json.dumps(keys.jwks()))
    return loaded


def later(hours: float) -> datetime:
    """A moment ``hours`` from now."""
    return now() + timedelta(hours=hours)


def closed_port_url() -> str:
    """A URL nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/hooks"


def add_webhook_partner(service: ConsentService, partner_id: str, url: str) -> None:
    """A partner with a webhook, approved for transport planning."""
    service.register_partner("三豊タクシー", "Mitoyo Taxi", partner_id=partner_id, webhook_url=url)
    service.approve_purpose(partner_id, PLANNING, approved_by="mitoyo-city/kikaku-1")


@pytest.fixture
def server() -> Iterator[PartnerServer]:
    """The taxi firm's webhook endpoint."""
    srv = PartnerServer()
    yield srv
    srv.close()


@pytest.fixture
def taxi(service: ConsentService, server: PartnerServer) -> str:
    """The taxi firm, notified at ``server``."""
    add_webhook_partner(service, TAXI, server.url)
    return TAXI


Dispatchers = Callable[..., WebhookDispatcher]


@pytest.fixture
def dispatchers(engine: Engine, keys: KeyRing) -> Iterator[Dispatchers]:
    """Makes dispatchers (a fixed random seed, a short timeout), closed at the end."""
    made: list[WebhookDispatcher] = []

    def make(**options: Any) -> WebhookDispatcher:
        options = {
            "max_attempts": 5,
            "timeout_s": 5.0,
            "pseudonym": pseudonym,
            "rng": random.Random(7),
            **options,
        }
        dispatcher = WebhookDispatcher(options.pop("engine", engine), keys, **options)
        made.append(dispatcher)
        return dispatcher

    yield make
    for dispatcher in made:
        dispatcher.close()


def revoked_consent(service: ConsentService, partner_id: str, subject: str = ALICE) -> Consent:
    """A consent granted to ``partner_id`` and then revoked: the revoking row."""
    granted = service.grant(subject, partner_id, PLANNING, [TRIPS], expires_at=now() + days(90))
    return service.revoke(subject, granted.id)


def the_notification(engine: Engine) -> PartnerNotification:
    """The one notification in the store."""
    (notification,) = list_notifications(engine)
    return notification


def test_a_revocation_is_one_signed_post_that_verifies_with_the_published_jwks_alone(
    service: ConsentService,
    taxi: str,
    server: PartnerServer,
    dispatchers: Dispatchers,
    keys: KeyRing,
) -> None:
    revoked = revoked_consent(service, taxi)
    dispatcher = dispatchers()
    assert dispatcher.enqueue_due() == 1
    assert dispatcher.deliver_due() == 1

    (post,) = server.received
    assert post.path == "/hooks/consent"
    assert post.headers["content-type"] == "application/json"
    payload = verify_notification(
        post.body, post.headers[SIGNATURE_HEADER], published(keys), recipient=taxi
    )
    assert payload["type"] == "consent.revoked"
    assert payload["notification_id"] == post.headers[ID_HEADER.lower()]
    assert payload["consent_id"] == revoked.id
    assert payload["supersedes"] == revoked.supersedes
    assert payload["status"] == "revoked"
    assert (payload["partner_id"], payload["purpose"]) == (taxi, PLANNING)
    assert payload["categories"] == [TRIPS]
    assert payload["effective_at"] == iso(revoked.created_at)
    assert payload["sent_at"]
    # The partner learns its own pseudonym of the subject, never the platform's id.
    assert payload["subject_pseudonym"] == pseudonym(taxi, ALICE)
    assert ALICE.encode() not in post.body

    notification = the_notification(service.engine)
    assert notification.id == payload["notification_id"]
    assert (notification.status, notification.attempts) == (DeliveryStatus.DELIVERED, 1)
    assert notification.delivered_at is not None
    assert dispatcher.deliver_due(later(48)) == 0  # delivered is done
    assert len(server.received) == 1


def test_a_standard_jose_library_verifies_the_detached_signature(
    service: ConsentService,
    taxi: str,
    server: PartnerServer,
    dispatchers: Dispatchers,
    keys: KeyRing,
) -> None:
    revoked_consent(service, taxi)
    dispatcher = dispatchers()
    dispatcher.enqueue_due()
    dispatcher.deliver_due()
    (post,) = server.received
    header_b64, detached, signature_b64 = post.headers[SIGNATURE_HEADER].split(".")
    assert detached == ""  # RFC 7515 Appendix F: the payload is the body
    attached = f"{header_b64}.{jwt.utils.base64url_encode(post.body).decode()}.{signature_b64}"
    header = jwt.get_unverified_header(attached)
    assert (header["alg"], header["kid"]) == ("Ed25519", keys.signing_key.kid)
    # An independent JOSE library (joserfc) verifies it: RFC 9864's Ed25519.
    keyset = joserfc.jwk.KeySet.import_key_set(cast(Any, published(keys)))
    verified = joserfc.jws.deserialize_compact(attached, keyset, algorithms=["Ed25519"])
    assert verified.payload == post.body


def test_a_tampered_body_or_a_foreign_signature_fails_verification(
    service: ConsentService,
    taxi: str,
    server: PartnerServer,
    dispatchers: Dispatchers,
    keys: KeyRing,
) -> None:
    revoked_consent(service, taxi)
    dispatcher = dispatchers()
    dispatcher.enqueue_due()
    dispatcher.deliver_due()
    (post,) = server.received
    signature, jwks = post.headers[SIGNATURE_HEADER], published(keys)

    tampered = post.body.replace(b"consent.revoked", b"consent.expired")
    with pytest.raises(NotificationInvalidError) as bad:
        verify_notification(tampered, signature, jwks, recipient=taxi)
    assert (bad.value.code, bad.value.reason) == ("notification_invalid", "bad_signature")

    forged = sign_detached(post.body, SigningKey.generate())
    with pytest.raises(NotificationInvalidError) as unknown:
        verify_notification(post.body, forged, jwks, recipient=taxi)
    assert unknown.value.reason == "unknown_kid"

    with pytest.raises(NotificationInvalidError) as malformed:
        verify_notification(post.body, signature.replace("..", ".x."), jwks, recipient=taxi)
    assert malformed.value.reason == "malformed"

    # A receipt's signature over its own claims is no notification signature.
    receipt = service.history(ALICE)[-1].receipt
    header, claims, receipt_signature = receipt.split(".")
    claims_bytes = jwt.utils.base64url_decode(claims)
    with pytest.raises(NotificationInvalidError) as receipt_as_signature:
        verify_notification(claims_bytes, f"{header}..{receipt_signature}", jwks, recipient=taxi)
    assert receipt_as_signature.value.reason == "wrong_type"


def test_a_replayed_or_misaddressed_notification_fails_verification(
    service: ConsentService,
    taxi: str,
    server: PartnerServer,
    dispatchers: Dispatchers,
    keys: KeyRing,
) -> None:
    revoked_consent(service, taxi)
    dispatcher = dispatchers()
    dispatcher.enqueue_due()
    dispatcher.deliver_due()
    (post,) = server.received
    signature, jwks = post.headers[SIGNATURE_HEADER], published(keys)
    seen = SeenDeliveries()
    payload = verify_notification(post.body, signature, jwks, recipient=taxi, seen=seen)
    assert payload["delivery_id"] == post.headers[DELIVERY_HEADER.lower()]

    # The same POST again, inside the window: refused by its delivery id.
    with pytest.raises(NotificationInvalidError) as replayed:
        verify_notification(post.body, signature, jwks, recipient=taxi, seen=seen)
    assert replayed.value.reason == "replayed"
    # Captured and sent to another partner's webhook: not addressed to it.
    with pytest.raises(NotificationInvalidError) as misaddressed:
        verify_notification(post.body, signature, jwks, recipient="ptn-another01")
    assert misaddressed.value.reason == "wrong_recipient"
    assert taxi in misaddressed.value.detail
    # Replayed later than the window after its signed sent_at (300 s by default): refused.
    sent_at = datetime.fromisoformat(payload["sent_at"])
    with pytest.raises(NotificationInvalidError) as stale:
        verify_notification(
            post.body, signature, jwks, recipient=taxi, now=sent_at + timedelta(seconds=301)
        )
    assert stale.value.reason == "outside_window"
    # ... and at the edge of the window it still verifies (clocks differ a little).
    assert verify_notification(
        post.body, signature, jwks, recipient=taxi, now=sent_at + timedelta(seconds=299)
    )


def test_every_attempt_has_its_own_delivery_id_and_sent_at(
    service: ConsentService,
    taxi: str,
    server: PartnerServer,
    dispatchers: Dispatchers,
    keys: KeyRing,
) -> None:
    revoked_consent(service, taxi)
    server.fail_first = 1  # the first attempt fails: a retry follows
    dispatcher = dispatchers()
    dispatcher.enqueue_due()
    dispatcher.deliver_due()
    dispatcher.deliver_due(later(2))
    first, second = server.received
    assert first.headers[ID_HEADER.lower()] == second.headers[ID_HEADER.lower()]
    assert first.headers[DELIVERY_HEADER.lower()] != second.headers[DELIVERY_HEADER.lower()]
    retry = verify_notification(
        second.body,
        second.headers[SIGNATURE_HEADER],
        published(keys),
        recipient=taxi,
        now=later(2),
    )
    assert retry["delivery_id"] == second.headers[DELIVERY_HEADER.lower()]


def test_failures_are_retried_with_the_same_notification_id_until_delivered(
    service: ConsentService, taxi: str, server: PartnerServer, dispatchers: Dispatchers
) -> None:
    revoked_consent(service, taxi)
    server.fail_first = 2
    dispatcher = dispatchers()
    dispatcher.enqueue_due()

    assert dispatcher.deliver_due() == 0
    first = the_notification(service.engine)
    assert (first.status, first.attempts) == (DeliveryStatus.PENDING, 1)
    assert first.last_error is not None and first.last_error.startswith("HTTP 500")
    assert first.next_attempt_at > first.created_at  # backed off

    # Later passes (hours apart, past any backoff so far) retry it.
    assert dispatcher.deliver_due(later(2)) == 0
    assert dispatcher.deliver_due(later(4)) == 1
    ids = {post.headers[ID_HEADER.lower()] for post in server.received}
    assert len(server.received) == 3
    assert ids == {first.id}
    done = the_notification(service.engine)
    assert (done.status, done.attempts, done.last_error) == (DeliveryStatus.DELIVERED, 3, None)


def test_a_failing_partner_is_tried_once_per_pass(
    service: ConsentService, taxi: str, server: PartnerServer, dispatchers: Dispatchers
) -> None:
    revoked_consent(service, taxi, subject=ALICE)
    revoked_consent(service, taxi, subject=BOB)
    server.fail_first = 1
    dispatcher = dispatchers()
    assert dispatcher.enqueue_due() == 2
    assert dispatcher.deliver_due() == 0
    assert len(server.received) == 1  # the second waits for the next pass
    assert dispatcher.deliver_due(later(2)) == 2
    assert {n.status for n in list_notifications(service.engine)} == {DeliveryStatus.DELIVERED}


def test_one_partners_backlog_does_not_hold_up_another_partners_notifications(
    service: ConsentService, taxi: str, server: PartnerServer, dispatchers: Dispatchers
) -> None:
    add_webhook_partner(service, "ptn-busfirm0002", server.url)  # the same endpoint, for brevity
    server.fail_first = 1
    dispatcher = dispatchers(batch=2, per_partner=1)
    revoked_consent(service, taxi, subject=ALICE)
    revoked_consent(service, taxi, subject=BOB)
    assert dispatcher.enqueue_due() == 2  # the taxi firm's two are the oldest
    revoked_consent(service, "ptn-busfirm0002")
    assert dispatcher.enqueue_due() == 1
    assert dispatcher.deliver_due() == 1  # the taxi firm failed; the other firm was served
    partners = [json.loads(post.body)["partner_id"] for post in server.received]
    assert partners == [taxi, "ptn-busfirm0002"]


def test_after_max_attempts_the_notification_is_failed_and_kept_with_its_last_error(
    service: ConsentService, taxi: str, server: PartnerServer, dispatchers: Dispatchers
) -> None:
    revoked_consent(service, taxi)
    server.fail_first = 100
    dispatcher = dispatchers(max_attempts=3)
    dispatcher.enqueue_due()
    for hours in (0, 2, 4, 6, 8):
        assert dispatcher.deliver_due(later(hours)) == 0
    assert len(server.received) == 3  # and no more after giving up
    failed = the_notification(service.engine)
    assert (failed.status, failed.attempts) == (DeliveryStatus.FAILED, 3)
    assert failed.last_error == "HTTP 500: boom"
    assert list_notifications(service.engine, status=DeliveryStatus.FAILED) == [failed]
    assert dispatcher.enqueue_due(later(10)) == 0  # failed is not enqueued again


def test_gone_fails_at_once(
    service: ConsentService, taxi: str, server: PartnerServer, dispatchers: Dispatchers
) -> None:
    revoked_consent(service, taxi)
    server.fail_first, server.fail_status = 1, 410
    dispatcher = dispatchers(max_attempts=5)
    dispatcher.enqueue_due()
    assert dispatcher.deliver_due() == 0
    assert dispatcher.deliver_due(later(2)) == 0
    gone = the_notification(service.engine)
    assert (gone.status, gone.attempts) == (DeliveryStatus.FAILED, 1)
    assert gone.last_error is not None and gone.last_error.startswith("HTTP 410")


def test_a_timeout_and_a_refused_connection_are_failed_attempts(
    service: ConsentService, taxi: str, server: PartnerServer, dispatchers: Dispatchers
) -> None:
    add_webhook_partner(service, "ptn-closedfirm01", closed_port_url())
    revoked_consent(service, taxi)
    revoked_consent(service, "ptn-closedfirm01")
    server.hang = True
    dispatcher = dispatchers(max_attempts=1, timeout_s=0.2)
    assert dispatcher.enqueue_due() == 2
    assert dispatcher.deliver_due() == 0
    errors = {n.partner_id: n.last_error or "" for n in list_notifications(service.engine)}
    assert "Timeout" in errors[taxi]
    assert "ConnectError" in errors["ptn-closedfirm01"]
    assert {n.status for n in list_notifications(service.engine)} == {DeliveryStatus.FAILED}


def test_an_expiry_is_notified_by_a_later_scan_with_no_job_at_expiry_time(
    service: ConsentService,
    taxi: str,
    server: PartnerServer,
    dispatchers: Dispatchers,
    keys: KeyRing,
) -> None:
    expiring = service.grant(ALICE, taxi, PLANNING, [TRIPS], expires_at=later(1))
    revoked = revoked_consent(service, taxi, subject=BOB)  # revoked before it could expire
    dispatcher = dispatchers()
    assert dispatcher.enqueue_due() == 1  # the revocation; ALICE's is not expired yet
    assert dispatcher.deliver_due() == 1

    # Nothing ran at expiry time; a scan hours later, by a freshly started process, finds it.
    restarted = dispatchers()
    assert restarted.enqueue_due(later(3)) == 1
    assert restarted.deliver_due(later(3)) == 1
    expired = verify_notification(
        server.received[1].body,
        server.received[1].headers[SIGNATURE_HEADER],
        published(keys),
        recipient=taxi,
        now=later(3),
    )
    assert expired["type"] == "consent.expired"
    assert (expired["consent_id"], expired["status"]) == (expiring.id, "expired")
    assert expired["effective_at"] == iso(expiring.expires_at)
    assert expired["subject_pseudonym"] == pseudonym(taxi, ALICE)
    kinds = {(n.consent_id, n.kind) for n in list_notifications(service.engine)}
    assert kinds == {(revoked.id, "consent.revoked"), (expiring.id, "consent.expired")}
    assert restarted.enqueue_due(later(200 * 24)) == 0  # BOB's revoked consent never "expires"


def test_a_partner_without_a_webhook_gets_nothing(
    service: ConsentService, server: PartnerServer, dispatchers: Dispatchers
) -> None:
    revoked_consent(service, BUS_FIRM)
    service.grant(BOB, BUS_FIRM, PLANNING, [TRIPS], expires_at=later(1))
    dispatcher = dispatchers()
    assert dispatcher.enqueue_due(later(3)) == 0
    assert dispatcher.deliver_due(later(3)) == 0
    assert list_notifications(service.engine) == []
    assert server.received == []


def test_enqueueing_is_idempotent_and_two_dispatchers_deliver_once(
    service: ConsentService,
    taxi: str,
    server: PartnerServer,
    dispatchers: Dispatchers,
    store_url: str,
) -> None:
    revoked_consent(service, taxi)
    other_process = make_engine(store_url)
    try:
        first, second = dispatchers(), dispatchers(engine=other_process)
        assert first.enqueue_due() == 1
        assert first.enqueue_due() == 0
        assert second.enqueue_due() == 0

        # Both pick the same due row at once: the claim lets one of them send it.
        barrier = threading.Barrier(2)
        delivered: list[int] = []

        def deliver(dispatcher: WebhookDispatcher) -> None:
            barrier.wait()
            delivered.append(dispatcher.deliver_due())

        threads = [threading.Thread(target=deliver, args=(d,)) for d in (first, second)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        assert sorted(delivered) == [0, 1]
        assert second.deliver_due(later(2)) == first.deliver_due(later(2)) == 0
        assert len(server.received) == 1
    finally:
        other_process.dispose()


def test_a_revocation_wakes_a_running_dispatcher(
    service: ConsentService, taxi: str, server: PartnerServer, dispatchers: Dispatchers
) -> None:
    # Polling once an hour: only the change hook can make it deliver during this test.
    dispatcher = dispatchers(poll_interval_s=3600)
    service.add_change_hook(dispatcher.on_change)
    stop = threading.Event()
    thread = threading.Thread(target=dispatcher.run, args=(stop,), daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while dispatcher.passes < 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert dispatcher.passes >= 1  # the first pass is over: now it sleeps
        revoked_consent(service, taxi)
        assert server.wait_for(1)
    finally:
        stop.set()
        thread.join(10)
    assert not thread.is_alive()
    assert the_notification(service.engine).status == DeliveryStatus.DELIVERED
