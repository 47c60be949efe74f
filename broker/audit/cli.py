"""``tsunagu audit``: verify the audit log (online or an export) and export it.

Exit codes: 0 the log verified (or the export was written), 1 the log was tampered with
(stderr names the first bad seq and why), 2 a usage error (no store, no keys, a bad file).
Mounted by ``broker.cli`` as ``tsunagu audit``; ``python -m broker.audit.cli`` runs it alone.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from sqlalchemy import Engine, create_engine
from sqlalchemy.exc import SQLAlchemyError

from broker.audit import tables
from broker.audit.export import export_csv, export_jsonl
from broker.audit.verify import Verification, load_jwks, verify_export, verify_store
from broker.progress import progress
from broker.settings import Settings

audit_app = typer.Typer(
    help="The tamper-evident audit log: verify it, export it.", no_args_is_help=True
)

EXIT_TAMPERED = 1
EXIT_USAGE = 2


class ExportFormat(StrEnum):
    """Export file formats."""

    JSONL = "jsonl"
    CSV = "csv"


StoreOption = Annotated[
    str | None,
    typer.Option("--store", help="SQLAlchemy URL of the store (default: the platform's)."),
]


def _fail(message: str) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(EXIT_USAGE)


def _engine(url: str | None) -> Engine:
    url = url or Settings().store_url
    # A plain engine: verifying must not create the store's tables.
    args = {"timeout": 30} if url.startswith("sqlite") else {}
    engine = create_engine(url, connect_args=args)
    if not tables.has_tables(engine):
        raise _fail(f"no audit log in {engine.url.render_as_string(hide_password=True)}")
    return engine


def _report(result: Verification, source: str) -> None:
    if result.problem is not None:
        typer.echo(f"TAMPERED {source}: {result.problem}", err=True)
        raise typer.Exit(EXIT_TAMPERED)
    typer.echo(
        f"ok {source}: {result.entries} entries (1..{result.last_seq}), "
        f"{result.checkpoints} checkpoints, last signed at seq {result.last_checkpoint_seq}"
        + (f"; {result.unsigned_tail} newer entries not yet signed" if result.unsigned_tail else "")
    )


@audit_app.command()
def verify(
    export: Annotated[
        Path | None, typer.Option("--export", help="Verify this JSON-lines export (offline).")
    ] = None,
    jwks: Annotated[
        Path | None,
        typer.Option("--jwks", help="The platform's JWKS file (default: the key directory)."),
    ] = None,
    store: StoreOption = None,
    expect_seq: Annotated[
        int,
        typer.Option(
            "--expect-seq",
            help="The log reached at least this seq when you last saw it: fewer is truncation.",
        ),
    ] = 0,
) -> None:
    """Check the hash chain and every signed checkpoint; name the first bad entry."""
    try:
        keys = load_jwks(jwks if jwks is not None else Settings().data_dir / "keys")
    except (OSError, ValueError) as exc:
        raise _fail(f"cannot read the JWKS: {exc}") from None
    if not keys["keys"]:
        raise _fail("the JWKS holds no keys")
    if export is not None:
        if not export.is_file():
            raise _fail(f"{export} is not a file")
        with progress(f"verifying {export.name}") as meter:
            result = verify_export(export, keys, expect_seq=expect_seq, steps=meter)
        _report(result, str(export))
    else:
        engine = _engine(store)
        try:
            with progress("verifying the store") as meter:
                result = verify_store(engine, keys, expect_seq=expect_seq, steps=meter)
        except SQLAlchemyError as exc:
            raise _fail(f"reading the store: {exc}") from None
        _report(result, "store")


@audit_app.command("export")
def export_(
    out: Annotated[Path, typer.Option("--out", help="The file to write.")],
    format_: Annotated[
        ExportFormat, typer.Option("--format", help="jsonl (verifiable offline) or csv.")
    ] = ExportFormat.JSONL,
    store: StoreOption = None,
    checkpoint: Annotated[
        bool,
        typer.Option(help="Sign a checkpoint of the head first, so the whole export is signed."),
    ] = True,
) -> None:
    """Write the audit log to a file."""
    engine = _engine(store)
    keys_dir = Settings().data_dir / "keys"
    if checkpoint and (keys_dir / "signing.pem").exists():
        # Only where the platform's key is: a KeyRing elsewhere would generate a stranger
        # key, whose checkpoint no verifier would accept.
        from broker.audit.entries import SubjectRefs
        from broker.audit.log import AuditLog
        from consent.keys import KeyRing

        # Nothing is appended here, so no audit key is needed (nor created).
        log = AuditLog(engine, KeyRing(keys_dir), refs=SubjectRefs(bytes(32)), background=False)
        made = log.checkpoint()
        if made is not None:
            typer.echo(f"signed a checkpoint of the head at seq {made.seq}")
    elif checkpoint:
        typer.echo(
            f"note: no platform key in {keys_dir}; entries after the last checkpoint are "
            "exported unsigned",
            err=True,
        )
    with progress(f"exporting to {out.name}") as meter:
        if format_ is ExportFormat.JSONL:
            with out.open("wb") as f:
                written = export_jsonl(engine, f, steps=meter)
        else:
            with out.open("w", encoding="utf-8", newline="") as f:
                written = export_csv(engine, f, steps=meter)
    typer.echo(f"{written} entries written to {out}")


if __name__ == "__main__":
    audit_app()
