"""A toy chain's first revision (tests of the upgrade rules): one table.

Revision ID: t0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "t0001"
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    """Create the toy table."""
    op.create_table("toy", sa.Column("id", sa.Integer, primary_key=True))


def downgrade() -> None:
    """Drop it."""
    op.drop_table("toy")
