"""Provider admission: an institution's application to join the voucher scheme as a service provider."""

from __future__ import annotations

from datetime import date, datetime
from enum import StrEnum

from flask_babel import lazy_gettext as _l
from sqlalchemy import Column, Date, ForeignKey, Integer, String, Table, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from portal.accounts.models import Institution, User
from portal.catalog.models import Instrument
from portal.core.audit import ACTION_LABELS, OBJECT_LABELS
from portal.core.types import UTCDateTime, str_enum
from portal.extensions import Model


class AdmissionState(StrEnum):
    SUBMITTED = "submitted"
    RETURNED = "returned"
    IN_NOTICE = "in_notice"
    ADMITTED = "admitted"
    SUSPENDED = "suspended"
    REJECTED = "rejected"


# `Institution.admission` also says "none": the institution never applied.
NO_ADMISSION = "none"
ADMISSION_LABELS = {
    NO_ADMISSION: _l("Not admitted"),
    AdmissionState.SUBMITTED: _l("Submitted"),
    AdmissionState.RETURNED: _l("Returned for correction"),
    AdmissionState.IN_NOTICE: _l("In public notice"),
    AdmissionState.ADMITTED: _l("Admitted"),
    AdmissionState.SUSPENDED: _l("Suspended"),
    AdmissionState.REJECTED: _l("Rejected"),
}

admission_instruments = Table(
    "admission_instruments",
    Model.metadata,
    Column("admission_id", Integer, ForeignKey("provider_admissions.id"), primary_key=True),
    Column("instrument_id", Integer, ForeignKey("instruments.id"), primary_key=True),
)


class ProviderAdmission(Model):
    """An institution's application to provide services under the voucher scheme, and its decisions.

    A row made for an institution admitted before the scheme required admission (to suspend it) has
    no submitter: `submitted_by_id` is None.
    """

    __tablename__ = "provider_admissions"

    id: Mapped[int] = mapped_column(primary_key=True)
    institution_id: Mapped[int] = mapped_column(ForeignKey("institutions.id"), index=True)
    state: Mapped[AdmissionState] = mapped_column(str_enum(AdmissionState), index=True)
    fee_schedule: Mapped[str] = mapped_column(Text)
    # The fee schedule as a file (optional): PDF or image, stored through portal.core.uploads.
    fee_file_name: Mapped[str | None] = mapped_column(String(200))
    fee_file_stored: Mapped[str | None] = mapped_column(String(80))
    fee_file_type: Mapped[str | None] = mapped_column(String(60))
    credit_statement: Mapped[str] = mapped_column(Text)  # 信用承诺
    submitted_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    submitted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    decided_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    comment: Mapped[str | None] = mapped_column(Text)  # the reviewer's reason or remark
    notice_ends_on: Mapped[date | None] = mapped_column(Date)
    admitted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    suspended_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    suspension_reason: Mapped[str | None] = mapped_column(Text)

    institution: Mapped[Institution] = relationship()
    instruments: Mapped[list[Instrument]] = relationship(
        secondary=admission_instruments, order_by=Instrument.code
    )
    submitted_by: Mapped[User | None] = relationship(foreign_keys=[submitted_by_id])
    decided_by: Mapped[User | None] = relationship(foreign_keys=[decided_by_id])

    @property
    def grandfathered(self) -> bool:
        """Made for an institution admitted before the scheme required admission (no application)."""
        return self.submitted_by_id is None

    def __repr__(self) -> str:
        return f"<ProviderAdmission {self.id} {self.state}>"


ACTION_LABELS.update(
    {
        "provider_admission.submitted": _l("Admission applied for"),
        "provider_admission.returned": _l("Admission returned for correction"),
        "provider_admission.rejected": _l("Admission rejected"),
        "provider_admission.in_notice": _l("Admission approved, public notice begins"),
        "provider_admission.admitted": _l("Public notice ended: provider admitted"),
        "provider_admission.suspended": _l("Provider admission suspended"),
        "provider_admission.reinstated": _l("Provider admission reinstated"),
    }
)
OBJECT_LABELS.update({"provider_admission": _l("Provider admission")})
