"""Where a connector's schemas come from: the shared directory, or the platform's registry API.

Either way a connector ends up with a :class:`SchemaCatalogue` holding the versions it uses and
checks data with the ingest pipeline's own :class:`EventValidator`, so a row refused here is
refused for the same reason, in the same words, as the platform would dead-letter it.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any, Literal

import httpx
import orjson

from contract.catalogue import (
    RegistryError,
    SchemaCatalogue,
    SchemaVersion,
    UnknownSchemaError,
    UnknownTypeError,
    parse_urn,
)
from contract.cloudevents import CloudEvent
from contract.deadletter import Rejection
from contract.validation import EventValidator

__all__ = ["Identity", "LocalSchemas", "RemoteSchemas", "SchemaUnavailableError", "Schemas"]


#: How a connector names the person an event is about.
Identity = Literal["resident_id", "subject"]


def _names_a_person(version: SchemaVersion) -> bool:
    properties = version.schema.get("properties", {})
    return "resident_id" in properties or "subject" in properties


class SchemaUnavailableError(RegistryError):
    """The platform's registry could not be reached or answered something unusable."""


class Schemas:
    """Schema versions for a connector's event types, each looked up once and then cached."""

    def __init__(self, registry: SchemaCatalogue) -> None:
        self.registry = registry
        # max_event_bytes is not used by check_data; the connector checks sizes itself.
        self._validator = EventValidator(registry, max_event_bytes=1 << 30)
        self._chosen: dict[tuple[str, int | None], SchemaVersion] = {}
        self._lock = threading.Lock()

    def version(self, event_type: str, number: int | None = None) -> SchemaVersion:
        """The type's version ``number`` (the latest when None); raises RegistryError."""
        key = (event_type, number)
        found = self._chosen.get(key)
        if found is None:
            with self._lock:
                found = self._chosen.get(key)
                if found is None:
                    found = self._chosen[key] = self._lookup(event_type, number)
        return found

    def _lookup(self, event_type: str, number: int | None) -> SchemaVersion:
        return self.registry.get(event_type, number)

    def naming(self, event_type: str, identity: Identity) -> SchemaVersion:
        """The latest version of the type whose data names the person by ``identity``: the
        platform's ``resident_id``, or the ``subject`` the region ID gave the service (ID
        link); the latest version when none names a person either way."""
        latest = self.version(event_type)
        if not _names_a_person(latest) or identity in latest.schema.get("properties", {}):
            return latest
        for number in range(latest.version - 1, 0, -1):
            try:
                found = self.version(event_type, number)
            except UnknownSchemaError:
                continue
            if identity in found.schema.get("properties", {}):
                return found
        raise UnknownSchemaError(
            f"no version of {event_type} names the person by {identity!r}: publish under "
            f"{'subject' if identity == 'resident_id' else 'resident_id'} instead"
        )

    def check(self, event: CloudEvent) -> Rejection | None:
        """None when ``event.data`` matches the schema its ``dataschema`` names, else why not."""
        result = self._validator.check_data(event)
        return result if isinstance(result, Rejection) else None

    def close(self) -> None:
        """Release what the source holds (nothing for a directory)."""


class LocalSchemas(Schemas):
    """Schemas from a checkout of the shared ``schemas/`` directory."""

    def __init__(self, directory: Path | str) -> None:
        super().__init__(SchemaCatalogue.from_directory(Path(directory)))


class RemoteSchemas(Schemas):
    """Schemas fetched from the platform: ``GET {base_url}/v1/schemas/{type}/versions/{n}``."""

    def __init__(
        self,
        base_url: str,
        *,
        token: str | None = None,
        timeout_s: float = 10.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        super().__init__(SchemaCatalogue())
        headers = {"Accept": "application/schema+json, application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self._http = httpx.Client(
            base_url=base_url.rstrip("/"), headers=headers, timeout=timeout_s, transport=transport
        )

    def _lookup(self, event_type: str, number: int | None) -> SchemaVersion:
        wanted = "latest" if number is None else str(number)
        doc = self._get(f"/v1/schemas/{event_type}/versions/{wanted}", event_type, number)
        if not isinstance(doc, dict):
            raise SchemaUnavailableError(f"{event_type}: the registry sent a non-object schema")
        # The version number is in the schema's $id; ask the type's summary if it has none.
        parsed = parse_urn(doc.get("$id", "")) if isinstance(doc.get("$id"), str) else None
        if parsed is None or parsed[0] != event_type:
            if number is not None:
                parsed = (event_type, number)
            else:
                summary = self._get(f"/v1/schemas/{event_type}", event_type, None)
                parsed = parse_urn(str(summary.get("latest", ""))) if summary else None
                if parsed is None:
                    raise SchemaUnavailableError(f"{event_type}: cannot tell the latest version")
        version = SchemaVersion(event_type, parsed[1], doc)
        self.registry.add_versions([version])
        return version

    def _get(self, path: str, event_type: str, number: int | None) -> Any:
        try:
            response = self._http.get(path)
        except httpx.HTTPError as exc:
            raise SchemaUnavailableError(
                f"schema registry at {self._http.base_url} unreachable: {exc}"
            ) from exc
        if response.status_code == 404:
            detail = _problem_detail(response)
            if number is None:
                raise UnknownTypeError(detail or f"no schema for event type {event_type!r}")
            raise UnknownSchemaError(detail or f"{event_type} has no version {number}")
        if response.status_code != 200:
            raise SchemaUnavailableError(
                f"GET {response.url} answered {response.status_code}: {_problem_detail(response)}"
            )
        try:
            return orjson.loads(response.content)
        except orjson.JSONDecodeError as exc:
            raise SchemaUnavailableError(f"GET {response.url} sent invalid JSON: {exc}") from exc

    def close(self) -> None:
        """Close the HTTP client."""
        self._http.close()


def _problem_detail(response: httpx.Response) -> str:
    """The ``detail`` of an RFC 9457 problem body, or the start of the body."""
    try:
        body = orjson.loads(response.content)
    except orjson.JSONDecodeError:
        return response.text[:200]
    if isinstance(body, dict) and isinstance(body.get("detail"), str):
        return str(body["detail"])
    return response.text[:200]
