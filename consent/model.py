"""The consent tables: partners, purpose approvals, consents (never changed), and the outbox.

A consent row is never edited, except to say which row replaced it: pausing, resuming,
revoking or amending inserts a new row whose ``supersedes`` names the old one, and the old
row's ``superseded_by`` names the new one. Each (subject, partner, purpose) has one chain, so
the *current* consent of a chain is the row with ``superseded_by IS NULL`` (a partial unique
index keeps it unique, which also serialises concurrent changes). ``expired`` is never stored:
it is derived from ``expires_at`` when asked, so no background job is needed.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, Column, ForeignKey, Index, String, Text, text
from sqlmodel import Field, SQLModel

from broker.store.projections.timestamps import UtcDateTime


class ConsentStatus(StrEnum):
    """A consent's status; ``expired`` is derived from ``expires_at``, never stored."""

    ACTIVE = "active"
    PAUSED = "paused"
    REVOKED = "revoked"
    EXPIRED = "expired"


class ConsentChangeKind(StrEnum):
    """What made a consent row: the first grant, or a change of the one it supersedes."""

    GRANTED = "granted"
    AMENDED = "amended"
    PAUSED = "paused"
    RESUMED = "resumed"
    REVOKED = "revoked"


class SubjectKind(StrEnum):
    """Who gives a consent: a resident about their own data, or a property owner."""

    RESIDENT = "resident"
    OWNER = "owner"


class Partner(SQLModel, table=True):
    """A partner firm registered by the municipality."""

    __tablename__ = "partners"

    id: str = Field(primary_key=True, max_length=64)
    name_ja: str = Field(max_length=200)
    name_en: str = Field(max_length=200)
    webhook_url: str | None = Field(default=None, max_length=2000)
    created_at: datetime = Field(sa_type=UtcDateTime)


class PartnerPurpose(SQLModel, table=True):
    """The municipality's approval of one purpose for one partner; withdrawn by ``revoked_at``.

    Withdrawing sets ``revoked_at`` on the row; approving again inserts a new row, so the
    history of approvals stays readable.
    """

    __tablename__ = "partner_purposes"
    __table_args__ = (
        # At most one standing approval per (partner, purpose).
        Index(
            "ux_partner_purposes_standing",
            "partner_id",
            "purpose",
            unique=True,
            sqlite_where=text("revoked_at IS NULL"),
            postgresql_where=text("revoked_at IS NULL"),
        ),
    )

    id: int | None = Field(default=None, primary_key=True)
    partner_id: str = Field(
        sa_column=Column(String(64), ForeignKey("partners.id"), nullable=False, index=True)
    )
    purpose: str = Field(max_length=100)
    approved_by: str = Field(max_length=200)
    approved_at: datetime = Field(sa_type=UtcDateTime)
    revoked_by: str | None = Field(default=None, max_length=200)
    revoked_at: datetime | None = Field(default=None, sa_type=UtcDateTime)


class Consent(SQLModel, table=True):
    """One immutable version of a consent, with its signed receipt."""

    __tablename__ = "consents"
    __table_args__ = (
        # One current consent per chain; also what makes two concurrent changes collide.
        Index(
            "ux_consents_current",
            "subject_id",
            "partner_id",
            "purpose",
            unique=True,
            sqlite_where=text("superseded_by IS NULL"),
            postgresql_where=text("superseded_by IS NULL"),
        ),
        Index("ix_consents_subject", "subject_id", "created_at"),
        Index("ix_consents_partner", "partner_id", "superseded_by"),
    )

    id: str = Field(primary_key=True, max_length=64)
    subject_id: str = Field(max_length=64)
    subject_kind: str = Field(max_length=16)
    partner_id: str = Field(sa_column=Column(String(64), ForeignKey("partners.id"), nullable=False))
    purpose: str = Field(max_length=100)
    categories: list[str] = Field(sa_column=Column(JSON, nullable=False))
    valid_from: datetime = Field(sa_type=UtcDateTime)
    expires_at: datetime = Field(sa_type=UtcDateTime)
    data_from: datetime | None = Field(default=None, sa_type=UtcDateTime)
    data_to: datetime | None = Field(default=None, sa_type=UtcDateTime)
    #: active, paused or revoked as given; ``effective_status`` adds expired.
    status: str = Field(max_length=16)
    #: What made this row (granted, amended, paused, resumed, revoked).
    change: str = Field(max_length=16)
    #: Position in the chain, 1 for the first grant.
    version: int = 1
    created_at: datetime = Field(sa_type=UtcDateTime)
    supersedes: str | None = Field(default=None, max_length=64, unique=True)
    superseded_by: str | None = Field(default=None, max_length=64)
    receipt: str = Field(sa_column=Column(Text, nullable=False))

    @property
    def is_current(self) -> bool:
        """Whether no later consent replaces this one."""
        return self.superseded_by is None

    def effective_status(self, at: datetime) -> ConsentStatus:
        """The status at ``at``: the stored one, or expired once ``expires_at`` has passed."""
        stored = ConsentStatus(self.status)
        if stored is not ConsentStatus.REVOKED and at >= self.expires_at:
            return ConsentStatus.EXPIRED
        return stored


class ConsentOutbox(SQLModel, table=True):
    """Changes committed but not yet published to ``consent.changes``.

    Written in the transaction of the change itself and deleted once published, so a change
    is never committed without eventually reaching every process (see ``ConsentService``).
    """

    __tablename__ = "consent_outbox"

    seq: int | None = Field(default=None, primary_key=True)
    key: str = Field(max_length=64)
    value: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    created_at: datetime = Field(sa_type=UtcDateTime)


class ConsentEpoch(SQLModel, table=True):
    """One row: how many consent and partner changes the store has committed. Every change
    moves it in its own transaction, so a process that has applied fewer knows its cache may
    be stale before the bus tells it which entries are (see ``consent.epoch``)."""

    __tablename__ = "consent_epoch"

    id: int = Field(default=1, primary_key=True)
    seq: int = 0


TABLES = (
    Partner.__table__,  # type: ignore[attr-defined]
    PartnerPurpose.__table__,  # type: ignore[attr-defined]
    Consent.__table__,  # type: ignore[attr-defined]
    ConsentOutbox.__table__,  # type: ignore[attr-defined]
    ConsentEpoch.__table__,  # type: ignore[attr-defined]
)
