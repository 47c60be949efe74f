"""Our test events as the official CloudEvents Python SDK (``cloudevents`` on PyPI) holds them."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from cloudevents.core.v1.event import CloudEvent as SdkEvent


def sdk_event(doc: dict[str, Any]) -> SdkEvent:
    """The SDK's event for a structured-mode document (``tests.events.make_event``)."""
    attributes = {name: value for name, value in doc.items() if name != "data"}
    attributes["time"] = datetime.fromisoformat(doc["time"])
    return SdkEvent(attributes=attributes, data=doc["data"])
