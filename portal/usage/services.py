"""Check-in and check-out at the instrument, the sessions' end, and what a booking's use adds up to.

The check-in window of a confirmed slot booking opens CHECK_IN_OPENS_BEFORE before its start and
closes at the start plus the instrument's no-show grace (both ends included: a check-in at the very
minute the grace ends is still in time, as the no-show rule says "no check-in by start + grace").
A session nobody checks out ends at the booking's end (the periodic task); a check-out after the end
records the minutes past it as overtime.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal

from flask_babel import gettext as _
from sqlalchemy import func, or_, select, update
from sqlalchemy.exc import IntegrityError

from portal.accounts.models import User
from portal.booking.models import LONGEST_SLOT_MINUTES, Booking, BookingMode, BookingState
from portal.booking.records import queue_usage_tally
from portal.booking.services import fresh_booking, get_booking, is_booking_enterprise, manages, policy_for
from portal.catalog.models import Instrument
from portal.core import audit, clock
from portal.core.database import changed_rows, serialized_write
from portal.core.errors import Forbidden, InvalidTransition, ValidationFailed
from portal.core.permissions import Role
from portal.extensions import db
from portal.usage.models import END_AUTO, UsageSession, UsageSource

CHECK_IN_OPENS_BEFORE = timedelta(minutes=15)
MAX_REASON = 500


# --- rules ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Window:
    opens: datetime
    closes: datetime

    def __contains__(self, moment: datetime) -> bool:
        return self.opens <= moment <= self.closes


def check_in_window(booking: Booking) -> Window | None:
    """When the booking can be checked in; None for a sample submission (nobody comes to use it)."""
    if booking.mode is not BookingMode.SLOT or booking.starts_at is None:
        return None
    grace = timedelta(minutes=policy_for(booking.instrument).no_show_grace_minutes)
    return Window(booking.starts_at - CHECK_IN_OPENS_BEFORE, booking.starts_at + grace)


def acting_source(user: User, booking: Booking) -> UsageSource | None:
    """How the user would check the booking in or out: its enterprise's people by the QR label,
    the instrument's own provider for them; anyone else not at all."""
    if is_booking_enterprise(user, booking):
        return UsageSource.QR
    if user.is_authenticated and user.role is Role.PROVIDER and manages(user, booking.instrument):
        return UsageSource.PROVIDER
    return None


