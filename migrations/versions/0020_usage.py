"""usage at the instrument: usage sessions, the no-show grace of the booking policy, device keys
and the usage events of instrument PCs, the scheme's metering rule

Revision ID: 0020_usage
Revises: 0019_use_rules
Create Date: 2026-12-06

"""

import sqlalchemy as sa
from alembic import op

from portal.core.types import UTCDateTime


revision = "0020_usage"
down_revision = "0019_use_rules"
branch_labels = None
depends_on = None

OPEN = "ended_at IS NULL"
OPEN_BOOKED = "ended_at IS NULL AND booking_id IS NOT NULL"


def upgrade():
    op.create_table(
        "usage_sessions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("booking_id", sa.Integer(), nullable=True),
        sa.Column("instrument_id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=True),
        sa.Column("started_at", UTCDateTime(timezone=True), nullable=False),
        sa.Column("ended_at", UTCDateTime(timezone=True), nullable=True),
        sa.Column(
            "source",
            sa.Enum(
                "qr",
                "provider",
                "device",
                name="usagesource",
                native_enum=False,
                create_constraint=True,
                length=20,
            ),
            nullable=False,
        ),
        sa.Column("ended_by", sa.String(length=10), nullable=True),
        sa.Column("overtime_minutes", sa.Integer(), nullable=False),
        sa.Column("reported_username", sa.String(length=80), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("created_at", UTCDateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "ended_at IS NULL OR ended_at >= started_at", name=op.f("ck_usage_sessions_ends_after_start")
        ),
        sa.CheckConstraint("overtime_minutes >= 0", name=op.f("ck_usage_sessions_overtime_not_negative")),
        sa.ForeignKeyConstraint(
            ["booking_id"], ["bookings.id"], name=op.f("fk_usage_sessions_booking_id_bookings")
        ),
        sa.ForeignKeyConstraint(
            ["instrument_id"], ["instruments.id"], name=op.f("fk_usage_sessions_instrument_id_instruments")
        ),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name=op.f("fk_usage_sessions_user_id_users")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_usage_sessions")),
    )
    with op.batch_alter_table("usage_sessions", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_usage_sessions_booking_id"), ["booking_id"], unique=False)
        batch_op.create_index(
            "ix_usage_sessions_instrument_started", ["instrument_id", "started_at"], unique=False
        )
        batch_op.create_index(
            "ix_usage_sessions_open",
            ["ended_at"],
            unique=False,
            sqlite_where=sa.text(OPEN),
            postgresql_where=sa.text(OPEN),
        )
        batch_op.create_index(
            "uq_usage_sessions_open_booking",
            ["booking_id"],
            unique=True,
            sqlite_where=sa.text(OPEN_BOOKED),
            postgresql_where=sa.text(OPEN_BOOKED),
        )

    op.create_table(
        "device_keys",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("instrument_id", sa.Integer(), nullable=False),
        sa.Column("label", sa.String(length=80), nullable=False),
        sa.Column("key_hash", sa.String(length=64), nullable=False),
        sa.Column("prefix", sa.String(length=12), nullable=False),
        sa.Column("created_by_id", sa.Integer(), nullable=False),
        sa.Column("created_at", UTCDateTime(timezone=True), nullable=False),
        sa.Column("last_used_at", UTCDateTime(timezone=True), nullable=True),
        sa.Column("revoked_at", UTCDateTime(timezone=True), nullable=True),
        sa.Column("revoked_by_id", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(["created_by_id"], ["users.id"], name=op.f("fk_device_keys_created_by_id_users")),
        sa.ForeignKeyConstraint(
            ["instrument_id"], ["instruments.id"], name=op.f("fk_device_keys_instrument_id_instruments")
        ),
        sa.ForeignKeyConstraint(["revoked_by_id"], ["users.id"], name=op.f("fk_device_keys_revoked_by_id_users")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_device_keys")),
        sa.UniqueConstraint("key_hash", name=op.f("uq_device_keys_key_hash")),
    )
    with op.batch_alter_table("device_keys", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_device_keys_instrument_id"), ["instrument_id"], unique=False)

    op.create_table(
        "usage_events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("instrument_id", sa.Integer(), nullable=False),
        sa.Column("device_key_id", sa.Integer(), nullable=False),
        sa.Column("idempotency_key", sa.String(length=100), nullable=False),
        sa.Column(
            "event",
            sa.Enum("start", "stop", name="eventkind", native_enum=False, create_constraint=True, length=10),
            nullable=False,
        ),
        sa.Column("at", UTCDateTime(timezone=True), nullable=False),
        sa.Column("username", sa.String(length=80), nullable=False),
        sa.Column("session_id", sa.Integer(), nullable=True),
        sa.Column("booking_id", sa.Integer(), nullable=True),
        sa.Column("received_at", UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["booking_id"], ["bookings.id"], name=op.f("fk_usage_events_booking_id_bookings")),
        sa.ForeignKeyConstraint(
            ["device_key_id"], ["device_keys.id"], name=op.f("fk_usage_events_device_key_id_device_keys")
        ),
        sa.ForeignKeyConstraint(
            ["instrument_id"], ["instruments.id"], name=op.f("fk_usage_events_instrument_id_instruments")
        ),
        sa.ForeignKeyConstraint(
            ["session_id"], ["usage_sessions.id"], name=op.f("fk_usage_events_session_id_usage_sessions")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_usage_events")),
        # An event sent again (the same idempotency key for the instrument) is never taken twice.
        sa.UniqueConstraint("instrument_id", "idempotency_key", name="uq_usage_events_idempotency"),
    )

    with op.batch_alter_table("booking_policies", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("no_show_grace_minutes", sa.Integer(), server_default="30", nullable=False)
        )
        batch_op.create_check_constraint(
            op.f("ck_booking_policies_grace_range"),
            "no_show_grace_minutes >= 0 AND no_show_grace_minutes <= 1440",
        )


    with op.batch_alter_table("schemes", schema=None) as batch_op:
        batch_op.add_column(sa.Column("metering_required", sa.Boolean(), server_default=sa.false(), nullable=False))


def downgrade():
    with op.batch_alter_table("schemes", schema=None) as batch_op:
        batch_op.drop_column("metering_required")

    with op.batch_alter_table("booking_policies", schema=None) as batch_op:
        batch_op.drop_constraint(op.f("ck_booking_policies_grace_range"), type_="check")
        batch_op.drop_column("no_show_grace_minutes")

    op.drop_table("usage_events")
    op.drop_table("device_keys")
    op.drop_table("usage_sessions")
