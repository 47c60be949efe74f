"""The resident's tracker index: audit entries by (subject_ref, kind, at, seq).

The tracker lists one resident's partner reads newest first, a page at a time, within a
period; this index answers each page by one range scan however many entries concern the
resident. It leads with subject_ref, so it replaces the index on subject_ref alone.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-03
"""

from __future__ import annotations

from alembic import op

revision = "0002"
down_revision: str | None = "0001"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    """Add the tracker's index and drop the one on subject_ref alone."""
    op.create_index(
        "ix_audit_entries_tracker",
        "audit_entries",
        ["subject_ref", "kind", "at", "seq"],
        unique=False,
    )
    op.drop_index("ix_audit_entries_subject_ref", table_name="audit_entries")


def downgrade() -> None:
    """Back to the index on subject_ref alone."""
    op.create_index("ix_audit_entries_subject_ref", "audit_entries", ["subject_ref"], unique=False)
    op.drop_index("ix_audit_entries_tracker", table_name="audit_entries")
