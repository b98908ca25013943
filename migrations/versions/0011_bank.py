"""bank: enterprises' bank accounts (versions verified by a reviewer), claim replies, replaced files

Revision ID: 0011_bank
Revises: 0010_console
Create Date: 2026-12-06

A bank account is kept as versions: a change is a new row that takes effect only once a reviewer
verifies it. Returned claims get the enterprise's reply; a replaced evidence file is kept, marked
replaced; a disbursement batch records the payees it held back for want of a verified account.
"""

import sqlalchemy as sa
from alembic import op

revision = "0011_bank"
down_revision = "0010_console"
branch_labels = None
depends_on = None

STATES = ("pending", "verified", "superseded", "rejected", "withdrawn")


def upgrade():
    op.create_table(
        "bank_accounts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("enterprise_id", sa.Integer(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("account_name", sa.String(length=100), nullable=False),
        sa.Column("bank_name", sa.String(length=100), nullable=False),
        sa.Column("account_number", sa.String(length=32), nullable=False),
        sa.Column(
            "state",
            sa.Enum(*STATES, name="bankaccountstate", native_enum=False, create_constraint=True, length=20),
            nullable=False,
        ),
        sa.Column("entered_by_id", sa.Integer(), nullable=False),
        sa.Column("entered_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("decided_by_id", sa.Integer(), nullable=True),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["decided_by_id"], ["users.id"], name=op.f("fk_bank_accounts_decided_by_id_users")
        ),
        sa.ForeignKeyConstraint(
            ["entered_by_id"], ["users.id"], name=op.f("fk_bank_accounts_entered_by_id_users")
        ),
        sa.ForeignKeyConstraint(
            ["enterprise_id"], ["enterprises.id"], name=op.f("fk_bank_accounts_enterprise_id_enterprises")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_bank_accounts")),
        sa.UniqueConstraint("enterprise_id", "version", name="uq_bank_accounts_enterprise_version"),
    )
    with op.batch_alter_table("bank_accounts") as batch:
        batch.create_index(batch.f("ix_bank_accounts_enterprise_id"), ["enterprise_id"], unique=False)
        batch.create_index(batch.f("ix_bank_accounts_state"), ["state"], unique=False)
    for state in ("pending", "verified"):
        op.create_index(
            f"uq_bank_accounts_one_{state}",
            "bank_accounts",
            ["enterprise_id"],
            unique=True,
            sqlite_where=sa.text(f"state = '{state}'"),
            postgresql_where=sa.text(f"state = '{state}'"),
        )
    with op.batch_alter_table("claims") as batch:
        batch.add_column(sa.Column("reply", sa.Text(), nullable=True))
    with op.batch_alter_table("service_files") as batch:
        batch.add_column(sa.Column("replaced_at", sa.DateTime(timezone=True), nullable=True))
    with op.batch_alter_table("disbursement_batches") as batch:
        batch.add_column(sa.Column("held_back", sa.JSON(), server_default="[]", nullable=False))


def downgrade():
    with op.batch_alter_table("disbursement_batches") as batch:
        batch.drop_column("held_back")
    with op.batch_alter_table("service_files") as batch:
        batch.drop_column("replaced_at")
    with op.batch_alter_table("claims") as batch:
        batch.drop_column("reply")
    for state in ("pending", "verified"):
        op.drop_index(f"uq_bank_accounts_one_{state}", table_name="bank_accounts")
    with op.batch_alter_table("bank_accounts") as batch:
        batch.drop_index(batch.f("ix_bank_accounts_state"))
        batch.drop_index(batch.f("ix_bank_accounts_enterprise_id"))
    op.drop_table("bank_accounts")
