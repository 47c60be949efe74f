"""What every CSV reader does the same way: encodings, the header, line numbers, cell values.

The helpers at the top (``SAMPLES``, ``schema_problems``, ``split``) are shared by the
other ``test_readers_*`` modules.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import pytest

from connectors.readers import (
    FieldError,
    Fields,
    map_rows,
    numbered,
    read_csv,
)
from connectors.sdk.rows import EventDraft, RowError
from tests.events import by_resident_id, registry

SAMPLES = Path(__file__).parents[2] / "connectors" / "samples"
JST = timezone(timedelta(hours=9))


def split(items: Iterable[EventDraft | RowError]) -> tuple[list[EventDraft], list[RowError]]:
    """Drafts and errors, each in reading order."""
    drafts: list[EventDraft] = []
    errors: list[RowError] = []
    for item in items:
        if isinstance(item, RowError):
            errors.append(item)
        else:
            drafts.append(item)
    return drafts, errors


def schema_problems(drafts: Iterable[EventDraft]) -> list[str]:
    """Why drafts fail the shipped schema they name (else the latest naming residents by
    ``resident_id``, as the readers do; empty when all valid)."""
    reg = registry()
    problems = []
    for draft in drafts:
        version = draft.schema_version or by_resident_id(draft.event_type)
        validator = reg.validator(reg.get(draft.event_type, version))
        problems += [
            f"line {draft.line} {draft.event_type}: {e.message}"
            for e in validator.iter_errors(draft.data)
        ]
    return problems


def rows_of(csv_text: str, *columns: str, encoding: str = "utf-8") -> list[object]:
    """What ``read_csv`` yields for ``csv_text``."""
    return list(read_csv(csv_text.encode(encoding), columns, encoding=encoding))


class TestLines:
    def test_the_header_is_line_1_and_each_row_is_the_line_it_starts_on(self) -> None:
        text = 'id,note\na,"two\nlines"\n\nb,plain\n'
        assert rows_of(text, "id") == [
            (2, {"id": "a", "note": "two\nlines"}),
            (5, {"id": "b", "note": "plain"}),  # line 4 is blank
        ]

    def test_row_dicts_are_numbered_as_a_csv_with_a_header_would_be(self) -> None:
        assert [line for line, _ in numbered([{}, {}, {}])] == [2, 3, 4]

    def test_a_row_with_more_cells_than_the_header_is_an_error(self) -> None:
        assert rows_of("id,fare_jpy\na,1,280\nb,300\n", "id") == [
            RowError(2, "3 cells but the header has 2 (an unquoted comma?)"),
            (3, {"id": "b", "fare_jpy": "300"}),
        ]

    def test_missing_trailing_cells_read_as_empty(self) -> None:
        assert rows_of("id,a,b\nx\n", "id") == [(2, {"id": "x", "a": "", "b": ""})]


class TestHeader:
    def test_a_missing_required_column_is_one_error_on_line_1_and_nothing_is_read(self) -> None:
        assert rows_of("trip_id,fare\nt1,300\n", "trip_id", "fare_jpy", "passengers") == [
            RowError(1, "header: missing column(s) fare_jpy, passengers")
        ]

    def test_a_column_named_twice_is_refused(self) -> None:
        assert rows_of("id,id\n1,2\n", "id") == [RowError(1, "header: column id appears twice")]

    def test_an_empty_file_has_no_header(self) -> None:
        assert rows_of("", "id") == [
            RowError(1, "no header row (the first line must name the columns)")
        ]

    def test_unknown_columns_are_ignored(self) -> None:
        assert rows_of("id,備考\n1,メモ\n", "id") == [(2, {"id": "1", "備考": "メモ"})]


class TestEncodings:
    def test_utf8_with_a_byte_order_mark(self) -> None:
        raw = "\ufeffid,name\n1,詫間\n".encode()
        assert list(read_csv(raw, ["id"])) == [(2, {"id": "1", "name": "詫間"})]
        assert list(read_csv(raw, ["id"], encoding="utf-8")) == [(2, {"id": "1", "name": "詫間"})]

    def test_a_byte_order_mark_before_a_quoted_header_is_read_in_plain_utf8(self) -> None:
        raw = '\ufeff"id","name"\r\n"1","詫間"\r\n'.encode()
        assert list(read_csv(raw, ["id"], encoding="utf-8")) == [(2, {"id": "1", "name": "詫間"})]

    def test_cp932_is_read_when_asked_for(self) -> None:
        raw = "id,name\n1,詫間支所前\n".encode("cp932")
        assert list(read_csv(raw, ["id"], encoding="cp932")) == [
            (2, {"id": "1", "name": "詫間支所前"})
        ]

    def test_a_file_in_the_wrong_encoding_is_refused_whole_naming_the_line(self) -> None:
        raw = "id,name\n1,plain\n2,詫間\n".encode("cp932")
        [error] = list(read_csv(raw, ["id"]))
        assert isinstance(error, RowError)
        assert error.line == 3
        assert error.reason.startswith("column name: not utf-8-sig text at byte ")
        assert "encoding='cp932'" in error.reason

    def test_a_path_is_read_like_bytes(self, tmp_path: Path) -> None:
        path = tmp_path / "x.csv"
        path.write_bytes(b"id\n7\n")
        assert list(read_csv(path, ["id"])) == [(2, {"id": "7"})]
        assert list(read_csv(str(path), ["id"])) == [(2, {"id": "7"})]


def cell(value: str) -> Fields:
    return Fields({"c": value})


class TestCells:
    @pytest.mark.parametrize(
        ("text", "expected"),
        [("1280", 1280), ("1,280", 1280), ("１２８０", 1280), (" 42 ", 42), ("-3", -3)],
    )
    def test_integers(self, text: str, expected: int) -> None:
        assert cell(text).integer("c", -10, 10_000) == expected

    @pytest.mark.parametrize(
        ("text", "reason"),
        [
            ("abc", "column c: 'abc' is not an integer"),
            ("12.5", "column c: '12.5' is not an integer"),
            ("1,28", "column c: '1,28' is not an integer"),
            ("10001", "column c: 10001 is more than 10000"),
            ("", "column c: required but empty"),
        ],
    )
    def test_bad_integers_name_the_column_and_why(self, text: str, reason: str) -> None:
        with pytest.raises(FieldError) as caught:
            cell(text).integer("c", 0, 10_000)
        assert str(caught.value) == reason

    def test_an_absent_column_is_called_missing(self) -> None:
        with pytest.raises(FieldError, match="column x: missing"):
            cell("1").integer("x", 0, 1)

    @pytest.mark.parametrize(
        ("text", "expected"),
        [
            ("2025-06-12T09:30:00+09:00", datetime(2025, 6, 12, 9, 30, tzinfo=JST)),
            ("2025-06-12T00:30:00Z", datetime(2025, 6, 12, 9, 30, tzinfo=JST)),
            ("2025-06-12 09:30", datetime(2025, 6, 12, 9, 30, tzinfo=JST)),
            ("2025/6/12 9:30", datetime(2025, 6, 12, 9, 30, tzinfo=JST)),
            ("2025/06/12 09:30:15", datetime(2025, 6, 12, 9, 30, 15, tzinfo=JST)),
            ("２０２５／６／１２ ９：３０", datetime(2025, 6, 12, 9, 30, tzinfo=JST)),
        ],
    )
    def test_date_times_without_an_offset_are_japan_time(
        self, text: str, expected: datetime
    ) -> None:
        parsed = cell(text).timestamp("c")
        assert parsed == expected
        assert parsed.utcoffset() is not None

    @pytest.mark.parametrize("text", ["2025-13-01 09:00", "yesterday", "2025/6/31 10:00"])
    def test_bad_date_times(self, text: str) -> None:
        with pytest.raises(FieldError, match="is not a date-time"):
            cell(text).timestamp("c")

    def test_dates_and_months(self) -> None:
        assert cell("2025-06-10").day("c") == date(2025, 6, 10)
        assert cell("2025/6/10").day("c") == date(2025, 6, 10)
        assert cell("2025/10").month("c") == "2025-10"
        with pytest.raises(FieldError, match="is not a date"):
            cell("20250610").day("c")
        with pytest.raises(FieldError, match="is not a month"):
            cell("2025-13").month("c")

    @pytest.mark.parametrize(
        ("text", "expected"),
        [("true", True), ("FALSE", False), ("1", True), ("有", True), ("無", False), ("×", False)],
    )
    def test_yes_no(self, text: str, expected: bool) -> None:
        assert cell(text).boolean("c") is expected

    @pytest.mark.parametrize("text", ["takuma", "Takuma", "詫間", "詫間町"])
    def test_towns_in_any_spelling(self, text: str) -> None:
        assert cell(text).town("c") == "takuma"

    def test_ids_are_checked_against_the_platform_patterns(self) -> None:
        assert cell("res-a1b2c3d4").resident_id("c") == "res-a1b2c3d4"
        with pytest.raises(FieldError, match="'田中太郎' is not a resident id"):
            cell("田中太郎").resident_id("c")
        with pytest.raises(FieldError, match="is not a valid id"):
            cell("trip 1").record_id("c")

    def test_a_line_break_typed_in_a_cell_is_kept_as_one_newline(self) -> None:
        assert cell("一行目\r\n二行目").text("c") == "一行目\n二行目"


def test_a_field_error_becomes_a_row_error_on_its_line_and_reading_goes_on() -> None:
    def convert(line: int, f: Fields) -> EventDraft | None:
        n = f.integer("n", 0, 9)
        if n == 0:
            return None  # "nothing to publish" is neither a draft nor an error
        return EventDraft("t", "res-0000", {"n": n}, str(n), datetime(2025, 1, 1), line)

    out = list(map_rows(numbered([{"n": "1"}, {"n": "x"}, {"n": "0"}, {"n": "2"}]), convert))
    assert [(type(o).__name__, o.line) for o in out] == [
        ("EventDraft", 2),
        ("RowError", 3),
        ("EventDraft", 5),
    ]
