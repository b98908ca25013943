"""registration: self-registered accounts wait for their address to be confirmed

Revision ID: 0015_registration
Revises: 0014_task_outbox
Create Date: 2026-12-06

users.awaiting_confirmation (false for every existing account); the one-time links get the purpose
"registration".
"""

import sqlalchemy as sa
from alembic import op

revision = "0015_registration"
down_revision = "0014_task_outbox"
branch_labels = None
depends_on = None

PURPOSES = ("password_reset", "welcome", "email_change")


def _purpose_check(purposes):
    return "purpose IN (" + ", ".join(f"'{p}'" for p in purposes) + ")"


def _restore_user_indexes():
    # SQLite's batch mode rebuilds the table and drops the expression index it cannot reflect, and the
    # partial index with its WHERE clause.
    if op.get_bind().dialect.name == "sqlite":
        op.execute("DROP INDEX IF EXISTS uq_users_enterprise_holder")
        op.execute("CREATE UNIQUE INDEX IF NOT EXISTS uq_users_username_lower ON users (lower(username))")
        op.execute(
            "CREATE UNIQUE INDEX IF NOT EXISTS uq_users_enterprise_holder ON users (enterprise_id) "
            "WHERE is_holder"
        )


def upgrade():
    op.add_column(
        "users", sa.Column("awaiting_confirmation", sa.Boolean(), server_default=sa.false(), nullable=False)
    )
    with op.batch_alter_table("account_tokens") as batch:
        batch.drop_constraint(op.f("ck_account_tokens_tokenpurpose"), type_="check")
        batch.create_check_constraint(
            op.f("ck_account_tokens_tokenpurpose"), _purpose_check((*PURPOSES, "registration"))
        )


def downgrade():
    op.execute("DELETE FROM account_tokens WHERE purpose = 'registration'")
    with op.batch_alter_table("account_tokens") as batch:
        batch.drop_constraint(op.f("ck_account_tokens_tokenpurpose"), type_="check")
        batch.create_check_constraint(op.f("ck_account_tokens_tokenpurpose"), _purpose_check(PURPOSES))
    with op.batch_alter_table("users") as batch:
        batch.drop_column("awaiting_confirmation")
    _restore_user_indexes()
