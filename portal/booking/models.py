"""Bookings, the rules each instrument books by, blackouts, and the service records that follow."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from enum import StrEnum

from flask_babel import lazy_gettext as _l
from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    Date,
    ForeignKey,
    Index,
    Integer,
    Numeric,
    SmallInteger,
    String,
    Text,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ExcludeConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from portal.accounts.models import Enterprise, User
from portal.catalog.models import Instrument
from portal.core.audit import ACTION_LABELS, OBJECT_LABELS
from portal.core.clock import current_time
from portal.core.types import UTCDateTime, str_enum
from portal.core.uploads import StoredFile
from portal.extensions import Model


class BookingMode(StrEnum):
    SLOT = "slot"  # 机时: the enterprise uses the instrument for a time slot
    SAMPLE = "sample"  # 送样: the enterprise sends samples for the provider to measure


MODE_LABELS = {BookingMode.SLOT: _l("Machine time"), BookingMode.SAMPLE: _l("Sample submission")}


class PurposeCategory(StrEnum):
    """What a service is for: the national service record's direction (portal.reporting.nrii)."""

    RESEARCH = "research"
    DEVELOPMENT = "development"
    TEACHING = "teaching"
    OTHER = "other"


PURPOSE_LABELS = {
    PurposeCategory.RESEARCH: _l("Scientific research"),
    PurposeCategory.DEVELOPMENT: _l("Technology development"),
    PurposeCategory.TEACHING: _l("Teaching"),
    PurposeCategory.OTHER: _l("Other"),
}


class BookingState(StrEnum):
    REQUESTED = "requested"
    CONFIRMED = "confirmed"
    REJECTED = "rejected"
    CANCELLED = "cancelled"
    EXPIRED = "expired"
    COMPLETED = "completed"
    NO_SHOW = "no_show"


STATE_LABELS = {
    BookingState.REQUESTED: _l("Requested"),
    BookingState.CONFIRMED: _l("Confirmed"),
    BookingState.REJECTED: _l("Rejected"),
    BookingState.CANCELLED: _l("Cancelled"),
    BookingState.EXPIRED: _l("Expired"),
    BookingState.COMPLETED: _l("Completed"),
    BookingState.NO_SHOW: _l("No-show"),
}

# What the history of a booking calls each audit action.
ACTION_LABELS.update(
    {
        "booking.requested": _l("Requested"),
        "booking.confirmed": _l("Confirmed by the provider"),
        "booking.rejected": _l("Declined by the provider"),
        "booking.cancelled": _l("Cancelled"),
        "booking.expired": _l("Expired without an answer"),
        "booking.completed": _l("Service completed"),
        "booking.no_show": _l("Recorded as a no-show"),
        "service.recorded": _l("Service and fee recorded"),
        "service.rated": _l("Service confirmed and rated"),
        "service.file_added": _l("Document added"),
        "instrument.policy_changed": _l("Booking rules changed"),
        "instrument.hours_changed": _l("Opening hours changed"),
        "instrument.blackout_added": _l("Instrument closed for a time"),
        "instrument.blackout_removed": _l("Closure removed"),
        "user.calendar_token_reset": _l("Calendar address replaced"),
        "series.requested": _l("Recurring booking requested"),
        "series.confirmed": _l("Recurring booking confirmed"),
        "series.cancelled": _l("Recurring booking cancelled"),
    }
)
OBJECT_LABELS.update(
    {
        "booking": _l("Booking"),
        "service_record": _l("Service record"),
        "booking_series": _l("Recurring booking"),
    }
)

# Requested and confirmed bookings hold their slot; nothing else does.
HOLDING_STATES = (BookingState.REQUESTED, BookingState.CONFIRMED)


class BlackoutKind(StrEnum):
    CLOSURE = "closure"
    MAINTENANCE = "maintenance"


BLACKOUT_LABELS = {BlackoutKind.CLOSURE: _l("Closed"), BlackoutKind.MAINTENANCE: _l("Maintenance")}


