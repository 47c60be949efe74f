"""Standard (v2) listings get v1's ``town`` and ``status``, derived from their standard fields.

The projection now derives them for every v2 listing it writes
(``standard_town_and_status``), so that the partner view's ``town`` and ``available_only``
filters find v2 listings as they find v1 ones. This revision derives them, the same way, for
the v2 listings stored before it: a re-sent export would not do it, since ingest drops an
event it has already applied. No column changes.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-10
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from broker.store.projections.vacant_house import standard_town_and_status

revision = "0005"
down_revision: str | None = "0004"
branch_labels: str | None = None
depends_on: str | None = None

_listings = sa.table(
    "vacant_house_listings",
    sa.column("listing_id", sa.String),
    sa.column("standard", sa.JSON),
    sa.column("town", sa.String),
    sa.column("status", sa.String),
)


def upgrade() -> None:
    """Derive the town and status of every stored v2 listing."""
    conn = op.get_bind()
    rows = conn.execute(
        sa.select(_listings.c.listing_id, _listings.c.standard).where(
            _listings.c.standard.is_not(None)
        )
    ).all()
    for listing_id, standard in rows:
        conn.execute(
            _listings.update()
            .where(_listings.c.listing_id == listing_id)
            .values(**standard_town_and_status(standard))
        )


def downgrade() -> None:
    """Leave them: v1's columns were empty on v2 listings, and nothing reads them as such."""
