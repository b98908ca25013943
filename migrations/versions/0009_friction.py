"""friction: a service record says why it bills more hours than were booked

Revision ID: 0009_friction
Revises: 0008_holders
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op

revision = "0009_friction"
down_revision = "0008_holders"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("service_records") as batch:
        batch.add_column(sa.Column("hours_reason", sa.Text(), nullable=True))


def downgrade():
    with op.batch_alter_table("service_records") as batch:
        batch.drop_column("hours_reason")
