"""redemption at payment, out-of-province services (issue 21, DESIGN section 13)

Revision ID: 0027_redemption
Revises: 0026_review_finance_indexes
Create Date: 2026-12-07

- schemes: the redemption modes they offer (every existing scheme: reimbursement only), the rate of
  their `always` funds for a provider outside Shandong (none: not subsidised) and the days a
  reservation may wait for its submission;
- funds.reserved_fen: what at-payment redemptions hold before approval (within the budget with what
  is committed);
- claims: mode, the enterprise's paid share, the reservation's expiry, out_of_province and the
  justification; the states reserved, withdrawn and expired;
- ledger entries: reserved and unreserved;
- institutions.in_province (every existing one: yes); bookings.voucher_mode.
"""

import sqlalchemy as sa
from alembic import op

revision = "0027_redemption"
down_revision = "0026_review_finance_indexes"
branch_labels = None
depends_on = None

CLAIM_STATES = (
    "draft",
    "submitted",
    "pending_second",
    "returned",
    "rejected",
    "in_notice",
    "payable",
    "paid",
)
NEW_CLAIM_STATES = ("reserved", "withdrawn", "expired")
LEDGER_KINDS = ("issued", "committed", "released", "paid")
NEW_LEDGER_KINDS = ("reserved", "unreserved")


def _in(column, values):
    return f"{column} IN (" + ", ".join(f"'{v}'" for v in values) + ")"


def _claims_checks(batch, states, amounts):
    batch.drop_constraint(op.f("ck_claims_claimstate"), type_="check")
    batch.create_check_constraint(op.f("ck_claims_claimstate"), _in("state", states))
    batch.drop_constraint(op.f("ck_claims_amounts_not_negative"), type_="check")
    batch.create_check_constraint(op.f("ck_claims_amounts_not_negative"), amounts)


def upgrade():
    with op.batch_alter_table("schemes") as batch:
        batch.add_column(sa.Column("redemption_modes", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("out_of_province_rate", sa.Numeric(5, 4), nullable=True))
        batch.add_column(sa.Column("redemption_days", sa.SmallInteger(), server_default="30", nullable=False))
        batch.create_check_constraint(
            op.f("ck_schemes_out_of_province_rate_range"),
            "out_of_province_rate IS NULL OR (out_of_province_rate >= 0 AND out_of_province_rate <= 1)",
        )
        batch.create_check_constraint(op.f("ck_schemes_redemption_days_positive"), "redemption_days > 0")
    op.execute("""UPDATE schemes SET redemption_modes = '["reimbursement"]'""")
    with op.batch_alter_table("schemes") as batch:
        batch.alter_column("redemption_modes", existing_type=sa.JSON(), nullable=False)
    with op.batch_alter_table("funds") as batch:
        batch.add_column(sa.Column("reserved_fen", sa.BigInteger(), server_default="0", nullable=False))
        batch.drop_constraint(op.f("ck_funds_within_budget"), type_="check")
        batch.create_check_constraint(
            op.f("ck_funds_within_budget"),
            "committed_fen >= 0 AND reserved_fen >= 0 AND committed_fen + reserved_fen <= budget_fen",
        )
    with op.batch_alter_table("claims") as batch:
        batch.add_column(
            sa.Column(
                "mode",
                sa.Enum(
                    "reimbursement",
                    "at_payment",
                    name="redemptionmode",
                    native_enum=False,
                    create_constraint=True,
                    length=20,
                ),
                server_default="reimbursement",
                nullable=False,
            )
        )
        batch.add_column(sa.Column("enterprise_paid_fen", sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column("reservation_expires_on", sa.Date(), nullable=True))
        batch.add_column(
            sa.Column("out_of_province", sa.Boolean(), server_default=sa.false(), nullable=False)
        )
        batch.add_column(sa.Column("justification", sa.Text(), nullable=True))
        _claims_checks(
            batch,
            CLAIM_STATES + NEW_CLAIM_STATES,
            "fee_fen >= 0 AND (enterprise_paid_fen IS NULL OR enterprise_paid_fen >= 0)",
        )
    with op.batch_alter_table("ledger_entries") as batch:
        batch.drop_constraint(op.f("ck_ledger_entries_ledgerkind"), type_="check")
        batch.create_check_constraint(
            op.f("ck_ledger_entries_ledgerkind"), _in("kind", LEDGER_KINDS + NEW_LEDGER_KINDS)
        )
    op.add_column(
        "institutions", sa.Column("in_province", sa.Boolean(), server_default=sa.true(), nullable=False)
    )
    op.add_column("bookings", sa.Column("voucher_mode", sa.String(16), nullable=True))


def downgrade():
    op.execute("DELETE FROM ledger_entries WHERE kind IN ('reserved', 'unreserved')")
    op.execute(
        "DELETE FROM claims WHERE mode = 'at_payment' OR state IN ('reserved', 'withdrawn', 'expired')"
    )
    op.drop_column("bookings", "voucher_mode")
    op.drop_column("institutions", "in_province")
    with op.batch_alter_table("ledger_entries") as batch:
        batch.drop_constraint(op.f("ck_ledger_entries_ledgerkind"), type_="check")
        batch.create_check_constraint(op.f("ck_ledger_entries_ledgerkind"), _in("kind", LEDGER_KINDS))
    with op.batch_alter_table("claims") as batch:
        _claims_checks(batch, CLAIM_STATES, "fee_fen >= 0")
        for column in ("justification", "out_of_province", "reservation_expires_on", "enterprise_paid_fen"):
            batch.drop_column(column)
        batch.drop_constraint(op.f("ck_claims_redemptionmode"), type_="check")
        batch.drop_column("mode")
    with op.batch_alter_table("funds") as batch:
        batch.drop_constraint(op.f("ck_funds_within_budget"), type_="check")
        batch.create_check_constraint(
            op.f("ck_funds_within_budget"), "committed_fen >= 0 AND committed_fen <= budget_fen"
        )
        batch.drop_column("reserved_fen")
    with op.batch_alter_table("schemes") as batch:
        batch.drop_constraint(op.f("ck_schemes_redemption_days_positive"), type_="check")
        batch.drop_constraint(op.f("ck_schemes_out_of_province_rate_range"), type_="check")
        for column in ("redemption_days", "out_of_province_rate", "redemption_modes"):
            batch.drop_column(column)
