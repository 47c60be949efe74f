"""The residents who consented to a partner and purpose: what the partner may ask about."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Engine, Table, and_, or_, select

from broker.views.cursors import Position
from consent.model import Consent, ConsentStatus

_consents: Table = Consent.__table__  # type: ignore[attr-defined]


@dataclass(frozen=True, slots=True)
class Consented:
    """One resident's standing consent to the partner for the purpose."""

    subject: str
    consent_id: str
    categories: list[str]
    granted_at: datetime
    expires_at: datetime
    data_from: datetime | None
    data_to: datetime | None


def consented(
    engine: Engine,
    *,
    partner: str,
    purpose: str,
    now: datetime,
    granted_from: datetime | None = None,
    granted_to: datetime | None = None,
    after: Position | None = None,
    limit: int = 100,
) -> tuple[list[Consented], Position | None]:
    """One page of current, active, unexpired consents, oldest grant first; optionally only
    those granted in [granted_from, granted_to)."""
    query = select(_consents).where(
        _consents.c.partner_id == partner,
        _consents.c.purpose == purpose,
        _consents.c.superseded_by.is_(None),
        _consents.c.status == ConsentStatus.ACTIVE.value,
        _consents.c.valid_from <= now,
        _consents.c.expires_at > now,
    )
    if granted_from is not None:
        query = query.where(_consents.c.created_at >= granted_from)
    if granted_to is not None:
        query = query.where(_consents.c.created_at < granted_to)
    if after is not None:
        query = query.where(
            or_(
                _consents.c.created_at > after.at,
                and_(_consents.c.created_at == after.at, _consents.c.id > after.id),
            )
        )
    query = query.order_by(_consents.c.created_at, _consents.c.id).limit(limit + 1)
    with engine.connect() as conn:
        rows = [Consent(**r._mapping) for r in conn.execute(query)]
    page = rows[:limit]
    last = page[-1] if len(rows) > limit else None
    return [_consented(c) for c in page], Position(last.created_at, last.id) if last else None


def _consented(c: Consent) -> Consented:
    return Consented(
        subject=c.subject_id,
        consent_id=c.id,
        categories=list(c.categories),
        granted_at=c.created_at,
        expires_at=c.expires_at,
        data_from=c.data_from,
        data_to=c.data_to,
    )


def subjects_of(engine: Engine, partner: str) -> Iterator[str]:
    """Every subject who ever consented to ``partner`` (for resolving its pseudonyms)."""
    with engine.connect() as conn:
        yield from conn.execute(
            select(_consents.c.subject_id).where(_consents.c.partner_id == partner).distinct()
        ).scalars()
