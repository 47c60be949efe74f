"""Verification: the chain, every checkpoint, and the head, online (the store) or offline
(a JSON-lines export and the platform's JWKS). Stops at the first bad entry and says why.

What each tampering looks like here:

* an entry edited in place: its hash no longer matches its contents (``edited``);
* an entry edited *and* re-hashed: the next entry's ``prev_hash`` no longer matches
  (``reordered`` at the next seq), and a checkpoint covering it no longer matches;
* an entry deleted: a gap in ``seq`` (``missing``);
* two entries swapped: the first of them no longer follows its predecessor (``reordered``);
* a checkpoint forged, altered or signed by a key not in the JWKS (``forged_checkpoint``);
  a checkpoint deleted: the next one was signed as following it (``forged_checkpoint``);
* the tail truncated (``truncated``), seen three ways: a checkpoint covers entries that are
  gone; the ``audit_head`` row (or an export's header) names a later last entry; or the
  caller says how far the log reached when they last saw it (``expect_seq``).

The limit, stated honestly: someone who can write to the store can delete the newest entries
*and* the checkpoints after them *and* move the head back. Nothing inside the store can show
that; only knowledge kept outside it can: an earlier export, a checkpoint JWS an auditor
kept, or a remembered seq passed as ``expect_seq`` (``--expect-seq``). Entries newer than the
last checkpoint are chained but not yet signed (``unsigned_tail``); the flusher signs the
head within ``checkpoint_interval_s``, which bounds the window.
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import Engine, select

from broker.audit import tables
from broker.audit.checkpoints import Checkpoint, CheckpointInvalid, CheckpointVerifier
from broker.audit.entries import GENESIS, canonical_fields, entry_hash
from broker.audit.log import StoredEntry
from broker.progress import Steps, counted
from consent.keys import Jwks, jwk_thumbprint


class ProblemKind(StrEnum):
    """Why an entry is bad."""

    EDITED = "edited"  # the hash does not match the entry's contents
    MISSING = "missing"  # a gap in seq: deleted (or moved)
    REORDERED = "reordered"  # prev_hash is not the previous entry's hash
    TRUNCATED = "truncated"  # entries a checkpoint, the head or the caller knows of are gone
    FORGED_CHECKPOINT = "forged_checkpoint"  # bad signature, or not matching the chain
    HEAD = "head_mismatch"  # the head row (or export header) disagrees with the entries
    MALFORMED = "malformed"  # an export line that cannot be read


@dataclass(frozen=True, slots=True)
class Problem:
    """The first bad entry: its seq (None for an unreadable export line), what, and why."""

    seq: int | None
    kind: ProblemKind
    detail: str

    def __str__(self) -> str:
        where = "log" if self.seq is None else f"seq {self.seq}"
        return f"{where}: {self.kind}: {self.detail}"


@dataclass(frozen=True, slots=True)
class Verification:
    """What was verified, and the first problem (None when the log is intact)."""

    entries: int
    checkpoints: int
    last_seq: int
    last_checkpoint_seq: int
    problem: Problem | None

    @property
    def ok(self) -> bool:
        """Whether the log verified."""
        return self.problem is None

    @property
    def unsigned_tail(self) -> int:
        """Entries after the last checkpoint: chained, not yet signed."""
        return self.last_seq - self.last_checkpoint_seq


class _Stop(Exception):
    def __init__(self, problem: Problem) -> None:
        self.problem = problem


class _Chain:
    """Walks entries in seq order, checking each checkpoint when its entry is reached."""

    def __init__(self, jwks: Jwks, checkpoints: Iterable[Checkpoint]) -> None:
        self._verifier = CheckpointVerifier(jwks)
        self._pending = deque(sorted(checkpoints, key=lambda c: c.seq))
        self.last_seq = 0
        self.last_hash = GENESIS
        self.entries = 0
        self.checkpoints = 0
        self.cp_seq = 0
        self.cp_hash = GENESIS

    def result(self, problem: Problem | None) -> Verification:
        return Verification(self.entries, self.checkpoints, self.last_seq, self.cp_seq, problem)

    def entry(self, e: StoredEntry) -> None:
        expected = self.last_seq + 1
        if e.seq > expected:
            raise _Stop(
                Problem(
                    expected,
                    ProblemKind.MISSING,
                    f"entry {expected} is missing (deleted or moved); the next entry is {e.seq}",
                )
            )
        if e.seq < expected:
            raise _Stop(
                Problem(e.seq, ProblemKind.REORDERED, f"entry {e.seq} comes after {self.last_seq}")
            )
        if e.prev_hash != self.last_hash:
            raise _Stop(
                Problem(
                    e.seq,
                    ProblemKind.REORDERED,
                    f"prev_hash is not entry {self.last_seq}'s hash (entries reordered, or "
                    f"entry {self.last_seq} rewritten together with its hash)",
                )
            )
        try:
            fields = canonical_fields(e.fields)
        except orjson.JSONDecodeError:
            raise _Stop(Problem(e.seq, ProblemKind.EDITED, "fields are not JSON")) from None
        if entry_hash(e.seq, e.at, e.kind, e.actor, e.subject_ref, fields, e.prev_hash) != e.hash:
            raise _Stop(
                Problem(e.seq, ProblemKind.EDITED, "the hash does not match the entry's contents")
            )
        self.last_seq, self.last_hash = e.seq, e.hash
        self.entries += 1
        while self._pending and self._pending[0].seq == e.seq:
            self._checkpoint(self._pending.popleft())

    def _checkpoint(self, cp: Checkpoint) -> None:
        def bad(detail: str) -> _Stop:
            return _Stop(Problem(cp.seq, ProblemKind.FORGED_CHECKPOINT, detail))

        try:
            claims = self._verifier.claims(cp.signature)
        except CheckpointInvalid as exc:
            raise bad(f"checkpoint {cp.seq}: {exc}") from None
        if claims["seq"] != cp.seq or claims["hash"] != cp.hash:
            raise bad(f"checkpoint {cp.seq}: its row differs from what was signed")
        if cp.hash != self.last_hash:
            raise bad(f"checkpoint {cp.seq}: the signed hash is not entry {cp.seq}'s hash")
        if (claims["prev_seq"], claims["prev_hash"]) != (self.cp_seq, self.cp_hash):
            raise bad(
                f"checkpoint {cp.seq} was signed as following checkpoint {claims['prev_seq']}, "
                f"but the one before it here is {self.cp_seq} (a checkpoint deleted or forged)"
            )
        self.cp_seq, self.cp_hash = cp.seq, cp.hash
        self.checkpoints += 1

    def finish(self, head_seq: int | None, head_hash: str | None, expect_seq: int) -> None:
        first_gone = self.last_seq + 1
        if self._pending:
            cp = self._pending[0]
            raise _Stop(
                Problem(
                    first_gone,
                    ProblemKind.TRUNCATED,
                    f"entries {first_gone}..{cp.seq} are gone, but checkpoint {cp.seq} covers them",
                )
            )
        if head_seq is not None:
            if head_seq > self.last_seq:
                raise _Stop(
                    Problem(
                        first_gone,
                        ProblemKind.TRUNCATED,
                        f"entries {first_gone}..{head_seq} are gone; the head names {head_seq}",
                    )
                )
            if head_seq < self.last_seq:
                raise _Stop(
                    Problem(
                        head_seq + 1,
                        ProblemKind.HEAD,
                        f"entries after {head_seq} are not part of the exported log",
                    )
                )
            if head_hash != self.last_hash:
                raise _Stop(
                    Problem(
                        self.last_seq,
                        ProblemKind.HEAD,
                        f"the head's hash is not entry {self.last_seq}'s hash",
                    )
                )
        if expect_seq > self.last_seq:
            raise _Stop(
                Problem(
                    first_gone,
                    ProblemKind.TRUNCATED,
                    f"the log ends at {self.last_seq}, but it reached at least {expect_seq}",
                )
            )


def verify_entries(
    entries: Iterable[StoredEntry],
    checkpoints: Iterable[Checkpoint],
    jwks: Jwks,
    *,
    head: tuple[int, str] | None = None,
    expect_seq: int = 0,
) -> Verification:
    """Verify ``entries`` (in stored order) with their checkpoints against ``jwks``."""
    chain = _Chain(jwks, checkpoints)
    try:
        for entry in entries:
            chain.entry(entry)
        head_seq, head_hash = head if head is not None else (None, None)
        chain.finish(head_seq, head_hash, expect_seq)
    except _Stop as stop:
        return chain.result(stop.problem)
    return chain.result(None)


def verify_store(
    engine: Engine, jwks: Jwks, *, expect_seq: int = 0, steps: Steps | None = None
) -> Verification:
    """Verify the audit log in the store (online); ``steps`` hears of each entry checked."""
    e = tables.entries
    with engine.connect() as conn:
        # Checkpoints before the head: the head only moves forward, so a checkpoint beyond
        # the head read next can only mean the head was moved back (a truncated tail).
        cps = [Checkpoint(*row) for row in conn.execute(select(tables.checkpoints))]
        head = conn.execute(select(tables.head.c.seq, tables.head.c.hash)).one_or_none()
        query = select(e).order_by(e.c.seq)
        if head is not None:
            # Entries appended after the head was read are left for the next verification.
            query = query.where(e.c.seq <= head.seq)
        rows = conn.execution_options(yield_per=10_000).execute(query)
        result = verify_entries(
            counted((StoredEntry(*row) for row in rows), steps, None if head is None else head.seq),
            cps,
            jwks,
            head=None if head is None else (head.seq, head.hash),
            expect_seq=expect_seq,
        )
    if head is None and result.ok:
        # Without its head the log cannot show a truncated tail: that is a finding too.
        missing = Problem(None, ProblemKind.HEAD, "the audit_head row is missing")
        return Verification(
            result.entries, result.checkpoints, result.last_seq, result.last_checkpoint_seq, missing
        )
    return result


# -- offline -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ExportHeader:
    """The first line of a JSON-lines export."""

    head_seq: int
    head_hash: str
    exported_at: str


class _Malformed(Exception):
    def __init__(self, line: int, detail: str) -> None:
        self.problem = Problem(None, ProblemKind.MALFORMED, f"line {line}: {detail}")


def _lines(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    with path.open("rb") as f:
        for number, raw in enumerate(f, 1):
            if not raw.strip():
                continue
            try:
                obj = orjson.loads(raw)
            except orjson.JSONDecodeError as exc:
                raise _Malformed(number, f"not JSON: {exc}") from None
            if not isinstance(obj, dict):
                raise _Malformed(number, "not a JSON object")
            yield number, obj


def _checkpoint_of(number: int, obj: dict[str, Any]) -> Checkpoint:
    try:
        return Checkpoint(int(obj["seq"]), str(obj["hash"]), str(obj["at"]), str(obj["signature"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise _Malformed(number, f"not a checkpoint: {exc!r}") from None


def _entry_of(number: int, obj: dict[str, Any]) -> StoredEntry:
    try:
        ref = obj["subject_ref"]
        return StoredEntry(
            int(obj["seq"]),
            str(obj["at"]),
            str(obj["kind"]),
            str(obj["actor"]),
            None if ref is None else str(ref),
            orjson.dumps(obj["fields"], option=orjson.OPT_SORT_KEYS).decode(),
            str(obj["prev_hash"]),
            str(obj["hash"]),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise _Malformed(number, f"not an entry: {exc!r}") from None


def verify_export(
    path: str | Path, jwks: Jwks, *, expect_seq: int = 0, steps: Steps | None = None
) -> Verification:
    """Verify a JSON-lines export (offline: needs only the file and the platform's JWKS);
    ``steps`` hears of each entry checked."""
    path = Path(path)
    header: ExportHeader | None = None
    checkpoints: list[Checkpoint] = []
    try:
        # Two passes: the checkpoints (few) first, then the entries streamed past them.
        for number, obj in _lines(path):
            if obj.get("type") == "header":
                try:
                    header = ExportHeader(
                        int(obj["head_seq"]), str(obj["head_hash"]), str(obj["exported_at"])
                    )
                except (KeyError, TypeError, ValueError) as exc:
                    raise _Malformed(number, f"not a header: {exc!r}") from None
            elif obj.get("type") == "checkpoint":
                checkpoints.append(_checkpoint_of(number, obj))
            elif obj.get("type") != "entry":
                raise _Malformed(number, f"unknown line type {obj.get('type')!r}")
        if header is None:
            raise _Malformed(1, "no header line")
        entries = (_entry_of(n, obj) for n, obj in _lines(path) if obj.get("type") == "entry")
        return verify_entries(
            counted(entries, steps, header.head_seq),
            checkpoints,
            jwks,
            head=(header.head_seq, header.head_hash),
            expect_seq=expect_seq,
        )
    except _Malformed as bad:
        return Verification(0, 0, 0, 0, bad.problem)


def load_jwks(source: str | Path) -> Jwks:
    """A JWKS from a file (``{"keys": [...]}``) or from a key directory's ``public/`` JWKs.

    Reads only: unlike ``KeyRing``, it never generates a key where there is none.
    """
    source = Path(source)
    if source.is_file():
        data = json.loads(source.read_text(encoding="utf-8"))
        if not isinstance(data, dict) or not isinstance(data.get("keys"), list):
            raise ValueError(f"{source} is not a JWKS")
        return {"keys": list(data["keys"])}
    keys = []
    for path in sorted((source / "public").glob("*.jwk.json")):
        jwk = json.loads(path.read_text(encoding="utf-8"))
        if jwk_thumbprint(jwk) == jwk.get("kid"):  # a file edited by hand is not trusted
            keys.append(jwk)
    return {"keys": keys}
