"""Refused rows kept, not only reported: `tsunagu connector run` writes each CSV's refused
rows, unchanged, to a rejects file in the export's header and encoding plus their line and
reason; fixed and run again, it publishes them."""

from __future__ import annotations

import codecs
import csv
import io
from pathlib import Path

from connectors.readers import csv_header
from connectors.rejects import REJECT_COLUMNS, rejects_path, write_rejects
from connectors.sdk.rows import RowError
from connectors.vacant_house import read_listings_csv
from tests.connectors.test_cli import RUNS, SAMPLES, _project, _run

TRIPS = SAMPLES / "transport" / "trips.csv"
STANDARD_LISTINGS = SAMPLES / "vacant_house" / "listings_standard.csv"


def _lines(path: Path, encoding: str) -> list[str]:
    return path.read_bytes().decode(encoding).splitlines()


def _bad_trips(folder: Path) -> tuple[Path, list[str]]:
    """The sample trips export (UTF-8 with a BOM) with two bad rows: file lines 3 and 5."""
    lines = TRIPS.read_text(encoding="utf-8-sig").splitlines()
    lines[2] = lines[2].replace(",500,1,7300,", ",abc,1,7300,")
    lines[4] = lines[4].replace("mitoyo-shiyakusho", "nowhere-stop")
    export = folder / "trips.csv"
    export.write_bytes(codecs.BOM_UTF8 + ("\n".join(lines) + "\n").encode("utf-8"))
    return export, lines


def test_a_transport_run_keeps_its_refused_rows_unchanged_beside_the_export(
    tmp_path: Path,
) -> None:
    export, lines = _bad_trips(tmp_path)
    result = _run(tmp_path / "data", "transport", *RUNS["transport"][:2], "--trips", str(export))
    assert result.returncode == 3, result.stdout + result.stderr
    rejects = tmp_path / "trips.rejected.csv"
    assert f"refused rows kept in {rejects} (2)" in result.stdout
    raw = rejects.read_bytes()
    assert raw.startswith(codecs.BOM_UTF8)  # the export's encoding, its BOM too
    kept = _lines(rejects, "utf-8-sig")
    assert kept[0] == lines[0] + ",line,reason"
    # Each row as the export wrote it, then where it was and why it was refused.
    assert kept[1].startswith(lines[2] + ",3,")
    assert kept[2].startswith(lines[4] + ",5,")
    [first, second] = list(csv.DictReader(io.StringIO(raw.decode("utf-8-sig"))))
    assert first["reason"] == "column fare_jpy: 'abc' is not an integer"
    assert "nowhere-stop" in second["reason"]
    assert _project(tmp_path / "data") == {"transport.trip.completed": 3}


def test_a_fixed_rejects_file_run_again_publishes_its_rows(tmp_path: Path) -> None:
    export, _ = _bad_trips(tmp_path)
    _run(tmp_path / "data", "transport", *RUNS["transport"][:2], "--trips", str(export))
    rejects = tmp_path / "trips.rejected.csv"
    fixed = rejects.read_text(encoding="utf-8-sig")
    fixed = fixed.replace(",abc,", ",500,").replace("nowhere-stop", "mitoyo-shiyakusho")
    rejects.write_text(fixed, encoding="utf-8-sig")
    again = _run(tmp_path / "data", "transport", *RUNS["transport"][:2], "--trips", str(rejects))
    assert again.returncode == 0, again.stdout + again.stderr
    assert "2 events queued" in again.stdout  # the line and reason columns ignored
    assert "refused rows kept" not in again.stdout
    assert not (tmp_path / "trips.rejected.rejected.csv").exists()  # nothing refused: no file
    assert _project(tmp_path / "data") == {"transport.trip.completed": 5}


def test_a_run_that_refuses_nothing_writes_no_rejects_file(tmp_path: Path) -> None:
    export = tmp_path / "trips.csv"
    export.write_bytes(TRIPS.read_bytes())
    result = _run(tmp_path / "data", "transport", *RUNS["transport"][:2], "--trips", str(export))
    assert result.returncode == 0, result.stdout + result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "trips.csv"]


def _shift_jis_bank_export(folder: Path) -> tuple[Path, list[str]]:
    """The standard-model sample export in Shift_JIS, its first listing's 緯度 outside Japan."""
    lines = STANDARD_LISTINGS.read_text(encoding="utf-8-sig").splitlines()
    lines[1] = lines[1].replace(",34.2671,", ",60.5,")
    export = folder / "akiya.csv"
    export.write_bytes(("\r\n".join(lines) + "\r\n").encode("cp932"))
    return export, lines