class FileKind(StrEnum):
    CONTRACT = "contract"
    INVOICE = "invoice"
    RECEIPT = "receipt"
    RESULT = "result"


FILE_KIND_LABELS = {
    FileKind.CONTRACT: _l("Contract"),
    FileKind.INVOICE: _l("Invoice"),
    FileKind.RECEIPT: _l("Payment receipt"),
    FileKind.RESULT: _l("Service result"),
}


class ServiceType(StrEnum):
    """What a service was; some kinds (statutory testing, mandatory certification) are never subsidised."""

    RESEARCH_TESTING = "research_testing"
    ANALYSIS = "analysis"
    PROCESS_TRIAL = "process_trial"
    STATUTORY_TESTING = "statutory_testing"
    MANDATORY_CERTIFICATION = "mandatory_certification"
    OTHER = "other"


SERVICE_TYPE_LABELS = {
    ServiceType.RESEARCH_TESTING: _l("R&D testing"),
    ServiceType.ANALYSIS: _l("Analysis and testing"),
    ServiceType.PROCESS_TRIAL: _l("Process trial"),
    ServiceType.STATUTORY_TESTING: _l("Statutory testing"),
    ServiceType.MANDATORY_CERTIFICATION: _l("Mandatory certification"),
    ServiceType.OTHER: _l("Other"),
}


# The five levels the network records for every completed service (user rating).
RATING_LABELS = {
    5: _l("Very satisfied"),
    4: _l("Satisfied"),
    3: _l("Neutral"),
    2: _l("Dissatisfied"),
    1: _l("Very poor"),
}


# The longest slot a policy may allow (one week, in minutes): the forms and the API cap
# `max_minutes` at it, and lookups of "the bookings of the moment" bound their scan by it.
LONGEST_SLOT_MINUTES = 10_080


class BookingPolicy(Model):
    """How an instrument can be booked. Instruments without a row use the configured defaults."""

    __tablename__ = "booking_policies"

    instrument_id: Mapped[int] = mapped_column(
        ForeignKey("instruments.id", ondelete="CASCADE"), primary_key=True
    )
    accepts_slots: Mapped[bool] = mapped_column(Boolean, default=True)
    accepts_samples: Mapped[bool] = mapped_column(Boolean, default=True)
    min_minutes: Mapped[int] = mapped_column(Integer, default=60)
    max_minutes: Mapped[int] = mapped_column(Integer, default=480)
    step_minutes: Mapped[int] = mapped_column(SmallInteger, default=30)
    min_notice_hours: Mapped[int] = mapped_column(Integer, default=24)
    max_days_ahead: Mapped[int] = mapped_column(Integer, default=60)
    buffer_minutes: Mapped[int] = mapped_column(Integer, default=0)
    # Enterprises may cancel a confirmed booking up to this many hours before it starts.
    cancel_cutoff_hours: Mapped[int] = mapped_column(Integer, default=24)
    # Check-in at the instrument closes this many minutes after the start (DESIGN §11: the no-show grace).
    no_show_grace_minutes: Mapped[int] = mapped_column(Integer, default=30, server_default="30")
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=current_time, onupdate=current_time)

    instrument: Mapped[Instrument] = relationship()

    __table_args__ = (
        CheckConstraint("min_minutes > 0 AND min_minutes <= max_minutes", name="length_range"),
        CheckConstraint("step_minutes IN (15, 30, 60)", name="step"),
        CheckConstraint(
            "min_notice_hours >= 0 AND max_days_ahead >= 1 AND buffer_minutes >= 0 "
            "AND cancel_cutoff_hours >= 0",
            name="non_negative",
        ),
        CheckConstraint(
            "no_show_grace_minutes >= 0 AND no_show_grace_minutes <= 1440",
            name="grace_range",
        ),
    )

    def __repr__(self) -> str:
        return f"<BookingPolicy instrument={self.instrument_id}>"


