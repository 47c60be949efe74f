"""What the four service readers share: CSV exports read with their line numbers, typed cells
that fail with a reason naming the column, and Japan time (the towns are in ``contract.towns``).

A reader turns rows into ``EventDraft`` or ``RowError`` and never raises on a bad row: each
converter raises ``FieldError`` ("column fare_jpy: 'abc' is not an integer") and ``map_rows``
turns it into a ``RowError`` on that row's line.
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import io
import math
import os
import re
import unicodedata
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from datetime import date, datetime, time, timedelta, timezone
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import TypeVar

from connectors.sdk.rows import EventDraft, RowError
from contract.towns import TOWN_CODES, town_code

__all__ = [
    "JST",
    "MERCHANT_ID",
    "PROPERTY_ID",
    "RECORD_ID",
    "RESIDENT_ID",
    "VEHICLE_ID",
    "CsvSource",
    "FieldError",
    "Fields",
    "Row",
    "Seen",
    "carried_id",
    "csv_header",
    "end_of_day",
    "export_encoding",
    "iso",
    "map_rows",
    "numbered",
    "read_csv",
]

#: Japan Standard Time. Japan has no daylight saving, so a fixed offset is exact.
JST = timezone(timedelta(hours=9), "JST")

#: One row as a CSV export gives it: column name → cell text.
Row = Mapping[str, str]
#: A CSV file: a path, or its bytes (e.g. an upload).
CsvSource = str | os.PathLike[str] | bytes
#: Turns one row (its line and its cells) into a draft, or None for "no event, no error".
Converter = Callable[[int, "Fields"], EventDraft | None]


RECORD_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,63}")
RESIDENT_ID = re.compile(r"res-[0-9a-z]{4,40}")
PROPERTY_ID = re.compile(r"prop-[0-9a-z]{4,40}")
VEHICLE_ID = re.compile(r"veh-[0-9a-z]{2,40}")
MERCHANT_ID = re.compile(r"mer-[0-9a-z]{2,40}")

_UNSAFE_ID_CHARACTERS = re.compile(r"[^A-Za-z0-9._:-]+")


def carried_id(value: str) -> str:
    """``value`` as an id events may carry (``RECORD_ID``): itself when it already is one, else
    a readable ASCII part and 12 hex digits of its SHA-256 (``1番のりば`` → ``1-3f0a…``).

    GTFS allows any text as an id (``1番のりば``, ``A/12``, longer than 64); our schemas and
    URLs take ``RECORD_ID`` only. The mapping is stable, so re-runs give the same id.
    """
    if RECORD_ID.fullmatch(value):
        return value
    slug = _UNSAFE_ID_CHARACTERS.sub("-", _ascii(value)).strip("-._:")[:40]
    digest = hashlib.sha256(value.encode()).hexdigest()[:12]
    return f"{slug or 'id'}-{digest}"


_THOUSANDS = re.compile(r"[+-]?[0-9]{1,3}(,[0-9]{3})+")
_SLASHED_DATE = re.compile(r"([0-9]{4})/([0-9]{1,2})/([0-9]{1,2})")
_SLASHED_DATETIME = re.compile(
    r"([0-9]{4})/([0-9]{1,2})/([0-9]{1,2})[ T]([0-9]{1,2}):([0-9]{2})(?::([0-9]{2}))?"
)
_MONTH = re.compile(r"([0-9]{4})[-/]([0-9]{1,2})")
_TRUE = frozenset({"true", "1", "yes", "y", "t", "有", "あり", "はい", "○", "〇"})
_FALSE = frozenset({"false", "0", "no", "n", "f", "無", "なし", "いいえ", "×", "-"})


_N = TypeVar("_N", int, float)


class FieldError(ValueError):
    """A cell (or a row) that cannot be read; the message names the column and why."""


def _ascii(value: str) -> str:
    # Japanese spreadsheets type full-width digits and punctuation (２０２５／６／１２);
    # NFKC folds them to ASCII. Pure-ASCII cells, the common case, skip the work.
    return value if value.isascii() else unicodedata.normalize("NFKC", value)


def _shown(value: str) -> str:
    return repr(value if len(value) <= 40 else value[:37] + "...")


class Fields:
    """Typed access to one row's cells; every failure is a ``FieldError`` naming the column."""

    __slots__ = ("_row",)

    def __init__(self, row: Mapping[str, str | None]) -> None:
        self._row = row

    def raw(self, column: str) -> str:
        """The cell without surrounding spaces; "" when empty or absent."""
        value = self._row.get(column)
        return value.strip() if value else ""

    def has(self, column: str) -> bool:
        """Whether the cell holds something."""
        return bool(self.raw(column))

    def fail(self, column: str, reason: str) -> FieldError:
        """An error about ``column`` (for the caller to raise)."""
        return FieldError(f"column {column}: {reason}")

    def _required(self, column: str) -> str:
        value = self.raw(column)
        if not value:
            if column not in self._row:
                raise self.fail(column, "missing (no such column)")
            raise self.fail(column, "required but empty")
        return value

    def text(self, column: str, *, max_length: int = 100, min_length: int = 1) -> str:
        """A non-empty text cell of at most ``max_length`` characters."""
        value = self._required(column).replace("\r\n", "\n")  # Excel's line breaks in a cell
        if len(value) < min_length:
            raise self.fail(column, f"{_shown(value)} is shorter than {min_length} characters")
        if len(value) > max_length:
            raise self.fail(column, f"{len(value)} characters, at most {max_length} allowed")
        return value

    def matching(self, column: str, pattern: re.Pattern[str], what: str) -> str:
        """A cell that must match ``pattern`` entirely; ``what`` names it in the reason."""
        value = self._required(column)
        if not pattern.fullmatch(value):
            raise self.fail(column, f"{_shown(value)} is not {what}")
        return value

    def record_id(self, column: str) -> str:
        """A firm-issued id: letters, digits and ``._:-``, at most 64 characters."""
        return self.matching(
            column, RECORD_ID, "a valid id (ASCII letters, digits and . _ : -, at most 64)"
        )

    def resident_id(self, column: str) -> str:
        """A platform resident id ``res-…``."""
        return self.matching(column, RESIDENT_ID, "a resident id (res- and 4-40 of a-z 0-9)")

    def property_id(self, column: str) -> str:
        """A platform property id ``prop-…``."""
        return self.matching(column, PROPERTY_ID, "a property id (prop- and 4-40 of a-z 0-9)")

    def vehicle_id(self, column: str) -> str:
        """A platform vehicle id ``veh-…``."""
        return self.matching(column, VEHICLE_ID, "a vehicle id (veh- and 2-40 of a-z 0-9)")

    def merchant_id(self, column: str) -> str:
        """A platform merchant id ``mer-…``."""
        return self.matching(column, MERCHANT_ID, "a merchant id (mer- and 2-40 of a-z 0-9)")

    def integer(self, column: str, minimum: int, maximum: int) -> int:
        """An integer in [minimum, maximum]; ``1,280`` and full-width digits are accepted."""
        value = self._required(column)
        plain = _ascii(value)
        if _THOUSANDS.fullmatch(plain):
            plain = plain.replace(",", "")
        try:
            number = int(plain)
        except ValueError:
            raise self.fail(column, f"{_shown(value)} is not an integer") from None
        return self._bounded(column, number, minimum, maximum)

    def number(
        self, column: str, minimum: float, maximum: float, *, exclusive_minimum: bool = False
    ) -> float:
        """A finite decimal number in range (above ``minimum`` when ``exclusive_minimum``)."""
        value = self._required(column)
        try:
            number = float(_ascii(value).replace(",", ""))
        except ValueError:
            raise self.fail(column, f"{_shown(value)} is not a number") from None
        if not math.isfinite(number):
            raise self.fail(column, f"{_shown(value)} is not a finite number")
        if exclusive_minimum and number <= minimum:
            raise self.fail(column, f"{number:g} is not more than {minimum:g}")
        return self._bounded(column, number, minimum, maximum)

    def decimal(self, column: str) -> Decimal:
        """An exact decimal (for rates: 0.29 × 100 must be 29, not 28.999…)."""
        value = self._required(column)
        try:
            number = Decimal(_ascii(value))
        except InvalidOperation:
            raise self.fail(column, f"{_shown(value)} is not a number") from None
        if not number.is_finite():
            raise self.fail(column, f"{_shown(value)} is not a finite number")
        return number

    def _bounded(self, column: str, number: _N, minimum: _N, maximum: _N) -> _N:
        if number < minimum:
            raise self.fail(column, f"{number:g} is less than {minimum:g}")
        if number > maximum:
            raise self.fail(column, f"{number:g} is more than {maximum:g}")
        return number

    def timestamp(self, column: str) -> datetime:
        """A date-time; ISO 8601 or ``2025/6/12 9:30``; without an offset it is Japan time."""
        value = self._required(column)
        plain = _ascii(value)
        try:
            parsed = datetime.fromisoformat(plain)
        except ValueError:
            m = _SLASHED_DATETIME.fullmatch(plain)
            if m is None:
                raise self.fail(
                    column, f"{_shown(value)} is not a date-time (e.g. 2025-06-12T09:30:00+09:00)"
                ) from None
            year, month, day, hour, minute, second = (int(g) for g in m.groups("0"))
            try:
                parsed = datetime(year, month, day, hour, minute, second)
            except ValueError as e:
                raise self.fail(column, f"{_shown(value)} is not a date-time ({e})") from None
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=JST)
        return parsed

    def day(self, column: str) -> date:
        """A calendar date, ``2025-06-12`` or ``2025/6/12``."""
        value = self._required(column)
        plain = _ascii(value)
        m = _SLASHED_DATE.fullmatch(plain)
        try:
            if m:
                return date(int(m[1]), int(m[2]), int(m[3]))
            if len(plain) == 10:  # fromisoformat also takes 20250612: not a format we document
                return date.fromisoformat(plain)
        except ValueError:
            pass
        raise self.fail(column, f"{_shown(value)} is not a date (YYYY-MM-DD)")

    def month(self, column: str) -> str:
        """A calendar month ``YYYY-MM`` (``2025/10`` is accepted)."""
        value = self._required(column)
        m = _MONTH.fullmatch(_ascii(value))
        if m is None or not 1 <= int(m[2]) <= 12:
            raise self.fail(column, f"{_shown(value)} is not a month (YYYY-MM)")
        return f"{m[1]}-{int(m[2]):02d}"

    def boolean(self, column: str) -> bool:
        """true/false, 1/0, yes/no, 有/無, あり/なし, ○/×."""
        value = self._required(column)
        folded = _ascii(value).lower()
        if folded in _TRUE:
            return True
        if folded in _FALSE:
            return False
        raise self.fail(column, f"{_shown(value)} is not a yes/no value (true or false)")

    def choice(self, column: str, options: Sequence[str]) -> str:
        """One of ``options`` (compared without case)."""
        value = self._required(column)
        folded = value.lower()
        if folded not in options:
            raise self.fail(column, f"{_shown(value)} is not one of {', '.join(options)}")
        return folded

    def town(self, column: str) -> str:
        """A town code; ``takuma``, ``詫間`` and ``詫間町`` all give ``takuma``."""
        value = self._required(column)
        code = town_code(value)
        if code is None:
            towns = ", ".join(TOWN_CODES)
            raise self.fail(column, f"{_shown(value)} is not a town of Mitoyo ({towns})")
        return code


