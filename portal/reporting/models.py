"""What reporting writes: the final national report of an institution and year, frozen."""

from __future__ import annotations

from datetime import datetime

from flask_babel import lazy_gettext as _l
from sqlalchemy import ForeignKey, SmallInteger, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from portal.core.audit import ACTION_LABELS, OBJECT_LABELS
from portal.core.clock import current_time
from portal.core.types import UTCDateTime
from portal.extensions import Model

ACTION_LABELS.update({"report.submitted": _l("National report submitted as final")})
OBJECT_LABELS.update({"report": _l("National report")})


class ReportSnapshot(Model):
    """An institution's national report of a year as submitted final: the annual report, the
    instrument records and the service records, as canonical JSON with its SHA-256. Rows are only
    ever added (the database refuses an UPDATE or DELETE); a later version is a new row."""

    __tablename__ = "report_snapshots"

    id: Mapped[int] = mapped_column(primary_key=True)
    institution_id: Mapped[int] = mapped_column(ForeignKey("institutions.id"))
    year: Mapped[int] = mapped_column(SmallInteger)
    version: Mapped[int] = mapped_column(SmallInteger)
    content: Mapped[str] = mapped_column(Text)
    sha256: Mapped[str] = mapped_column(String(64))
    submitted_by_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    submitted_at: Mapped[datetime] = mapped_column(UTCDateTime, default=current_time)

    __table_args__ = (
        UniqueConstraint("institution_id", "year", "version", name="uq_report_snapshots_version"),
    )

    def __repr__(self) -> str:
        return f"<ReportSnapshot {self.institution_id} {self.year} v{self.version}>"
