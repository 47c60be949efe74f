"""The audit chain hashes RFC 8785 (JCS) canonical JSON: the RFC's own examples, and the fast
path (orjson) writing byte for byte what the reference implementation writes."""

from __future__ import annotations

import struct
from typing import Any

import orjson
import pytest
import rfc8785
from hypothesis import given
from hypothesis import strategies as st

from broker.audit.entries import canonical_fields, encode_fields, jcs

#: RFC 8785 section 3.2.2's example: its input text and the canonical output.
RFC_3_2_2_INPUT = r"""{
  "numbers": [333333333.33333329, 1E30, 4.50, 2e-3, 0.000000000000000000000000001],
  "string": "\u20ac$\u000F\u000aA'\u0042\u0022\u005c\\\"\/",
  "literals": [null, true, false]
}"""
RFC_3_2_2_OUTPUT = (
    '{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],'
    '"string":"€$\\u000f\\nA\'B\\"\\\\\\\\\\"/"}'
)

#: RFC 8785 section 3.2.3's sorting example, and the order it gives (UTF-16 code units).
RFC_3_2_3_INPUT = r"""{
  "\u20ac": "Euro Sign",
  "\r": "Carriage Return",
  "\ufb33": "Hebrew Letter Dalet With Dagesh",
  "1": "One",
  "\ud83d\ude00": "Emoji: Grinning Face",
  "\u0080": "Control",
  "\u00f6": "Latin Small Letter O With Diaeresis"
}"""
RFC_3_2_3_ORDER = [
    "Carriage Return",
    "One",
    "Control",
    "Latin Small Letter O With Diaeresis",
    "Euro Sign",
    "Emoji: Grinning Face",
    "Hebrew Letter Dalet With Dagesh",
]

#: RFC 8785 Appendix B: IEEE 754 bit patterns and their JCS text.
APPENDIX_B = [
    ("0000000000000000", "0"),
    ("8000000000000000", "0"),
    ("0000000000000001", "5e-324"),
    ("8000000000000001", "-5e-324"),
    ("7fefffffffffffff", "1.7976931348623157e+308"),
    ("ffefffffffffffff", "-1.7976931348623157e+308"),
    ("4340000000000000", "9007199254740992"),
    ("c340000000000000", "-9007199254740992"),
    ("4430000000000000", "295147905179352830000"),
    ("44b52d02c7e14af5", "9.999999999999997e+22"),
    ("44b52d02c7e14af6", "1e+23"),
    ("44b52d02c7e14af7", "1.0000000000000001e+23"),
    ("444b1ae4d6e2ef4e", "999999999999999700000"),
    ("444b1ae4d6e2ef4f", "999999999999999900000"),
    ("444b1ae4d6e2ef50", "1e+21"),
    ("3eb0c6f7a0b5ed8c", "9.999999999999997e-7"),
    ("3eb0c6f7a0b5ed8d", "0.000001"),
    ("41b3de4355555553", "333333333.3333332"),
    ("41b3de4355555554", "333333333.33333325"),
    ("41b3de4355555555", "333333333.3333333"),
    ("41b3de4355555556", "333333333.3333334"),
    ("41b3de4355555557", "333333333.33333343"),
    ("becbf647612f3696", "-0.0000033333333333333333"),
    ("43143ff3c1cb0959", "1424953923781206.2"),
]


def test_the_rfcs_example_of_section_3_2_2_is_written_as_the_rfc_writes_it() -> None:
    assert jcs(orjson.loads(RFC_3_2_2_INPUT)).decode() == RFC_3_2_2_OUTPUT


def test_keys_sort_by_utf16_code_units_as_in_section_3_2_3() -> None:
    # The emoji (a surrogate pair, 0xD83D...) sorts before U+FB33: code point order would not.
    written = orjson.loads(jcs(orjson.loads(RFC_3_2_3_INPUT)))
    assert list(written.values()) == RFC_3_2_3_ORDER


@pytest.mark.parametrize(("bits", "text"), APPENDIX_B)
def test_numbers_are_written_as_appendix_b_says(bits: str, text: str) -> None:
    (number,) = struct.unpack(">d", bytes.fromhex(bits))
    assert jcs([number]).decode() == f"[{text}]"


def test_nan_and_infinity_are_refused_not_written() -> None:
    for number in (float("nan"), float("inf"), float("-inf")):
        with pytest.raises(rfc8785.FloatDomainError):
            jcs({"x": number})


def test_integers_beyond_the_safe_range_are_refused_not_rounded() -> None:
    assert jcs(2**53 - 1) == b"9007199254740991"
    for unsafe in (2**53, -(2**53), 2**53 + 1):
        with pytest.raises(rfc8785.IntegerDomainError):
            jcs({"count": unsafe})


_keys = st.text(st.characters(codec="utf-8"), max_size=6)
_json: Any = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**53) + 1, 2**53 - 1)
    # The reference implementation refuses integral doubles from 2**53 up to 1e21.
    | st.floats(allow_nan=False, allow_infinity=False).filter(
        lambda f: not (f.is_integer() and 2**53 <= abs(f) < 1e21)
    )
    | st.text(st.characters(codec="utf-8"), max_size=12),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_keys, inner, max_size=4),
    max_leaves=20,
)


@given(_json)
def test_every_value_is_written_as_the_reference_implementation_writes_it(value: Any) -> None:
    assert jcs(value) == rfc8785.dumps(value)


@given(st.dictionaries(_keys, _json, max_size=5))
def test_stored_fields_are_jcs_and_recanonicalising_them_changes_nothing(
    fields: dict[str, Any],
) -> None:
    text = encode_fields(fields)
    assert text.encode() == rfc8785.dumps(fields)
    assert canonical_fields(text) == text
