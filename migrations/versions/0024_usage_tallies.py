"""usage tallies: one instrument's use in one Beijing month or year, kept by workers

Revision ID: 0024_usage_tallies
Revises: 0023_nrii
Create Date: 2026-12-07

`usage_tallies` holds per instrument and month (and per instrument and year) the hours served (metered or recorded), the owning
institution's own use, unbooked running, external and SME hours, income, samples, ratings and the
enterprises served, recomputed from the raw records after each change and nightly. The yearly
evaluation reads them instead of every booking of the year. Service records gain an index on their
recording time, by which a sample service is placed in its month. The existing records are tallied
by `flask usage tally` (the demo and the upgrade notes in README run it).
"""

import sqlalchemy as sa
from alembic import op

from portal.core.types import UTCDateTime

revision = "0024_usage_tallies"
down_revision = "0023_nrii"
branch_labels = None
depends_on = None

FIGURES = (
    ("metered_seconds", sa.BigInteger()),
    ("recorded_seconds", sa.BigInteger()),
    ("internal_seconds", sa.BigInteger()),
    ("unbooked_seconds", sa.BigInteger()),
    ("external_seconds", sa.BigInteger()),
    ("sme_seconds", sa.BigInteger()),
    ("effective_seconds", sa.BigInteger()),
    ("income_fen", sa.BigInteger()),
    ("external_income_fen", sa.BigInteger()),
    ("services", sa.Integer()),
    ("samples", sa.Integer()),
    ("rating_total", sa.Integer()),
    ("ratings", sa.Integer()),
    ("enterprises", sa.Integer()),
)


def upgrade():
    op.create_table(
        "usage_tallies",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("period", sa.String(length=7), nullable=False),
        sa.Column("instrument_id", sa.Integer(), nullable=False),
        *(sa.Column(name, type_, nullable=False) for name, type_ in FIGURES),
        sa.Column("updated_at", UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["instrument_id"], ["instruments.id"], name=op.f("fk_usage_tallies_instrument_id_instruments")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_usage_tallies")),
        sa.UniqueConstraint("period", "instrument_id", name="uq_usage_tallies_period_instrument"),
    )
    op.create_index("ix_usage_tallies_instrument_period", "usage_tallies", ["instrument_id", "period"])
    op.create_index("ix_usage_tallies_period_effective", "usage_tallies", ["period", "effective_seconds"])
    op.create_index(op.f("ix_service_records_recorded_at"), "service_records", ["recorded_at"])


def downgrade():
    op.drop_index(op.f("ix_service_records_recorded_at"), table_name="service_records")
    op.drop_index("ix_usage_tallies_period_effective", table_name="usage_tallies")
    op.drop_index("ix_usage_tallies_instrument_period", table_name="usage_tallies")
    op.drop_table("usage_tallies")
