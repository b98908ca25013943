"""console: catalogue files uploaded in the admin console or the API, with their history

Revision ID: 0010_console
Revises: 0009_friction
Create Date: 2026-12-06

"""

import sqlalchemy as sa
from alembic import op

revision = "0010_console"
down_revision = "0009_friction"
branch_labels = None
depends_on = None

IMPORT_STATES = ("checking", "checked", "invalid", "applying", "applied", "failed")


def upgrade():
    op.create_table(
        "catalog_imports",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("original_name", sa.String(length=200), nullable=False),
        sa.Column("stored_name", sa.String(length=80), nullable=False),
        sa.Column("fmt", sa.String(length=4), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("rows", sa.Integer(), nullable=True),
        sa.Column(
            "state",
            sa.Enum(*IMPORT_STATES, name="importstate", native_enum=False, create_constraint=True, length=20),
            nullable=False,
        ),
        sa.Column("created", sa.Integer(), nullable=False),
        sa.Column("updated", sa.Integer(), nullable=False),
        sa.Column("unchanged", sa.Integer(), nullable=False),
        sa.Column("errors", sa.JSON(), nullable=False),
        sa.Column("error_count", sa.Integer(), nullable=False),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("uploaded_by_id", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("checked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("applied_by_id", sa.Integer(), nullable=True),
        sa.Column("applied_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("fmt IN ('csv', 'xlsx')", name=op.f("ck_catalog_imports_fmt")),
        sa.CheckConstraint(
            "created >= 0 AND updated >= 0 AND unchanged >= 0 AND error_count >= 0",
            name=op.f("ck_catalog_imports_counts"),
        ),
        sa.ForeignKeyConstraint(
            ["applied_by_id"], ["users.id"], name=op.f("fk_catalog_imports_applied_by_id_users")
        ),
        sa.ForeignKeyConstraint(
            ["uploaded_by_id"], ["users.id"], name=op.f("fk_catalog_imports_uploaded_by_id_users")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_catalog_imports")),
        sa.UniqueConstraint("stored_name", name=op.f("uq_catalog_imports_stored_name")),
    )
    with op.batch_alter_table("catalog_imports", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_catalog_imports_state"), ["state"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_catalog_imports_uploaded_by_id"), ["uploaded_by_id"], unique=False
        )


def downgrade():
    with op.batch_alter_table("catalog_imports", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_catalog_imports_uploaded_by_id"))
        batch_op.drop_index(batch_op.f("ix_catalog_imports_state"))
    op.drop_table("catalog_imports")
