"""Who may run which instrument themselves: qualifications, the instrument's use rules, training."""

from __future__ import annotations

from datetime import date, datetime

from flask_babel import lazy_gettext as _l
from sqlalchemy import (
    JSON,
    Boolean,
    CheckConstraint,
    Date,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from portal.accounts.models import User
from portal.catalog.models import Instrument
from portal.catalog.price_models import SHOWN_WITH_INSTRUMENT
from portal.core.audit import ACTION_LABELS, OBJECT_LABELS
from portal.core.clock import current_time
from portal.core.types import UTCDateTime
from portal.extensions import Model

# The operation modes of slot bookings (samples are a booking mode of their own).
OPERATIONS = ("self", "staff")
OPERATION_LABELS = {"self": _l("Self-operated"), "staff": _l("Staff-operated")}


class UseRules(Model):
    """How an instrument may be used: the operation modes offered and whether self time needs a
    qualification. Instruments without a row offer both modes and need none."""

    __tablename__ = "instrument_use_rules"

    instrument_id: Mapped[int] = mapped_column(
        ForeignKey("instruments.id", ondelete="CASCADE"), primary_key=True
    )
    operations: Mapped[list[str]] = mapped_column(JSON, default=lambda: list(OPERATIONS))
    requires_qualification: Mapped[bool] = mapped_column(Boolean, default=False)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=current_time, onupdate=current_time)

    instrument: Mapped[Instrument] = relationship()

    def __repr__(self) -> str:
        return f"<UseRules {self.instrument_id} {self.operations} q={self.requires_qualification}>"


class Qualification(Model):
    """A user's permission to run an instrument themselves (上机资格), granted by its institution."""

    __tablename__ = "qualifications"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    instrument_id: Mapped[int] = mapped_column(ForeignKey("instruments.id", ondelete="CASCADE"))
    granted_by_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    # Beijing dates, both days included.
    valid_from: Mapped[date] = mapped_column(Date)
    valid_until: Mapped[date] = mapped_column(Date)
    note: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=current_time)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoked_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    revoke_reason: Mapped[str | None] = mapped_column(Text)
    # When the 30-days-before-expiry reminder went out (once per qualification).
    reminded_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    user: Mapped[User] = relationship(foreign_keys=[user_id])
    instrument: Mapped[Instrument] = relationship()
    granted_by: Mapped[User] = relationship(foreign_keys=[granted_by_id])

    __table_args__ = (
        CheckConstraint("valid_from <= valid_until", name="valid_range"),
        Index("ix_qualifications_instrument_user", "instrument_id", "user_id"),
    )

    def valid_on(self, day: date) -> bool:
        """Whether it lets the user run the instrument on this (Beijing) day."""
        return self.revoked_at is None and self.valid_from <= day <= self.valid_until

    def __repr__(self) -> str:
        return f"<Qualification {self.id} user={self.user_id} instrument={self.instrument_id}>"


class TrainingSession(Model):
    """A training (or exam) a provider publishes on an instrument; users enrol."""

    __tablename__ = "training_sessions"

    id: Mapped[int] = mapped_column(primary_key=True)
    instrument_id: Mapped[int] = mapped_column(ForeignKey("instruments.id", ondelete="CASCADE"), index=True)
    starts_at: Mapped[datetime] = mapped_column(UTCDateTime)
    ends_at: Mapped[datetime] = mapped_column(UTCDateTime)
    place: Mapped[str] = mapped_column(String(200), default="")
    capacity: Mapped[int] = mapped_column(Integer)
    note: Mapped[str] = mapped_column(Text, default="")
    created_by_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=current_time)
    cancelled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    instrument: Mapped[Instrument] = relationship()
    enrolments: Mapped[list[TrainingEnrolment]] = relationship(
        back_populates="session", order_by="TrainingEnrolment.id"
    )

    __table_args__ = (
        CheckConstraint("starts_at < ends_at", name="starts_before_ends"),
        CheckConstraint("capacity > 0", name="capacity_positive"),
    )

    def __repr__(self) -> str:
        return f"<TrainingSession {self.id} instrument={self.instrument_id} {self.starts_at}>"


class TrainingEnrolment(Model):
    """A user's place in a training session."""

    __tablename__ = "training_enrolments"

    id: Mapped[int] = mapped_column(primary_key=True)
    session_id: Mapped[int] = mapped_column(ForeignKey("training_sessions.id", ondelete="CASCADE"))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    enrolled_at: Mapped[datetime] = mapped_column(UTCDateTime, default=current_time)

    session: Mapped[TrainingSession] = relationship(back_populates="enrolments")
    user: Mapped[User] = relationship()

    __table_args__ = (UniqueConstraint("session_id", "user_id", name="uq_training_enrolments_session_user"),)

    def __repr__(self) -> str:
        return f"<TrainingEnrolment session={self.session_id} user={self.user_id}>"


SHOWN_WITH_INSTRUMENT.extend([UseRules, TrainingSession, TrainingEnrolment])

OBJECT_LABELS.update({"qualification": _l("Qualification"), "training_session": _l("Training session")})
ACTION_LABELS.update(
    {
        "qualification.granted": _l("Qualification granted"),
        "qualification.revoked": _l("Qualification revoked"),
        "instrument.use_rules_changed": _l("Operation modes changed"),
        "training.published": _l("Training session published"),
        "training.enrolled": _l("Enrolled in a training session"),
    }
)
