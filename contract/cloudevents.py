"""CloudEvents 1.0 in JSON format: the envelope every event travels in, and its Kafka and HTTP
bindings (structured and binary content mode)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import jsonschema_rs
import orjson

from contract.bus import Headers

SPECVERSION = "1.0"
#: The envelope's JSON Schema, shipped as ``schemas/cloudevent.json`` (this package's
#: ``cloudevent.json`` is that file): every attribute rule lives there and nowhere else, and
#: the parser checks with it, through the same validator (jsonschema-rs) as the data.
ENVELOPE_SCHEMA_FILE = Path(__file__).with_name("cloudevent.json")
ENVELOPE_SCHEMA: Mapping[str, Any] = orjson.loads(ENVELOPE_SCHEMA_FILE.read_bytes())
_ENVELOPE = jsonschema_rs.validator_for(dict(ENVELOPE_SCHEMA), validate_formats=True)
#: What stands in for ``data`` when the envelope is checked: the envelope schema asks only that
#: it be an object (its content is its own schema's business), so it is neither walked nor
#: converted twice.
_NO_DATA: dict[str, Any] = {}
#: The Kafka protocol binding (CloudEvents 1.0.2): structured mode says so in content-type;
#: binary mode carries each attribute in a ``ce_<name>`` header and the data as the value.
H_CONTENT_TYPE = "content-type"
STRUCTURED_CONTENT_TYPE = "application/cloudevents+json; charset=UTF-8"
STRUCTURED_HEADERS: tuple[tuple[str, bytes], ...] = (
    (H_CONTENT_TYPE, STRUCTURED_CONTENT_TYPE.encode()),
)
_BINARY_PREFIX = "ce_"
#: The HTTP protocol binding (CloudEvents 1.0.2, 3.1): binary mode carries each attribute in a
#: ``ce-<name>`` header, percent-encoded (3.1.3.2), ``datacontenttype`` in Content-Type and
#: the data as the body.
HTTP_BINARY_PREFIX = "ce-"
#: What binary mode's data is when Content-Type leaves it unsaid (our data is always JSON).
DEFAULT_DATA_CONTENT_TYPE = "application/json"


class EnvelopeError(ValueError):
    """The bytes are not a CloudEvent we accept; ``attribute`` names the culprit."""

    def __init__(self, message: str, attribute: str = "") -> None:
        super().__init__(message)
        self.attribute = attribute


class NotJsonError(EnvelopeError):
    """The bytes are not a JSON object at all."""


class TooDeepError(EnvelopeError):
    """The event nests objects or arrays deeper than ``MAX_DEPTH``."""


#: How deep an event may nest objects and arrays (ours need 4): deeper input exhausts the
#: validators' and encoders' recursion long before it means anything.
MAX_DEPTH = 32
#: The years a date or time in an event may name: beyond them, converting between offsets
#: overflows (year 1 at +09:00 is before year 1 in UTC), and no event of ours needs them.
YEARS = range(1900, 3000)
#: PostgreSQL refuses U+0000 in text and jsonb; SQLite would keep it: refused on both alike.
_NUL = "\x00"


#: A date, or a date-time, as RFC 3339 and ISO 8601 write it: not any text with two dashes
#: (a phone number such as 0875-72-1234 is no date).
_DATE = re.compile(r"(\d{4})-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12]\d|3[01])(?:$|[Tt ])")


def year_out_of_range(text: str) -> int | None:
    """The year a ``YYYY-MM-DD[T…]`` text names when it lies outside ``YEARS``, else None."""
    found = _DATE.match(text)
    if found is not None:
        year = int(found.group(1))
        if year not in YEARS:
            return year
    return None


def _pointer(parts: list[str | int]) -> str:
    return "/".join(str(p).replace("~", "~0").replace("/", "~1") for p in parts)


def check_shape(doc: dict[str, Any], raw: bytes | None = None) -> None:
    """Refuse what no store or validator can take: nesting over ``MAX_DEPTH``, a NUL character
    in any name or text, a date or time (``YYYY-MM-DD...``) outside ``YEARS``.

    Iterative, so that the check itself cannot exhaust the stack.
    """
    if (raw is not None and _plain_bytes(raw)) or _plain(doc):
        return
    _locate_problem(doc)


#: A date at the start of a JSON string, as ``year_out_of_range`` reads one.
_RAW_DATE = re.compile(rb'"(\d{4})-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12]\d|3[01])["Tt ]')


def _plain_bytes(raw: bytes) -> bool:
    """The fastest pass, on the JSON text the document came from: True only when it cannot
    hold a problem (about 1 us, where walking the document takes several)."""
    if b"\\u" in raw:
        return False  # an escape may hide a NUL, or a date's digits: walk the document
    if raw.count(b"{") + raw.count(b"[") > MAX_DEPTH:
        return False  # so few containers cannot nest too deep; more may
    return all(int(m.group(1)) in YEARS for m in _RAW_DATE.finditer(raw))


def _plain(doc: dict[str, Any]) -> bool:
    """The fast pass (every event takes it): True when nothing is wrong; no paths kept."""
    stack: list[tuple[Any, int]] = [(doc, 0)]
    pop, push = stack.pop, stack.append
    while stack:
        value, depth = pop()
        kind = value.__class__
        if kind is str:
            if _NUL in value or (value[4:5] == "-" and year_out_of_range(value) is not None):
                return False
        elif kind is dict:
            if depth >= MAX_DEPTH:
                return False
            for name, item in value.items():
                if _NUL in name:
                    return False
                push((item, depth + 1))
        elif kind is list:
            if depth >= MAX_DEPTH:
                return False
            for item in value:
                push((item, depth + 1))
    return True


def _locate_problem(doc: dict[str, Any]) -> None:
    """The slow pass, once the fast one found something: raise naming where it is."""
    stack: list[tuple[Any, list[str | int]]] = [(doc, [])]
    while stack:
        value, path = stack.pop()
        if len(path) > MAX_DEPTH:
            raise TooDeepError(
                f"the event nests deeper than {MAX_DEPTH} levels at /{_pointer(path[:8])}/...; "
                "flatten the data",
                _pointer(path[:1]),
            )
        if isinstance(value, dict):
            for name, item in value.items():
                if _NUL in name:
                    raise EnvelopeError(
                        f"a name at /{_pointer(path)} contains a NUL character (U+0000); remove it",
                        _pointer(path),
                    )
                stack.append((item, [*path, name]))
        elif isinstance(value, list):
            stack.extend((item, [*path, i]) for i, item in enumerate(value))
        elif isinstance(value, str):
            if _NUL in value:
                raise EnvelopeError(
                    f"/{_pointer(path)} contains a NUL character (U+0000); remove it",
                    _pointer(path),
                )
            year = year_out_of_range(value)
            if year is not None:
                raise EnvelopeError(
                    f"/{_pointer(path)} names year {year}; dates and times must lie "
                    f"in the years {YEARS.start}-{YEARS.stop - 1}",
                    _pointer(path),
                )


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
    return from_dict(doc, raw if isinstance(raw, bytes) else raw.encode())


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
    return from_dict(binary_document(attributes, content_type, data))


def http_binary_attributes(headers: Iterable[tuple[bytes, bytes]]) -> dict[str, str]:
    """The attributes an HTTP request's ``ce-*`` headers carry, percent-decoded (empty: the
    request is not in binary mode); EnvelopeError naming a header that cannot be read."""
    attributes: dict[str, str] = {}
    for raw_name, raw_value in headers:
        name = raw_name.decode("latin-1").lower()
        if not name.startswith(HTTP_BINARY_PREFIX):
            continue
        attribute = name.removeprefix(HTTP_BINARY_PREFIX)
        if attribute in attributes:
            raise EnvelopeError(f"header `{name}` is sent twice; send it once", attribute)
        try:
            attributes[attribute] = unquote(raw_value.decode("utf-8"), errors="strict")
        except UnicodeDecodeError:
            raise EnvelopeError(
                f"header `{name}` is not UTF-8 once percent-decoded; percent-encode the "
                "UTF-8 bytes of its value (CloudEvents HTTP binding, 3.1.3.2)",
                attribute,
            ) from None
    return attributes


def http_header_of(attribute: str) -> str:
    """Where binary mode on HTTP carries ``attribute``: its header, or the body for data."""
    if attribute == "datacontenttype":
        return "Content-Type"
    if attribute == "data" or attribute.startswith("data/"):
        return "the body"
    return HTTP_BINARY_PREFIX + attribute


def binary_document(
    attributes: Mapping[str, Any], content_type: str | None, data: Any
) -> dict[str, Any]:
    """The structured-mode document a binary-mode event stands for: its attributes, its
    content type as ``datacontenttype`` and its decoded ``data`` (checked by ``from_dict``)."""
    return {
        **attributes,
        "datacontenttype": content_type or DEFAULT_DATA_CONTENT_TYPE,
        "data": data,
    }


def from_dict(doc: dict[str, Any], raw: bytes | None = None) -> CloudEvent:
    """Check a decoded CloudEvent JSON object (``raw``: the JSON text it was decoded from)."""
    check_shape(doc, raw)
    data = doc.get("data")
    envelope = {**doc, "data": _NO_DATA} if data.__class__ is dict else doc
    if not _ENVELOPE.is_valid(envelope):
        raise _envelope_error(next(iter(_ENVELOPE.iter_errors(envelope))))
    try:
        time = datetime.fromisoformat(doc["time"])
    except ValueError:  # the schema's pattern and format admit only what this parses
        raise EnvelopeError(f"attribute `time` {doc['time']!r} is not RFC 3339", "time") from None
    assert isinstance(data, dict)  # the schema says so
    return CloudEvent(
        id=doc["id"],
        source=doc["source"],
        type=doc["type"],
        subject=doc["subject"],
        time=time,
        data=data,
        dataschema=doc.get("dataschema"),
    )


def _envelope_error(error: Any) -> EnvelopeError:
    """The first violation of the envelope schema, naming the attribute and what to change."""
    kind = error.kind
    if isinstance(kind, jsonschema_rs.ValidationErrorKind.Required):
        name = str(kind.property)
        return EnvelopeError(f"required attribute `{name}` is missing", name)
    if isinstance(kind, jsonschema_rs.ValidationErrorKind.PropertyNames):
        name, _ = json.JSONDecoder().raw_decode(error.message)
        return EnvelopeError(
            f"attribute name `{name}` is not a CloudEvents name (a-z, 0-9, up to 20)", str(name)
        )
    name = str(error.instance_path[0]) if error.instance_path else ""
    where = f"attribute `{name}`" if name else "the envelope"
    rule = "/".join(str(p) for p in error.schema_path)
    return EnvelopeError(f"{where}: {error.message} (see {ENVELOPE_SCHEMA['$id']}, {rule})", name)
