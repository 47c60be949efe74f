"""The standard-model (空き家バンク) listings reader: headers in Japanese or English, encodings,
header refusals and per-cell reports."""

from __future__ import annotations

import codecs
from pathlib import Path

from connectors.sdk.rows import EventDraft, RowError
from connectors.vacant_house import read_listings_csv
from contract.vacant_house_bank import STANDARD_FIELDS
from tests.events import registry

SAMPLE = (
    Path(__file__).resolve().parents[2] / "connectors/samples/vacant_house/listings_standard.csv"
)
JAPANESE_TO_ENGLISH = dict(STANDARD_FIELDS) | {"所有者ID": "owner_id"}


def _text() -> str:
    return SAMPLE.read_bytes().decode("utf-8-sig")


def _drafts(source: bytes, encoding: str = "utf-8-sig") -> list[EventDraft | RowError]:
    return list(read_listings_csv(source, encoding=encoding))


def _with_header(header: str) -> bytes:
    return (header + "\r\n" + _text().split("\r\n", 1)[1]).encode()


def test_the_sample_in_japanese_headers_gives_valid_v2_registrations() -> None:
    drafts = _drafts(SAMPLE.read_bytes())
    assert all(isinstance(d, EventDraft) for d in drafts), drafts
    v2 = registry().get("vacant_house.listing.registered", 2)
    validator = registry().validator(v2)
    for d in drafts:
        assert isinstance(d, EventDraft) and d.schema_version == 2
        assert validator.is_valid(d.data), list(validator.iter_errors(d.data))
    assert [
        d.data["public"]["vacantHouseListing"] for d in drafts if isinstance(d, EventDraft)
    ] == [
        "一般へ公開",
        "一般へ公開",
        "管理者のみ閲覧",
    ]


def test_english_attribute_names_read_the_same_as_japanese_names() -> None:
    header = _text().split("\r\n", 1)[0].split(",")
    english = ",".join(JAPANESE_TO_ENGLISH[h] for h in header)
    japanese_drafts = _drafts(SAMPLE.read_bytes())
    english_drafts = _drafts(_with_header(english))
    assert [d.data for d in english_drafts if isinstance(d, EventDraft)] == [
        d.data for d in japanese_drafts if isinstance(d, EventDraft)
    ]


def test_a_shift_jis_export_reads_in_its_encoding_and_is_refused_whole_in_utf8() -> None:
    sjis = _text().encode("cp932")
    assert [type(d) for d in _drafts(sjis, "cp932")] == [EventDraft] * 3
    refused = _drafts(sjis)
    assert len(refused) == 1 and isinstance(refused[0], RowError)
    assert "encoding='cp932'" in refused[0].reason


def test_a_utf8_byte_order_mark_wins_over_the_encoding_asked() -> None:
    with_bom = codecs.BOM_UTF8 + _text().encode()
    assert [type(d) for d in _drafts(with_bom, "cp932")] == [EventDraft] * 3


def test_unknown_and_missing_standard_columns_are_refused_at_the_header_naming_them() -> None:
    header = _text().split("\r\n", 1)[0].replace("所在地_連結表記", "所在地").replace(",備考", ",")
    [refusal] = _drafts(_with_header(header))
    assert isinstance(refusal, RowError) and refusal.line == 1
    assert "unknown column(s) 所在地 " in refusal.reason
    assert "missing column(s) 所在地_連結表記, 備考" in refusal.reason
    full = _drafts(SAMPLE.read_bytes())
    assert all(isinstance(d, EventDraft) for d in full)


def test_a_row_reports_every_bad_cell_by_its_column_and_the_good_rows_still_go() -> None:
    rows = _text().split("\r\n")
    rows[1] = rows[1].replace(",2025-07-02,", ",2025/7/2,").replace(",賃貸,", ",譲渡,")
    drafts = _drafts("\r\n".join(rows).encode())
    [error] = [d for d in drafts if isinstance(d, RowError)]
    assert error.line == 2
    assert error.reason == (
        "column 情報公開日、更新日: '2025/7/2' is not a date in YYYY-MM-DD; "
        "column 取引形態: '譲渡' is not one of 売買, 賃貸, 売買・賃貸"
    )
    assert sum(isinstance(d, EventDraft) for d in drafts) == 2


def test_the_same_export_read_again_gives_the_same_events() -> None:
    first = [d.natural_key for d in _drafts(SAMPLE.read_bytes()) if isinstance(d, EventDraft)]
    again = [d.natural_key for d in _drafts(SAMPLE.read_bytes()) if isinstance(d, EventDraft)]
    assert first == again and len(set(first)) == 3
