"""Who may publish what: a connector is registered, in its token, for the CloudEvents
``source`` values it publishes as and the event types it publishes; ``entitlement`` is that
one rule, applied to HTTP ingest at the door and to every bus record by the worker.

On the bus the connector's token travels in a header, with the MAC of the record's bytes under
that connector's own key (``broker.auth.origin``): whoever copies a token off the topic cannot
put it on other bytes. A record without a valid token and MAC is
dead-lettered as ``unauthenticated``; a record whose event claims a source its token does not
name, as ``source_not_allowed``; an event of a type its connector is not registered for, as
``not_authorized``. Each distinct token is verified once: the hot path is a dictionary lookup.

A token's time window is judged at the bus's own append time where the bus stamps it (the
embedded SQLite log; Kafka topics with LogAppendTime, as the platform creates them), else at
the moment the worker reads the record: never at a timestamp the producer chose, which would
let a long-expired token through.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from datetime import UTC, datetime

from broker.auth.errors import TokenRejectedError
from broker.auth.origin import connector_key, mac_matches
from broker.auth.principals import Principal, Role
from broker.auth.verifier import TokenVerifier
from contract.bus import Record
from contract.cloudevents import CloudEvent
from contract.deadletter import DeadLetterReason, Rejection
from contract.origin import H_CONNECTOR_MAC, H_CONNECTOR_TOKEN

__all__ = ["H_CONNECTOR_TOKEN", "SourceAuthenticator", "entitlement", "registered_for"]


def registered_for(principal: Principal, event_type: str) -> bool:
    """Whether ``principal``'s registration names ``event_type`` (exactly, or ``domain.*``)."""
    patterns = principal.event_types
    return event_type in patterns or f"{event_type.split('.', 1)[0]}.*" in patterns


def entitlement(principal: Principal, event: CloudEvent) -> Rejection | None:
    """None when ``principal`` may publish ``event``, else why not: only a connector, only as
    one of its own sources, only event types it is registered for."""
    if principal.role is not Role.CONNECTOR:
        return _refusal(
            DeadLetterReason.UNAUTHENTICATED,
            f"the record's token is a {principal.role} token, not a connector's",
            event,
            sender=principal.subject,
        )
    if event.source not in principal.sources:
        return _refusal(
            DeadLetterReason.SOURCE_NOT_ALLOWED,
            f"connector {principal.subject} may publish as "
            f"{', '.join(sorted(principal.sources)) or 'no source'}, not as {event.source!r}",
            event,
            "/source",
            sender=principal.subject,
        )
    if not registered_for(principal, event.type):
        registered = ", ".join(sorted(principal.event_types)) or "no event type"
        return _refusal(
            DeadLetterReason.NOT_AUTHORIZED,
            f"connector {principal.subject} is registered for {registered}, not for "
            f"{event.type!r}; a token for it names it (tsunagu token issue --event-type)",
            event,
            "/type",
            sender=principal.subject,
        )
    return None


def _refusal(
    reason: DeadLetterReason, detail: str, event: CloudEvent, path: str = "", *, sender: str = ""
) -> Rejection:
    return Rejection(reason, detail, path, "", event.source, event.id, sender)


class SourceAuthenticator:
    """Checks that a record's event comes from a connector entitled to publish it."""

    def __init__(
        self,
        verifier: TokenVerifier,
        master_key: bytes,
        *,
        cache_size: int = 4096,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.verifier = verifier
        self._master = master_key
        self._keys: dict[str, bytes] = {}  # connector -> its MAC key (derived once)
        self.cache_size = cache_size
        self.clock = clock
        # token -> its principal, or why it was refused (signature and claims don't change)
        self._seen: OrderedDict[bytes, Principal | str] = OrderedDict()

    def check(self, record: Record, event: CloudEvent) -> Rejection | None:
        """None when ``record`` (holding ``event``) may be ingested, else why not."""
        headers = record.headers
        token = next((v for name, v in headers if name == H_CONNECTOR_TOKEN), None)
        if token is None:
            return _refusal(
                DeadLetterReason.UNAUTHENTICATED,
                f"the record carries no connector token ({H_CONNECTOR_TOKEN} header)",
                event,
            )
        judged = self._principal(token, self._judged_at(record))
        if isinstance(judged, str):
            return _refusal(DeadLetterReason.UNAUTHENTICATED, judged, event)
        key = self._keys.get(judged.subject)
        if key is None:
            key = self._keys[judged.subject] = connector_key(self._master, judged.subject)
        if not mac_matches(key, record.key, record.value, headers):
            # A token read off the topic, put on other bytes: the MAC needs the connector's key.
            return _refusal(
                DeadLetterReason.UNAUTHENTICATED,
                f"the record's {H_CONNECTOR_MAC} is missing or not the MAC of its bytes under "
                f"connector {judged.subject}'s key: a token alone does not prove who sent it",
                event,
                sender=judged.subject,
            )
        return entitlement(judged, event)

    def connector_of(self, record: Record) -> str:
        """The connector whose token ``record`` carries, once ``check`` accepted it."""
        token = next((v for name, v in record.headers if name == H_CONNECTOR_TOKEN), None)
        judged = self._seen.get(token) if token is not None else None
        return judged.subject if isinstance(judged, Principal) else ""

    def _judged_at(self, record: Record) -> datetime:
        # A producer-set timestamp (Kafka's CreateTime) proves nothing: a record stamped 0 or
        # last year would carry an expired token through. Only the bus's own stamp (the
        # embedded log; Kafka's LogAppendTime, which the platform's topics use), or the moment
        # the worker reads the record, is a time the publisher did not choose.
        if record.appended and record.timestamp_ms > 0:
            return datetime.fromtimestamp(min(record.timestamp_ms / 1000, self.clock()), UTC)
        return datetime.fromtimestamp(self.clock(), UTC)

    def _principal(self, token: bytes, at: datetime) -> Principal | str:
        cached = self._seen.get(token)
        if isinstance(cached, Principal):
            # Signature and claims were checked once; only the time window depends on the
            # record, and it is cheap to compare.
            if at.timestamp() > cached.expires_at.timestamp() + self.verifier.leeway_s:
                return (
                    "the connector token had expired when the record reached ingest; "
                    "publish with a fresh one"
                )
            return cached
        if cached is not None:
            return cached
        try:
            principal: Principal | str = self.verifier.verify(token.decode("ascii"), at)
        except (TokenRejectedError, UnicodeDecodeError) as exc:
            detail = exc.detail if isinstance(exc, TokenRejectedError) else "not a JWT"
            if "expired" in detail or "not valid yet" in detail:
                return detail  # depends on the record's time: don't cache it
            principal = detail
        self._seen[token] = principal
        if len(self._seen) > self.cache_size:
            self._seen.popitem(last=False)
        return principal
