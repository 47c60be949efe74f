"""Stops keep their GTFS name (``stop_name``), as the trips that used them give it, so that the
open data's stops dataset publishes it.

A stop stored before this revision gets its name from the next trip that names it.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-10
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision: str | None = "0005"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    """Add the stop's name."""
    with op.batch_alter_table("transport_stops") as batch:
        batch.add_column(sa.Column("stop_name", sa.String(length=100), nullable=True))


def downgrade() -> None:
    """Drop it again."""
    with op.batch_alter_table("transport_stops") as batch:
        batch.drop_column("stop_name")
