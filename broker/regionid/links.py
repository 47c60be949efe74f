"""ID link: a service company's customer accounts linked to residents' region IDs (the
Digital Agency's guidebook for area data platforms, §15 既存認証システムと共通IDの紐付け).

A firm only ever knows a resident by its pairwise subject, and learns it in one of two ways:
the resident signs in to the firm with the region ID (the firm keeps the ``sub`` it receives
beside its customer number), or, for a customer without a web login, the firm hands them a
one-time link code (at a counter, on a receipt), the resident enters it on their page, and the
firm reads which subject its code was spent for. The platform resolves (firm, subject) to the
resident; the resident sees their links and ends them. Links, unlinks, link codes issued and
every refusal are written to the audit log.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Literal

from sqlalchemy import Connection, Engine, Select, delete, func, update
from sqlmodel import Session, col, select

from broker.audit import AuditLog, EntryKind, NewEntry
from broker.regionid.directory import Account, Directory, digest
from broker.regionid.errors import (
    ExpiredLinkCodeError,
    LinkedElsewhereError,
    LinkError,
    NotLinkedError,
    SpentLinkCodeError,
    UnknownLinkCodeError,
)
from broker.regionid.subjects import PairwiseSubjects
from broker.regionid.tables import RegionClient, RegionLink, RegionLinkCode

#: Crockford's base32: no I, L, O or U, so a code read aloud or off a receipt is not misread.
CODE_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
#: Characters in a link code: 60 random bits, shown as three groups of four.
CODE_LENGTH = 12
#: What a resident may mistype for a code's character (Crockford's decoding rules).
_READ_AS = str.maketrans({"O": "0", "I": "1", "L": "1"})
#: The largest customer number a firm may name (its own identifier, never stored).
MAX_CUSTOMER = 256


class LinkHow(StrEnum):
    """How a link was made."""

    SIGN_IN = "sign_in"
    LINK_CODE = "link_code"


@dataclass(frozen=True, slots=True)
class Link:
    """A resident's link with one service, as the resident's page shows it."""

    client_id: str
    client_name: str
    how: LinkHow
    linked_at: datetime
    unlinked_at: datetime | None


@dataclass(frozen=True, slots=True)
class IssuedCode:
    """A link code for a firm to hand its customer, and when it stops working."""

    code: str
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class CodeState:
    """What became of a link code: waiting to be entered, linked (with the subject the firm
    now publishes under), its link since ended, or expired unused."""

    status: Literal["waiting", "linked", "unlinked", "expired"]
    expires_at: datetime
    subject: str | None = None
    linked_at: datetime | None = None


def normalise_code(code: str) -> str:
    """A code as typed (any case, hyphens, spaces, O for 0) in its canonical form."""
    return "".join(code.split()).replace("-", "").upper().translate(_READ_AS)


def _shown(code: str) -> str:
    return "-".join(code[i : i + 4] for i in range(0, len(code), 4))


def _customer_digest(client_id: str, customer: str) -> str:
    return hashlib.sha256(client_id.encode() + b"\x00" + customer.encode()).hexdigest()


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


class Links:
    """The links between services' accounts and residents, in the store."""

    def __init__(
        self,
        engine: Engine,
        audit: AuditLog,
        directory: Directory,
        subjects: PairwiseSubjects,
        *,
        code_ttl_s: int,
    ) -> None:
        self._engine = engine
        self._audit = audit
        self._directory = directory
        self._subjects = subjects
        self.code_ttl_s = code_ttl_s

    def _subject(self, client_id: str, account_id: str) -> str:
        client = self._directory.client(client_id)
        if client is None:
            raise UnknownLinkCodeError(f"no service {client_id!r} is registered")
        return self._subjects.subject(client.sector, account_id)

    # -- a resident signs in to a service --------------------------------------------------

    def on_sign_in(self, client_id: str, account: Account) -> None:
        """Link ``account`` with ``client_id``'s service when a resident signs in to it
        (the sign-in page says so); nothing when already linked."""
        if account.role != "resident":
            return
        with Session(self._engine) as session:
            if self._active(session, client_id, account.id) is not None:
                return
            self._add(session, client_id, account.id, LinkHow.SIGN_IN)
            session.commit()

    # -- link codes ---------------------------------------------------------------------------

    def issue_code(self, client_id: str, customer: str) -> IssuedCode:
        """A one-time link code for ``client_id``'s customer ``customer`` (the firm's own
        customer number, kept only as a digest)."""
        customer = customer.strip()
        if not customer or len(customer) > MAX_CUSTOMER:
            raise LinkError(
                f"name the customer: your own customer number, 1-{MAX_CUSTOMER} characters"
            )
        code = "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH))
        now = datetime.now(UTC)
        expires = now + timedelta(seconds=self.code_ttl_s)
        with Session(self._engine) as session:
            session.add(
                RegionLinkCode(
                    code_hash=digest(code),
                    client_id=client_id,
                    customer_digest=_customer_digest(client_id, customer),
                    issued_at=now,
                    expires_at=expires,
                )
            )
            session.commit()
        self._audit.append_now(
            EntryKind.ID_LINK, actor=client_id, event="code_issued", client=client_id
        )
        return IssuedCode(_shown(code), expires)

    def code_state(self, client_id: str, code: str) -> CodeState:
        """What became of ``client_id``'s link ``code``; another firm's code is unknown."""
        with Session(self._engine) as session:
            row = session.get(RegionLinkCode, digest(normalise_code(code)))
            if row is None or row.client_id != client_id:
                raise UnknownLinkCodeError(
                    "no link code of yours has that value: check it against what you issued"
                )
            expires = _aware(row.expires_at)
            if row.link_id is None:
                expired = datetime.now(UTC) >= expires
                return CodeState("expired" if expired else "waiting", expires)
            link = session.get(RegionLink, row.link_id)
        assert link is not None  # a spent code names the link it made
        status: Literal["linked", "unlinked"] = "linked" if link.unlinked_at is None else "unlinked"
        return CodeState(status, expires, link.subject, _aware(link.linked_at))

    def redeem(self, account_id: str, code: str) -> Link:
        """Link the resident ``account_id`` with the service whose link ``code`` they
        entered; refused (and audited) when the code is unknown, expired or spent, or the
        firm's account is already linked to somebody else."""
        now = datetime.now(UTC)
        row: RegionLinkCode | None = None
        try:
            with Session(self._engine) as session:
                row = session.get(RegionLinkCode, digest(normalise_code(code)))
                if row is None:
                    raise UnknownLinkCodeError(
                        "no link code has that value: check it against the one the service "
                        "gave you (12 letters and digits, e.g. 7K3M-Q9XA-2P4D)"
                    )
                client_id = row.client_id
                if row.redeemed_at is not None:
                    raise SpentLinkCodeError(
                        "this link code was already entered once: ask the service for a new one"
                    )
                if now >= _aware(row.expires_at):
                    raise ExpiredLinkCodeError(
                        f"this link code expired on {_aware(row.expires_at):%Y-%m-%d}: ask the "
                        "service for a new one"
                    )
                if self._linked_elsewhere(session, row, account_id):
                    raise LinkedElsewhereError(
                        "the service's account this code is for is already linked to another "
                        "resident's region ID: if it is yours, ask the service to check it"
                    )
                link = self._active(session, client_id, account_id)
                if link is None:
                    link = self._add(session, client_id, account_id, LinkHow.LINK_CODE)
                # Spent only if still unspent: two residents racing for one code, one wins.
                spent = session.execute(
                    update(RegionLinkCode)
                    .where(
                        col(RegionLinkCode.code_hash) == row.code_hash,
                        col(RegionLinkCode.redeemed_at).is_(None),
                    )
                    .values(redeemed_at=now, link_id=link.id)
                )
                if spent.rowcount != 1:  # type: ignore[attr-defined]
                    session.rollback()
                    raise SpentLinkCodeError(
                        "this link code was already entered once: ask the service for a new one"
                    )
                session.commit()
                session.refresh(link)
                return self._shown_link(link)
        except LinkError as exc:
            self._audit.append_now(
                EntryKind.ID_LINK,
                actor="subject",
                subject=account_id,
                event="refused",
                client=row.client_id if row is not None else "",
                reason=type(exc).__name__,
            )
            raise

    # -- the resident's own links ---------------------------------------------------------

    def of(self, account_id: str) -> list[Link]:
        """The resident's links in force, oldest first."""
        with Session(self._engine) as session:
            rows = session.exec(
                select(RegionLink)
                .where(RegionLink.account_id == account_id, col(RegionLink.unlinked_at).is_(None))
                .order_by(col(RegionLink.linked_at))
            ).all()
            return [self._shown_link(r) for r in rows]

    def unlink(self, account_id: str, client_id: str) -> Link:
        """End the resident's link with ``client_id``'s service: its events for them are
        held again from now on."""
        with Session(self._engine) as session:
            link = self._active(session, client_id, account_id)
            if link is None:
                raise NotLinkedError(
                    f"you have no link with {client_id!r}: GET /v1/me/links lists yours"
                )
            link.unlinked_at = datetime.now(UTC)
            session.add(link)
            self._record(session, account_id, event="unlinked", client=client_id)
            session.commit()
            session.refresh(link)
        return self._shown_link(link)

    def resolve(self, client_id: str, subject: str) -> str | None:
        """The resident ``client_id`` knows as ``subject``, while they are linked."""
        with Session(self._engine) as session:
            found = select(RegionLink.account_id).where(
                RegionLink.client_id == client_id,
                RegionLink.subject == subject,
                col(RegionLink.unlinked_at).is_(None),
            )
            return session.exec(found).first()

    # -- helpers ------------------------------------------------------------------------------

    def _active(self, session: Session, client_id: str, account_id: str) -> RegionLink | None:
        return session.exec(
            select(RegionLink).where(
                RegionLink.client_id == client_id,
                RegionLink.account_id == account_id,
                col(RegionLink.unlinked_at).is_(None),
            )
        ).first()

    def _linked_elsewhere(self, session: Session, code: RegionLinkCode, account_id: str) -> bool:
        """Whether another code for the same customer account made a link, still in force,
        with a different resident."""
        found = (
            select(RegionLink.id)
            .join(RegionLinkCode, col(RegionLinkCode.link_id) == col(RegionLink.id))
            .where(
                RegionLinkCode.client_id == code.client_id,
                RegionLinkCode.customer_digest == code.customer_digest,
                col(RegionLink.unlinked_at).is_(None),
                RegionLink.account_id != account_id,
            )
        )
        return session.exec(found).first() is not None

    def _add(self, session: Session, client_id: str, account_id: str, how: LinkHow) -> RegionLink:
        link = RegionLink(
            id=uuid.uuid4().hex,
            client_id=client_id,
            account_id=account_id,
            subject=self._subject(client_id, account_id),
            how=how.value,
            linked_at=datetime.now(UTC),
        )
        session.add(link)
        self._record(session, account_id, event="linked", client=client_id, how=how.value)
        return link

    def _record(self, session: Session, account_id: str, **fields: str) -> None:
        """The resident's ``id_link`` entry, in the session's own transaction: the record
        exists exactly when the change does."""
        session.flush()
        entry = NewEntry(EntryKind.ID_LINK, "subject", fields, subject=account_id)
        self._audit.append_in(session.connection(), [entry])

    def _shown_link(self, row: RegionLink) -> Link:
        client = self._directory.client(row.client_id)
        return Link(
            row.client_id,
            client.name if client is not None else row.client_id,
            LinkHow(row.how),
            _aware(row.linked_at),
            _aware(row.unlinked_at) if row.unlinked_at is not None else None,
        )