def overtime_minutes(booking: Booking | None, ended_at: datetime) -> int:
    """Whole minutes of use past the booking's end (none for unbooked use)."""
    if booking is None or booking.ends_at is None or ended_at <= booking.ends_at:
        return 0
    return int((ended_at - booking.ends_at).total_seconds() // 60)


def open_session(booking_id: int) -> UsageSession | None:
    return db.session.scalar(
        select(UsageSession).where(UsageSession.booking_id == booking_id, UsageSession.ended_at.is_(None))
    )


def can_check_in(user: User, booking: Booking, now: datetime) -> bool:
    window = check_in_window(booking)
    return (
        acting_source(user, booking) is not None
        and booking.state is BookingState.CONFIRMED
        and window is not None
        and now in window
        and open_session(booking.id) is None
    )


def can_check_out(user: User, booking: Booking) -> bool:
    return acting_source(user, booking) is not None and open_session(booking.id) is not None


# --- transitions ---------------------------------------------------------------------------------


def _source_and_reason(user: User, booking: Booking, reason: str | None) -> tuple[UsageSource, str | None]:
    source = acting_source(user, booking)
    if source is None:
        raise Forbidden(_("Only the booking's enterprise or the instrument's provider can do this."))
    reason = (reason or "").strip()[:MAX_REASON] or None
    if source is UsageSource.PROVIDER and reason is None:
        message = _("Say why you do this for the user.")
        raise ValidationFailed(message, {"reason": message})
    return source, reason


def _require_window(booking: Booking, now: datetime) -> None:
    if booking.state is not BookingState.CONFIRMED:
        raise InvalidTransition(_("Only a confirmed booking can be checked in."))
    window = check_in_window(booking)
    if window is None:
        raise InvalidTransition(_("A sample submission is not checked in."))
    if now < window.opens:
        raise InvalidTransition(
            _("Check-in opens at %(time)s.", time=clock.format_local(window.opens, "%H:%M"))
        )
    if now > window.closes:
        raise InvalidTransition(
            _("Check-in closed at %(time)s.", time=clock.format_local(window.closes, "%H:%M"))
        )


def record_check_in(booking_id: int, at: datetime) -> bool:
    """Put the booking's first check-in on the booking itself, where the no-show task (in the booking
    area, below this one) looks for it; only while the booking is confirmed, so that of a check-in
    and a no-show racing, the first to commit wins. False when the booking is no longer confirmed."""
    marked = changed_rows(
        update(Booking)
        .where(Booking.id == booking_id, Booking.state == BookingState.CONFIRMED)
        .values(checked_in_at=func.coalesce(Booking.checked_in_at, at))
        .execution_options(synchronize_session=False)
    )
    return marked == 1


def check_in(user: User, booking_id: int, reason: str | None = None) -> UsageSession:
    """Start the booking's use now: its enterprise's user (QR) or the owning provider (with a reason)."""
    source, reason = _source_and_reason(user, get_booking(user, booking_id), reason)
    now = clock.utcnow()
    with serialized_write():
        booking = fresh_booking(booking_id)
        _require_window(booking, now)
        if open_session(booking_id) is not None:
            raise InvalidTransition(_("This booking is already checked in."))
        session = UsageSession(
            booking_id=booking_id,
            instrument_id=booking.instrument_id,
            user_id=user.id if source is UsageSource.QR else booking.requested_by_id,
            started_at=now,
            source=source,
            reason=reason,
        )
        db.session.add(session)
        try:
            db.session.flush()
        except IntegrityError:  # another check-in of the booking committed first (the open-session index)
            db.session.rollback()
            raise InvalidTransition(_("This booking is already checked in.")) from None
        if not record_check_in(booking_id, now):  # marked a no-show a moment ago
            db.session.rollback()
            raise InvalidTransition(_("Only a confirmed booking can be checked in."))
        audit.record(
            "usage.checked_in",
            "booking",
            booking_id,
            after={"session": session.id, "source": source.value, "at": clock.iso_utc(now)},
            reason=reason,
            actor_id=user.id,
        )
        db.session.commit()
    return session


def end_session(session: UsageSession, booking: Booking | None, at: datetime, ended_by: str) -> bool:
    """End an open session at `at` (never before its start), with its overtime; False if it was
    already ended (a conditional update: two ends racing, only one counts)."""
    ended_at = max(at, session.started_at)
    overtime = 0 if ended_by == END_AUTO else overtime_minutes(booking, ended_at)
    done = changed_rows(
        update(UsageSession)
        .where(UsageSession.id == session.id, UsageSession.ended_at.is_(None))
        .values(ended_at=ended_at, ended_by=ended_by, overtime_minutes=overtime)
        .execution_options(synchronize_session=False)
    )
    if done == 1:
        queue_session_tally(session, booking)
    db.session.expire(session)
    return done == 1


def queue_session_tally(session: UsageSession, booking: Booking | None) -> None:
    """Metered hours count in the month of their booking's start; unbooked running in its own."""
    queue_usage_tally(
        session.instrument_id, booking.starts_at if booking and booking.starts_at else session.started_at
    )


def check_out(user: User, booking_id: int, reason: str | None = None) -> UsageSession:
    """End the booking's open session now; minutes past the booking's end are overtime."""
    source, reason = _source_and_reason(user, get_booking(user, booking_id), reason)
    now = clock.utcnow()
    with serialized_write():
        booking = fresh_booking(booking_id)
        session = open_session(booking_id)
        if session is None or not end_session(session, booking, now, source.value):
            raise InvalidTransition(_("This booking is not checked in."))
        audit.record(
            "usage.checked_out",
            "booking",
            booking_id,
            after={
                "session": session.id,
                "source": source.value,
                "at": clock.iso_utc(now),
                "overtime_minutes": session.overtime_minutes,
            },
            reason=reason,
            actor_id=user.id,
        )
        db.session.commit()
    return session


def close_ended_sessions(now: datetime | None = None) -> int:
    """End every open session whose booking is over, at the booking's end; safe to run twice."""
    now = now or clock.utcnow()
    due = db.session.execute(
        select(UsageSession, Booking)
        .join(Booking, Booking.id == UsageSession.booking_id)
        .where(UsageSession.ended_at.is_(None), Booking.ends_at <= now)
        .order_by(UsageSession.id)
        .limit(1000)
    ).all()
    closed = 0
    for session, booking in due:
        if booking.ends_at is not None and end_session(session, booking, booking.ends_at, END_AUTO):
            audit.record(
                "usage.auto_checked_out",
                "booking",
                booking.id,
                after={"session": session.id, "at": clock.iso_utc(session.ended_at)},
            )
            closed += 1
    db.session.commit()
    return closed


# --- what a booking's use adds up to -------------------------------------------------------------


@dataclass(frozen=True)
class BookingUsage:
    """The sessions of one booking, summed. `used_minutes` counts an open session up to now."""

    sessions: list[UsageSession]
    checked_in_at: datetime | None
    checked_out_at: datetime | None
    used_minutes: int
    overtime_minutes: int

    @property
    def in_use(self) -> bool:
        return any(s.ended_at is None for s in self.sessions)


def _summed(sessions: list[UsageSession], now: datetime) -> BookingUsage:
    seconds = sum(((s.ended_at or max(now, s.started_at)) - s.started_at).total_seconds() for s in sessions)
    last_end = sessions[-1].ended_at
    return BookingUsage(
        sessions=sessions,
        checked_in_at=sessions[0].started_at,
        checked_out_at=None if any(s.ended_at is None for s in sessions) else last_end,
        used_minutes=int(seconds // 60),
        overtime_minutes=sum(s.overtime_minutes for s in sessions),
    )


def usage_of(booking_ids: Iterable[int], now: datetime | None = None) -> dict[int, BookingUsage]:
    """The use of each metered booking among `booking_ids`; a booking without sessions is absent."""
    ids = list(booking_ids)
    if not ids:
        return {}
    rows = db.session.scalars(
        select(UsageSession)
        .where(UsageSession.booking_id.in_(ids))
        .order_by(UsageSession.booking_id, UsageSession.started_at, UsageSession.id)
    )
    grouped: dict[int, list[UsageSession]] = {}
    for row in rows:
        grouped.setdefault(row.booking_id or 0, []).append(row)
    now = now or clock.utcnow()
    return {booking_id: _summed(sessions, now) for booking_id, sessions in grouped.items()}


def bookings_at_instrument(user: User, instrument: Instrument, now: datetime) -> list[Booking]:
    """The user's bookings of the moment on the instrument (a provider's: all of its own instrument's):
    confirmed slots that begin within the check-in lead time and are not over, or are checked in."""
    source_enterprise = user.role is Role.ENTERPRISE and user.enterprise_id is not None
    if not (source_enterprise or (user.role is Role.PROVIDER and manages(user, instrument))):
        return []
    # The open sessions first, as a list: an `OR` with a subquery would keep the start time out of
    # the index condition, and the plan would read the instrument's whole history.
    in_use = db.session.scalars(
        select(UsageSession.booking_id).where(
            UsageSession.instrument_id == instrument.id,
            UsageSession.ended_at.is_(None),
            UsageSession.booking_id.is_not(None),
        )
    ).all()
    stmt = select(Booking).where(
        Booking.instrument_id == instrument.id,
        Booking.mode == BookingMode.SLOT,
        or_(
            Booking.id.in_(in_use),
            (Booking.state == BookingState.CONFIRMED)
            # No slot is longer than the longest a policy allows: one not over began after this.
            & (Booking.starts_at > now - timedelta(minutes=LONGEST_SLOT_MINUTES))
            & (Booking.starts_at <= now + CHECK_IN_OPENS_BEFORE)
            & (Booking.ends_at > now),
        ),
    )
    if source_enterprise:
        stmt = stmt.where(Booking.enterprise_id == user.enterprise_id)
    return list(db.session.scalars(stmt.order_by(Booking.starts_at).limit(20)))


def metered_hours(usage: BookingUsage | None) -> Decimal | None:
    """The used time in hours to the hundredth (what a service record is prefilled with); None when
    the booking was not metered."""
    if usage is None:
        return None
    return (Decimal(usage.used_minutes) / 60).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)


def recent_sessions(instrument: Instrument, limit: int = 50) -> list[UsageSession]:
    """The instrument's latest sessions, the newest first."""
    return list(
        db.session.scalars(
            select(UsageSession)
            .where(UsageSession.instrument_id == instrument.id)
            .order_by(UsageSession.started_at.desc(), UsageSession.id.desc())
            .limit(limit)
        )
    )
