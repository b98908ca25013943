"""instruments: photos of instruments, kept by their providers

Revision ID: 0012_instruments
Revises: 0011_bank
Create Date: 2026-12-06

Each photo is the portal's own re-encoding of an upload plus a thumbnail, both stored under
UPLOAD_FOLDER; at most one photo of an instrument is its main one.
"""

import sqlalchemy as sa
from alembic import op

revision = "0012_instruments"
down_revision = "0011_bank"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "instrument_photos",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("instrument_id", sa.Integer(), nullable=False),
        sa.Column("stored_name", sa.String(length=80), nullable=False),
        sa.Column("thumbnail_name", sa.String(length=80), nullable=False),
        sa.Column("content_type", sa.String(length=20), nullable=False),
        sa.Column("width", sa.Integer(), nullable=False),
        sa.Column("height", sa.Integer(), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("caption", sa.String(length=200), nullable=True),
        sa.Column("is_main", sa.Boolean(), nullable=False),
        sa.Column("uploaded_by_id", sa.Integer(), nullable=True),
        sa.Column("uploaded_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["instrument_id"],
            ["instruments.id"],
            name=op.f("fk_instrument_photos_instrument_id_instruments"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["uploaded_by_id"], ["users.id"], name=op.f("fk_instrument_photos_uploaded_by_id_users")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_instrument_photos")),
        sa.UniqueConstraint("stored_name", name=op.f("uq_instrument_photos_stored_name")),
        sa.UniqueConstraint("thumbnail_name", name=op.f("uq_instrument_photos_thumbnail_name")),
    )
    op.create_index(op.f("ix_instrument_photos_instrument_id"), "instrument_photos", ["instrument_id"])
    op.create_index(
        "uq_instrument_photos_main",
        "instrument_photos",
        ["instrument_id"],
        unique=True,
        sqlite_where=sa.text("is_main"),
        postgresql_where=sa.text("is_main"),
    )


def downgrade():
    op.drop_index("uq_instrument_photos_main", table_name="instrument_photos")
    op.drop_index(op.f("ix_instrument_photos_instrument_id"), table_name="instrument_photos")
    op.drop_table("instrument_photos")
