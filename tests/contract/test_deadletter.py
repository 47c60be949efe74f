"""Where a bad event goes and why: beside its domain's topic, or unrouted, with its reason."""

from __future__ import annotations

from typing import Any

import pytest

from contract.bus import OutRecord, Record
from contract.deadletter import (
    H_REASON,
    DeadLetterReason,
    Rejection,
    dead_letter,
    dead_letter_topic,
)
from contract.domains import DOMAINS
from contract.origin import H_CONNECTOR_MAC, H_CONNECTOR_TOKEN


@pytest.mark.parametrize(
    ("doc", "topic"),
    [
        ({"type": "transport.trip.completed"}, "t-transport.dlq"),
        ({"type": "vacant_house.listing.updated"}, "t-vacant_house.dlq"),
        ({"type": "disaster.alert.issued"}, "t-unrouted.dlq"),
        ({"type": 42}, "t-unrouted.dlq"),
        ({"id": "no type"}, "t-unrouted.dlq"),
        ([{"type": "transport.trip.completed"}], "t-unrouted.dlq"),
        ("not an event", "t-unrouted.dlq"),
    ],
)
def test_a_rejected_event_goes_beside_its_known_domain_or_unrouted(doc: Any, topic: str) -> None:
    assert dead_letter_topic(doc, DOMAINS, "t-") == topic


def test_a_dead_letter_keeps_the_bytes_and_says_why_but_drops_the_connector_secrets() -> None:
    record = Record(
        "transport",
        1,
        7,
        b"res-a1b2",
        b"{}",
        [("content-type", b"x"), (H_CONNECTOR_TOKEN, b"tok"), (H_CONNECTOR_MAC, b"mac")],
    )
    out = dead_letter(record, Rejection(DeadLetterReason.NOT_JSON, "not JSON"))
    assert isinstance(out, OutRecord)
    assert (out.key, out.value) == (b"res-a1b2", b"{}")
    headers = dict(out.headers)
    assert headers[H_REASON] == b"not_json"
    assert headers["tsunagu-dlq-origin"] == b"transport/1/7"
    assert H_CONNECTOR_TOKEN not in headers and H_CONNECTOR_MAC not in headers
