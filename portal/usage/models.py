"""Use at the instrument: who really used it, when, and how that was measured (DESIGN §11)."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from flask_babel import lazy_gettext as _l
from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from portal.accounts.models import User
from portal.booking.models import Booking
from portal.catalog.models import Instrument
from portal.core.audit import ACTION_LABELS, OBJECT_LABELS
from portal.core.clock import current_time
from portal.core.types import UTCDateTime, str_enum
from portal.extensions import Model


class UsageSource(StrEnum):
    QR = "qr"  # the user scanned the instrument's label and checked in on their phone
    PROVIDER = "provider"  # the owning institution's provider checked in for them, with a reason
    DEVICE = "device"  # the instrument's PC or relay reported it (a device key)


SOURCE_LABELS = {
    UsageSource.QR: _l("QR label"),
    UsageSource.PROVIDER: _l("Provider"),
    UsageSource.DEVICE: _l("Instrument PC"),
}

# How a session ended: the same sources, or "auto" when nobody checked out and the booking's end did.
END_AUTO = "auto"

ACTION_LABELS.update(
    {
        "usage.checked_in": _l("Checked in at the instrument"),
        "usage.checked_out": _l("Checked out at the instrument"),
        "usage.auto_checked_out": _l("Session ended with the booking (no check-out)"),
        "usage.device_started": _l("Use started (instrument PC)"),
        "usage.device_stopped": _l("Use ended (instrument PC)"),
        "usage.unbooked": _l("Used without a booking (instrument PC)"),
        "instrument.device_key_created": _l("Device key created"),
        "instrument.device_key_revoked": _l("Device key revoked"),
        "internal_use.recorded": _l("Internal use recorded"),
        "internal_use.deleted": _l("Internal use deleted"),
    }
)
OBJECT_LABELS.update({"usage_session": _l("Usage session"), "internal_use": _l("Internal use")})


class EventKind(StrEnum):
    START = "start"
    STOP = "stop"


class UsageSession(Model):
    """One stretch of real use of an instrument: from check-in (or a device's start) to check-out.

    The sessions of a booking measure its use; a booking without any is "not metered". A session
    without a booking is unbooked use (an instrument PC reported someone nobody booked for)."""

    __tablename__ = "usage_sessions"

    id: Mapped[int] = mapped_column(primary_key=True)
    booking_id: Mapped[int | None] = mapped_column(ForeignKey("bookings.id"), index=True)
    instrument_id: Mapped[int] = mapped_column(ForeignKey("instruments.id"))
    # Who used it; None when a device reported a user name the portal does not know.
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    source: Mapped[UsageSource] = mapped_column(str_enum(UsageSource))
    # How it ended: a UsageSource value, or END_AUTO (closed at the booking's end by the periodic task).
    ended_by: Mapped[str | None] = mapped_column(String(10))
    # Whole minutes of use past the booking's end.
    overtime_minutes: Mapped[int] = mapped_column(Integer, default=0)
    # A name the device reported (kept also when it matches no user), and a provider's reason.
    reported_username: Mapped[str | None] = mapped_column(String(80))
    reason: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=current_time)

    booking: Mapped[Booking | None] = relationship()
    instrument: Mapped[Instrument] = relationship()
    user: Mapped[User | None] = relationship()

    __table_args__ = (
        CheckConstraint("ended_at IS NULL OR ended_at >= started_at", name="ends_after_start"),
        CheckConstraint("overtime_minutes >= 0", name="overtime_not_negative"),
        # A booking has at most one open session: two check-ins racing cannot both open one.
        Index(
            "uq_usage_sessions_open_booking",
            "booking_id",
            unique=True,
            sqlite_where=text("ended_at IS NULL AND booking_id IS NOT NULL"),
            postgresql_where=text("ended_at IS NULL AND booking_id IS NOT NULL"),
        ),
        Index("ix_usage_sessions_instrument_started", "instrument_id", "started_at"),
        # The periodic task looks for the open ones.
        Index(
            "ix_usage_sessions_open",
            "ended_at",
            sqlite_where=text("ended_at IS NULL"),
            postgresql_where=text("ended_at IS NULL"),
        ),
    )

    def __repr__(self) -> str:
        return f"<UsageSession {self.id} booking={self.booking_id} {self.started_at}–{self.ended_at}>"


class DeviceKey(Model):
    """A key an instrument's PC or relay sends its usage events with. The key itself is shown once,
    when it is made; only its SHA-256 is kept (with a short prefix, to tell keys apart)."""

    __tablename__ = "device_keys"

    id: Mapped[int] = mapped_column(primary_key=True)
    instrument_id: Mapped[int] = mapped_column(ForeignKey("instruments.id"), index=True)
    label: Mapped[str] = mapped_column(String(80), default="")
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(12))
    created_by_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=current_time)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoked_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))

    instrument: Mapped[Instrument] = relationship()

    def __repr__(self) -> str:
        return f"<DeviceKey {self.id} {self.prefix}… instrument={self.instrument_id}>"


class UsageEvent(Model):
    """One event an instrument's PC sent (someone logged in or out), kept as received. Its
    idempotency key is unique per instrument: an event sent again changes nothing."""

    __tablename__ = "usage_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    instrument_id: Mapped[int] = mapped_column(ForeignKey("instruments.id"))
    device_key_id: Mapped[int] = mapped_column(ForeignKey("device_keys.id"))
    idempotency_key: Mapped[str] = mapped_column(String(100))
    event: Mapped[EventKind] = mapped_column(str_enum(EventKind, length=10))
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    username: Mapped[str] = mapped_column(String(80), default="")
    session_id: Mapped[int | None] = mapped_column(ForeignKey("usage_sessions.id"))
    booking_id: Mapped[int | None] = mapped_column(ForeignKey("bookings.id"))
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=current_time)

    __table_args__ = (
        UniqueConstraint("instrument_id", "idempotency_key", name="uq_usage_events_idempotency"),
    )

    def __repr__(self) -> str:
        return f"<UsageEvent {self.id} {self.event} {self.at} session={self.session_id}>"


class InternalUse(Model):
    """The owning institution's own use of its instrument (its research, teaching, calibration), which
    no booking records: the instrument's run hours include it, its service hours do not. Recorded by
    the instrument's providers, one stretch of time each, and deleted (with an audit row) if wrong."""

    __tablename__ = "internal_uses"

    id: Mapped[int] = mapped_column(primary_key=True)
    instrument_id: Mapped[int] = mapped_column(ForeignKey("instruments.id"))
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    ended_at: Mapped[datetime] = mapped_column(UTCDateTime)
    user_name: Mapped[str] = mapped_column(String(40), default="")  # who ran it (a name, not an account)
    purpose_category: Mapped[str] = mapped_column(String(12), default="research")
    note: Mapped[str] = mapped_column(Text, default="")
    recorded_by_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime, default=current_time)

    instrument: Mapped[Instrument] = relationship()

    __table_args__ = (
        CheckConstraint("started_at < ended_at", name="starts_before_ends"),
        Index("ix_internal_uses_instrument_started", "instrument_id", "started_at"),
    )

    def __repr__(self) -> str:
        return f"<InternalUse {self.id} instrument={self.instrument_id} {self.started_at}–{self.ended_at}>"


