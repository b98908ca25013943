"""search: pinyin and the host's name in the search index, and the table of search synonyms

Revision ID: 0016_search
Revises: 0015_registration
Create Date: 2026-12-06

Every instrument's search columns are computed again (pinyin of its name and of its host's name,
the host's name itself), and the synonym table is seeded from portal/catalog/synonyms.tsv.
"""

import sqlalchemy as sa
from alembic import op

revision = "0016_search"
down_revision = "0015_registration"
branch_labels = None
depends_on = None

def upgrade():
    op.create_table(
        "search_synonyms",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("term", sa.String(length=40), nullable=False),
        sa.Column("expansion", sa.String(length=80), nullable=False),
        sa.Column("created_by_id", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "term <> '' AND expansion <> '' AND term <> expansion",
            name=op.f("ck_search_synonyms_synonym_not_empty"),
        ),
        sa.ForeignKeyConstraint(
            ["created_by_id"], ["users.id"], name=op.f("fk_search_synonyms_created_by_id_users")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_search_synonyms")),
        sa.UniqueConstraint("term", "expansion", name="uq_search_synonyms_term_expansion"),
    )
    op.create_index(op.f("ix_search_synonyms_term"), "search_synonyms", ["term"], unique=False)
    with op.batch_alter_table("instruments", schema=None) as batch_op:
        batch_op.add_column(sa.Column("search_pinyin", sa.Text(), nullable=False, server_default=""))

    from portal.catalog.synonyms import read_seed
    from portal.core.clock import utcnow
    from portal.core.types import UTCDateTime

    synonyms = sa.table(
        "search_synonyms",
        sa.column("term", sa.String),
        sa.column("expansion", sa.String),
        sa.column("created_at", UTCDateTime()),
    )
    now = utcnow()
    op.bulk_insert(synonyms, [{"term": t, "expansion": e, "created_at": now} for t, e in read_seed()])
    _reindex()


def _reindex():
    """Every instrument's search columns under the new rules, host by host."""
    from portal.catalog.models import reindex_institution

    connection = op.get_bind()
    for institution_id, name in connection.execute(sa.text("SELECT id, name FROM institutions")).all():
        reindex_institution(connection, institution_id, name)


def downgrade():
    with op.batch_alter_table("instruments", schema=None) as batch_op:
        batch_op.drop_column("search_pinyin")
    op.drop_index(op.f("ix_search_synonyms_term"), table_name="search_synonyms")
    op.drop_table("search_synonyms")
