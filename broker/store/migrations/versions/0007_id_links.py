"""ID link: services' accounts linked to residents' region IDs, one-time link codes, the
connector of each service, and the events held until their subject is linked (issue 19).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision: str | None = "0006"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    """Create the links, link codes and held events; name each client's connector."""
    op.add_column("regionid_clients", sa.Column("connector", sa.String(length=128), nullable=True))
    op.create_table(
        "regionid_links",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("client_id", sa.String(length=128), nullable=False),
        sa.Column("account_id", sa.String(length=64), nullable=False),
        sa.Column("subject", sa.String(length=64), nullable=False),
        sa.Column("how", sa.String(length=16), nullable=False),
        sa.Column("linked_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("unlinked_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_regionid_links_account_id", "regionid_links", ["account_id"])
    op.create_index("ix_regionid_links_client_subject", "regionid_links", ["client_id", "subject"])
    op.create_table(
        "regionid_link_codes",
        sa.Column("code_hash", sa.String(length=64), nullable=False),
        sa.Column("client_id", sa.String(length=128), nullable=False),
        sa.Column("customer_digest", sa.String(length=64), nullable=False),
        sa.Column("issued_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("redeemed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("link_id", sa.String(length=32), nullable=True),
        sa.PrimaryKeyConstraint("code_hash"),
    )
    op.create_index("ix_regionid_link_codes_client_id", "regionid_link_codes", ["client_id"])
    op.create_table(
        "held_events",
        sa.Column("event_id", sa.String(length=128), nullable=False),
        sa.Column("connector", sa.String(length=128), nullable=False),
        sa.Column("subject", sa.String(length=64), nullable=False),
        sa.Column("type", sa.String(length=128), nullable=False),
        sa.Column("held_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("sealed", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("event_id"),
    )
    op.create_index("ix_held_events_subject", "held_events", ["subject"])
    op.create_index("ix_held_events_held_at", "held_events", ["held_at"])


def downgrade() -> None:
    """Drop them again."""
    op.drop_index("ix_held_events_held_at", table_name="held_events")
    op.drop_index("ix_held_events_subject", table_name="held_events")
    op.drop_table("held_events")
    with op.batch_alter_table("regionid_clients") as batch:
        batch.drop_column("connector")
    op.drop_index("ix_regionid_link_codes_client_id", table_name="regionid_link_codes")
    op.drop_table("regionid_link_codes")
    op.drop_index("ix_regionid_links_client_subject", table_name="regionid_links")
    op.drop_index("ix_regionid_links_account_id", table_name="regionid_links")
    op.drop_table("regionid_links")
