"""Waitlist entries (issue 18): an enterprise waits for held time on an instrument to free up."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from flask_babel import lazy_gettext as _l
from sqlalchemy import CheckConstraint, ForeignKey, Index, Integer, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from portal.booking.models import Booking
from portal.catalog.models import Instrument
from portal.core.audit import ACTION_LABELS, OBJECT_LABELS
from portal.core.clock import current_time
from portal.core.types import UTCDateTime, str_enum
from portal.extensions import Model


class EntryState(StrEnum):
    WAITING = "waiting"
    OFFERED = "offered"
    ACCEPTED = "accepted"
    DECLINED = "declined"
    EXPIRED = "expired"
    CANCELLED = "cancelled"


ENTRY_LABELS = {
    EntryState.WAITING: _l("Waiting"),
    EntryState.OFFERED: _l("Offered"),
    EntryState.ACCEPTED: _l("Accepted"),
    EntryState.DECLINED: _l("Declined"),
    EntryState.EXPIRED: _l("Expired"),
    EntryState.CANCELLED: _l("Cancelled"),
}

# The waitlist entry's state machine, in one place: (state, action) -> new state.
TRANSITIONS: dict[tuple[EntryState, str], EntryState] = {
    (EntryState.WAITING, "offer"): EntryState.OFFERED,
    (EntryState.WAITING, "cancel"): EntryState.CANCELLED,
    (EntryState.WAITING, "expire"): EntryState.EXPIRED,  # the wanted time has passed
    (EntryState.OFFERED, "accept"): EntryState.ACCEPTED,
    (EntryState.OFFERED, "decline"): EntryState.DECLINED,
    (EntryState.OFFERED, "lapse"): EntryState.EXPIRED,  # the offer's window passed unanswered
}

ACTION_LABELS.update(
    {
        "waitlist.waiting": _l("Joined the waitlist"),
        "waitlist.offered": _l("Time offered from the waitlist"),
        "waitlist.accepted": _l("Waitlist offer accepted"),
        "waitlist.declined": _l("Waitlist offer declined"),
        "waitlist.expired": _l("Waitlist entry expired"),
        "waitlist.cancelled": _l("Left the waitlist"),
    }
)
OBJECT_LABELS.update({"waitlist_entry": _l("Waitlist entry")})


class WaitlistEntry(Model):
    """An enterprise's wish for time on an instrument: a given slot (`length_minutes` NULL), or any
    free period of `length_minutes` between `starts_at` and `ends_at` (a day)."""

    __tablename__ = "waitlist_entries"

    id: Mapped[int] = mapped_column(primary_key=True)
    instrument_id: Mapped[int] = mapped_column(ForeignKey("instruments.id"))
    enterprise_id: Mapped[int] = mapped_column(ForeignKey("enterprises.id"), index=True)
    requested_by_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    starts_at: Mapped[datetime] = mapped_column(UTCDateTime)
    ends_at: Mapped[datetime] = mapped_column(UTCDateTime)
    length_minutes: Mapped[int | None] = mapped_column(Integer)
    purpose: Mapped[str] = mapped_column(Text, default="")
    state: Mapped[EntryState] = mapped_column(str_enum(EntryState), default=EntryState.WAITING)
    # The offer: a booking row holding the offered time until `offered_until` (Booking.offered_until).
    offer_booking_id: Mapped[int | None] = mapped_column(ForeignKey("bookings.id"))
    offered_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=current_time)

    instrument: Mapped[Instrument] = relationship()
    # The offered time itself (for a period of a length, the one found within the wanted day).
    offer: Mapped[Booking | None] = relationship(foreign_keys=[offer_booking_id])

    __table_args__ = (
        CheckConstraint("starts_at < ends_at", name="starts_before_ends"),
        CheckConstraint("length_minutes IS NULL OR length_minutes > 0", name="length_positive"),
        # The line of an instrument: its waiting entries, oldest first.
        Index("ix_waitlist_entries_instrument_state_created", "instrument_id", "state", "created_at"),
    )

    def __repr__(self) -> str:
        return f"<WaitlistEntry {self.id} {self.state} instrument={self.instrument_id}>"
