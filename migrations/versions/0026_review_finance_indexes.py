"""review and finance indexes: the review desk's waiting claims by county, finance's count of a period

Revision ID: 0026_review_finance_indexes
Revises: 0025_usage_bookings
Create Date: 2026-12-07

Issue 20 (province scale). `ix_claims_state_enterprise` (state, enterprise, submission time) bounds the
review desk's queue by the waiting states and a county's enterprises before any claim's amount is
summed; `ix_claims_approved_month_state` (approval month, state, provider) lets finance count the
claims an export of a period holds from the index alone. It replaces `ix_claims_approved_month`,
whose column it starts with. Building them takes a few seconds at province scale (1,100,000
claims), during which writes to claims wait.
"""

from alembic import op

revision = "0026_review_finance_indexes"
down_revision = "0025_usage_bookings"
branch_labels = None
depends_on = None


def upgrade():
    op.create_index("ix_claims_state_enterprise", "claims", ["state", "enterprise_id", "submitted_at"])
    op.create_index("ix_claims_approved_month_state", "claims", ["approved_month", "state", "institution_id"])
    op.drop_index("ix_claims_approved_month", table_name="claims")


def downgrade():
    op.create_index("ix_claims_approved_month", "claims", ["approved_month"])
    op.drop_index("ix_claims_approved_month_state", table_name="claims")
    op.drop_index("ix_claims_state_enterprise", table_name="claims")