class UsageTally(Model):
    """One instrument's use in one Beijing month or year (portal.usage.tallies): recomputed from the
    raw records after each change and nightly, read by the pages that look at a whole city at once."""

    __tablename__ = "usage_tallies"

    id: Mapped[int] = mapped_column(primary_key=True)
    period: Mapped[str] = mapped_column(String(7))  # "YYYY-MM" (a month) or "YYYY" (a year), Beijing time
    instrument_id: Mapped[int] = mapped_column(ForeignKey("instruments.id"))
    metered_seconds: Mapped[int] = mapped_column(BigInteger, default=0)
    recorded_seconds: Mapped[int] = mapped_column(BigInteger, default=0)
    internal_seconds: Mapped[int] = mapped_column(BigInteger, default=0)
    unbooked_seconds: Mapped[int] = mapped_column(BigInteger, default=0)
    external_seconds: Mapped[int] = mapped_column(BigInteger, default=0)
    sme_seconds: Mapped[int] = mapped_column(BigInteger, default=0)
    # Metered, recorded and internal together: the evaluation sorts a year's rows by it (indexed).
    effective_seconds: Mapped[int] = mapped_column(BigInteger, default=0)
    income_fen: Mapped[int] = mapped_column(BigInteger, default=0)
    external_income_fen: Mapped[int] = mapped_column(BigInteger, default=0)
    # The hours written on the period's service records, however they were measured (the ranking's
    # and the dashboard's service hours, as billed), in seconds.
    record_seconds: Mapped[int] = mapped_column(BigInteger, default=0)
    services: Mapped[int] = mapped_column(Integer, default=0)
    samples: Mapped[int] = mapped_column(Integer, default=0)
    rating_total: Mapped[int] = mapped_column(Integer, default=0)
    ratings: Mapped[int] = mapped_column(Integer, default=0)
    enterprises: Mapped[int] = mapped_column(Integer, default=0)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=current_time)

    __table_args__ = (
        # A year's rows are read by period first; a recount replaces one instrument's or all.
        UniqueConstraint("period", "instrument_id", name="uq_usage_tallies_period_instrument"),
        Index("ix_usage_tallies_instrument_period", "instrument_id", "period"),
        Index("ix_usage_tallies_period_effective", "period", "effective_seconds"),
    )

    def __repr__(self) -> str:
        return f"<UsageTally {self.period} instrument={self.instrument_id} services={self.services}>"