class Blackout(Model):
    """A time an instrument cannot be booked: a closure (holiday) or maintenance."""

    __tablename__ = "blackouts"

    id: Mapped[int] = mapped_column(primary_key=True)
    instrument_id: Mapped[int] = mapped_column(ForeignKey("instruments.id", ondelete="CASCADE"))
    kind: Mapped[BlackoutKind] = mapped_column(str_enum(BlackoutKind))
    starts_at: Mapped[datetime] = mapped_column(UTCDateTime)
    ends_at: Mapped[datetime] = mapped_column(UTCDateTime)
    reason: Mapped[str] = mapped_column(String(200), default="")
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=current_time)

    instrument: Mapped[Instrument] = relationship()

    __table_args__ = (
        CheckConstraint("starts_at < ends_at", name="starts_before_ends"),
        Index("ix_blackouts_instrument_time", "instrument_id", "starts_at", "ends_at"),
    )

    def __repr__(self) -> str:
        return f"<Blackout {self.id} {self.kind} {self.starts_at}–{self.ends_at}>"


class Booking(Model):
    """An enterprise's request for machine time or a sample service, through to its outcome."""

    __tablename__ = "bookings"

    id: Mapped[int] = mapped_column(primary_key=True)
    instrument_id: Mapped[int] = mapped_column(ForeignKey("instruments.id"))
    enterprise_id: Mapped[int] = mapped_column(ForeignKey("enterprises.id"), index=True)
    requested_by_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    mode: Mapped[BookingMode] = mapped_column(str_enum(BookingMode))
    state: Mapped[BookingState] = mapped_column(str_enum(BookingState), default=BookingState.REQUESTED)
    # Slot bookings: the reserved time (UTC). Sample submissions have no slot.
    starts_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    ends_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # The end of the slot plus the instrument's buffer at booking time: what the exclusion covers.
    held_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    purpose: Mapped[str] = mapped_column(Text, default="")
    # What the service is for, as the national service record counts it (serviceDirection); None on
    # bookings made before the form asked (reported as "other").
    purpose_category: Mapped[str | None] = mapped_column(String(12))
    sample_count: Mapped[int | None] = mapped_column(Integer)
    sample_description: Mapped[str | None] = mapped_column(Text)
    sample_delivery_on: Mapped[date | None] = mapped_column(Date)
    # The reason given with the last rejection or cancellation.
    reason: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=current_time)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=current_time, onupdate=current_time)
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    reminded_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Slot bookings: who runs the instrument, `self` (自主上机) or `staff` (代为操作); None for samples.
    operation: Mapped[str | None] = mapped_column(String(10))
    # The price frozen when the booking was made (portal.catalog.prices): the customer category, the
    # unit, the unit price and the rest of the row's terms (minimum, steps, overtime). None on
    # bookings made before price tables: their fee follows the instrument's published fee standard.
    tier: Mapped[str | None] = mapped_column(String(20))
    unit: Mapped[str | None] = mapped_column(String(10))
    unit_price_fen: Mapped[int | None] = mapped_column(BigInteger)
    price_terms: Mapped[dict | None] = mapped_column(JSON)
    # When someone checked in at the instrument (issue 18); a confirmed slot still without it at its
    # start plus the policy's grace is a no-show (portal.booking.no_shows).
    checked_in_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Set while the row is a waitlist offer (issue 18) the enterprise has not accepted yet: it holds
    # its time like any request (so the exclusion below keeps offers and bookings apart), and lapses
    # at this moment. Accepting clears it; the row is then an ordinary request.
    offered_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # The recurring booking this one is an occurrence of (portal.booking.series); None for most.
    series_id: Mapped[int | None] = mapped_column(ForeignKey("booking_series.id"), index=True)
    # How the enterprise means to use its innovation voucher for this booking, when the scheme offers
    # a choice: "reimbursement" (pays the whole fee, claims later) or "at_payment" (pays only its
    # share; the provider redeems the rest). None: not chosen, which is reimbursement.
    voucher_mode: Mapped[str | None] = mapped_column(String(16))

    instrument: Mapped[Instrument] = relationship()
    enterprise: Mapped[Enterprise] = relationship()
    requested_by: Mapped[User] = relationship()
    service_record: Mapped[ServiceRecord | None] = relationship(back_populates="booking")

    __table_args__ = (
        CheckConstraint(
            "mode != 'slot' OR (starts_at IS NOT NULL AND ends_at IS NOT NULL AND starts_at < ends_at "
            "AND held_until >= ends_at)",
            name="slot_has_times",
        ),
        CheckConstraint(
            "mode != 'sample' OR (sample_count IS NOT NULL AND sample_count > 0)", name="sample_has_count"
        ),
        Index("ix_bookings_instrument_starts_at", "instrument_id", "starts_at"),
        Index("ix_bookings_state_created_at", "state", "created_at"),
        # The dashboard counts and sums the bookings of a period across every instrument.
        Index("ix_bookings_starts_at", "starts_at"),
        # No double booking, enforced by PostgreSQL itself: two slot-holding bookings of one
        # instrument can never overlap (half-open ranges, so back-to-back slots are fine).
        ExcludeConstraint(
            ("instrument_id", "="),
            (func.tstzrange(text("starts_at"), text("held_until"), text("'[)'")), "&&"),
            name="no_double_booking",
            using="gist",
            where=text("mode = 'slot' AND state IN ('requested', 'confirmed')"),
        ).ddl_if(dialect="postgresql"),
    )

    def __repr__(self) -> str:
        return f"<Booking {self.id} {self.mode} {self.state}>"


