"""Finance: monthly subsidy tallies, disbursement batches, closed periods and export jobs."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from flask_babel import lazy_gettext as _l
from sqlalchemy import JSON, BigInteger, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from portal.core.audit import ACTION_LABELS, OBJECT_LABELS
from portal.core.clock import current_time
from portal.core.types import UTCDateTime, str_enum
from portal.extensions import Model


class SubsidyTally(Model):
    """Approved and paid subsidy of one month, per fund, enterprise, provider, county and redemption
    mode (the mode says who is paid: the enterprise, or the provider at payment).

    Recomputed from the claims by one SQL statement (delete and insert in a locked transaction), so
    running it twice or at the same time gives the same rows. A closed month is never recomputed.
    """

    __tablename__ = "subsidy_tallies"

    id: Mapped[int] = mapped_column(primary_key=True)
    month: Mapped[str] = mapped_column(String(7))  # YYYY-MM, Beijing time
    fund: Mapped[str] = mapped_column(String(20))
    enterprise_id: Mapped[int] = mapped_column(ForeignKey("enterprises.id"))
    institution_id: Mapped[int] = mapped_column(ForeignKey("institutions.id"))
    county: Mapped[str] = mapped_column(String(20))
    # The claims' RedemptionMode ("reimbursement" | "at_payment").
    mode: Mapped[str] = mapped_column(String(20), default="reimbursement", server_default="reimbursement")
    approved_fen: Mapped[int] = mapped_column(BigInteger, default=0)
    paid_fen: Mapped[int] = mapped_column(BigInteger, default=0)
    claims: Mapped[int] = mapped_column(Integer, default=0)

    __table_args__ = (
        UniqueConstraint(
            "month",
            "fund",
            "enterprise_id",
            "institution_id",
            "county",
            "mode",
            name="uq_subsidy_tallies_key",
        ),
        Index("ix_subsidy_tallies_month", "month"),
    )

    def __repr__(self) -> str:
        return f"<SubsidyTally {self.month} {self.fund} e{self.enterprise_id} i{self.institution_id}>"


# The redemption modes as finance's columns and groups name them (short; the vouchers' labels explain).
MODE_LABELS = {"reimbursement": _l("Reimbursement"), "at_payment": _l("At payment")}


class BatchState(StrEnum):
    DRAFT = "draft"
    EXPORTED = "exported"
    PAID = "paid"


BATCH_STATE_LABELS = {
    BatchState.DRAFT: _l("Draft"),
    BatchState.EXPORTED: _l("Exported for the bank"),
    BatchState.PAID: _l("Paid"),
}


# The batch's state machine, in one place: (state, action) -> new state. Building makes a DRAFT.
BATCH_TRANSITIONS: dict[tuple[BatchState, str], BatchState] = {
    (BatchState.DRAFT, "export"): BatchState.EXPORTED,
    (BatchState.EXPORTED, "export"): BatchState.EXPORTED,  # the bank file may be fetched again
    (BatchState.EXPORTED, "pay"): BatchState.PAID,
}


class DisbursementBatch(Model):
    """The payable claims of a month, exported for the bank and marked paid with its reference."""

    __tablename__ = "disbursement_batches"

    id: Mapped[int] = mapped_column(primary_key=True)
    month: Mapped[str] = mapped_column(String(7), index=True)
    state: Mapped[BatchState] = mapped_column(str_enum(BatchState), default=BatchState.DRAFT)
    # What the batch pays from each fund, by fund name, in the funds' order.
    fund_amounts: Mapped[dict[str, int]] = mapped_column(JSON, default=dict)
    claims: Mapped[int] = mapped_column(Integer, default=0)
    created_by_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=current_time)
    exported_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    paid_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    paid_reference: Mapped[str | None] = mapped_column(String(80))
    # Payees whose payable claims stayed out of the batch for want of a verified bank account:
    # [{"payee_kind": "enterprise" | "provider", "enterprise_id" | "institution_id", "name",
    #   "claims": [claim ids], "total_fen"}] (batches built before issue 21 name enterprises only and
    # have no "payee_kind").
    held_back: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)

    @property
    def total_fen(self) -> int:
        return sum((self.fund_amounts or {}).values())

    def __repr__(self) -> str:
        return f"<DisbursementBatch {self.id} {self.month} {self.state}>"


class PeriodClose(Model):
    """A month finance has closed: its numbers can no longer change."""

    __tablename__ = "period_closes"

    id: Mapped[int] = mapped_column(primary_key=True)
    month: Mapped[str] = mapped_column(String(7), unique=True)
    closed_by_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    closed_at: Mapped[datetime] = mapped_column(UTCDateTime, default=current_time)

    def __repr__(self) -> str:
        return f"<PeriodClose {self.month}>"


class ExportState(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


class ExportJob(Model):
    """A large export written by a worker; the page shows its progress and then the download."""

    __tablename__ = "export_jobs"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    params: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    fmt: Mapped[str] = mapped_column(String(4))
    state: Mapped[ExportState] = mapped_column(str_enum(ExportState), default=ExportState.QUEUED)
    total_rows: Mapped[int] = mapped_column(Integer, default=0)
    done_rows: Mapped[int] = mapped_column(Integer, default=0)
    stored_name: Mapped[str | None] = mapped_column(String(80))
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=current_time)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    def __repr__(self) -> str:
        return f"<ExportJob {self.id} {self.state} {self.done_rows}/{self.total_rows}>"


ACTION_LABELS.update(
    {
        "batch.built": _l("Disbursement batch built"),
        "batch.exported": _l("Batch exported for the bank"),
        "batch.paid": _l("Batch marked paid"),
        "claim.paid": _l("Subsidy paid"),
        "period.closed": _l("Month closed"),
    }
)
OBJECT_LABELS.update({"batch": _l("Disbursement batch"), "period": _l("Month")})
