"""Erasure by crypto-shredding: a subject asks to be forgotten.

``erase`` revokes the subject's live consents (partners are told through consent.changes),
destroys their key in the vault, deletes their projection rows (found by their blind row
reference, and the listings they own by ``owner_id``), and records that it happened without
recording who. Copies of the store taken before, backups included, keep rows that can no
longer be opened (the key is gone) nor tied to the person (the reference was an HMAC of the
key).

Crash safety: the erasure record is written first with the subject's row reference in
``pending_ref``, and the reference is cleared in the transaction that deletes the rows. If a
process dies after destroying the key but before deleting, the rows can no longer be found
from the subject id; erasing again finishes every such pending erasure. Erasing is idempotent;
a request that failed must be repeated (until it returns, the key may still exist).

Erasure reaches the copies beyond the projections too. The subject's consent rows stay (a
partner's record of what it was allowed) but no longer name them: their subject id becomes
the erasure record's id and their receipts (signed claims naming the subject) are emptied;
a partner's revocation notice keeps the pseudonym it needs. On SQLite the deleted bytes are
zeroed and the store's WAL truncated. On the embedded bus every record holding the subject's
id is deleted (``Forgetting.forget``); Kafka cannot delete records, so the record states
when its copies expire (``copies_expire_at``: now plus the bus's retention, the longest
time any copy, a dead letter included, can outlive the erasure).

Other processes may keep a cached key for up to the vault's ``max_age_s`` after an erasure
(no cross-process broadcast yet). Rows they project meanwhile stay behind: sealed under the
destroyed key and named by a reference nobody can compute any more, but with their clear
columns. A broadcast on consent.changes (or a second delete once ``max_age_s`` has passed)
would remove them.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from sqlalchemy import JSON, Column, Connection, Engine, select
from sqlmodel import Field, SQLModel

from broker.regionid.links import forget as forget_links
from broker.store.projections import LISTINGS, subject_tables
from broker.store.projections.timestamps import UtcDateTime
from consent.errors import InvalidTransitionError
from consent.model import Consent, ConsentStatus
from consent.notifications import PartnerNotification, enqueue_due
from consent.service import ConsentService
from consent.vault import SubjectVault
from contract.bus import Bus, Forgetting

#: What ``requested_by`` says when the subject asked themselves (never their id).
BY_SUBJECT = "subject"
_LIVE = (ConsentStatus.ACTIVE, ConsentStatus.PAUSED)
_REVOKE_ROUNDS = 5  # a consent amended while we revoke gets one more round


class Erasure(SQLModel, table=True):
    """The record of one erasure request: when, by whom, what was deleted; never whose."""

    __tablename__ = "erasures"

    id: str = Field(primary_key=True, max_length=64)
    # HMAC-SHA256 of the subject id under a random salt that is NOT stored (it goes back to
    # the requester for the resident's receipt). Resident ids are few and guessable: an id in
    # clear, a plain hash or a hash with a stored salt would let anyone holding a list of
    # residents find who was erased. Without the salt this digest says nothing.
    subject_digest: str = Field(max_length=64)
    requested_by: str = Field(max_length=200)
    requested_at: datetime = Field(sa_type=UtcDateTime)
    completed_at: datetime | None = Field(default=None, sa_type=UtcDateTime)
    consents_revoked: int = 0
    key_destroyed: bool = False  # False when the key was already gone (erased before)
    rows_deleted: dict[str, int] = Field(default_factory=dict, sa_column=Column(JSON))
    # The subject's row reference, kept only until their rows are deleted (see module doc).
    pending_ref: str | None = Field(default=None, max_length=64, index=True)
    # When the last copy outside the platform's reach (on Kafka, by retention) is gone.
    copies_expire_at: datetime | None = Field(default=None, sa_type=UtcDateTime)


_erasures = Erasure.__table__  # type: ignore[attr-defined]
_consents = Consent.__table__  # type: ignore[attr-defined]
_notifications = PartnerNotification.__table__  # type: ignore[attr-defined]
#: A partner's pseudonym of a subject: ``pseudonym(partner_id, subject_id)``.
Pseudonym = Callable[[str, str], str]


@dataclass(frozen=True, slots=True)
class ErasureRecord:
    """What an erasure did, as recorded, plus the salt of its digest (not recorded)."""

    id: str
    subject_digest: str
    digest_salt: str  # hex; hand it to the resident: it proves the record is theirs
    requested_by: str
    requested_at: datetime
    completed_at: datetime
    consents_revoked: int
    key_destroyed: bool
    rows_deleted: dict[str, int]
    copies_expire_at: datetime | None = None

    def is_of(self, subject_id: str) -> bool:
        """Whether this erasure was of ``subject_id`` (needs the salt, which is not stored)."""
        return hmac.compare_digest(
            self.subject_digest, subject_digest(subject_id, bytes.fromhex(self.digest_salt))
        )


def subject_digest(subject_id: str, salt: bytes) -> str:
    """HMAC-SHA256(salt, subject id), hex: what the erasure record keeps instead of the id."""
    return hmac.new(salt, subject_id.encode("utf-8"), hashlib.sha256).hexdigest()


def erase(
    subject_id: str,
    *,
    vault: SubjectVault,
    store: Engine,
    requested_by: str,
    consent_service: ConsentService | None = None,
    bus: Bus | None = None,
    bus_retention_s: float | None = None,
    pseudonym: Pseudonym | None = None,
) -> ErasureRecord:
    """Forget ``subject_id``: revoke, destroy their key, delete their rows, scrub them from
    their consents, the store's WAL and the embedded bus, record it (see the module doc).

    ``bus_retention_s`` is the longest time ``bus`` keeps a record; ``pseudonym`` gives the
    partners told of the revocations their pseudonym of the subject.
    """
    requested_at = _now()
    revoked = _revoke_consents(consent_service, subject_id) if consent_service else 0
    if revoked and pseudonym is not None:
        _pseudonymise_notices(store, subject_id, pseudonym, since=requested_at)
    ref = vault.ref(subject_id)
    salt = secrets.token_bytes(16)
    digest = subject_digest(subject_id, salt)
    requester = BY_SUBJECT if requested_by == subject_id else requested_by
    record_id = f"ers-{uuid.uuid4()}"
    with store.begin() as conn:
        conn.execute(
            _erasures.insert().values(
                id=record_id,
                subject_digest=digest,
                requested_by=requester,
                requested_at=requested_at,
                consents_revoked=revoked,
                rows_deleted={},
                pending_ref=ref,
            )
        )
    if ref is None:
        # Already without a key: an earlier erasure may have stopped before deleting.
        finish_pending_erasures(store, but=record_id)
    destroyed = vault.destroy(subject_id)  # waits for this process's in-flight batches
    vault.evict(subject_id)
    if consent_service is not None:
        # Other processes evict the key from their caches when they read this.
        consent_service.announce_erasure(subject_id)
    with store.begin() as conn:
        deleted = _delete_rows(conn, ref)
        with _secure_delete(conn):
            deleted[LISTINGS.name] = conn.execute(
                LISTINGS.delete().where(LISTINGS.c.owner_id == subject_id)
            ).rowcount
            # Their ID links: no service's events are theirs any more.
            deleted["regionid_links"] = forget_links(conn, subject_id)
            # The consents stay, for the partners' record, but name the erasure, not whom.
            deleted[_consents.name] = conn.execute(
                _consents.update()
                .where(_consents.c.subject_id == subject_id)
                .values(subject_id=record_id, receipt="")
            ).rowcount
        completed_at = _now()
        expires = (
            None if bus_retention_s is None else completed_at + timedelta(seconds=bus_retention_s)
        )
        conn.execute(
            _erasures.update()
            .where(_erasures.c.id == record_id)
            .values(
                completed_at=completed_at,
                key_destroyed=destroyed,
                rows_deleted=deleted,
                pending_ref=None,
                copies_expire_at=expires,
            )
        )
    _truncate_wal(store)
    if isinstance(bus, Forgetting):
        # The id as every event and dead letter holds it: a JSON string.
        deleted["bus_records"] = bus.forget(orjson.dumps(subject_id))
    return ErasureRecord(
        id=record_id,
        subject_digest=digest,
        digest_salt=salt.hex(),
        requested_by=requester,
        requested_at=requested_at,
        completed_at=completed_at,
        consents_revoked=revoked,
        key_destroyed=destroyed,
        rows_deleted=deleted,
        copies_expire_at=expires,
    )


def finish_pending_erasures(store: Engine, *, but: str | None = None) -> int:
    """Delete the rows of erasures that stopped half-way and complete them; returns how many.

    An erasure still running in another process is finished too, which is harmless: its rows
    are deleted a moment early, and its own completion then records what it found left.
    """
    finished = 0
    with store.begin() as conn:
        pending = conn.execute(
            select(_erasures.c.id, _erasures.c.pending_ref).where(
                _erasures.c.pending_ref.is_not(None), _erasures.c.id != (but or "")
            )
        ).all()
        for record_id, ref in pending:
            deleted = _delete_rows(conn, ref)
            conn.execute(
                _erasures.update()
                .where(_erasures.c.id == record_id)
                .values(completed_at=_now(), rows_deleted=deleted, pending_ref=None)
            )
            finished += 1
    return finished


def erasure_records(store: Engine) -> list[dict[str, Any]]:
    """Every erasure record as stored, oldest first (for auditors)."""
    with store.connect() as conn:
        rows = conn.execute(select(_erasures).order_by(_erasures.c.requested_at)).all()
    return [dict(r._mapping) for r in rows]


def _delete_rows(conn: Connection, ref: str | None) -> dict[str, int]:
    """Delete every projection row named by ``ref``; counts per table."""
    if ref is None:
        return {t.name: 0 for t in subject_tables()}
    with _secure_delete(conn):
        return {
            t.name: conn.execute(t.delete().where(t.c.subject_ref == ref)).rowcount
            for t in subject_tables()
        }


def _pseudonymise_notices(
    store: Engine, subject_id: str, pseudonym: Pseudonym, *, since: datetime
) -> None:
    """Queue the partners' notices of the revocations just made, each with the partner's
    pseudonym of the subject: once their consents are scrubbed it could not be computed."""
    enqueue_due(store, _now(), since=since - timedelta(minutes=1))
    n, c = _notifications, _consents
    with store.begin() as conn:
        notices = conn.execute(
            select(n.c.id, n.c.partner_id, n.c.payload)
            .join(c, c.c.id == n.c.consent_id)
            .where(c.c.subject_id == subject_id)
        ).all()
        for notice_id, partner_id, payload in notices:
            conn.execute(
                n.update()
                .where(n.c.id == notice_id)
                .values(payload={**payload, "subject_pseudonym": pseudonym(partner_id, subject_id)})
            )


def _truncate_wal(store: Engine) -> None:
    """On SQLite, fold the WAL into the file and empty it: deleted rows' old page images
    would otherwise stay in ``-wal`` until overwritten. A reader still active leaves it for
    the next checkpoint."""
    if store.dialect.name != "sqlite":
        return
    with store.connect() as conn:
        conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")


@contextmanager
def _secure_delete(conn: Connection) -> Iterator[None]:
    """On SQLite, zero the deleted rows' space in the file while deleting (then restore).

    Narrows what a later copy of the file keeps; the guarantee itself is the destroyed key.
    """
    if conn.dialect.name != "sqlite":
        yield
        return
    before = int(conn.exec_driver_sql("PRAGMA secure_delete").scalar() or 0)
    conn.exec_driver_sql("PRAGMA secure_delete=ON")
    try:
        yield
    finally:
        conn.exec_driver_sql(f"PRAGMA secure_delete={before}")


def _revoke_consents(service: ConsentService, subject_id: str) -> int:
    """Revoke the subject's active and paused consents through the service (partners hear)."""
    revoked = 0
    for _ in range(_REVOKE_ROUNDS):
        now = _now()
        live = [c for c in service.current(subject_id) if c.effective_status(now) in _LIVE]
        if not live:
            break
        for consent in live:
            try:
                service.revoke(subject_id, consent.id)
                revoked += 1
            except InvalidTransitionError:
                pass  # changed meanwhile: the next round reads the chain's current consent
    return revoked


def _now() -> datetime:
    return datetime.now(UTC)
