"""claim funds: a claim's subsidy per fund as rows (raw and granted amount), batches' totals per fund,
fund labels as data

Revision ID: 0018_claim_funds
Revises: 0017_money
Create Date: 2026-12-06

Until this revision a claim had one column per fund (`province_fen`, `city_fen`) and its raw amounts
in a JSON column, and a batch one total per fund: a scheme could have no other funds. Upgrading moves
the amounts into `claim_funds` (one row per fund of the claim's scheme, in its order) and the batch
totals into `disbursement_batches.fund_amounts`; downgrading moves them back (funds of other names
have nowhere to go then and are dropped, as the old schema could not hold them).
"""

import sqlalchemy as sa
from alembic import op

revision = "0018_claim_funds"
down_revision = "0017_money"
branch_labels = None
depends_on = None

# The names the columns of the old schema stood for, and the labels the bureau's funds had.
OLD_FUNDS = {"province": "Provincial voucher", "city": "Liaocheng top-up"}

claims = sa.table(
    "claims",
    sa.column("id", sa.Integer),
    sa.column("province_fen", sa.BigInteger),
    sa.column("city_fen", sa.BigInteger),
    sa.column("raw_amounts", sa.JSON),
)
claim_funds = sa.table(
    "claim_funds",
    sa.column("claim_id", sa.Integer),
    sa.column("fund", sa.String),
    sa.column("position", sa.SmallInteger),
    sa.column("raw_fen", sa.BigInteger),
    sa.column("amount_fen", sa.BigInteger),
)
batches = sa.table(
    "disbursement_batches",
    sa.column("id", sa.Integer),
    sa.column("province_fen", sa.BigInteger),
    sa.column("city_fen", sa.BigInteger),
    sa.column("fund_amounts", sa.JSON),
)
funds = sa.table("funds", sa.column("name", sa.String), sa.column("label", sa.String))


def upgrade():
    op.create_table(
        "claim_funds",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("claim_id", sa.Integer(), nullable=False),
        sa.Column("fund", sa.String(length=20), nullable=False),
        sa.Column("position", sa.SmallInteger(), nullable=False),
        sa.Column("raw_fen", sa.BigInteger(), nullable=False),
        sa.Column("amount_fen", sa.BigInteger(), nullable=False),
        sa.CheckConstraint(
            "raw_fen >= 0 AND amount_fen >= 0", name=op.f("ck_claim_funds_amounts_not_negative")
        ),
        sa.ForeignKeyConstraint(
            ["claim_id"], ["claims.id"], name=op.f("fk_claim_funds_claim_id_claims"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_claim_funds")),
        sa.UniqueConstraint("claim_id", "fund", name="uq_claim_funds_pair"),
    )
    op.create_index("ix_claim_funds_fund", "claim_funds", ["fund"], unique=False)
    connection = op.get_bind()
    move_claim_amounts_to_rows(connection)
    with op.batch_alter_table("claims") as batch:
        batch.drop_constraint(op.f("ck_claims_amounts_not_negative"), type_="check")
        batch.drop_column("province_fen")
        batch.drop_column("city_fen")
        batch.drop_column("raw_amounts")
        batch.create_check_constraint("amounts_not_negative", "fee_fen >= 0")

    with op.batch_alter_table("funds") as batch:
        batch.add_column(sa.Column("label", sa.String(length=60), server_default="", nullable=False))
    for name, label in OLD_FUNDS.items():
        connection.execute(funds.update().where(funds.c.name == name).values(label=label))

    with op.batch_alter_table("disbursement_batches") as batch:
        batch.add_column(sa.Column("fund_amounts", sa.JSON(), nullable=True))
    for batch_id, province, city in connection.execute(
        sa.select(batches.c.id, batches.c.province_fen, batches.c.city_fen)
    ).all():
        amounts = {"province": province, "city": city}
        connection.execute(batches.update().where(batches.c.id == batch_id).values(fund_amounts=amounts))
    with op.batch_alter_table("disbursement_batches") as batch:
        batch.alter_column("fund_amounts", existing_type=sa.JSON(), nullable=False)
        batch.drop_column("province_fen")
        batch.drop_column("city_fen")


def move_claim_amounts_to_rows(connection: sa.engine.Connection) -> None:
    """One row per fund of each claim's scheme, in the scheme's order: the amount from the fund's old
    column, the raw amount from the claim's raw amounts (never below the amount)."""
    rows = connection.execute(
        sa.text(
            "SELECT c.id, c.province_fen, c.city_fen, c.raw_amounts, f.name, f.position"
            " FROM claims c JOIN vouchers v ON v.id = c.voucher_id"
            " JOIN funds f ON f.scheme_id = v.scheme_id ORDER BY c.id, f.position"
        ).columns(raw_amounts=sa.JSON)
    ).all()
    values = []
    for claim_id, province, city, raw_amounts, name, position in rows:
        amount = {"province": province, "city": city}.get(name, 0)
        raw = max(int((raw_amounts or {}).get(name, 0)), amount)
        values.append(
            {"claim_id": claim_id, "fund": name, "position": position, "raw_fen": raw, "amount_fen": amount}
        )
    if values:
        connection.execute(claim_funds.insert(), values)


def downgrade():
    connection = op.get_bind()
    with op.batch_alter_table("disbursement_batches") as batch:
        batch.add_column(sa.Column("province_fen", sa.BigInteger(), server_default="0", nullable=False))
        batch.add_column(sa.Column("city_fen", sa.BigInteger(), server_default="0", nullable=False))
    for batch_id, amounts in connection.execute(sa.select(batches.c.id, batches.c.fund_amounts)).all():
        connection.execute(
            batches.update()
            .where(batches.c.id == batch_id)
            .values(**{f"{name}_fen": int((amounts or {}).get(name, 0)) for name in OLD_FUNDS})
        )
    with op.batch_alter_table("disbursement_batches") as batch:
        batch.drop_column("fund_amounts")

    with op.batch_alter_table("funds") as batch:
        batch.drop_column("label")

    with op.batch_alter_table("claims") as batch:
        batch.drop_constraint(op.f("ck_claims_amounts_not_negative"), type_="check")
        batch.add_column(sa.Column("province_fen", sa.BigInteger(), server_default="0", nullable=False))
        batch.add_column(sa.Column("city_fen", sa.BigInteger(), server_default="0", nullable=False))
        batch.add_column(sa.Column("raw_amounts", sa.JSON(), server_default="{}", nullable=False))
    move_claim_rows_to_amounts(connection)
    with op.batch_alter_table("claims") as batch:
        batch.create_check_constraint(
            "amounts_not_negative", "province_fen >= 0 AND city_fen >= 0 AND fee_fen >= 0"
        )
    op.drop_index("ix_claim_funds_fund", table_name="claim_funds")
    op.drop_table("claim_funds")


def move_claim_rows_to_amounts(connection: sa.engine.Connection) -> None:
    per_claim: dict[int, dict[str, tuple[int, int]]] = {}
    for claim_id, name, raw, amount in connection.execute(
        sa.select(claim_funds.c.claim_id, claim_funds.c.fund, claim_funds.c.raw_fen, claim_funds.c.amount_fen)
    ).all():
        per_claim.setdefault(claim_id, {})[name] = (raw, amount)
    for claim_id, rows in per_claim.items():
        connection.execute(
            claims.update()
            .where(claims.c.id == claim_id)
            .values(
                raw_amounts={name: raw for name, (raw, _amount) in rows.items()},
                **{f"{name}_fen": rows.get(name, (0, 0))[1] for name in OLD_FUNDS},
            )
        )
