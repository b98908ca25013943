"""The booking state machine: its table, the one function that moves a booking along it, one function
per transition (with `can_<action>` beside it, which the booking page asks before offering it),
and the periodic tasks that expire unanswered requests and send reminders.

Every transition checks the actor, changes the state with a conditional UPDATE (so two clicks can
never both succeed), writes an audit row and commits, all in one transaction. Completing a booking
records its service too, so it lives with the service records (portal.booking.records).
"""

from __future__ import annotations

from datetime import datetime, time, timedelta

from flask import current_app
from flask_babel import gettext as _
from sqlalchemy import ColumnElement, or_, select, update

from portal.accounts.models import User
from portal.booking.models import STATE_LABELS, Booking, BookingMode, BookingSeries, BookingState
from portal.booking.services import (
    fresh_booking,
    is_booking_enterprise,
    manages,
    operator_contact,
    policy_for,
    require_booking_enterprise,
    require_manager,
    tell,
    tell_series,
)
from portal.booking.signals import booking_state_changed, booking_violation
from portal.core import audit, clock
from portal.core.database import changed_rows, serialized_write
from portal.core.errors import InvalidTransition, ValidationFailed
from portal.core.permissions import Role
from portal.extensions import db

# The booking state machine, in one place: (state, action) -> new state.
TRANSITIONS: dict[tuple[BookingState, str], BookingState] = {
    (BookingState.REQUESTED, "confirm"): BookingState.CONFIRMED,
    (BookingState.REQUESTED, "reject"): BookingState.REJECTED,
    (BookingState.REQUESTED, "cancel"): BookingState.CANCELLED,
    (BookingState.REQUESTED, "expire"): BookingState.EXPIRED,
    (BookingState.CONFIRMED, "complete"): BookingState.COMPLETED,
    (BookingState.CONFIRMED, "cancel"): BookingState.CANCELLED,
    (BookingState.CONFIRMED, "no_show"): BookingState.NO_SHOW,
}


# A provider decides a request only once it is one: not while it is a waitlist offer (issue 18).
NOT_AN_OPEN_OFFER = (Booking.offered_until.is_(None),)


def allows(booking: Booking, action: str) -> bool:
    """Whether the table lets the booking, in its state as loaded, take this action."""
    return (booking.state, action) in TRANSITIONS


def transition(
    booking: Booking,
    action: str,
    actor: User | None,
    *,
    why: str | None = None,
    only_if: tuple[ColumnElement[bool], ...] = (),
    **values,
) -> Booking:
    """Move a booking along the state machine, atomically, with its audit row (`why` goes in the audit);
    `only_if` adds conditions the row must still meet (a no-show: nobody has checked in meanwhile)."""
    before = booking.state
    target = TRANSITIONS.get((before, action))
    if target is None:
        raise InvalidTransition(
            _("A booking that is %(state)s cannot be changed this way.", state=_state_text(before)),
            {"state": before.value, "action": action},
        )
    now = clock.utcnow()
    changed = changed_rows(
        update(Booking)
        .where(Booking.id == booking.id, Booking.state == before, *only_if)
        .values(state=target, updated_at=now, **values)
        .execution_options(synchronize_session=False)
    )
    if changed != 1:
        db.session.rollback()
        raise InvalidTransition(_("Someone else changed this booking a moment ago; reload the page."))
    audit.record(
        f"booking.{target.value}",
        "booking",
        booking.id,
        before={"state": before.value},
        after={"state": target.value},
        reason=why,
        actor_id=actor.id if actor else None,
    )
    booking_state_changed.send(booking, before=before, after=target, action=action, actor=actor)
    return booking


def _state_text(state: BookingState) -> str:
    return str(STATE_LABELS[state])


def required_reason(reason: str | None) -> str:
    reason = (reason or "").strip()
    if not reason:
        raise ValidationFailed(_("Please give a reason."), {"reason": _("Required.")})
    if len(reason) > 1000:
        raise ValidationFailed(_("At most 1,000 characters."), {"reason": _("At most 1,000 characters.")})
    return reason


def can_confirm(user: User, booking: Booking) -> bool:
    """Whether `confirm_booking` would let this user confirm the booking."""
    return allows(booking, "confirm") and manages(user, booking.instrument) and booking.offered_until is None


def confirm_booking(user: User, booking_id: int) -> Booking:
    """The provider accepts a request."""
    with serialized_write():
        booking = fresh_booking(booking_id)
        require_manager(user, booking.instrument)
        # A waitlist offer not yet accepted is the enterprise's to take first (issue 18).
        transition(booking, "confirm", user, only_if=NOT_AN_OPEN_OFFER, decided_at=clock.utcnow())
        tell(booking, "booking.confirmed", "enterprise")
        db.session.commit()
    return fresh_booking(booking_id)