def end_of_day(day: date) -> datetime:
    """The last second of ``day`` in Japan time."""
    return datetime.combine(day, time(23, 59, 59), JST)


def iso(moment: datetime) -> str:
    """RFC 3339 with the offset, seconds precision unless the source had fractions."""
    return moment.isoformat()


class Seen:
    """Remembers each row id of one export so a repeated id is reported, not published twice."""

    __slots__ = ("_lines",)

    def __init__(self) -> None:
        self._lines: dict[str, int] = {}

    def once(self, fields: Fields, column: str, value: str, line: int) -> None:
        """Raise when ``value`` already appeared on an earlier line."""
        first = self._lines.setdefault(value, line)
        if first != line:
            raise fields.fail(column, f"{_shown(value)} already appears on line {first}")


def numbered(rows: Iterable[Row]) -> Iterator[tuple[int, Row]]:
    """Row dicts numbered as a CSV file with a header would number them (first row: line 2)."""
    return enumerate(rows, start=2)


def map_rows(
    rows: Iterable[tuple[int, Row] | RowError], convert: Converter
) -> Iterator[EventDraft | RowError]:
    """Run ``convert`` on each row: a ``FieldError`` becomes a ``RowError`` on that line."""
    for item in rows:
        if isinstance(item, RowError):
            yield item
            continue
        line, row = item
        try:
            draft = convert(line, Fields(row))
        except FieldError as e:
            yield RowError(line, str(e))
            continue
        if draft is not None:
            yield draft


