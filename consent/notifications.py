"""What partners are told: a revocation or an expiry of a consent given to them.

The consents table is the source of truth. ``enqueue_due`` scans it for revoking rows
(``change = 'revoked'``) and for current consents past ``expires_at``, and inserts one row per
(consent, kind) into ``partner_notifications`` for partners that have a ``webhook_url``. So
nothing is lost when a process dies between a change and its notification, and an expiry
needs no timer at the moment it happens: the next scan after ``expires_at`` finds it.
Enqueueing is idempotent (UNIQUE (consent_id, kind), INSERT ... ON CONFLICT DO NOTHING), so any
number of processes may scan at once. Delivery is in ``consent.webhooks``.

The stored payload never holds the platform's subject id: delivery adds the partner's
pairwise ``subject_pseudonym`` and ``sent_at`` to it.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    JSON,
    Column,
    Connection,
    Engine,
    ForeignKey,
    Index,
    RowMapping,
    String,
    Text,
    UniqueConstraint,
    exists,
    literal_column,
    select,
    text,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Field, SQLModel

from broker.store.projections.timestamps import UtcDateTime
from consent.model import Consent, Partner


class NotificationKind(StrEnum):
    """What happened to a consent a partner holds."""

    REVOKED = "consent.revoked"
    EXPIRED = "consent.expired"


class DeliveryStatus(StrEnum):
    """Where a notification's delivery stands; ``failed`` rows are kept, never dropped."""

    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"


class PartnerNotification(SQLModel, table=True):
    """One notification to one partner, and the state of its delivery."""

    __tablename__ = "partner_notifications"
    __table_args__ = (
        # One notification per consent row and kind: what makes enqueueing idempotent.
        UniqueConstraint("consent_id", "kind", name="ux_partner_notifications_consent_kind"),
        # The dispatcher's "what is due" query reads pending rows only.
        Index(
            "ix_partner_notifications_due",
            "next_attempt_at",
            sqlite_where=text("status = 'pending'"),
            postgresql_where=text("status = 'pending'"),
        ),
        Index("ix_partner_notifications_partner", "partner_id", "created_at"),
    )

    #: The notification id partners use to drop repeats (sent as ``Tsunagu-Notification-Id``).
    id: str = Field(primary_key=True, max_length=64)
    partner_id: str = Field(sa_column=Column(String(64), ForeignKey("partners.id"), nullable=False))
    #: The revoking row (``consent.revoked``) or the expired current row (``consent.expired``).
    consent_id: str = Field(max_length=64)
    kind: str = Field(max_length=32)
    payload: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    created_at: datetime = Field(sa_type=UtcDateTime)
    #: POSTs made so far (counted when a dispatcher claims the row).
    attempts: int = 0
    next_attempt_at: datetime = Field(sa_type=UtcDateTime)
    delivered_at: datetime | None = Field(default=None, sa_type=UtcDateTime)
    last_error: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    status: str = Field(max_length=16)


_notifications = PartnerNotification.__table__  # type: ignore[attr-defined]
_consents = Consent.__table__  # type: ignore[attr-defined]
_partners = Partner.__table__  # type: ignore[attr-defined]

# Partial indexes on consents that keep the scans cheap: revoking rows by time, and current,
# unrevoked consents by expiry. The predicates are repeated verbatim in the scans below so
# PostgreSQL can prove the index applies. (They belong with the table in consent.model; the
# store's migrations create them.)
_REVOKING = "change = 'revoked'"
_LIVE = "superseded_by IS NULL AND status <> 'revoked'"
_SCAN_INDEXES = (
    Index(
        "ix_consents_revoking",
        _consents.c.created_at,
        sqlite_where=text(_REVOKING),
        postgresql_where=text(_REVOKING),
    ),
    Index(
        "ix_consents_live_expiry",
        _consents.c.expires_at,
        sqlite_where=text(_LIVE),
        postgresql_where=text(_LIVE),
    ),
)

#: Candidates read per query: a first scan over years of history goes in batches.
SCAN_BATCH = 500


def new_notification_id() -> str:
    """A fresh ``ntf-<uuid>`` id."""
    return f"ntf-{uuid.uuid4()}"


