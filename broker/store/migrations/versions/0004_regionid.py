"""The region ID's tables: accounts, clients, authorization codes and tokens (issue 19).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision: str | None = "0003"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    """Create the region ID's tables."""
    op.create_table(
        "regionid_accounts",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("username", sa.String(length=128), nullable=False),
        sa.Column("password_hash", sa.String(length=256), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("name", sa.String(length=256), nullable=True),
        sa.Column("birthdate", sa.String(length=10), nullable=True),
        sa.Column("proofing", sa.String(length=32), nullable=False),
        sa.Column("proofed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("username"),
    )
    op.create_table(
        "regionid_clients",
        sa.Column("client_id", sa.String(length=128), nullable=False),
        sa.Column("name", sa.String(length=256), nullable=False),
        sa.Column("secret_hash", sa.String(length=256), nullable=True),
        sa.Column("redirect_uris", sa.JSON(), nullable=False),
        sa.Column("sector", sa.String(length=256), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("client_id"),
    )
    op.create_table(
        "regionid_codes",
        sa.Column("code_hash", sa.String(length=64), nullable=False),
        sa.Column("client_id", sa.String(length=128), nullable=False),
        sa.Column("account_id", sa.String(length=64), nullable=False),
        sa.Column("redirect_uri", sa.String(length=2048), nullable=False),
        sa.Column("scope", sa.String(length=1024), nullable=False),
        sa.Column("nonce", sa.String(length=512), nullable=True),
        sa.Column("claims", sa.JSON(), nullable=True),
        sa.Column("code_challenge", sa.String(length=128), nullable=False),
        sa.Column("code_challenge_method", sa.String(length=16), nullable=False),
        sa.Column("auth_time", sa.Integer(), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("code_hash"),
    )
    op.create_table(
        "regionid_tokens",
        sa.Column("access_hash", sa.String(length=64), nullable=False),
        sa.Column("refresh_hash", sa.String(length=64), nullable=True),
        sa.Column("client_id", sa.String(length=128), nullable=False),
        sa.Column("account_id", sa.String(length=64), nullable=False),
        sa.Column("scope", sa.String(length=1024), nullable=False),
        sa.Column("claims", sa.JSON(), nullable=True),
        sa.Column("code_hash", sa.String(length=64), nullable=True),
        sa.Column("issued_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_in", sa.Integer(), nullable=False),
        sa.Column("refresh_expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("access_hash"),
        sa.UniqueConstraint("refresh_hash"),
    )
    op.create_index("ix_regionid_tokens_code_hash", "regionid_tokens", ["code_hash"])


def downgrade() -> None:
    """Drop them again."""
    op.drop_index("ix_regionid_tokens_code_hash", table_name="regionid_tokens")
    for table in ("regionid_tokens", "regionid_codes", "regionid_clients", "regionid_accounts"):
        op.drop_table(table)
