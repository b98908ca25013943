"""series (issue 18): recurring bookings, each occurrence an ordinary booking

Revision ID: 0022_series
Revises: 0021_fairness
Create Date: 2026-12-07

A series row keeps the rule (daily or weekly on chosen weekdays every N, until a day or N times) and
the occurrences refused when it was made; `bookings.series_id` names the series a booking belongs
to. The column is added without rebuilding `bookings` on SQLite (ALTER TABLE … ADD COLUMN takes a
REFERENCES clause when the column defaults to NULL), so no booking row is copied.
"""

import sqlalchemy as sa
from alembic import op

from portal.core.types import UTCDateTime

revision = "0022_series"
down_revision = "0021_fairness"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "booking_series",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("instrument_id", sa.Integer(), nullable=False),
        sa.Column("enterprise_id", sa.Integer(), nullable=False),
        sa.Column("requested_by_id", sa.Integer(), nullable=False),
        sa.Column("starts_at", UTCDateTime(timezone=True), nullable=False),
        sa.Column("ends_at", UTCDateTime(timezone=True), nullable=False),
        sa.Column(
            "repeat_every",
            sa.Enum("day", "week", name="repeatunit", native_enum=False, create_constraint=True, length=20),
            nullable=False,
        ),
        sa.Column("repeat_interval", sa.SmallInteger(), nullable=False),
        sa.Column("repeat_weekdays", sa.JSON(), nullable=False),
        sa.Column("repeat_until", sa.Date(), nullable=True),
        sa.Column("repeat_count", sa.SmallInteger(), nullable=True),
        sa.Column("operation", sa.String(length=10), nullable=True),
        sa.Column("purpose", sa.Text(), nullable=False),
        sa.Column("skip_conflicts", sa.Boolean(), nullable=False),
        sa.Column("skipped", sa.JSON(), nullable=False),
        sa.Column("created_at", UTCDateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "(repeat_until IS NULL) <> (repeat_count IS NULL)", name=op.f("ck_booking_series_until_or_count")
        ),
        sa.CheckConstraint(
            "repeat_interval >= 1 AND starts_at < ends_at", name=op.f("ck_booking_series_rule_range")
        ),
        sa.ForeignKeyConstraint(
            ["enterprise_id"], ["enterprises.id"], name=op.f("fk_booking_series_enterprise_id_enterprises")
        ),
        sa.ForeignKeyConstraint(
            ["instrument_id"], ["instruments.id"], name=op.f("fk_booking_series_instrument_id_instruments")
        ),
        sa.ForeignKeyConstraint(
            ["requested_by_id"], ["users.id"], name=op.f("fk_booking_series_requested_by_id_users")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_booking_series")),
    )
    op.create_index("ix_booking_series_enterprise_id", "booking_series", ["enterprise_id"])
    if op.get_context().dialect.name == "sqlite":
        # Alembic would rebuild the table for the constraint; SQLite takes it in the ADD COLUMN.
        op.execute(
            "ALTER TABLE bookings ADD COLUMN series_id INTEGER "
            "CONSTRAINT fk_bookings_series_id_booking_series REFERENCES booking_series (id)"
        )
    else:
        op.add_column("bookings", sa.Column("series_id", sa.Integer(), nullable=True))
        op.create_foreign_key(
            "fk_bookings_series_id_booking_series", "bookings", "booking_series", ["series_id"], ["id"]
        )
    op.create_index("ix_bookings_series_id", "bookings", ["series_id"])


def downgrade():
    op.drop_index("ix_bookings_series_id", "bookings")
    with op.batch_alter_table("bookings", schema=None) as batch_op:
        if op.get_context().dialect.name == "postgresql":
            batch_op.drop_constraint("fk_bookings_series_id_booking_series", type_="foreignkey")
        batch_op.drop_column("series_id")
    op.drop_index("ix_booking_series_enterprise_id", "booking_series")
    op.drop_table("booking_series")
