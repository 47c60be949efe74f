"""The CloudEvents HTTP binding's binary mode as the contract reads it: ``ce-*`` headers,
percent-decoded, make the same envelope as structured mode, checked by the same schema."""

from __future__ import annotations

import pytest

from contract import cloudevents
from contract.cloudevents import EnvelopeError
from tests.events import make_event


def test_ce_headers_are_percent_decoded_and_other_headers_ignored() -> None:
    headers = [
        (b"CE-Source", b"urn%3Atsunagu%3Aconnector%3Atest"),
        (b"ce-note", b"%E4%B8%89%E8%B1%8A%20100%25"),
        (b"authorization", b"Bearer x"),
    ]
    assert cloudevents.http_binary_attributes(headers) == {
        "source": "urn:tsunagu:connector:test",
        "note": "三豊 100%",
    }


def test_no_ce_headers_is_not_binary_mode() -> None:
    assert cloudevents.http_binary_attributes([(b"content-type", b"application/json")]) == {}


def test_a_header_sent_twice_is_refused_naming_it() -> None:
    with pytest.raises(EnvelopeError, match="`ce-id` is sent twice"):
        cloudevents.http_binary_attributes([(b"ce-id", b"a"), (b"ce-id", b"b")])


def test_a_header_not_utf8_once_decoded_is_refused_naming_it() -> None:
    with pytest.raises(EnvelopeError, match="`ce-subject` is not UTF-8"):
        cloudevents.http_binary_attributes([(b"ce-subject", b"res-%FF")])


def test_binary_document_is_checked_like_the_structured_one() -> None:
    doc = make_event()
    attributes = {k: v for k, v in doc.items() if k not in ("data", "datacontenttype")}
    event = cloudevents.from_dict(cloudevents.binary_document(attributes, None, doc["data"]))
    assert event == cloudevents.from_dict(doc)
    del attributes["specversion"]
    with pytest.raises(EnvelopeError, match="`specversion` is missing") as refused:
        cloudevents.from_dict(cloudevents.binary_document(attributes, None, doc["data"]))
    assert cloudevents.http_header_of(refused.value.attribute) == "ce-specversion"


def test_binary_data_content_type_is_checked_by_the_envelope_schema() -> None:
    doc = make_event()
    attributes = {k: v for k, v in doc.items() if k not in ("data", "datacontenttype")}
    utf8 = cloudevents.binary_document(attributes, "application/json; charset=utf-8", doc["data"])
    assert cloudevents.from_dict(utf8).id == doc["id"]
    latin1 = cloudevents.binary_document(attributes, "application/json; charset=latin1", {})
    with pytest.raises(EnvelopeError) as refused:
        cloudevents.from_dict(latin1)
    assert cloudevents.http_header_of(refused.value.attribute) == "Content-Type"
