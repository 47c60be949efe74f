"""Where the outbox drains to: the bus itself (Kafka or the SQLite log), or HTTP ingest."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import httpx
import orjson

from connectors.sdk.outbox import OutboxRow
from contract.bus import Bus, BusError, OutRecord
from contract.cloudevents import STRUCTURED_HEADERS
from contract.origin import OriginSigner

__all__ = [
    "CLOUDEVENTS_BATCH",
    "BusSink",
    "HttpSink",
    "SendResult",
    "Sink",
    "SinkUnavailable",
]

log = logging.getLogger(__name__)

CLOUDEVENTS_BATCH = "application/cloudevents-batch+json"


class SinkUnavailable(Exception):
    """The destination did not take the batch; every event stays queued and is retried."""

    def __init__(
        self, message: str, retry_after_s: float | None = None, *, credentials: bool = False
    ) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s
        #: The platform refused the connector's credentials (401/403): retrying cannot help
        #: until an operator fixes the token, but the events stay queued meanwhile.
        self.credentials = credentials


@dataclass(frozen=True, slots=True)
class SendResult:
    """What the destination said about a delivered batch, beyond "taken"."""

    #: seq → reason, for events refused for good (retrying cannot help).
    rejected: dict[int, str] = field(default_factory=dict)
    #: events the platform already had (delivered, and counted as sent).
    duplicates: int = 0


class Sink(Protocol):
    """Delivers batches of queued events."""

    def send(self, records: Sequence[OutboxRow]) -> SendResult | None:
        """Deliver every record or raise SinkUnavailable; None means all were taken."""
        ...

    def close(self) -> None:
        """Release connections."""
        ...


class BusSink:
    """Publishes to the bus: each row on the topic the connector chose for it, keyed.

    The connector owns topic naming (its ``topic_prefix``), so the sink adds nothing.
    """

    def __init__(self, bus: Bus, token: str | None = None, key: bytes | None = None) -> None:
        self.bus = bus
        # The connector's token rides on every record with the record's MAC under the
        # connector's key: the platform's ingest checks both, so the token names the sender
        # and the MAC proves these bytes are the sender's (a token copied off the topic is
        # useless without the key).
        if token is not None and key is None:
            raise ValueError("a connector token on the bus needs its MAC key (tsunagu token key)")
        self._signer = OriginSigner(token, key) if token is not None and key is not None else None

    def send(self, records: Sequence[OutboxRow]) -> SendResult | None:
        """Publish every record; a bus failure leaves all of them queued."""
        by_topic: dict[str, list[OutRecord]] = {}
        for row in records:
            record = OutRecord(row.key, row.value, STRUCTURED_HEADERS)
            if self._signer is not None:
                record = self._signer.sign(record)
            by_topic.setdefault(row.topic, []).append(record)
        for topic, out in by_topic.items():
            try:
                self.bus.publish(topic, out)
            except BusError as exc:
                # Topics published before this one come again on the retry: the platform
                # drops them by event id.
                raise SinkUnavailable(f"publishing to {topic!r} failed: {exc}") from exc
        return None

    def close(self) -> None:
        """Close the bus."""
        self.bus.close()


class HttpSink:
    """POSTs batches to the platform's HTTP ingest, ``{base_url}/v1/events``.

    The contract: a JSON array of CloudEvents as ``application/cloudevents-batch+json``;
    ``202`` with ``{"results": [{"id", "status": accepted|duplicate|rejected, "reason"}]}`` in
    request order. Rejected events are refused for good; 429, 5xx and network errors are
    retried; 413 splits the batch; any other answer keeps the batch queued (and is logged).
    """

    def __init__(
        self,
        base_url: str,
        token: str | None = None,
        *,
        timeout_s: float = 30.0,
        max_body_bytes: int = 4 * 1024 * 1024,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        headers = {"Content-Type": CLOUDEVENTS_BATCH, "Accept": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self.max_body_bytes = max_body_bytes
        self._http = httpx.Client(
            base_url=base_url.rstrip("/"), headers=headers, timeout=timeout_s, transport=transport
        )

    def send(self, records: Sequence[OutboxRow]) -> SendResult | None:
        """POST the records in bodies of at most ``max_body_bytes``; merge the answers."""
        rejected: dict[int, str] = {}
        duplicates = 0
        for chunk in self._chunks(records):
            result = self._post(chunk)
            rejected.update(result.rejected)
            duplicates += result.duplicates
        return SendResult(rejected, duplicates)

    def _chunks(self, records: Sequence[OutboxRow]) -> list[list[OutboxRow]]:
        chunks: list[list[OutboxRow]] = [[]]
        size = 2
        for row in records:
            if chunks[-1] and size + len(row.value) + 1 > self.max_body_bytes:
                chunks.append([])
                size = 2
            chunks[-1].append(row)
            size += len(row.value) + 1
        return [c for c in chunks if c]

    def _post(self, chunk: list[OutboxRow]) -> SendResult:
        # The values are CloudEvents already encoded: join them rather than decode and encode.
        body = b"[" + b",".join(r.value for r in chunk) + b"]"
        try:
            response = self._http.post("/v1/events", content=body)
        except httpx.HTTPError as exc:
            raise SinkUnavailable(f"POST {self._http.base_url}/v1/events: {exc}") from exc
        status = response.status_code
        if status in (200, 202):
            return self._results(chunk, response)
        if status == 413:
            if len(chunk) == 1:
                return SendResult({chunk[0].seq: f"too_large: {_detail(response)}"})
            half = len(chunk) // 2
            first, second = self._post(chunk[:half]), self._post(chunk[half:])
            return SendResult(
                {**first.rejected, **second.rejected}, first.duplicates + second.duplicates
            )
        message = f"POST {response.url} answered {status}: {_detail(response)}"
        if status == 429 or status >= 500:
            raise SinkUnavailable(message, _retry_after(response))
        # 400/401/403/415...: not the events' fault (a wrong token or URL, a contract change).
        # Dropping them would lose data, so they stay queued until an operator fixes it.
        log.error("%s; the batch stays queued", message)
        raise SinkUnavailable(message, credentials=status in (401, 403))

    @staticmethod
    def _results(chunk: list[OutboxRow], response: httpx.Response) -> SendResult:
        try:
            results: Any = orjson.loads(response.content)["results"]
        except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
            raise SinkUnavailable(f"HTTP ingest sent no per-event results: {exc!r}") from exc
        if not isinstance(results, list) or len(results) != len(chunk):
            raise SinkUnavailable(
                f"HTTP ingest answered {len(results) if isinstance(results, list) else 'no'}"
                f" results for {len(chunk)} events"
            )
        rejected: dict[int, str] = {}
        duplicates = 0
        for row, result in zip(chunk, results, strict=True):
            if not isinstance(result, dict) or result.get("id") not in (None, row.event_id):
                raise SinkUnavailable(f"HTTP ingest results are not in request order: {result}")
            status = result.get("status")
            if status == "duplicate":
                duplicates += 1
            elif status == "rejected":
                reason = str(result.get("reason") or "rejected")
                if result.get("detail"):
                    reason = f"{reason}: {result['detail']}"
                rejected[row.seq] = reason
            elif status != "accepted":
                raise SinkUnavailable(f"HTTP ingest answered unknown status {status!r}")
        return SendResult(rejected, duplicates)

    def close(self) -> None:
        """Close the HTTP client."""
        self._http.close()


def _detail(response: httpx.Response) -> str:
    try:
        body = orjson.loads(response.content)
    except orjson.JSONDecodeError:
        return response.text[:300]
    if isinstance(body, dict):
        return str(body.get("detail") or body.get("title") or body)[:300]
    return response.text[:300]


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After", "")
    try:
        return max(0.0, float(value))
    except ValueError:
        return None  # an HTTP date: rare; the backoff decides
