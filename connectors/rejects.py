"""Refused rows kept, not only reported: a CSV export's refused rows, unchanged, in a rejects
file (``trips.csv`` → ``trips.rejected.csv``) with the export's header and encoding and two
trailing columns, ``line`` (where the row was in the export) and ``reason``.

Each row is copied as the export wrote it (its quoting, its line breaks inside quotes), so
fixing the rejects file and running it again publishes exactly those rows: the readers
ignore the two trailing columns (``REJECT_COLUMNS``). A header the reader refused refuses
every row of the file: then every row is kept, each with that reason, so nothing is dropped.
A file that cannot be read at all (not in its encoding) stays as it is: there is no row to
keep apart from it.
"""

from __future__ import annotations

import codecs
import csv
import io
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from connectors.readers import export_encoding
from connectors.sdk.rows import RowError

__all__ = ["REJECT_COLUMNS", "Rejects", "rejects_path", "write_rejects"]

#: The columns a rejects file adds after the export's own.
REJECT_COLUMNS = ("line", "reason")
_UTF8 = {"utf-8", "utf8", "utf-8-sig", "utf_8", "utf_8_sig"}


@dataclass(frozen=True, slots=True)
class Rejects:
    """A rejects file written: where, and how many rows it keeps."""

    path: Path
    rows: int


def rejects_path(export: Path, folder: Path | None = None) -> Path:
    """Where the refused rows of ``export`` are kept: beside it, or in ``folder`` when given,
    as ``<name>.rejected<suffix>`` (``trips.csv`` → ``trips.rejected.csv``)."""
    return (folder or export.parent) / f"{export.stem}.rejected{export.suffix or '.csv'}"


def write_rejects(
    export: Path, errors: Iterable[RowError], to: Path, *, encoding: str
) -> Rejects | None:
    """Write the rows of ``export`` (read in ``encoding``) that ``errors`` refused to ``to``,
    each with its line and reason; None, and no file, when no row of it was refused."""
    reasons: dict[int, list[str]] = {}
    for error in errors:
        if error.line:
            reasons.setdefault(error.line, []).append(error.reason)
    if not reasons:
        return None
    raw = export.read_bytes()
    read_as = export_encoding(raw, encoding)
    try:
        text = raw.decode(read_as).removeprefix("\ufeff")
    except (UnicodeDecodeError, LookupError):
        return None  # refused whole: the file itself is what to fix and run again
    lines = io.StringIO(text, newline="").readlines()
    if not lines:
        return None
    header_reason = "; ".join(reasons.get(1, ()))
    width = len(next(csv.reader([lines[0]]), []))
    kept = [_with(lines[0], width, width, "line", "reason")]
    for first, last, cells in _records(lines):
        why = header_reason or "; ".join(reasons.get(first, ()))
        if why:
            kept.append(_with("".join(lines[first - 1 : last]), cells, width, str(first), why))
    if len(kept) == 1:
        return None
    to.parent.mkdir(parents=True, exist_ok=True)
    to.write_bytes("".join(kept).encode(_written_as(raw, read_as), errors="replace"))
    return Rejects(to, len(kept) - 1)


def _records(lines: list[str]) -> Iterator[tuple[int, int, int | None]]:
    """Each record after the header as the readers count it: its first and last line and its
    number of cells (blank lines skipped; None for a record CSV cannot parse)."""
    reader = csv.reader(iter(lines))
    next(reader, None)
    before = reader.line_num
    while True:
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error:
            yield before + 1, reader.line_num, None
            before = reader.line_num
            continue
        first, before = before + 1, reader.line_num
        if any(c.strip() for c in cells):
            yield first, reader.line_num, len(cells)


def _with(record: str, cells: int | None, width: int, line: str, reason: str) -> str:
    """``record`` as written, padded to the header's width (a short row's missing trailing
    cells), with ``line`` and ``reason`` after it."""
    body = record.rstrip("\r\n")
    ending = record[len(body) :] or "\n"
    out = io.StringIO()
    csv.writer(out, lineterminator="").writerow([line, reason])
    padding = "," * max(0, width - (width if cells is None else cells))
    return body + padding + "," + out.getvalue() + ending


def _written_as(raw: bytes, read_as: str) -> str:
    """The export's own encoding: a byte-order mark only when it had one."""
    if read_as.lower() in _UTF8:
        return "utf-8-sig" if raw.startswith(codecs.BOM_UTF8) else "utf-8"
    return read_as
