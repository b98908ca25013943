"""nrii (issue 19): the national platform's instrument fields, a booking's purpose category, internal use

Revision ID: 0023_nrii
Revises: 0022_series
Create Date: 2026-12-07

The instrument gains the national record's fields (acquisition, funding source, subject area,
department, user requirements, specialised, customs supervision); a booking the category of its
purpose (the national service direction); `internal_uses` holds the owning institution's own use of
its instruments, which the run hours count and the service hours do not; `report_snapshots` the final
national reports, `purchase_checks` the reviewers' checks of planned purchases (查重评议) and
`score_sheets` the signed score sheets of the yearly evaluation, all append-only like the audit log. Columns are added without
rebuilding the tables on SQLite (ADD COLUMN with a constant default), so no row is copied.
"""

import sqlalchemy as sa
from alembic import op

from portal.core.types import UTCDateTime

revision = "0023_nrii"
down_revision = "0022_series"
branch_labels = None
depends_on = None

INSTRUMENT_COLUMNS = (
    ("acquisition", sa.String(length=4)),
    ("funding_source", sa.String(length=60)),
    ("subject_area", sa.String(length=60)),
    ("department", sa.String(length=80)),
    ("user_requirements", sa.Text()),
    ("customs_declaration_number", sa.String(length=40)),
    ("customs_import_date", sa.Date()),
    ("customs_item_number", sa.String(length=20)),
)


def upgrade():
    for name, type_ in INSTRUMENT_COLUMNS:
        op.add_column("instruments", sa.Column(name, type_, nullable=True))
    for name in ("specialised", "customs_supervised"):
        op.add_column(
            "instruments", sa.Column(name, sa.Boolean(), server_default=sa.text("false"), nullable=False)
        )
    op.add_column("bookings", sa.Column("purpose_category", sa.String(length=12), nullable=True))
    op.create_table(
        "internal_uses",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("instrument_id", sa.Integer(), nullable=False),
        sa.Column("started_at", UTCDateTime(timezone=True), nullable=False),
        sa.Column("ended_at", UTCDateTime(timezone=True), nullable=False),
        sa.Column("user_name", sa.String(length=40), nullable=False),
        sa.Column("purpose_category", sa.String(length=12), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("recorded_by_id", sa.Integer(), nullable=False),
        sa.Column("recorded_at", UTCDateTime(timezone=True), nullable=False),
        sa.CheckConstraint("started_at < ended_at", name=op.f("ck_internal_uses_starts_before_ends")),
        sa.ForeignKeyConstraint(
            ["instrument_id"], ["instruments.id"], name=op.f("fk_internal_uses_instrument_id_instruments")
        ),
        sa.ForeignKeyConstraint(
            ["recorded_by_id"], ["users.id"], name=op.f("fk_internal_uses_recorded_by_id_users")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_internal_uses")),
    )
    op.create_index(
        "ix_internal_uses_instrument_started", "internal_uses", ["instrument_id", "started_at"], unique=False
    )
    op.create_table(
        "report_snapshots",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("institution_id", sa.Integer(), nullable=False),
        sa.Column("year", sa.SmallInteger(), nullable=False),
        sa.Column("version", sa.SmallInteger(), nullable=False),
        sa.Column("content", sa.Text(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("submitted_by_id", sa.Integer(), nullable=False),
        sa.Column("submitted_at", UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["institution_id"], ["institutions.id"], name=op.f("fk_report_snapshots_institution_id_institutions")
        ),
        sa.ForeignKeyConstraint(
            ["submitted_by_id"], ["users.id"], name=op.f("fk_report_snapshots_submitted_by_id_users")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_report_snapshots")),
        sa.UniqueConstraint("institution_id", "year", "version", name="uq_report_snapshots_version"),
    )
    _append_only("report_snapshots")
    op.create_table(
        "purchase_checks",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("category_code", sa.String(length=4), nullable=False),
        sa.Column("name", sa.String(length=120), nullable=False),
        sa.Column("key_specs", sa.Text(), nullable=False),
        sa.Column("price_fen", sa.BigInteger(), nullable=False),
        sa.Column("year", sa.SmallInteger(), nullable=False),
        sa.Column("threshold_hours", sa.Integer(), nullable=False),
        sa.Column("findings", sa.JSON(), nullable=False),
        sa.Column("flagged", sa.Boolean(), nullable=False),
        sa.Column("conclusion", sa.Text(), nullable=False),
        sa.Column("reviewer_id", sa.Integer(), nullable=False),
        sa.Column("created_at", UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["reviewer_id"], ["users.id"], name=op.f("fk_purchase_checks_reviewer_id_users")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_purchase_checks")),
    )
    _append_only("purchase_checks")
    op.create_table(
        "score_sheets",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("institution_id", sa.Integer(), nullable=False),
        sa.Column("year", sa.SmallInteger(), nullable=False),
        sa.Column("version", sa.SmallInteger(), nullable=False),
        sa.Column("items", sa.JSON(), nullable=False),
        sa.Column("total", sa.String(length=10), nullable=False),
        sa.Column("weights", sa.String(length=40), nullable=False),
        sa.Column("signed_by_id", sa.Integer(), nullable=False),
        sa.Column("signed_at", UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["institution_id"], ["institutions.id"], name=op.f("fk_score_sheets_institution_id_institutions")
        ),
        sa.ForeignKeyConstraint(["signed_by_id"], ["users.id"], name=op.f("fk_score_sheets_signed_by_id_users")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_score_sheets")),
        sa.UniqueConstraint("institution_id", "year", "version", name="uq_score_sheets_version"),
    )
    _append_only("score_sheets")


def _append_only(table: str) -> None:
    """Rows can be added, never changed or removed, whatever code runs against the database."""
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            f"CREATE FUNCTION {table}_append_only() RETURNS trigger LANGUAGE plpgsql AS "
            f"$$ BEGIN RAISE EXCEPTION '{table} is append-only'; END $$"
        )
        op.execute(
            f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
            f"FOR EACH ROW EXECUTE FUNCTION {table}_append_only()"
        )
    else:
        for verb in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER {table}_no_{verb.lower()} BEFORE {verb} ON {table} "
                f"BEGIN SELECT RAISE(ABORT, '{table} is append-only'); END"
            )


def downgrade():
    for table in ("score_sheets", "purchase_checks", "report_snapshots"):
        op.drop_table(table)  # its triggers go with it
        if op.get_bind().dialect.name == "postgresql":
            op.execute(f"DROP FUNCTION {table}_append_only()")
    op.drop_index("ix_internal_uses_instrument_started", table_name="internal_uses")
    op.drop_table("internal_uses")
    with op.batch_alter_table("bookings", schema=None) as batch_op:
        batch_op.drop_column("purpose_category")
    with op.batch_alter_table("instruments", schema=None) as batch_op:
        for name in ("customs_supervised", "specialised"):
            batch_op.drop_column(name)
        for name, _type in reversed(INSTRUMENT_COLUMNS):
            batch_op.drop_column(name)