def test_a_shift_jis_bank_export_keeps_its_refused_rows_in_shift_jis_where_asked(
    tmp_path: Path,
) -> None:
    export, lines = _shift_jis_bank_export(tmp_path)
    folder = tmp_path / "refused"
    args = ("vacant_house", "--listings", str(export), "--encoding", "cp932")
    result = _run(tmp_path / "data", *args, "--rejects", str(folder))
    assert result.returncode == 3, result.stdout + result.stderr
    rejects = folder / "akiya.rejected.csv"
    assert f"refused rows kept in {rejects} (1)" in result.stdout
    assert not (tmp_path / "akiya.rejected.csv").exists()  # where asked, not beside the export
    kept = _lines(rejects, "cp932")
    assert kept[0] == lines[0] + ",line,reason"
    assert kept[1] == lines[1] + ",2,column 緯度: 60.5 is outside Japan (20 to 46)"
    assert rejects.read_bytes().endswith(b"\r\n")  # its line breaks kept too
    assert _project(tmp_path / "data") == {"vacant_house.listing.registered": 2}

    # Fixed where it is kept, and run again in the same encoding: the listing is published.
    rejects.write_bytes(rejects.read_bytes().replace(b",60.5,", b",34.2671,"))
    again = _run(tmp_path / "data", *args[:2], str(rejects), *args[3:])
    assert again.returncode == 0, again.stdout + again.stderr
    assert "1 events queued" in again.stdout
    assert _project(tmp_path / "data") == {"vacant_house.listing.registered": 3}


def test_a_refused_header_keeps_every_row_with_its_reason(tmp_path: Path) -> None:
    lines = STANDARD_LISTINGS.read_text(encoding="utf-8-sig").splitlines()
    lines[0] = lines[0].replace("備考", "びこう")
    export = tmp_path / "akiya.csv"
    export.write_text("\n".join(lines) + "\n", encoding="utf-8")
    errors = [e for e in read_listings_csv(export) if isinstance(e, RowError)]
    assert [e.line for e in errors] == [1]  # nothing of the file read
    kept = write_rejects(export, errors, rejects_path(export), encoding="utf-8")
    assert kept is not None and kept.rows == len(lines) - 1
    rows = list(csv.reader(io.StringIO(kept.path.read_text(encoding="utf-8"))))
    assert rows[0] == [*next(csv.reader([lines[0]])), *REJECT_COLUMNS]
    assert [r[-2] for r in rows[1:]] == ["2", "3", "4"]
    assert all("unknown column(s) びこう" in r[-1] for r in rows[1:])
    assert not kept.path.read_bytes().startswith(codecs.BOM_UTF8)  # none in the export, none here


def test_a_row_over_several_lines_and_a_short_row_are_kept_whole_in_their_columns(
    tmp_path: Path,
) -> None:
    export = tmp_path / "payments.csv"
    export.write_text('id,name,amount\np1,"仁尾うどん\n本舗",abc\np2,short\np3,ok,1\n')
    errors = [RowError(2, "column amount: 'abc' is not an integer"), RowError(4, "short row")]
    kept = write_rejects(export, errors, tmp_path / "out.csv", encoding="utf-8")
    assert kept is not None and kept.rows == 2
    text = kept.path.read_text(encoding="utf-8")
    assert text.startswith('id,name,amount,line,reason\np1,"仁尾うどん\n本舗",abc,2,')
    rows = list(csv.DictReader(io.StringIO(text)))
    assert [(r["id"], r["amount"], r["line"]) for r in rows] == [
        ("p1", "abc", "2"),
        ("p2", "", "4"),
    ]
    assert csv_header(kept.path) == ["id", "name", "amount", "line", "reason"]


def test_a_file_that_cannot_be_read_at_all_is_left_as_it_is(tmp_path: Path) -> None:
    export = tmp_path / "trips.csv"
    export.write_bytes("trip_id,備考\nodt-1,通院\n".encode("cp932"))
    errors = [RowError(1, "not utf-8-sig text at byte 8; file not read")]
    assert write_rejects(export, errors, rejects_path(export), encoding="utf-8-sig") is None
    assert not rejects_path(export).exists()
