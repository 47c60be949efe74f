"""Baseline: the store as the release before migrations (2b55de9) made it.

Every statement is ``IF NOT EXISTS``: that release created its tables as it needed them (the
erasures and notifications tables only once an erasure or a webhook happened, the erasures'
``copies_expire_at`` column later than the table), so a store it made holds some of these and
this revision adds the rest; on an empty store it creates them all.

Revision ID: 0001
Revises:
Create Date: 2026-12-03
"""

from __future__ import annotations

import time

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    """Create every table, index and constraint of the store that is missing, and the seed rows."""
    op.create_table(
        "audit_checkpoints",
        sa.Column("seq", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.Column("at", sa.String(length=32), nullable=False),
        sa.Column("signature", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("seq"),
        if_not_exists=True,
    )
    op.create_table(
        "audit_entries",
        sa.Column("seq", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("at", sa.String(length=32), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("actor", sa.String(length=200), nullable=False),
        sa.Column("subject_ref", sa.String(length=64), nullable=True),
        sa.Column("fields", sa.Text(), nullable=False),
        sa.Column("prev_hash", sa.String(length=64), nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("seq"),
        if_not_exists=True,
    )
    op.create_index(
        "ix_audit_entries_kind_at",
        "audit_entries",
        ["kind", "at"],
        unique=False,
        if_not_exists=True,
    )
    op.create_index(
        "ix_audit_entries_subject_ref",
        "audit_entries",
        ["subject_ref"],
        unique=False,
        if_not_exists=True,
    )
    op.create_table(
        "audit_head",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.Column("checkpoint_seq", sa.BigInteger(), nullable=False),
        sa.Column("checkpoint_hash", sa.String(length=64), nullable=False),
        sa.Column("checkpoint_time", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        if_not_exists=True,
    )
    op.create_table(
        "consent_epoch",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        if_not_exists=True,
    )
    op.create_table(
        "consent_outbox",
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("value", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("seq"),
        if_not_exists=True,
    )
    op.create_table(
        "currency_transactions",
        sa.Column("event_id", sa.String(length=128), nullable=False),
        sa.Column("subject_ref", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("amount_jpy", sa.Integer(), nullable=False),
        sa.Column("merchant_category", sa.String(length=32), nullable=True),
        sa.Column("town", sa.String(length=32), nullable=True),
        sa.Column("points", sa.Integer(), nullable=True),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("sealed", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("event_id"),
        if_not_exists=True,
    )
    op.create_index(
        "ix_currency_category_occurred",
        "currency_transactions",
        ["merchant_category", "occurred_at"],
        unique=False,
        if_not_exists=True,
    )
    op.create_index(
        "ix_currency_subject_occurred",
        "currency_transactions",
        ["subject_ref", "occurred_at"],
        unique=False,
        if_not_exists=True,
    )
    op.create_table(
        "erasures",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("subject_digest", sa.String(length=64), nullable=False),
        sa.Column("requested_by", sa.String(length=200), nullable=False),
        sa.Column("requested_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("completed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("consents_revoked", sa.Integer(), nullable=False),
        sa.Column("key_destroyed", sa.Boolean(), nullable=False),
        sa.Column("rows_deleted", sa.JSON(), nullable=True),
        sa.Column("pending_ref", sa.String(length=64), nullable=True),
        sa.Column("copies_expire_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        if_not_exists=True,
    )
    op.create_index(
        op.f("ix_erasures_pending_ref"),
        "erasures",
        ["pending_ref"],
        unique=False,
        if_not_exists=True,
    )
    op.create_table(
        "health_points",
        sa.Column("event_id", sa.String(length=128), nullable=False),
        sa.Column("subject_ref", sa.String(length=64), nullable=False),
        sa.Column("programme_id", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("points", sa.Integer(), nullable=False),
        sa.Column("reason", sa.String(length=32), nullable=True),
        sa.Column("age_band", sa.String(length=32), nullable=True),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("sealed", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("event_id"),
        if_not_exists=True,
    )
    op.create_index(
        "ix_health_subject_occurred",
        "health_points",
        ["subject_ref", "occurred_at"],
        unique=False,
        if_not_exists=True,
    )
    op.create_table(
        "ingested_events",
        sa.Column("id", sa.String(length=128), nullable=False),
        sa.Column("type", sa.String(length=100), nullable=False),
        sa.Column("source", sa.String(length=300), nullable=False),
        sa.Column("time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ingested_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        if_not_exists=True,
    )
    op.create_index(
        op.f("ix_ingested_events_type"),
        "ingested_events",
        ["type"],
        unique=False,
        if_not_exists=True,
    )
    op.create_table(
        "partners",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("name_ja", sa.String(length=200), nullable=False),
        sa.Column("name_en", sa.String(length=200), nullable=False),
        sa.Column("webhook_url", sa.String(length=2000), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        if_not_exists=True,
    )
    op.create_table(
        "published_statistics",
        sa.Column("family", sa.String(length=32), nullable=False),
        sa.Column("month", sa.String(length=7), nullable=False),
        sa.Column("k", sa.Integer(), nullable=False),
        sa.Column("published_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("tables", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("family", "month"),
        if_not_exists=True,
    )
    op.create_table(
        "schema_versions",
        sa.Column("event_type", sa.String(length=100), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("schema", sa.JSON(), nullable=False),
        sa.Column("registered_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("event_type", "version"),
        if_not_exists=True,
    )
    op.create_table(
        "transport_ride_requests",
        sa.Column("event_id", sa.String(length=128), nullable=False),
        sa.Column("request_id", sa.String(length=64), nullable=False),
        sa.Column("subject_ref", sa.String(length=64), nullable=False),
        sa.Column("mode", sa.String(length=32), nullable=False),
        sa.Column("operator_id", sa.String(length=64), nullable=False),
        sa.Column("origin_stop_id", sa.String(length=64), nullable=True),
        sa.Column("origin_town", sa.String(length=32), nullable=True),
        sa.Column("destination_stop_id", sa.String(length=64), nullable=True),
        sa.Column("destination_town", sa.String(length=32), nullable=True),
        sa.Column("requested_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("passengers", sa.Integer(), nullable=False),
        sa.Column("channel", sa.String(length=32), nullable=False),
        sa.Column("sealed", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("event_id"),
        if_not_exists=True,
    )
    op.create_index(
        "ix_rides_subject_requested",
        "transport_ride_requests",
        ["subject_ref", "requested_at"],
        unique=False,
        if_not_exists=True,
    )
    op.create_index(
        op.f("ix_transport_ride_requests_request_id"),
        "transport_ride_requests",
        ["request_id"],
        unique=False,
        if_not_exists=True,
    )
    op.create_table(
        "transport_stops",
        sa.Column("stop_id", sa.String(length=64), nullable=False),
        sa.Column("town", sa.String(length=32), nullable=True),
        sa.Column("lat", sa.Float(), nullable=True),
        sa.Column("lon", sa.Float(), nullable=True),
        sa.Column("on_demand", sa.Boolean(), nullable=False),
        sa.Column("bus", sa.Boolean(), nullable=False),
        sa.Column("first_seen", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seen", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("stop_id"),
        if_not_exists=True,
    )
    op.create_index("ix_stops_town", "transport_stops", ["town"], unique=False, if_not_exists=True)
    op.create_table(
        "transport_trips",
        sa.Column("event_id", sa.String(length=128), nullable=False),
        sa.Column("trip_id", sa.String(length=64), nullable=False),
        sa.Column("subject_ref", sa.String(length=64), nullable=False),
        sa.Column("mode", sa.String(length=32), nullable=False),
        sa.Column("operator_id", sa.String(length=64), nullable=False),
        sa.Column("origin_stop_id", sa.String(length=64), nullable=True),
        sa.Column("origin_town", sa.String(length=32), nullable=True),
        sa.Column("destination_stop_id", sa.String(length=64), nullable=True),
        sa.Column("destination_town", sa.String(length=32), nullable=True),
        sa.Column("pickup_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("dropoff_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("fare_jpy", sa.Integer(), nullable=False),
        sa.Column("passengers", sa.Integer(), nullable=False),
        sa.Column("sealed", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("event_id"),
        if_not_exists=True,
    )
    op.create_index(
        op.f("ix_transport_trips_trip_id"),
        "transport_trips",
        ["trip_id"],
        unique=False,
        if_not_exists=True,
    )
    op.create_index(
        "ix_trips_destination_stop",
        "transport_trips",
        ["destination_stop_id"],
        unique=False,
        if_not_exists=True,
    )
    op.create_index(
        "ix_trips_origin_stop",
        "transport_trips",
        ["origin_stop_id"],
        unique=False,
        if_not_exists=True,
    )
    op.create_index(
        "ix_trips_subject_pickup",
        "transport_trips",
        ["subject_ref", "pickup_at"],
        unique=False,
        if_not_exists=True,
    )
    op.create_table(
        "transport_vehicle_positions",
        sa.Column("vehicle_id", sa.String(length=64), nullable=False),
        sa.Column("operator_id", sa.String(length=64), nullable=False),
        sa.Column("mode", sa.String(length=32), nullable=False),
        sa.Column("lat", sa.Float(), nullable=False),
        sa.Column("lon", sa.Float(), nullable=False),
        sa.Column("bearing", sa.Float(), nullable=True),
        sa.Column("speed_kmh", sa.Float(), nullable=True),
        sa.Column("route_id", sa.String(length=64), nullable=True),
        sa.Column("occupancy", sa.String(length=32), nullable=True),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("vehicle_id"),
        if_not_exists=True,
    )
    op.create_table(
        "vacant_house_inquiries",
        sa.Column("event_id", sa.String(length=128), nullable=False),
        sa.Column("inquiry_id", sa.String(length=64), nullable=False),
        sa.Column("listing_id", sa.String(length=64), nullable=False),
        sa.Column("subject_ref", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("sealed", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("event_id"),
        if_not_exists=True,
    )
    op.create_index(
        "ix_inquiries_subject_received",
        "vacant_house_inquiries",
        ["subject_ref", "received_at"],
        unique=False,
        if_not_exists=True,
    )
    op.create_index(
        op.f("ix_vacant_house_inquiries_inquiry_id"),
        "vacant_house_inquiries",
        ["inquiry_id"],
        unique=False,
        if_not_exists=True,
    )
    op.create_index(
        op.f("ix_vacant_house_inquiries_listing_id"),
        "vacant_house_inquiries",
        ["listing_id"],
        unique=False,
        if_not_exists=True,
    )
    op.create_table(
        "vacant_house_listings",
        sa.Column("listing_id", sa.String(length=64), nullable=False),
        sa.Column("owner_id", sa.String(length=64), nullable=False),
        sa.Column("town", sa.String(length=32), nullable=True),
        sa.Column("district", sa.String(length=100), nullable=True),
        sa.Column("building_type", sa.String(length=32), nullable=True),
        sa.Column("layout", sa.String(length=32), nullable=True),
        sa.Column("floor_area_m2", sa.Float(), nullable=True),
        sa.Column("land_area_m2", sa.Float(), nullable=True),
        sa.Column("year_built", sa.Integer(), nullable=True),
        sa.Column("offer_type", sa.String(length=32), nullable=True),
        sa.Column("rent_band", sa.String(length=32), nullable=True),
        sa.Column("price_band", sa.String(length=32), nullable=True),
        sa.Column("renovated", sa.Boolean(), nullable=True),
        sa.Column("parking", sa.Boolean(), nullable=True),
        sa.Column("nearest_stop_id", sa.String(length=64), nullable=True),
        sa.Column("walk_minutes_to_stop", sa.Integer(), nullable=True),
        sa.Column("status", sa.String(length=32), nullable=True),
        sa.Column("owner_details_sealed", sa.LargeBinary(), nullable=True),
        sa.Column("registered_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("listing_id"),
        if_not_exists=True,
    )
    op.create_index(
        "ix_listings_town_status",
        "vacant_house_listings",
        ["town", "status"],
        unique=False,
        if_not_exists=True,
    )
    op.create_index(
        op.f("ix_vacant_house_listings_owner_id"),
        "vacant_house_listings",
        ["owner_id"],
        unique=False,
        if_not_exists=True,
    )
    op.create_table(
        "consents",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("subject_id", sa.String(length=64), nullable=False),
        sa.Column("subject_kind", sa.String(length=16), nullable=False),
        sa.Column("partner_id", sa.String(length=64), nullable=False),
        sa.Column("purpose", sa.String(length=100), nullable=False),
        sa.Column("categories", sa.JSON(), nullable=False),
        sa.Column("valid_from", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("data_from", sa.DateTime(timezone=True), nullable=True),
        sa.Column("data_to", sa.DateTime(timezone=True), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("change", sa.String(length=16), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("supersedes", sa.String(length=64), nullable=True),
        sa.Column("superseded_by", sa.String(length=64), nullable=True),
        sa.Column("receipt", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["partner_id"],
            ["partners.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("supersedes"),
        if_not_exists=True,
    )
    op.create_index(
        "ix_consents_live_expiry",
        "consents",
        ["expires_at"],
        unique=False,
        if_not_exists=True,
        sqlite_where=sa.text("superseded_by IS NULL AND status <> 'revoked'"),
        postgresql_where=sa.text("superseded_by IS NULL AND status <> 'revoked'"),
    )
    op.create_index(
        "ix_consents_partner",
        "consents",
        ["partner_id", "superseded_by"],
        unique=False,
        if_not_exists=True,
    )
    op.create_index(
        "ix_consents_revoking",
        "consents",
        ["created_at"],
        unique=False,
        if_not_exists=True,
        sqlite_where=sa.text("change = 'revoked'"),
        postgresql_where=sa.text("change = 'revoked'"),
    )
    op.create_index(
        "ix_consents_subject",
        "consents",
        ["subject_id", "created_at"],
        unique=False,
        if_not_exists=True,
    )
    op.create_index(
        "ux_consents_current",
        "consents",
        ["subject_id", "partner_id", "purpose"],
        unique=True,
        if_not_exists=True,
        sqlite_where=sa.text("superseded_by IS NULL"),
        postgresql_where=sa.text("superseded_by IS NULL"),
    )
    op.create_table(
        "partner_notifications",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("partner_id", sa.String(length=64), nullable=False),
        sa.Column("consent_id", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.ForeignKeyConstraint(
            ["partner_id"],
            ["partners.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("consent_id", "kind", name="ux_partner_notifications_consent_kind"),
        if_not_exists=True,
    )
    op.create_index(
        "ix_partner_notifications_due",
        "partner_notifications",
        ["next_attempt_at"],
        unique=False,
        if_not_exists=True,
        sqlite_where=sa.text("status = 'pending'"),
        postgresql_where=sa.text("status = 'pending'"),
    )
    op.create_index(
        "ix_partner_notifications_partner",
        "partner_notifications",
        ["partner_id", "created_at"],
        unique=False,
        if_not_exists=True,
    )
    op.create_table(
        "partner_purposes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("partner_id", sa.String(length=64), nullable=False),
        sa.Column("purpose", sa.String(length=100), nullable=False),
        sa.Column("approved_by", sa.String(length=200), nullable=False),
        sa.Column("approved_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_by", sa.String(length=200), nullable=True),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["partner_id"],
            ["partners.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        if_not_exists=True,
    )
    op.create_index(
        op.f("ix_partner_purposes_partner_id"),
        "partner_purposes",
        ["partner_id"],
        unique=False,
        if_not_exists=True,
    )
    op.create_index(
        "ux_partner_purposes_standing",
        "partner_purposes",
        ["partner_id", "purpose"],
        unique=True,
        if_not_exists=True,
        sqlite_where=sa.text("revoked_at IS NULL"),
        postgresql_where=sa.text("revoked_at IS NULL"),
    )
    # ### end Alembic commands ###
    _erasures_copies_expire_at()
    _seed_rows()


def _erasures_copies_expire_at() -> None:
    # Added to the erasures table after it first shipped: a store of that time lacks it.
    columns = {c["name"] for c in sa.inspect(op.get_bind()).get_columns("erasures")}
    if "copies_expire_at" not in columns:
        op.add_column("erasures", sa.Column("copies_expire_at", sa.DateTime(timezone=True)))


def _seed_rows() -> None:
    # The audit head (genesis) and the consent epoch: one row each, which the code updates.
    genesis = "0" * 64
    op.execute(
        sa.text(
            "INSERT INTO audit_head (id, seq, hash, checkpoint_seq, checkpoint_hash, "
            "checkpoint_time) VALUES (1, 0, :g, 0, :g, :t) ON CONFLICT DO NOTHING"
        ).bindparams(g=genesis, t=time.time())
    )
    op.execute(sa.text("INSERT INTO consent_epoch (id, seq) VALUES (1, 0) ON CONFLICT DO NOTHING"))


def downgrade() -> None:
    """The baseline is not undone: a store goes back by restoring its backup."""
    raise NotImplementedError("restore the store's backup to go back before the baseline")
