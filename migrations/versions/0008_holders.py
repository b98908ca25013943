"""holders: each enterprise has one account holder among its users

Revision ID: 0008_holders
Revises: 0007_search_index
Create Date: 2026-12-06

The registrant of each existing enterprise (its first user) becomes the holder.
"""

import sqlalchemy as sa
from alembic import op

revision = "0008_holders"
down_revision = "0007_search_index"
branch_labels = None
depends_on = None


def _restore_expression_index():
    # SQLite's batch mode rebuilds the table and drops the expression index it cannot reflect.
    if op.get_bind().dialect.name == "sqlite":
        op.execute("CREATE UNIQUE INDEX IF NOT EXISTS uq_users_username_lower ON users (lower(username))")


def upgrade():
    with op.batch_alter_table("users") as batch:
        batch.add_column(sa.Column("is_holder", sa.Boolean(), server_default=sa.false(), nullable=False))
        batch.create_check_constraint(
            op.f("ck_users_holder_is_enterprise_user"), "NOT is_holder OR role = 'enterprise'"
        )
    _restore_expression_index()
    op.execute(
        "UPDATE users SET is_holder = TRUE WHERE role = 'enterprise' AND id IN "
        "(SELECT MIN(id) FROM users WHERE role = 'enterprise' GROUP BY enterprise_id)"
    )
    op.create_index(
        "uq_users_enterprise_holder",
        "users",
        ["enterprise_id"],
        unique=True,
        sqlite_where=sa.text("is_holder"),
        postgresql_where=sa.text("is_holder"),
    )


def downgrade():
    op.drop_index("uq_users_enterprise_holder", table_name="users")
    with op.batch_alter_table("users") as batch:
        batch.drop_constraint(op.f("ck_users_holder_is_enterprise_user"), type_="check")
        batch.drop_column("is_holder")
    _restore_expression_index()
