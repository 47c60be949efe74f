"""Vacant-house listings in the Digital Agency's standard model (空き家バンク, listing v2).

A v2 listing's public standard fields are kept as one JSON document beside v1's columns, and
its publication status (``vacantHouseListing``) as a column of its own, so that the views can
leave out a 管理者のみ閲覧 listing in the query itself. v1 listings keep both empty.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision: str | None = "0002"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    """Add the standard fields and the publication status to the listings."""
    with op.batch_alter_table("vacant_house_listings") as batch:
        batch.add_column(sa.Column("publication", sa.String(length=32), nullable=True))
        batch.add_column(sa.Column("standard", sa.JSON(), nullable=True))


def downgrade() -> None:
    """Drop them again."""
    with op.batch_alter_table("vacant_house_listings") as batch:
        batch.drop_column("standard")
        batch.drop_column("publication")