def export_encoding(raw: bytes, encoding: str) -> str:
    """The encoding an export is read in: ``encoding``, unless a UTF-8 byte-order mark says
    what the file is (Excel's "CSV UTF-8" given to a reader told cp932 would otherwise be
    mojibake)."""
    return "utf-8-sig" if raw.startswith(codecs.BOM_UTF8) else encoding


def _decode(raw: bytes, encoding: str) -> str | RowError:
    encoding = export_encoding(raw, encoding)
    try:
        return raw.decode(encoding)
    except UnicodeDecodeError as e:
        line = raw.count(b"\n", 0, e.start) + 1
        hint = (
            " (a Japanese export in Shift_JIS? read it with encoding='cp932')"
            if encoding.lower().replace("_", "-").startswith("utf")
            else ""
        )
        where = _column_at(raw, e.start, encoding)
        return RowError(line, f"{where}not {encoding} text at byte {e.start}{hint}; file not read")
    except LookupError:
        return RowError(0, f"unknown encoding {encoding!r}")


def _column_at(raw: bytes, offset: int, encoding: str) -> str:
    """ "column NAME: " for the cell holding byte ``offset``, or "" when it cannot be told.

    Counts the commas before it on its line: neither UTF-8 nor Shift_JIS uses the comma's
    byte inside a character. A quoted comma before it may shift the count: then it names
    the wrong column of the right line, which still points the reader to the place.
    """
    start = raw.rfind(b"\n", 0, offset) + 1
    first_line = raw.split(b"\n", 1)[0]
    try:
        header = next(csv.reader([first_line.decode(encoding).lstrip("\ufeff")]), [])
    except UnicodeDecodeError:
        return ""
    index = raw.count(b",", start, offset) if start else None
    if index is None or index >= len(header):
        return ""
    return f"column {header[index].strip()}: "


