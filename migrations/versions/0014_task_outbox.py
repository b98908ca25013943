"""task outbox: Celery tasks written with the change that asks for them, sent after its commit

Revision ID: 0014_task_outbox
Revises: 0013_accounts
Create Date: 2026-12-06

"""

import sqlalchemy as sa
from alembic import op

revision = "0014_task_outbox"
down_revision = "0013_accounts"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "queued_tasks",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=80), nullable=False),
        sa.Column("args", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_queued_tasks")),
    )
    op.create_index(op.f("ix_queued_tasks_created_at"), "queued_tasks", ["created_at"], unique=False)


def downgrade():
    op.drop_index(op.f("ix_queued_tasks_created_at"), table_name="queued_tasks")
    op.drop_table("queued_tasks")
