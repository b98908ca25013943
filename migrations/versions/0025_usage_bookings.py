"""usage bookings: the booked time per instrument and month, the month totals, the enterprises served, the hours billed

Revision ID: 0025_usage_bookings
Revises: 0024_usage_tallies
Create Date: 2026-12-07

The dashboard, the ranking and the public page read tallies instead of the raw bookings and service
records (issue 20). `booking_tallies` holds per instrument and Beijing month the slot bookings that
took or hold its time, their hours and the hours its opening hours give; `customer_tallies` the
distinct enterprises each institution served per county and month or year; `usage_tallies` gains the
hours written on the service records. `flask usage tally` fills them (README's upgrade notes).
"""

import sqlalchemy as sa
from alembic import op

from portal.core.types import UTCDateTime

revision = "0025_usage_bookings"
down_revision = "0024_usage_tallies"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("usage_tallies") as batch:
        batch.add_column(sa.Column("record_seconds", sa.BigInteger(), nullable=False, server_default="0"))
    op.create_table(
        "booking_tallies",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("month", sa.String(length=7), nullable=False),
        sa.Column("instrument_id", sa.Integer(), nullable=False),
        sa.Column("bookings", sa.Integer(), nullable=False),
        sa.Column("booked_seconds", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["instrument_id"], ["instruments.id"], name=op.f("fk_booking_tallies_instrument_id_instruments")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_booking_tallies")),
        sa.UniqueConstraint("month", "instrument_id", name="uq_booking_tallies_month_instrument"),
    )
    op.create_index("ix_booking_tallies_instrument_month", "booking_tallies", ["instrument_id", "month"])
    op.create_table(
        "month_totals",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("month", sa.String(length=7), nullable=False),
        sa.Column("county", sa.String(length=20), nullable=False),
        sa.Column("category_group", sa.String(length=2), nullable=False),
        sa.Column("bookings", sa.Integer(), nullable=False),
        sa.Column("booked_seconds", sa.BigInteger(), nullable=False),
        sa.Column("services", sa.Integer(), nullable=False),
        sa.Column("record_seconds", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_month_totals")),
        sa.UniqueConstraint("month", "county", "category_group", name="uq_month_totals_month_county_group"),
    )
    op.create_table(
        "customer_tallies",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("period", sa.String(length=7), nullable=False),
        sa.Column("institution_id", sa.Integer(), nullable=False),
        sa.Column("county", sa.String(length=20), nullable=False),
        sa.Column("enterprise_id", sa.Integer(), nullable=False),
        sa.Column("bookings", sa.Integer(), nullable=False),
        sa.Column("services", sa.Integer(), nullable=False),
        sa.Column("updated_at", UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["institution_id"],
            ["institutions.id"],
            name=op.f("fk_customer_tallies_institution_id_institutions"),
        ),
        sa.ForeignKeyConstraint(
            ["enterprise_id"], ["enterprises.id"], name=op.f("fk_customer_tallies_enterprise_id_enterprises")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_customer_tallies")),
        sa.UniqueConstraint("period", "institution_id", "county", "enterprise_id", name="uq_customer_tallies_row"),
    )
    op.create_index("ix_customer_tallies_institution_period", "customer_tallies", ["institution_id", "period"])
    op.create_table(
        "opening_weeks",
        sa.Column("instrument_id", sa.Integer(), autoincrement=False, nullable=False),
        *(sa.Column(f"day{weekday}", sa.Integer(), nullable=False) for weekday in range(7)),
        sa.ForeignKeyConstraint(
            ["instrument_id"],
            ["instruments.id"],
            name=op.f("fk_opening_weeks_instrument_id_instruments"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("instrument_id", name=op.f("pk_opening_weeks")),
    )


def downgrade():
    op.drop_table("opening_weeks")
    op.drop_index("ix_customer_tallies_institution_period", table_name="customer_tallies")
    op.drop_table("customer_tallies")
    op.drop_table("month_totals")
    op.drop_index("ix_booking_tallies_instrument_month", table_name="booking_tallies")
    op.drop_table("booking_tallies")
    with op.batch_alter_table("usage_tallies") as batch:
        batch.drop_column("record_seconds")