class BookingTally(Model):
    """One instrument's bookings in one Beijing month (portal.usage.booking_tallies): the slot
    bookings that took or hold its time (confirmed or completed), by their start. Only months with
    such bookings have a row."""

    __tablename__ = "booking_tallies"

    id: Mapped[int] = mapped_column(primary_key=True)
    month: Mapped[str] = mapped_column(String(7))  # "YYYY-MM", Beijing time
    instrument_id: Mapped[int] = mapped_column(ForeignKey("instruments.id"))
    bookings: Mapped[int] = mapped_column(Integer, default=0)
    booked_seconds: Mapped[int] = mapped_column(BigInteger, default=0)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=current_time)

    __table_args__ = (
        UniqueConstraint("month", "instrument_id", name="uq_booking_tallies_month_instrument"),
        Index("ix_booking_tallies_instrument_month", "instrument_id", "month"),
    )


class MonthTotal(Model):
    """The month's use summed per county and first-level category (the two-digit code prefix) of the
    instruments: what the dashboard's headline figures and its charts by county and category add up,
    a few hundred rows a month however many instruments there are."""

    __tablename__ = "month_totals"

    id: Mapped[int] = mapped_column(primary_key=True)
    month: Mapped[str] = mapped_column(String(7))
    county: Mapped[str] = mapped_column(String(20))
    category_group: Mapped[str] = mapped_column(String(2))
    bookings: Mapped[int] = mapped_column(Integer, default=0)
    booked_seconds: Mapped[int] = mapped_column(BigInteger, default=0)
    services: Mapped[int] = mapped_column(Integer, default=0)
    record_seconds: Mapped[int] = mapped_column(BigInteger, default=0)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=current_time)

    __table_args__ = (
        UniqueConstraint("month", "county", "category_group", name="uq_month_totals_month_county_group"),
    )


class CustomerTally(Model):
    """Which enterprises one institution served at its instruments in one county, in one Beijing month
    ("YYYY-MM") or year ("YYYY"): the distinct users a period's figures count cannot be added up
    from months or instruments, so they are kept as (institution, county, enterprise) rows, a few per
    institution, never one per booking."""

    __tablename__ = "customer_tallies"

    id: Mapped[int] = mapped_column(primary_key=True)
    period: Mapped[str] = mapped_column(String(7))
    institution_id: Mapped[int] = mapped_column(ForeignKey("institutions.id"))
    county: Mapped[str] = mapped_column(String(20))  # the instruments' county (where the service was)
    enterprise_id: Mapped[int] = mapped_column(ForeignKey("enterprises.id"))
    bookings: Mapped[int] = mapped_column(Integer, default=0)  # slot bookings that took or hold time
    services: Mapped[int] = mapped_column(Integer, default=0)  # services of the period
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=current_time)

    __table_args__ = (
        UniqueConstraint(
            "period", "institution_id", "county", "enterprise_id", name="uq_customer_tallies_row"
        ),
        Index("ix_customer_tallies_institution_period", "institution_id", "period"),
    )