def iso(moment: datetime) -> str:
    """RFC 3339 in UTC with a ``Z``, as in receipts."""
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _payload(kind: NotificationKind, notification_id: str, row: RowMapping) -> dict[str, Any]:
    revoked = kind is NotificationKind.REVOKED
    return {
        "type": kind.value,
        "notification_id": notification_id,
        "consent_id": row["id"],
        # For a revocation, the consent the partner held; for an expiry, the chain's previous.
        "supersedes": row["supersedes"],
        "status": "revoked" if revoked else "expired",
        "partner_id": row["partner_id"],
        "purpose": row["purpose"],
        "categories": list(row["categories"]),
        "effective_at": iso(row["created_at"] if revoked else row["expires_at"]),
    }


def _candidates(
    conn: Connection, kind: NotificationKind, now: datetime, since: datetime | None
) -> Sequence[RowMapping]:
    c, n = _consents, _notifications
    notified = exists().where(n.c.consent_id == c.c.id, n.c.kind == kind.value)
    query = (
        select(
            c.c.id,
            c.c.partner_id,
            c.c.purpose,
            c.c.categories,
            c.c.created_at,
            c.c.expires_at,
            c.c.supersedes,
        )
        .join(_partners, _partners.c.id == c.c.partner_id)
        .where(_partners.c.webhook_url.is_not(None), ~notified)
        .limit(SCAN_BATCH)
    )
    if kind is NotificationKind.REVOKED:
        moment = c.c.created_at
        query = query.where(c.c.change == literal_column("'revoked'"))
    else:
        moment = c.c.expires_at
        query = query.where(
            c.c.superseded_by.is_(None),
            c.c.status != literal_column("'revoked'"),
            c.c.expires_at <= now,
        )
    if since is not None:
        query = query.where(moment >= since)
    return conn.execute(query.order_by(moment)).mappings().all()


def _insert_ignoring_duplicates(conn: Connection, values: dict[str, Any]) -> int:
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    statement = (
        dialect.insert(_notifications)
        .values(**values)
        .on_conflict_do_nothing(index_elements=["consent_id", "kind"])
        .returning(_notifications.c.id)  # rowcount of an INSERT is -1 on psycopg
    )
    return len(conn.execute(statement).all())


def enqueue_due(engine: Engine, now: datetime, *, since: datetime | None = None) -> int:
    """Insert a notification for every revocation and expiry due by ``now`` not yet notified.

    ``since`` limits the scan to revocations made and expiries reached from then on (a
    watermark less a margin); ``None`` scans everything. Returns how many were inserted.
    """
    inserted = 0
    for kind in NotificationKind:
        while True:
            with engine.connect() as conn:
                rows = _candidates(conn, kind, now, since)
            with engine.begin() as conn:
                for row in rows:
                    nid = new_notification_id()
                    inserted += _insert_ignoring_duplicates(
                        conn,
                        {
                            "id": nid,
                            "partner_id": row["partner_id"],
                            "consent_id": row["id"],
                            "kind": kind.value,
                            "payload": _payload(kind, nid, row),
                            "created_at": now,
                            "attempts": 0,
                            "next_attempt_at": now,
                            "status": DeliveryStatus.PENDING.value,
                        },
                    )
            # Inserted rows drop out of the next batch (NOT EXISTS), so this ends.
            if len(rows) < SCAN_BATCH:
                break
    return inserted


def list_notifications(
    engine: Engine,
    *,
    status: DeliveryStatus | None = None,
    partner_id: str | None = None,
    limit: int = 100,
) -> list[PartnerNotification]:
    """Notifications, newest first, optionally of one status or partner (e.g. the failed)."""
    query = select(_notifications)
    if status is not None:
        query = query.where(_notifications.c.status == status.value)
    if partner_id is not None:
        query = query.where(_notifications.c.partner_id == partner_id)
    query = query.order_by(_notifications.c.created_at.desc(), _notifications.c.id).limit(limit)
    with engine.connect() as conn:
        return [PartnerNotification(**r._mapping) for r in conn.execute(query)]
