"""A toy chain's second revision: a column added to the first's table.

Revision ID: t0002
Revises: t0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "t0002"
down_revision: str | None = "t0001"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    """Add the column."""
    op.add_column("toy", sa.Column("name", sa.String(32)))


def downgrade() -> None:
    """Drop it."""
    op.drop_column("toy", "name")
