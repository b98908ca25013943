"""Booking credit (信用, issue 18): the rules a scheme sets, and the violations of each enterprise."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from flask_babel import lazy_gettext as _l
from sqlalchemy import CheckConstraint, ForeignKey, Index, Integer, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from portal.accounts.models import Enterprise
from portal.booking.models import Booking
from portal.core.audit import ACTION_LABELS, OBJECT_LABELS
from portal.core.clock import current_time
from portal.core.types import UTCDateTime, str_enum
from portal.extensions import Model


class ViolationKind(StrEnum):
    NO_SHOW = "no_show"
    LATE_CANCELLATION = "late_cancellation"


VIOLATION_LABELS = {
    ViolationKind.NO_SHOW: _l("No-show"),
    ViolationKind.LATE_CANCELLATION: _l("Late cancellation"),
}

ACTION_LABELS.update(
    {
        "credit.violation_recorded": _l("Booking violation recorded"),
        "credit.violation_waived": _l("Booking violation waived"),
        "credit.rules_changed": _l("Booking credit rules changed"),
    }
)
OBJECT_LABELS.update({"violation": _l("Booking violation"), "credit_rules": _l("Booking credit rules")})

# Until the bureau sets a scheme's rules: three violations in 90 days suspend booking for 30 days.
DEFAULT_RULES = {"max_violations": 3, "window_days": 90, "suspension_days": 30}


class CreditRules(Model):
    """A scheme's credit rules: `max_violations` (N) within `window_days` (M) suspend self-service
    booking for `suspension_days` (K). A scheme without a row uses DEFAULT_RULES."""

    __tablename__ = "credit_rules"

    scheme_id: Mapped[int] = mapped_column(ForeignKey("schemes.id", ondelete="CASCADE"), primary_key=True)
    max_violations: Mapped[int] = mapped_column(Integer)
    window_days: Mapped[int] = mapped_column(Integer)
    suspension_days: Mapped[int] = mapped_column(Integer)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=current_time, onupdate=current_time)

    __table_args__ = (
        CheckConstraint(
            "max_violations BETWEEN 1 AND 100 AND window_days BETWEEN 1 AND 3660 "
            "AND suspension_days BETWEEN 0 AND 3660",
            name="ranges",
        ),
    )

    def __repr__(self) -> str:
        rules = f"{self.max_violations}/{self.window_days}d/{self.suspension_days}d"
        return f"<CreditRules scheme={self.scheme_id} {rules}>"


class Violation(Model):
    """A no-show or late cancellation counted against an enterprise, unless waived (with a reason)."""

    __tablename__ = "violations"

    id: Mapped[int] = mapped_column(primary_key=True)
    enterprise_id: Mapped[int] = mapped_column(ForeignKey("enterprises.id"))
    booking_id: Mapped[int] = mapped_column(ForeignKey("bookings.id"))
    kind: Mapped[ViolationKind] = mapped_column(str_enum(ViolationKind))
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime)
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime, default=current_time)
    waived_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    waived_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    waive_reason: Mapped[str | None] = mapped_column(Text)

    enterprise: Mapped[Enterprise] = relationship()
    booking: Mapped[Booking] = relationship()

    __table_args__ = (
        # A booking counts once for each kind, however often the signal is sent.
        UniqueConstraint("booking_id", "kind", name="uq_violations_booking_kind"),
        CheckConstraint("waived_at IS NULL OR waive_reason IS NOT NULL", name="waiver_has_reason"),
        Index("ix_violations_enterprise_occurred_at", "enterprise_id", "occurred_at"),
    )

    def __repr__(self) -> str:
        return f"<Violation {self.id} {self.kind} enterprise={self.enterprise_id}>"
