"""dashboard: bookings by period across all instruments

Revision ID: 0006_dashboard
Revises: 0005_ranking
Create Date: 2026-11-24

"""

from alembic import op

revision = "0006_dashboard"
down_revision = "0005_ranking"
branch_labels = None
depends_on = None


def upgrade():
    op.create_index("ix_bookings_starts_at", "bookings", ["starts_at"], unique=False)


def downgrade():
    op.drop_index("ix_bookings_starts_at", table_name="bookings")
