"""fairness (issue 18): no-shows (check-in seam, grace per instrument)

Revision ID: 0021_fairness
Revises: 0019_use_rules
Create Date: 2026-12-06

Made beside 0020_usage (check-in and check-out), which may add `bookings.checked_in_at` and
`booking_policies.no_show_grace_minutes` itself: each is added here only where it is missing. At the
merge, whichever revision keeps them owns them (their downgrade drops them).
"""

import sqlalchemy as sa
from alembic import op

from portal.core.types import UTCDateTime

revision = "0021_fairness"
# Re-chained onto 0020_usage when the branches are merged.
down_revision = "0019_use_rules"
branch_labels = None
depends_on = None

GRACE_CHECK = "ck_booking_policies_no_show_grace_range"


def _has_column(table: str, column: str) -> bool:
    return column in {c["name"] for c in sa.inspect(op.get_bind()).get_columns(table)}


def _has_check(table: str, name: str) -> bool:
    return name in {c["name"] for c in sa.inspect(op.get_bind()).get_check_constraints(table)}


def upgrade():
    if not _has_column("bookings", "checked_in_at"):
        with op.batch_alter_table("bookings", schema=None) as batch_op:
            batch_op.add_column(sa.Column("checked_in_at", UTCDateTime(timezone=True), nullable=True))
    if not _has_column("booking_policies", "no_show_grace_minutes"):
        with op.batch_alter_table("booking_policies", schema=None) as batch_op:
            batch_op.add_column(
                sa.Column("no_show_grace_minutes", sa.Integer(), nullable=False, server_default="30")
            )
        with op.batch_alter_table("booking_policies", schema=None) as batch_op:
            batch_op.alter_column("no_show_grace_minutes", server_default=None)
    if not _has_check("booking_policies", GRACE_CHECK):
        with op.batch_alter_table("booking_policies", schema=None) as batch_op:
            batch_op.create_check_constraint(
                "no_show_grace_range", "no_show_grace_minutes BETWEEN 0 AND 1440"
            )


def downgrade():
    with op.batch_alter_table("booking_policies", schema=None) as batch_op:
        batch_op.drop_constraint(op.f(GRACE_CHECK), type_="check")
        batch_op.drop_column("no_show_grace_minutes")
    with op.batch_alter_table("bookings", schema=None) as batch_op:
        batch_op.drop_column("checked_in_at")
