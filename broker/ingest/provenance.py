"""Who published a bus record: the connector's token travels in a header and binds the event
to the CloudEvents ``source`` values that token names.

A record without a valid token is dead-lettered as ``unauthenticated``; a record whose event
claims a source its token does not name, as ``source_not_allowed``. Tokens are judged as of
the record's timestamp (a record may wait on the bus longer than a token lives), and each
distinct token is verified once: the hot path is a dictionary lookup.
"""

from __future__ import annotations

from collections import OrderedDict
from datetime import UTC, datetime

from broker.auth.errors import TokenRejectedError
from broker.auth.principals import Principal, Role
from broker.auth.verifier import TokenVerifier
from broker.bus.base import Headers
from broker.cloudevents import CloudEvent
from broker.ingest.deadletter import H_CONNECTOR_TOKEN, DeadLetterReason, Rejection

__all__ = ["H_CONNECTOR_TOKEN", "SourceAuthenticator"]


class SourceAuthenticator:
    """Checks that a record's event comes from a connector entitled to its ``source``."""

    def __init__(self, verifier: TokenVerifier, *, cache_size: int = 4096) -> None:
        self.verifier = verifier
        self.cache_size = cache_size
        # token -> its principal, or why it was refused (signature and claims don't change)
        self._seen: OrderedDict[bytes, Principal | str] = OrderedDict()

    def check(self, headers: Headers, event: CloudEvent, published_ms: int) -> Rejection | None:
        """None when the record may be ingested, else why not."""
        token = next((v for name, v in headers if name == H_CONNECTOR_TOKEN), None)
        if token is None:
            return self._reject(
                DeadLetterReason.UNAUTHENTICATED,
                f"the record carries no connector token ({H_CONNECTOR_TOKEN} header)",
                event,
            )
        at = datetime.fromtimestamp(published_ms / 1000, UTC) if published_ms > 0 else None
        judged = self._principal(token, at)
        if isinstance(judged, str):
            return self._reject(DeadLetterReason.UNAUTHENTICATED, judged, event)
        if judged.role is not Role.CONNECTOR:
            return self._reject(
                DeadLetterReason.UNAUTHENTICATED,
                f"the record's token is a {judged.role} token, not a connector's",
                event,
                sender=judged.subject,
            )
        if event.source not in judged.sources:
            return self._reject(
                DeadLetterReason.SOURCE_NOT_ALLOWED,
                f"connector {judged.subject} may publish as "
                f"{', '.join(sorted(judged.sources)) or 'no source'}, not as {event.source!r}",
                event,
                "/source",
                sender=judged.subject,
            )
        return None

    def _principal(self, token: bytes, at: datetime | None) -> Principal | str:
        cached = self._seen.get(token)
        if isinstance(cached, Principal):
            # Signature and claims were checked once; only the time window depends on the
            # record, and it is cheap to compare.
            if at is not None and at.timestamp() > cached.expires_at.timestamp() + (
                self.verifier.leeway_s
            ):
                return "the token had expired when the record was published"
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

    @staticmethod
    def _reject(
        reason: DeadLetterReason,
        detail: str,
        event: CloudEvent,
        path: str = "",
        *,
        sender: str = "",
    ) -> Rejection:
        return Rejection(reason, detail, path, "", event.source, event.id, sender)
