"""provider ranking weights in the voucher scheme

Revision ID: 0005_ranking
Revises: 0004_finance
Create Date: 2026-11-24

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0005_ranking'
down_revision = '0004_finance'
branch_labels = None
depends_on = None


def upgrade():
    # A nullable column needs no table rebuild on SQLite, so no batch mode.
    op.add_column('schemes', sa.Column('ranking_weights', sa.JSON(), nullable=True))


def downgrade():
    # SQLite 3.35 and later drop a column in place.
    op.drop_column('schemes', 'ranking_weights')
