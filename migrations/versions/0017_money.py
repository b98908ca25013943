"""money: each claim keeps its raw amount per fund (before the limits), the API's raw_fen

Revision ID: 0017_money
Revises: 0016_search
Create Date: 2026-12-06

"""

from decimal import ROUND_FLOOR, Decimal

import sqlalchemy as sa
from alembic import op

revision = "0017_money"
down_revision = "0016_search"
branch_labels = None
depends_on = None

claims = sa.table("claims", sa.column("id", sa.Integer), sa.column("raw_amounts", sa.JSON))


def upgrade():
    with op.batch_alter_table("claims") as batch:
        batch.add_column(sa.Column("raw_amounts", sa.JSON(), server_default="{}", nullable=False))
    fill_raw_amounts(op.get_bind())


def fill_raw_amounts(connection: sa.engine.Connection) -> None:
    """Claims made before this revision: floor(fee x rate) of each fund that applies, as the subsidy
    rules compute it, with today's rates (never below the amount the claim was given)."""
    rows = connection.execute(
        sa.text(
            "SELECT c.id, c.fee_fen, c.province_fen, c.city_fen, f.name, f.rate, f.condition,"
            " i.is_local FROM claims c JOIN vouchers v ON v.id = c.voucher_id"
            " JOIN funds f ON f.scheme_id = v.scheme_id"
            " LEFT JOIN institutions i ON i.id = c.institution_id"
        )
    )
    raws: dict[int, dict[str, int]] = {}
    for claim_id, fee, province, city, name, rate, condition, is_local in rows:
        applies = condition == "always" or (condition == "local_provider" and bool(is_local))
        raw = int((Decimal(fee) * Decimal(str(rate))).to_integral_value(rounding=ROUND_FLOOR)) if applies else 0
        given = {"province": province, "city": city}.get(name, 0)
        raws.setdefault(claim_id, {})[name] = max(raw, given)
    for claim_id, raw in raws.items():
        connection.execute(claims.update().where(claims.c.id == claim_id).values(raw_amounts=raw))


def downgrade():
    with op.batch_alter_table("claims") as batch:
        batch.drop_column("raw_amounts")
