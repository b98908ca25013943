"""What reporting writes: the final national report of an institution and year, frozen."""

from __future__ import annotations

from datetime import datetime

from flask_babel import lazy_gettext as _l
from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    ForeignKey,
    Integer,
    SmallInteger,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from portal.core.audit import ACTION_LABELS, OBJECT_LABELS
from portal.core.clock import current_time
from portal.core.types import UTCDateTime
from portal.extensions import Model

ACTION_LABELS.update(
    {
        "report.submitted": _l("National report submitted as final"),
        "purchase_check.recorded": _l("Purchase check recorded"),
        "score_sheet.signed": _l("Score sheet signed"),
    }
)
OBJECT_LABELS.update(
    {
        "report": _l("National report"),
        "purchase_check": _l("Purchase check"),
        "score_sheet": _l("Score sheet"),
    }
)


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


class PurchaseCheck(Model):
    """A planned purchase checked against the city's instruments of its category (查重评议): what was
    planned, the instruments found with their effective hours of the year, whether one runs under the
    threshold, and the reviewer's conclusion. Kept as it was decided (append-only, audited)."""

    __tablename__ = "purchase_checks"

    id: Mapped[int] = mapped_column(primary_key=True)
    category_code: Mapped[str] = mapped_column(String(4))
    name: Mapped[str] = mapped_column(String(120))
    key_specs: Mapped[str] = mapped_column(Text, default="")
    price_fen: Mapped[int] = mapped_column(BigInteger)
    year: Mapped[int] = mapped_column(SmallInteger)  # the year whose hours were compared
    threshold_hours: Mapped[int] = mapped_column(Integer)
    findings: Mapped[list] = mapped_column(JSON)
    flagged: Mapped[bool] = mapped_column(Boolean)
    conclusion: Mapped[str] = mapped_column(Text)
    reviewer_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=current_time)

    def __repr__(self) -> str:
        return f"<PurchaseCheck {self.id} {self.category_code} {self.name}>"


class ScoreSheet(Model):
    """An institution's score sheet of a year as a reviewer signed it: the computed items, the items
    the reviewer entered, the total. Append-only; signing again adds a version."""

    __tablename__ = "score_sheets"

    id: Mapped[int] = mapped_column(primary_key=True)
    institution_id: Mapped[int] = mapped_column(ForeignKey("institutions.id"))
    year: Mapped[int] = mapped_column(SmallInteger)
    version: Mapped[int] = mapped_column(SmallInteger)
    items: Mapped[dict] = mapped_column(JSON)  # item key -> {"score": "12.50", "computed": bool}
    total: Mapped[str] = mapped_column(String(10))  # two decimals, as shown
    weights: Mapped[str] = mapped_column(String(40))  # REPORTING_SCORE_WEIGHTS when signed
    signed_by_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    signed_at: Mapped[datetime] = mapped_column(UTCDateTime, default=current_time)

    __table_args__ = (UniqueConstraint("institution_id", "year", "version", name="uq_score_sheets_version"),)

    def __repr__(self) -> str:
        return f"<ScoreSheet {self.institution_id} {self.year} v{self.version} {self.total}>"