class RepeatUnit(StrEnum):
    DAY = "day"
    WEEK = "week"


class BookingSeries(Model):
    """A recurring booking (issue 18): the rule and the bookings it made, each an ordinary booking.

    The series holds no time itself and has no state of its own: what it holds is what its
    occurrences hold, each moved along the booking state machine like any booking.
    """

    __tablename__ = "booking_series"

    id: Mapped[int] = mapped_column(primary_key=True)
    instrument_id: Mapped[int] = mapped_column(ForeignKey("instruments.id"))
    enterprise_id: Mapped[int] = mapped_column(ForeignKey("enterprises.id"), index=True)
    requested_by_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    # The first occurrence (UTC); the others keep its Beijing time of day and its length.
    starts_at: Mapped[datetime] = mapped_column(UTCDateTime)
    ends_at: Mapped[datetime] = mapped_column(UTCDateTime)
    repeat_every: Mapped[RepeatUnit] = mapped_column(str_enum(RepeatUnit))
    repeat_interval: Mapped[int] = mapped_column(SmallInteger)
    # Weekly series: the Beijing weekdays, Monday = 0, in order; empty for a daily series.
    repeat_weekdays: Mapped[list[int]] = mapped_column(JSON)
    # Exactly one of them: the last day (Beijing, inclusive) or the number of occurrences.
    repeat_until: Mapped[date | None] = mapped_column(Date)
    repeat_count: Mapped[int | None] = mapped_column(SmallInteger)
    operation: Mapped[str | None] = mapped_column(String(10))
    purpose: Mapped[str] = mapped_column(Text, default="")
    skip_conflicts: Mapped[bool] = mapped_column(Boolean, default=False)
    # The occurrences refused when the series was made: [{"starts_at", "ends_at", "conflict"}].
    skipped: Mapped[list[dict]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=current_time)

    instrument: Mapped[Instrument] = relationship()
    enterprise: Mapped[Enterprise] = relationship()
    requested_by: Mapped[User] = relationship()
    bookings: Mapped[list[Booking]] = relationship(order_by="Booking.starts_at", viewonly=True)

    __table_args__ = (
        CheckConstraint("(repeat_until IS NULL) <> (repeat_count IS NULL)", name="until_or_count"),
        CheckConstraint("repeat_interval >= 1 AND starts_at < ends_at", name="rule_range"),
    )

    def __repr__(self) -> str:
        return f"<BookingSeries {self.id} every {self.repeat_interval} {self.repeat_every}>"