def csv_header(source: CsvSource, encoding: str = "utf-8-sig") -> list[str] | RowError:
    """The column names on a CSV export's first line (trimmed), or why the file cannot be read."""
    raw = source if isinstance(source, bytes) else Path(source).read_bytes()
    text = _decode(raw, encoding)
    if isinstance(text, RowError):
        return text
    try:
        first = next(csv.reader(io.StringIO(text.removeprefix("\ufeff"), newline="")), [])
    except csv.Error as e:
        return RowError(1, f"not valid CSV: {e}")
    return [h.strip() for h in first]


def read_csv(
    source: CsvSource, columns: Collection[str], *, encoding: str = "utf-8-sig"
) -> Iterator[tuple[int, Row] | RowError]:
    """Rows of a CSV export with the line each starts on (header = line 1).

    ``columns`` must all be in the header, else one ``RowError`` on line 1 and nothing else.
    A file that does not decode in ``encoding`` is refused whole (no half imports), naming
    the first line that fails. Extra columns are ignored; a row with more cells than the
    header is an error (an unquoted comma shifts every later cell); missing trailing cells
    read as empty; blank lines are skipped.
    """
    raw = source if isinstance(source, bytes) else Path(source).read_bytes()
    text = _decode(raw, encoding)
    if isinstance(text, RowError):
        yield text
        return
    # A BOM left by encoding="utf-8" would hide a quoted first column name from the parser.
    reader = csv.reader(io.StringIO(text.removeprefix("\ufeff"), newline=""))
    header = [h.strip() for h in next(reader, [])]
    if not any(header):
        yield RowError(1, "no header row (the first line must name the columns)")
        return
    doubled = sorted({h for h in header if h and header.count(h) > 1})  # Excel pads with ",,"
    missing = [c for c in columns if c not in header]
    if doubled or missing:
        reasons = [f"column {c} appears twice" for c in doubled]
        if missing:
            reasons.append(f"missing column(s) {', '.join(missing)}")
        yield RowError(1, "header: " + "; ".join(reasons))
        return
    width = len(header)
    before = reader.line_num
    while True:
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as e:
            yield RowError(before + 1, f"not valid CSV: {e}")
            before = reader.line_num
            continue
        line, before = before + 1, reader.line_num
        if not any(c.strip() for c in cells):
            continue
        if len(cells) > width:
            yield RowError(
                line, f"{len(cells)} cells but the header has {width} (an unquoted comma?)"
            )
            continue
        cells += [""] * (width - len(cells))
        yield line, dict(zip(header, cells, strict=True))