def can_reject(user: User, booking: Booking) -> bool:
    """Whether `reject_booking` would let this user decline the booking (given a reason)."""
    return allows(booking, "reject") and manages(user, booking.instrument) and booking.offered_until is None


def reject_booking(user: User, booking_id: int, reason: str | None) -> Booking:
    """The provider declines a request, saying why; the slot is free again."""
    reason = required_reason(reason)
    with serialized_write():
        booking = fresh_booking(booking_id)
        require_manager(user, booking.instrument)
        transition(
            booking,
            "reject",
            user,
            why=reason,
            only_if=NOT_AN_OPEN_OFFER,
            reason=reason,
            decided_at=clock.utcnow(),
        )
        tell(booking, "booking.rejected", "enterprise", reason=reason)
        db.session.commit()
    return fresh_booking(booking_id)


def cancellation_deadline(booking: Booking) -> datetime | None:
    """Until when the enterprise may still cancel a confirmed booking itself."""
    cutoff = timedelta(hours=policy_for(booking.instrument).cancel_cutoff_hours)
    if booking.mode is BookingMode.SLOT and booking.starts_at is not None:  # a slot booking has its times
        return booking.starts_at - cutoff
    if booking.sample_delivery_on:
        return clock.local_datetime_to_utc(booking.sample_delivery_on, datetime.min.time()) - cutoff
    return None


def cancel_cutoff_passed(booking: Booking, now: datetime | None = None) -> bool:
    """Whether the enterprise is too late to cancel this confirmed booking itself (it must call)."""
    deadline = cancellation_deadline(booking)
    return (
        booking.state is BookingState.CONFIRMED
        and deadline is not None
        and (now or clock.utcnow()) > deadline
    )


def can_cancel(user: User, booking: Booking, now: datetime | None = None) -> bool:
    """Whether `cancel_booking` would let this user cancel the booking now (a provider with a reason)."""
    if not allows(booking, "cancel"):
        return False
    if manages(user, booking.instrument):
        return True
    return is_booking_enterprise(user, booking) and not cancel_cutoff_passed(booking, now)


def must_call_to_cancel(user: User, booking: Booking, now: datetime | None = None) -> bool:
    """The booking's enterprise is past the cut-off: only the operator can cancel it now."""
    return (
        allows(booking, "cancel")
        and is_booking_enterprise(user, booking)
        and cancel_cutoff_passed(booking, now)
    )


def enterprise_cancel_deadline(user: User, booking: Booking) -> datetime | None:
    """Until when this user, of the booking's enterprise, may cancel the confirmed booking online."""
    if booking.state is not BookingState.CONFIRMED or not is_booking_enterprise(user, booking):
        return None
    return cancellation_deadline(booking)


def cancel_booking(
    user: User, booking_id: int, reason: str | None, *, late_cancellation: bool = False
) -> Booking:
    """The enterprise cancels (confirmed ones before the cut-off only); the provider any time, saying why.

    `late_cancellation`: the provider cancels a confirmed booking past the cut-off at the enterprise's
    request, which counts against the enterprise's credit (ignored before the cut-off)."""
    with serialized_write():
        booking = fresh_booking(booking_id)
        if user.role is Role.PROVIDER:
            require_manager(user, booking.instrument)
            reason = required_reason(reason)
        else:
            require_booking_enterprise(user, booking)
            reason = (reason or "").strip()[:1000] or None
            if cancel_cutoff_passed(booking):
                deadline = cancellation_deadline(booking)
                raise InvalidTransition(
                    _(
                        "Confirmed bookings can be cancelled online until %(when)s; "
                        "please call the operator: %(contact)s.",
                        when=clock.format_local(deadline),
                        contact=operator_contact(booking.instrument),
                    ),
                    {"rule": "cancel_cutoff"},
                )
        late = late_cancellation and user.role is Role.PROVIDER and cancel_cutoff_passed(booking)
        transition(booking, "cancel", user, why=reason, reason=reason)
        if late:
            booking_violation.send(booking, kind="late_cancellation", at=clock.utcnow())
        tell(
            booking,
            "booking.cancelled",
            "enterprise" if user.role is Role.PROVIDER else "provider",
            reason=reason,
        )
        db.session.commit()
    return fresh_booking(booking_id)


