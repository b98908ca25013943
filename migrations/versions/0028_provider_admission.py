"""provider admission (issue 21): institutions apply to join the voucher scheme as service providers

Revision ID: 0028_provider_admission
Revises: 0027_redemption
Create Date: 2026-12-07

`provider_admissions` holds each application with its decisions, public notice, admission and
suspension; `admission_instruments` the instruments it offers. `institutions.admission`
mirrors each institution's current admission for the voucher checks: every institution that exists
now was a networked provider before the scheme required admission, so it is "admitted"; new ones
start at "none".
"""

import sqlalchemy as sa
from alembic import op

from portal.core.types import UTCDateTime

revision = "0028_provider_admission"
down_revision = "0027_redemption"
branch_labels = None
depends_on = None

STATES = ("submitted", "returned", "in_notice", "admitted", "suspended", "rejected")


def upgrade():
    with op.batch_alter_table("institutions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("admission", sa.String(16), nullable=False, server_default="admitted"))
    with op.batch_alter_table("institutions", schema=None) as batch_op:
        batch_op.alter_column("admission", existing_type=sa.String(16), server_default="none")
    op.create_table(
        "provider_admissions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("institution_id", sa.Integer(), nullable=False),
        sa.Column(
            "state",
            sa.Enum(*STATES, name="admissionstate", native_enum=False, create_constraint=True, length=20),
            nullable=False,
        ),
        sa.Column("fee_schedule", sa.Text(), nullable=False),
        sa.Column("fee_file_name", sa.String(200), nullable=True),
        sa.Column("fee_file_stored", sa.String(80), nullable=True),
        sa.Column("fee_file_type", sa.String(60), nullable=True),
        sa.Column("credit_statement", sa.Text(), nullable=False),
        sa.Column("submitted_by_id", sa.Integer(), nullable=True),
        sa.Column("submitted_at", UTCDateTime(timezone=True), nullable=True),
        sa.Column("decided_by_id", sa.Integer(), nullable=True),
        sa.Column("decided_at", UTCDateTime(timezone=True), nullable=True),
        sa.Column("comment", sa.Text(), nullable=True),
        sa.Column("notice_ends_on", sa.Date(), nullable=True),
        sa.Column("admitted_at", UTCDateTime(timezone=True), nullable=True),
        sa.Column("suspended_at", UTCDateTime(timezone=True), nullable=True),
        sa.Column("suspension_reason", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["institution_id"],
            ["institutions.id"],
            name=op.f("fk_provider_admissions_institution_id_institutions"),
        ),
        sa.ForeignKeyConstraint(
            ["submitted_by_id"], ["users.id"], name=op.f("fk_provider_admissions_submitted_by_id_users")
        ),
        sa.ForeignKeyConstraint(
            ["decided_by_id"], ["users.id"], name=op.f("fk_provider_admissions_decided_by_id_users")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_provider_admissions")),
    )
    op.create_index("ix_provider_admissions_institution_id", "provider_admissions", ["institution_id"])
    op.create_index("ix_provider_admissions_state", "provider_admissions", ["state"])
    op.create_table(
        "admission_instruments",
        sa.Column("admission_id", sa.Integer(), nullable=False),
        sa.Column("instrument_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["admission_id"],
            ["provider_admissions.id"],
            name=op.f("fk_admission_instruments_admission_id_provider_admissions"),
        ),
        sa.ForeignKeyConstraint(
            ["instrument_id"],
            ["instruments.id"],
            name=op.f("fk_admission_instruments_instrument_id_instruments"),
        ),
        sa.PrimaryKeyConstraint("admission_id", "instrument_id", name=op.f("pk_admission_instruments")),
    )


def downgrade():
    op.drop_table("admission_instruments")
    op.drop_index("ix_provider_admissions_state", table_name="provider_admissions")
    op.drop_index("ix_provider_admissions_institution_id", table_name="provider_admissions")
    op.drop_table("provider_admissions")
    with op.batch_alter_table("institutions", schema=None) as batch_op:
        batch_op.drop_column("admission")
