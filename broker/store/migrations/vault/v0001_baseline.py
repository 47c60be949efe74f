"""Baseline of the subject-key vault: its tables as the release before migrations (2b55de9)
made them. ``IF NOT EXISTS``, so that a vault of that release is adopted as it is.

Revision ID: v0001
Revises:
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "v0001"
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    """Create the subject keys and the vault's secret, if missing."""
    op.create_table(
        "subject_keys",
        sa.Column("subject_id", sa.String(length=64), nullable=False),
        sa.Column("key", sa.LargeBinary(length=32), nullable=True),  # NULL once destroyed
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("destroyed_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("subject_id"),
        if_not_exists=True,
    )
    op.create_table(
        "vault_secret",
        sa.Column("id", sa.String(length=16), nullable=False),
        sa.Column("secret", sa.LargeBinary(length=32), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        if_not_exists=True,
    )


def downgrade() -> None:
    """The baseline is not undone: a vault goes back by restoring its backup."""
    raise NotImplementedError("restore the vault's backup to go back before the baseline")