def recordable_from(booking: Booking) -> datetime:
    """When the service of a booking can be recorded: its start, or the day its samples arrive.

    A sample booking without a delivery date (older rows) counts from the day it was made.
    """
    if booking.mode is BookingMode.SLOT and booking.starts_at is not None:  # a slot booking has its times
        return booking.starts_at
    day = booking.sample_delivery_on or clock.to_local(booking.created_at).date()
    return clock.local_datetime_to_utc(day, time.min)


def require_started(booking: Booking, what: str) -> None:
    if has_begun(booking):
        return
    if booking.mode is BookingMode.SLOT:
        message = _(
            "This can be recorded only once the booked time has begun (%(when)s).",
            when=clock.format_local(booking.starts_at),
        )
    else:
        message = _(
            "A sample service can be recorded from the day the samples arrive (%(day)s).",
            day=clock.to_local(recordable_from(booking)).date().isoformat(),
        )
    raise InvalidTransition(message, {"rule": f"{what}_too_early"})


def has_begun(booking: Booking, now: datetime | None = None) -> bool:
    """Whether the service of the booking can be recorded yet (see `recordable_from`)."""
    return (now or clock.utcnow()) >= recordable_from(booking)


def can_mark_no_show(user: User, booking: Booking, now: datetime | None = None) -> bool:
    """Whether `mark_no_show` would let this user record that nobody came."""
    return (
        allows(booking, "no_show")
        and manages(user, booking.instrument)
        and booking.mode is BookingMode.SLOT
        and has_begun(booking, now)
    )


def mark_no_show(user: User, booking_id: int) -> Booking:
    """The provider records that the enterprise did not come."""
    with serialized_write():
        booking = fresh_booking(booking_id)
        require_manager(user, booking.instrument)
        if booking.mode is not BookingMode.SLOT:
            raise InvalidTransition(_("Only machine-time bookings can be no-shows."))
        require_started(booking, "no_show")
        transition(booking, "no_show", user)
        booking_violation.send(booking, kind="no_show", at=clock.utcnow())
        db.session.commit()
    return fresh_booking(booking_id)


def send_reminders(now: datetime | None = None, ahead_hours: int = 24) -> int:
    """Remind enterprises of confirmed bookings that begin within a day (once each); returns how many."""
    now = now or clock.utcnow()
    due = db.session.scalars(
        select(Booking.id).where(
            Booking.state == BookingState.CONFIRMED,
            Booking.reminded_at.is_(None),
            Booking.starts_at > now,
            Booking.starts_at <= now + timedelta(hours=ahead_hours),
        )
    ).all()
    sent = 0
    for booking_id in due:
        with serialized_write():
            claimed = changed_rows(
                update(Booking)
                .where(Booking.id == booking_id, Booking.reminded_at.is_(None))
                .values(reminded_at=now)
                .execution_options(synchronize_session=False)
            )
            if claimed:
                tell(fresh_booking(booking_id), "booking.reminder", "enterprise")
                sent += 1
            db.session.commit()
    return sent


def expire_unanswered(now: datetime | None = None) -> int:
    """Requests nobody answered in time (or whose slot has begun) expire; returns how many. The
    occurrences of one recurring booking expire together, and the enterprise hears of them once."""
    now = now or clock.utcnow()
    ttl = timedelta(hours=current_app.config["BOOKING_REQUEST_TTL_HOURS"])
    due = db.session.execute(
        select(Booking.id, Booking.series_id)
        .where(
            Booking.state == BookingState.REQUESTED,
            or_(Booking.created_at <= now - ttl, Booking.starts_at <= now),
        )
        .order_by(Booking.starts_at, Booking.id)
    ).all()
    by_series: dict[int, list[int]] = {}
    expired = 0
    for booking_id, series_id in due:
        if series_id is None:
            expired += _expire([booking_id])
        else:
            by_series.setdefault(series_id, []).append(booking_id)
    for series_id, booking_ids in by_series.items():
        expired += _expire(booking_ids, series_id)
    return expired


def _expire(booking_ids: list[int], series_id: int | None = None) -> int:
    """Expire these requests in one transaction, telling the enterprise once: about the booking, or
    about the occurrences of its series."""
    with serialized_write():
        done = []
        for booking_id in booking_ids:
            booking = fresh_booking(booking_id)
            if booking.state is BookingState.REQUESTED:
                transition(booking, "expire", None, why="no answer in time")
                done.append(booking)
        if done and series_id is None:
            tell(done[0], "booking.expired", "enterprise")
        elif done:
            series = db.session.get_one(BookingSeries, series_id)
            tell_series(series, "series.expired", "enterprise", f"expired:{done[0].id}", done)
        db.session.commit()
    return len(done)
