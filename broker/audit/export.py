"""Exports of the audit log: JSON lines (verifiable offline) and CSV (for spreadsheets).

JSON lines: a header ``{"type": "header", "format": "tsunagu-audit", "version": 1,
"exported_at", "head_seq", "head_hash"}``, then one ``{"type": "entry", …}`` line per entry
in seq order, each checkpoint ``{"type": "checkpoint", "seq", "hash", "at", "signature"}``
right after the entry it covers. ``verify_export`` checks it with only the platform's JWKS.
The header's head is not signed: cut together with the entries after the last checkpoint it
goes unnoticed, so the CLI signs a checkpoint of the head before it exports (see verify.py).

CSV: one row per entry, with the checkpoint JWS in the ``checkpoint`` column of the entries
that have one; the same data, for reading, not for ``verify``. A cell a spreadsheet would run
as a formula (one starting with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return, e.g. a
token subject ``=HYPERLINK(…)``) is written with a leading ``'``, as OWASP's CSV injection
guidance asks: the spreadsheet then shows it as text.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from typing import IO

import orjson
from sqlalchemy import Engine, select

from broker.audit import tables
from broker.audit.checkpoints import Checkpoint
from broker.audit.entries import timestamp
from broker.audit.log import StoredEntry
from broker.progress import Steps, counted

FORMAT = "tsunagu-audit"
VERSION = 1
CSV_COLUMNS = (
    "seq",
    "at",
    "kind",
    "actor",
    "subject_ref",
    "fields",
    "prev_hash",
    "hash",
    "checkpoint",
)


def _snapshot(engine: Engine) -> tuple[int, str, dict[int, Checkpoint], Iterator[StoredEntry]]:
    """The head, the checkpoints up to it, and its entries (read up to the head only, so
    appends made meanwhile do not tear the export)."""
    e = tables.entries
    with engine.connect() as conn:
        head = conn.execute(select(tables.head.c.seq, tables.head.c.hash)).one()
        cps = {
            row.seq: Checkpoint(*row)
            for row in conn.execute(
                select(tables.checkpoints).where(tables.checkpoints.c.seq <= head.seq)
            )
        }

    def rows() -> Iterator[StoredEntry]:
        with engine.connect() as conn:
            result = conn.execution_options(yield_per=10_000).execute(
                select(e).where(e.c.seq <= head.seq).order_by(e.c.seq)
            )
            for row in result:
                yield StoredEntry(*row)

    return head.seq, head.hash, cps, rows()


def export_jsonl(engine: Engine, out: IO[bytes], *, steps: Steps | None = None) -> int:
    """Write the log as JSON lines to ``out``; return the number of entries written.
    ``steps`` hears of each entry written."""
    head_seq, head_hash, cps, rows = _snapshot(engine)
    header = {
        "type": "header",
        "format": FORMAT,
        "version": VERSION,
        "exported_at": timestamp(),
        "head_seq": head_seq,
        "head_hash": head_hash,
    }
    out.write(orjson.dumps(header) + b"\n")
    written = 0
    for entry in counted(rows, steps, head_seq):
        line = {
            "type": "entry",
            "seq": entry.seq,
            "at": entry.at,
            "kind": entry.kind,
            "actor": entry.actor,
            "subject_ref": entry.subject_ref,
            # The stored text as is: a verifier re-canonicalises it, so nothing is lost.
            "fields": orjson.Fragment(entry.fields),
            "prev_hash": entry.prev_hash,
            "hash": entry.hash,
        }
        out.write(orjson.dumps(line) + b"\n")
        written += 1
        cp = cps.get(entry.seq)
        if cp is not None:
            out.write(orjson.dumps({"type": "checkpoint", **cp_fields(cp)}) + b"\n")
    return written


def cp_fields(cp: Checkpoint) -> dict[str, object]:
    """A checkpoint as exported."""
    return {"seq": cp.seq, "hash": cp.hash, "at": cp.at, "signature": cp.signature}


def export_csv(engine: Engine, out: IO[str], *, steps: Steps | None = None) -> int:
    """Write the log as CSV to ``out`` (a text stream opened with ``newline=""``); ``steps``
    hears of each entry written."""
    head_seq, _, cps, rows = _snapshot(engine)
    writer = csv.writer(out)
    writer.writerow(CSV_COLUMNS)
    written = 0
    for entry in counted(rows, steps, head_seq):
        cp = cps.get(entry.seq)
        writer.writerow([spreadsheet_text(v) for v in (*entry, "" if cp is None else cp.signature)])
        written += 1
    return written


#: What makes a spreadsheet read a cell as a formula (OWASP, CSV injection).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_text(value: object) -> object:
    """``value``, with a leading ``'`` when it is text a spreadsheet would run as a formula."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value
