"""provider accounts: providers' bank accounts, the tallies by redemption mode (issue 21, item 5)

Revision ID: 0029_provider_accounts
Revises: 0028_provider_admission
Create Date: 2026-12-07

- bank_accounts: a version belongs to an enterprise or (new) an institution, exactly one of them; one
  version waiting and one in effect per institution as per enterprise. (SQLite's batch mode rebuilds
  the table and would drop the partial indexes, so they are dropped first and made again after.)
- subsidy_tallies.mode: the redemption mode of the tallied claims, part of the tally's key; every
  existing row: reimbursement.
"""

import sqlalchemy as sa
from alembic import op

revision = "0029_provider_accounts"
down_revision = "0028_provider_admission"
branch_labels = None
depends_on = None

STATES = ("pending", "verified")
ONE_PAYEE = (
    "(enterprise_id IS NULL AND institution_id IS NOT NULL) "
    "OR (enterprise_id IS NOT NULL AND institution_id IS NULL)"
)
TALLY_KEY = ("month", "fund", "enterprise_id", "institution_id", "county")


def _one_per_payee(columns, create: bool) -> None:
    """The partial unique indexes: one waiting and one verified version per payee."""
    for prefix, column in columns:
        for state in STATES:
            name = f"uq_bank_accounts_{prefix}one_{state}"
            if not create:
                op.drop_index(name, table_name="bank_accounts")
                continue
            op.create_index(
                name,
                "bank_accounts",
                [column],
                unique=True,
                sqlite_where=sa.text(f"state = '{state}'"),
                postgresql_where=sa.text(f"state = '{state}'"),
            )


def upgrade():
    _one_per_payee([("", "enterprise_id")], create=False)
    with op.batch_alter_table("bank_accounts") as batch:
        batch.add_column(sa.Column("institution_id", sa.Integer(), nullable=True))
        batch.alter_column("enterprise_id", existing_type=sa.Integer(), nullable=True)
        batch.create_foreign_key(
            batch.f("fk_bank_accounts_institution_id_institutions"),
            "institutions",
            ["institution_id"],
            ["id"],
        )
        batch.create_index(batch.f("ix_bank_accounts_institution_id"), ["institution_id"], unique=False)
        batch.create_unique_constraint("uq_bank_accounts_institution_version", ["institution_id", "version"])
        batch.create_check_constraint(batch.f("ck_bank_accounts_one_payee"), ONE_PAYEE)
    _one_per_payee([("", "enterprise_id"), ("institution_", "institution_id")], create=True)

    with op.batch_alter_table("subsidy_tallies") as batch:
        batch.add_column(sa.Column("mode", sa.String(20), server_default="reimbursement", nullable=False))
        batch.drop_constraint("uq_subsidy_tallies_key", type_="unique")
        batch.create_unique_constraint("uq_subsidy_tallies_key", [*TALLY_KEY, "mode"])
    op.execute("UPDATE subsidy_tallies SET mode = 'reimbursement'")


def downgrade():
    # The tallies of at-payment claims have no place without the mode: a tally recomputes them.
    op.execute("DELETE FROM subsidy_tallies WHERE mode <> 'reimbursement'")
    with op.batch_alter_table("subsidy_tallies") as batch:
        batch.drop_constraint("uq_subsidy_tallies_key", type_="unique")
        batch.create_unique_constraint("uq_subsidy_tallies_key", list(TALLY_KEY))
        batch.drop_column("mode")

    # Providers' accounts cannot be kept in a table of enterprises' accounts.
    op.execute("DELETE FROM bank_accounts WHERE institution_id IS NOT NULL")
    _one_per_payee([("", "enterprise_id"), ("institution_", "institution_id")], create=False)
    with op.batch_alter_table("bank_accounts") as batch:
        batch.drop_constraint(batch.f("ck_bank_accounts_one_payee"), type_="check")
        batch.drop_constraint("uq_bank_accounts_institution_version", type_="unique")
        batch.drop_index(batch.f("ix_bank_accounts_institution_id"))
        batch.drop_constraint(batch.f("fk_bank_accounts_institution_id_institutions"), type_="foreignkey")
        batch.drop_column("institution_id")
        batch.alter_column("enterprise_id", existing_type=sa.Integer(), nullable=False)
    _one_per_payee([("", "enterprise_id")], create=True)
