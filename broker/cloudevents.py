"""CloudEvents 1.0 in JSON format: the envelope every event travels in, and its Kafka binding."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson

from broker.bus.base import Headers

SPECVERSION = "1.0"
REQUIRED_ATTRIBUTES = ("specversion", "id", "source", "type")
# Our events also always name their subject and time: views and consent key on them.
PLATFORM_REQUIRED = ("subject", "time")
_TYPE_RE = re.compile(r"^[a-z_]+\.[a-z_]+\.[a-z_]+$")
_EXTENSION_RE = re.compile(r"^[a-z0-9]{1,20}$")
_ALL_REQUIRED = (*REQUIRED_ATTRIBUTES, *PLATFORM_REQUIRED)
#: The Kafka protocol binding (CloudEvents 1.0.2): structured mode says so in content-type;
#: binary mode carries each attribute in a ``ce_<name>`` header and the data as the value.
H_CONTENT_TYPE = "content-type"
STRUCTURED_CONTENT_TYPE = "application/cloudevents+json; charset=UTF-8"
STRUCTURED_HEADERS: tuple[tuple[str, bytes], ...] = (
    (H_CONTENT_TYPE, STRUCTURED_CONTENT_TYPE.encode()),
)
_BINARY_PREFIX = "ce_"
_CONTEXT_ATTRIBUTES = frozenset(
    {"specversion", "id", "source", "type", "subject", "time", "dataschema", "datacontenttype"}
    | {"data"}
)


class EnvelopeError(ValueError):
    """The bytes are not a CloudEvent we accept; ``attribute`` names the culprit."""

    def __init__(self, message: str, attribute: str = "") -> None:
        super().__init__(message)
        self.attribute = attribute


class NotJsonError(EnvelopeError):
    """The bytes are not a JSON object at all."""


@dataclass(frozen=True, slots=True)
class CloudEvent:
    """A parsed, structurally valid CloudEvent (its ``data`` not yet checked by a schema)."""

    id: str
    source: str
    type: str
    subject: str
    time: datetime
    data: dict[str, Any]
    dataschema: str | None = None

    @property
    def domain(self) -> str:
        """The domain of the type (``transport`` for ``transport.trip.completed``)."""
        return self.type.split(".", 1)[0]

    def to_json(self) -> bytes:
        """The structured-mode JSON encoding."""
        doc: dict[str, Any] = {
            "specversion": SPECVERSION,
            "id": self.id,
            "source": self.source,
            "type": self.type,
            "subject": self.subject,
            "time": self.time.isoformat(),
            "datacontenttype": "application/json",
            "data": self.data,
        }
        if self.dataschema:
            doc["dataschema"] = self.dataschema
        return orjson.dumps(doc)


def parse(raw: bytes | str) -> CloudEvent:
    """Parse and check a structured-mode CloudEvent, raising EnvelopeError with the reason."""
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise NotJsonError(f"not JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise NotJsonError(f"a CloudEvent is a JSON object, not {type(doc).__name__}")
    return from_dict(doc)


def from_kafka(headers: Headers, value: bytes) -> CloudEvent:
    """Parse a Kafka record in either mode of the binding (binary when ``ce_`` headers are set)."""
    attributes: dict[str, Any] = {}
    content_type: str | None = None
    try:
        for name, raw in headers:
            lowered = name.lower()
            if lowered.startswith(_BINARY_PREFIX):
                attributes[lowered.removeprefix(_BINARY_PREFIX)] = raw.decode("utf-8")
            elif lowered == H_CONTENT_TYPE:
                content_type = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise EnvelopeError("a CloudEvents header is not UTF-8", "headers") from None
    media_type = (content_type or "").split(";", 1)[0].strip().lower()
    if not attributes:
        if media_type.startswith("application/cloudevents") and media_type != (
            "application/cloudevents+json"
        ):
            raise EnvelopeError(
                f"structured format {media_type!r} is not supported (only JSON)",
                "datacontenttype",
            )
        return parse(value)
    try:
        data = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        raise NotJsonError(f"the binary-mode data is not JSON: {exc}") from None
    attributes["datacontenttype"] = media_type or "application/json"
    attributes["data"] = data
    return from_dict(attributes)


def from_dict(doc: dict[str, Any]) -> CloudEvent:
    """Check a decoded CloudEvent JSON object."""
    for name in _ALL_REQUIRED:
        value = doc.get(name)
        if value.__class__ is not str or not value:
            raise EnvelopeError(f"required attribute `{name}` is missing or empty", name)
    if doc["specversion"] != SPECVERSION:
        raise EnvelopeError(
            f"specversion {doc['specversion']!r} is not supported (only {SPECVERSION})",
            "specversion",
        )
    if len(doc["id"]) > 128:
        raise EnvelopeError("attribute `id` is longer than 128 characters", "id")
    if not _TYPE_RE.match(doc["type"]):
        raise EnvelopeError(
            f"attribute `type` {doc['type']!r} is not <domain>.<entity>.<action>", "type"
        )
    try:
        time = datetime.fromisoformat(doc["time"])
    except ValueError:
        raise EnvelopeError(f"attribute `time` {doc['time']!r} is not RFC 3339", "time") from None
    if time.tzinfo is None:
        raise EnvelopeError("attribute `time` must carry a UTC offset", "time")
    content_type = doc.get("datacontenttype", "application/json")
    if content_type != "application/json":
        raise EnvelopeError(
            f"datacontenttype {content_type!r} is not application/json", "datacontenttype"
        )
    data = doc.get("data")
    if not isinstance(data, dict):
        raise EnvelopeError("attribute `data` must be a JSON object", "data")
    dataschema = doc.get("dataschema")
    if dataschema is not None and not isinstance(dataschema, str):
        raise EnvelopeError("attribute `dataschema` must be a string", "dataschema")
    for name in doc.keys() - _CONTEXT_ATTRIBUTES:
        if not _EXTENSION_RE.match(name):
            raise EnvelopeError(
                f"attribute name `{name}` is not a CloudEvents name (a-z, 0-9, up to 20)", name
            )
    return CloudEvent(
        id=doc["id"],
        source=doc["source"],
        type=doc["type"],
        subject=doc["subject"],
        time=time,
        data=data,
        dataschema=dataschema,
    )