class ServiceRecord(Model):
    """What the provider actually did and charged, the evidence files, and the enterprise's rating."""

    __tablename__ = "service_records"

    id: Mapped[int] = mapped_column(primary_key=True)
    booking_id: Mapped[int] = mapped_column(ForeignKey("bookings.id"), unique=True)
    hours: Mapped[Decimal | None] = mapped_column(Numeric(7, 2))
    samples: Mapped[int | None] = mapped_column(Integer)
    computed_fee_fen: Mapped[int] = mapped_column(BigInteger)
    fee_fen: Mapped[int] = mapped_column(BigInteger)
    fee_reason: Mapped[str | None] = mapped_column(Text)
    # Why more hours were used than booked (the provider must say; the reviewer of a claim sees it).
    hours_reason: Mapped[str | None] = mapped_column(Text)
    result_summary: Mapped[str] = mapped_column(Text, default="")
    recorded_by_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    # Indexed: a sample service belongs to the month of its record (tallies, national reports).
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime, default=current_time, index=True)
    rating: Mapped[int | None] = mapped_column(SmallInteger)
    rating_comment: Mapped[str | None] = mapped_column(Text)
    rated_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # What kind of service it was (statutory testing and mandatory certification are not subsidised).
    service_type: Mapped[str] = mapped_column(String(30), default="analysis")
    # The voucher claim holding this record, from its submission until a rejection releases it: set
    # by a conditional update, so a record can never be in two claims at once.
    claim_id: Mapped[int | None] = mapped_column(ForeignKey("claims.id"), index=True)
    # The national service way (NRII serviceWay): 占用 self-operated, 技术 staff-operated, 委托 samples.
    service_way: Mapped[str | None] = mapped_column(String(4))

    booking: Mapped[Booking] = relationship(back_populates="service_record")
    files: Mapped[list[ServiceFile]] = relationship(back_populates="record", order_by="ServiceFile.id")

    __table_args__ = (
        CheckConstraint("fee_fen >= 0 AND computed_fee_fen >= 0", name="fees_not_negative"),
        CheckConstraint("fee_fen = computed_fee_fen OR fee_reason IS NOT NULL", name="override_has_reason"),
        CheckConstraint("rating IS NULL OR rating BETWEEN 1 AND 5", name="rating_range"),
        CheckConstraint("hours IS NOT NULL OR samples IS NOT NULL", name="hours_or_samples"),
    )

    def __repr__(self) -> str:
        return f"<ServiceRecord {self.id} booking={self.booking_id} fee={self.fee_fen}>"


class ServiceFile(Model):
    """An evidence file (contract, invoice, receipt, result), stored outside the static folder."""

    __tablename__ = "service_files"

    id: Mapped[int] = mapped_column(primary_key=True)
    record_id: Mapped[int] = mapped_column(ForeignKey("service_records.id"), index=True)
    kind: Mapped[FileKind] = mapped_column(str_enum(FileKind))
    original_name: Mapped[str] = mapped_column(String(200))
    stored_name: Mapped[str] = mapped_column(String(80), unique=True)
    content_type: Mapped[str] = mapped_column(String(40))
    size: Mapped[int] = mapped_column(Integer)
    sha256: Mapped[str] = mapped_column(String(64))
    uploaded_by_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    uploaded_at: Mapped[datetime] = mapped_column(UTCDateTime, default=current_time)
    # Set when a newer file of the same kind replaced it (a returned claim corrected); kept as evidence.
    replaced_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    record: Mapped[ServiceRecord] = relationship(back_populates="files")

    @classmethod
    def from_upload(
        cls, stored: StoredFile, record_id: int, kind: FileKind, uploaded_by_id: int
    ) -> ServiceFile:
        """The row for a file `portal.core.uploads.store_upload` has checked and stored."""
        return cls(
            record_id=record_id,
            kind=kind,
            original_name=stored.original_name,
            stored_name=stored.stored_name,
            content_type=stored.content_type,
            size=stored.size,
            sha256=stored.sha256,
            uploaded_by_id=uploaded_by_id,
        )

    def __repr__(self) -> str:
        return f"<ServiceFile {self.id} {self.kind} {self.original_name}>"