def forget(conn: Connection, account_id: str) -> int:
    """Delete every link of ``account_id`` (erasure); how many there were."""
    links = RegionLink.__table__  # type: ignore[attr-defined]
    codes = RegionLinkCode.__table__  # type: ignore[attr-defined]
    ids = [r[0] for r in conn.execute(select(links.c.id).where(links.c.account_id == account_id))]
    if ids:
        conn.execute(delete(codes).where(codes.c.link_id.in_(ids)))
    return int(conn.execute(delete(links).where(links.c.account_id == account_id)).rowcount)


def active_links() -> Select[tuple[str, str, str]]:
    """``(connector, subject, account_id)`` of every link in force: whom each connector's
    subject resolves to (a query, for the ingest to join or filter)."""
    links = RegionLink.__table__  # type: ignore[attr-defined]
    clients = RegionClient.__table__  # type: ignore[attr-defined]
    connector = func.coalesce(clients.c.connector, clients.c.client_id).label("connector")
    return (
        select(connector, links.c.subject, links.c.account_id)
        .join(clients, clients.c.client_id == links.c.client_id)
        .where(links.c.unlinked_at.is_(None))
    )


def resolve_many(conn: Connection, pairs: set[tuple[str, str]]) -> dict[tuple[str, str], str]:
    """The resident each (connector, service subject) pair is linked with, where one is: the
    ingest's resolution, one query per batch."""
    if not pairs:
        return {}
    linked = active_links().subquery()
    rows = conn.execute(
        select(linked.c.connector, linked.c.subject, linked.c.account_id).where(
            linked.c.subject.in_({s for _, s in pairs}),
            linked.c.connector.in_({c for c, _ in pairs}),
        )
    ).all()
    return {(c, s): a for c, s, a in rows if (c, s) in pairs}
