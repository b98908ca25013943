"""fairness (issue 18): no-shows (check-in recorded on the booking), booking credit, waitlist

Revision ID: 0021_fairness
Revises: 0020_usage
Create Date: 2026-12-06

The no-show grace per instrument came with 0020_usage (check-in closes at it); this revision adds
the booking's first check-in (`bookings.checked_in_at`, which the no-show task asks about), the
credit rules and violations, and the waitlist.
"""

import sqlalchemy as sa
from alembic import op

from portal.core.types import UTCDateTime

revision = "0021_fairness"
down_revision = "0020_usage"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("bookings", schema=None) as batch_op:
        batch_op.add_column(sa.Column("checked_in_at", UTCDateTime(timezone=True), nullable=True))
    _create_credit()
    _create_waitlist()


def _create_waitlist():
    with op.batch_alter_table("bookings", schema=None) as batch_op:
        batch_op.add_column(sa.Column("offered_until", UTCDateTime(timezone=True), nullable=True))
    op.create_table(
        "waitlist_entries",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("instrument_id", sa.Integer(), nullable=False),
        sa.Column("enterprise_id", sa.Integer(), nullable=False),
        sa.Column("requested_by_id", sa.Integer(), nullable=False),
        sa.Column("starts_at", UTCDateTime(timezone=True), nullable=False),
        sa.Column("ends_at", UTCDateTime(timezone=True), nullable=False),
        sa.Column("length_minutes", sa.Integer(), nullable=True),
        sa.Column("purpose", sa.Text(), nullable=False),
        sa.Column(
            "state",
            sa.Enum(
                "waiting",
                "offered",
                "accepted",
                "declined",
                "expired",
                "cancelled",
                name="entrystate",
                native_enum=False,
                create_constraint=True,
                length=20,
            ),
            nullable=False,
        ),
        sa.Column("offer_booking_id", sa.Integer(), nullable=True),
        sa.Column("offered_until", UTCDateTime(timezone=True), nullable=True),
        sa.Column("created_at", UTCDateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "length_minutes IS NULL OR length_minutes > 0", name=op.f("ck_waitlist_entries_length_positive")
        ),
        sa.CheckConstraint("starts_at < ends_at", name=op.f("ck_waitlist_entries_starts_before_ends")),
        sa.ForeignKeyConstraint(
            ["enterprise_id"], ["enterprises.id"], name=op.f("fk_waitlist_entries_enterprise_id_enterprises")
        ),
        sa.ForeignKeyConstraint(
            ["instrument_id"], ["instruments.id"], name=op.f("fk_waitlist_entries_instrument_id_instruments")
        ),
        sa.ForeignKeyConstraint(
            ["offer_booking_id"], ["bookings.id"], name=op.f("fk_waitlist_entries_offer_booking_id_bookings")
        ),
        sa.ForeignKeyConstraint(
            ["requested_by_id"], ["users.id"], name=op.f("fk_waitlist_entries_requested_by_id_users")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_waitlist_entries")),
    )
    op.create_index("ix_waitlist_entries_enterprise_id", "waitlist_entries", ["enterprise_id"])
    op.create_index(
        "ix_waitlist_entries_instrument_state_created", "waitlist_entries", ["instrument_id", "state", "created_at"]
    )


def _create_credit():
    op.create_table(
        "credit_rules",
        sa.Column("scheme_id", sa.Integer(), nullable=False),
        sa.Column("max_violations", sa.Integer(), nullable=False),
        sa.Column("window_days", sa.Integer(), nullable=False),
        sa.Column("suspension_days", sa.Integer(), nullable=False),
        sa.Column("updated_at", UTCDateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "max_violations BETWEEN 1 AND 100 AND window_days BETWEEN 1 AND 3660 "
            "AND suspension_days BETWEEN 0 AND 3660",
            name=op.f("ck_credit_rules_ranges"),
        ),
        sa.ForeignKeyConstraint(
            ["scheme_id"], ["schemes.id"], name=op.f("fk_credit_rules_scheme_id_schemes"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("scheme_id", name=op.f("pk_credit_rules")),
    )
    op.create_table(
        "violations",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("enterprise_id", sa.Integer(), nullable=False),
        sa.Column("booking_id", sa.Integer(), nullable=False),
        sa.Column(
            "kind",
            sa.Enum(
                "no_show",
                "late_cancellation",
                name="violationkind",
                native_enum=False,
                create_constraint=True,
                length=20,
            ),
            nullable=False,
        ),
        sa.Column("occurred_at", UTCDateTime(timezone=True), nullable=False),
        sa.Column("recorded_at", UTCDateTime(timezone=True), nullable=False),
        sa.Column("waived_at", UTCDateTime(timezone=True), nullable=True),
        sa.Column("waived_by_id", sa.Integer(), nullable=True),
        sa.Column("waive_reason", sa.Text(), nullable=True),
        sa.CheckConstraint(
            "waived_at IS NULL OR waive_reason IS NOT NULL", name=op.f("ck_violations_waiver_has_reason")
        ),
        sa.ForeignKeyConstraint(["booking_id"], ["bookings.id"], name=op.f("fk_violations_booking_id_bookings")),
        sa.ForeignKeyConstraint(
            ["enterprise_id"], ["enterprises.id"], name=op.f("fk_violations_enterprise_id_enterprises")
        ),
        sa.ForeignKeyConstraint(["waived_by_id"], ["users.id"], name=op.f("fk_violations_waived_by_id_users")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_violations")),
        sa.UniqueConstraint("booking_id", "kind", name="uq_violations_booking_kind"),
    )
    op.create_index("ix_violations_enterprise_occurred_at", "violations", ["enterprise_id", "occurred_at"])


def downgrade():
    op.drop_index("ix_waitlist_entries_instrument_state_created", "waitlist_entries")
    op.drop_index("ix_waitlist_entries_enterprise_id", "waitlist_entries")
    op.drop_table("waitlist_entries")
    with op.batch_alter_table("bookings", schema=None) as batch_op:
        batch_op.drop_column("offered_until")
    op.drop_index("ix_violations_enterprise_occurred_at", "violations")
    op.drop_table("violations")
    op.drop_table("credit_rules")
    with op.batch_alter_table("bookings", schema=None) as batch_op:
        batch_op.drop_column("checked_in_at")
