"""accounts: one-time links, invitations, deactivation details, mail to an explicit address

Revision ID: 0013_accounts
Revises: 0012_instruments
Create Date: 2026-12-07

- account_tokens: password reset, first password and new-address links (only a hash of the secret);
- invitations: an enterprise holder's invitations of colleagues (only a hash of the secret);
- users.deactivated_at, users.deactivated_by_id;
- notifications.email_to (a mail to an address that is not the recipient's own), recipient_id nullable
  (an invitation goes to someone without an account).
"""

import sqlalchemy as sa
from alembic import op

revision = "0013_accounts"
down_revision = "0012_instruments"
branch_labels = None
depends_on = None


def _restore_users_indexes():
    # SQLite's batch mode rebuilds the table and drops the expression index it cannot reflect, and the
    # partial index with its WHERE clause.
    if op.get_bind().dialect.name == "sqlite":
        op.execute("CREATE UNIQUE INDEX IF NOT EXISTS uq_users_username_lower ON users (lower(username))")
        op.execute(
            "CREATE UNIQUE INDEX IF NOT EXISTS uq_users_enterprise_holder ON users (enterprise_id) "
            "WHERE is_holder"
        )


def upgrade():
    op.create_table(
        "account_tokens",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column(
            "purpose",
            sa.Enum(
                "password_reset",
                "welcome",
                "email_change",
                name="tokenpurpose",
                native_enum=False,
                create_constraint=True,
                length=20,
            ),
            nullable=False,
        ),
        sa.Column("email", sa.String(length=120), nullable=True),
        sa.Column("salt", sa.String(length=32), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_account_tokens_user_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_account_tokens")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_account_tokens_token_hash")),
    )
    op.create_index(op.f("ix_account_tokens_user_id"), "account_tokens", ["user_id"], unique=False)
    op.create_table(
        "invitations",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("enterprise_id", sa.Integer(), nullable=False),
        sa.Column("email", sa.String(length=120), nullable=False),
        sa.Column("invited_by_id", sa.Integer(), nullable=False),
        sa.Column("salt", sa.String(length=32), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("accepted_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("user_id", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["enterprise_id"], ["enterprises.id"], name=op.f("fk_invitations_enterprise_id_enterprises")
        ),
        sa.ForeignKeyConstraint(["invited_by_id"], ["users.id"], name=op.f("fk_invitations_invited_by_id_users")),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name=op.f("fk_invitations_user_id_users")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_invitations")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_invitations_token_hash")),
    )
    op.create_index(op.f("ix_invitations_enterprise_id"), "invitations", ["enterprise_id"], unique=False)
    with op.batch_alter_table("users") as batch:
        batch.add_column(sa.Column("deactivated_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("deactivated_by_id", sa.Integer(), nullable=True))
        batch.create_foreign_key(
            op.f("fk_users_deactivated_by_id_users"), "users", ["deactivated_by_id"], ["id"]
        )
    _restore_users_indexes()
    with op.batch_alter_table("notifications") as batch:
        batch.add_column(sa.Column("email_to", sa.String(length=120), nullable=True))
        batch.alter_column("recipient_id", existing_type=sa.Integer(), nullable=True)
        batch.create_check_constraint(
            op.f("ck_notifications_has_recipient"), "recipient_id IS NOT NULL OR email_to IS NOT NULL"
        )


def downgrade():
    # Mail to explicit addresses has no recipient to fall back on.
    op.execute("DELETE FROM notifications WHERE recipient_id IS NULL")
    with op.batch_alter_table("notifications") as batch:
        batch.drop_constraint(op.f("ck_notifications_has_recipient"), type_="check")
        batch.alter_column("recipient_id", existing_type=sa.Integer(), nullable=False)
        batch.drop_column("email_to")
    with op.batch_alter_table("users") as batch:
        batch.drop_constraint(op.f("fk_users_deactivated_by_id_users"), type_="foreignkey")
        batch.drop_column("deactivated_by_id")
        batch.drop_column("deactivated_at")
    _restore_users_indexes()
    op.drop_index(op.f("ix_invitations_enterprise_id"), table_name="invitations")
    op.drop_table("invitations")
    op.drop_index(op.f("ix_account_tokens_user_id"), table_name="account_tokens")
    op.drop_table("account_tokens")
