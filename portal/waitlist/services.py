"""The waitlist (issue 18): an enterprise joins the line for held time on an instrument, and takes or
declines an offer (portal.waitlist.offers makes them)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, time, timedelta

from flask_babel import gettext as _
from sqlalchemy import select, update

from portal.accounts.models import User
from portal.booking.availability import CALENDAR_EARLIEST, CALENDAR_LATEST
from portal.booking.models import HOLDING_STATES, Booking, BookingMode, BookingState
from portal.booking.services import fresh_booking, tell
from portal.booking.signals import booking_wanted
from portal.booking.transitions import transition
from portal.catalog.models import Instrument
from portal.core import audit, clock
from portal.core.database import changed_rows, serialized_write
from portal.core.errors import Forbidden, InvalidTransition, NotFound, ValidationFailed
from portal.core.permissions import Role
from portal.extensions import db
from portal.qualifications import services as use_rules
from portal.waitlist.models import EntryState, WaitlistEntry
from portal.waitlist.rules import move_entry

MAX_WANTED = timedelta(days=1)  # a given slot, or any period of a length within one day


def _require_enterprise(user: User) -> None:
    if not user.is_authenticated or user.role is not Role.ENTERPRISE:
        raise Forbidden(_("Only enterprise accounts can join a waitlist."))


def _check_wanted(starts_at: datetime, ends_at: datetime, length_minutes: int | None) -> None:
    if not (CALENDAR_EARLIEST <= starts_at < ends_at <= CALENDAR_LATEST):
        raise ValidationFailed(_("The end must be after the start."), {"ends_at": _("After the start.")})
    if ends_at - starts_at > MAX_WANTED:
        raise ValidationFailed(
            _("Ask for at most one day."), {"ends_at": _("At most one day after the start.")}
        )
    if ends_at <= clock.utcnow():
        raise ValidationFailed(_("This time has already passed."), {"starts_at": _("In the past.")})
    if length_minutes is not None and timedelta(minutes=length_minutes) > ends_at - starts_at:
        message = _("The length does not fit between the start and the end.")
        raise ValidationFailed(message, {"length_minutes": message})


def join_waitlist(
    user: User,
    instrument_code: str,
    starts_at: datetime,
    ends_at: datetime,
    length_minutes: int | None = None,
    purpose: str = "",
) -> WaitlistEntry:
    """Join the line for a slot (or, with `length_minutes`, any free period of that length between
    the two times); an offer comes when held time there frees up."""
    _require_enterprise(user)
    _check_wanted(starts_at, ends_at, length_minutes)
    instrument = db.session.scalar(select(Instrument).where(Instrument.code == instrument_code))
    if instrument is None:
        raise NotFound(_("No instrument has the code %(code)s.", code=instrument_code))
    booking_wanted.send(user, instrument=instrument)  # credit: a suspended enterprise may not
    with serialized_write():
        entry = WaitlistEntry(
            instrument_id=instrument.id,
            enterprise_id=user.enterprise_id,
            requested_by_id=user.id,
            starts_at=starts_at,
            ends_at=ends_at,
            length_minutes=length_minutes,
            purpose=purpose.strip()[:2000],
            state=EntryState.WAITING,
        )
        db.session.add(entry)
        db.session.flush()
        audit.record(
            "waitlist.waiting", "waitlist_entry", entry.id, after={"state": "waiting"}, actor_id=user.id
        )
        db.session.commit()
    return entry


@dataclass(frozen=True)
class HeldPeriod:
    """A slot held on an instrument (a booking or a waitlist offer): the time one would wait for."""

    starts_at: datetime
    ends_at: datetime
    own: bool  # held by the asking user's own enterprise: nothing to wait for


def held_period(user: User, instrument_code: str, at: datetime) -> HeldPeriod | None:
    """The held slot covering `at` on the instrument (a week view's busy cell), or None when that
    moment is not held (any more). Only its times are told, as the week view shows them already."""
    _require_enterprise(user)
    row = db.session.execute(
        select(Booking.starts_at, Booking.ends_at, Booking.enterprise_id)
        .join(Instrument, Instrument.id == Booking.instrument_id)
        .where(
            Instrument.code == instrument_code,
            Booking.mode == BookingMode.SLOT,
            Booking.state.in_(HOLDING_STATES),
            Booking.starts_at <= at,
            Booking.held_until > at,
        )
        .order_by(Booking.starts_at)
        .limit(1)
    ).first()
    if row is None or row.starts_at is None or row.ends_at is None:
        return None
    return HeldPeriod(row.starts_at, row.ends_at, row.enterprise_id == user.enterprise_id)


def any_time_that_day(starts_at: datetime, ends_at: datetime) -> tuple[datetime, datetime, int]:
    """The wish for any free period as long as [starts_at, ends_at) on its day (Beijing time): the
    day's bounds and the length in minutes, as `join_waitlist` takes them."""
    day = clock.to_local(starts_at).date()
    minutes = int((ends_at - starts_at).total_seconds() // 60)
    return (
        clock.local_datetime_to_utc(day, time(0)),
        clock.local_datetime_to_utc(day + timedelta(days=1), time(0)),
        minutes,
    )


def own_entries(user: User) -> list[WaitlistEntry]:
    """The user's enterprise's entries, newest first."""
    _require_enterprise(user)
    return list(
        db.session.scalars(
            select(WaitlistEntry)
            .where(WaitlistEntry.enterprise_id == user.enterprise_id)
            .order_by(WaitlistEntry.created_at.desc(), WaitlistEntry.id.desc())
        )
    )


def get_entry(user: User, entry_id: int) -> WaitlistEntry:
    """An entry of the user's own enterprise; any other is simply not found."""
    _require_enterprise(user)
    entry = db.session.get(WaitlistEntry, entry_id, populate_existing=True)
    if entry is None or entry.enterprise_id != user.enterprise_id:
        raise NotFound(_("No waitlist entry with this number."))
    return entry


def _open_offer(user: User, entry_id: int) -> WaitlistEntry:
    entry = get_entry(user, entry_id)
    if entry.state is not EntryState.OFFERED or entry.offer_booking_id is None:
        raise InvalidTransition(_("There is no open offer on this entry."), {"state": entry.state.value})
    return entry


def accept_offer(user: User, entry_id: int) -> Booking:
    """Take the offered time: it becomes the enterprise's booking request (the provider confirms it)."""
    with serialized_write():
        entry = _open_offer(user, entry_id)
        now = clock.utcnow()
        booking = fresh_booking(entry.offer_booking_id or 0)
        # The price is frozen now, for the instrument's first operation mode (self-operated time may
        # need a qualification: 409 not_qualified).
        operation = (use_rules.use_rules_for(booking.instrument).operations or ["self"])[0]
        terms = use_rules.booking_terms(
            user, booking.instrument, "slot", operation, booking.starts_at, booking.ends_at
        )
        taken = changed_rows(
            update(Booking)
            .where(
                Booking.id == booking.id,
                Booking.state == BookingState.REQUESTED,
                Booking.offered_until > now,
            )
            .values(offered_until=None, requested_by_id=user.id, created_at=now, updated_at=now, **terms)
            .execution_options(synchronize_session=False)
        )
        if taken != 1 or not move_entry(entry, "accept", user):
            db.session.rollback()
            raise InvalidTransition(_("This offer has ended; the time has moved on."))
        audit.record(
            "booking.requested",
            "booking",
            booking.id,
            after={
                "state": "requested",
                "mode": "slot",
                "instrument": booking.instrument.code,
                "waitlist": entry.id,
            },
            actor_id=user.id,
        )
        tell(booking, "booking.requested", "provider")
        db.session.commit()
    return fresh_booking(booking.id)


def decline_offer(user: User, entry_id: int, *, leave: bool = False) -> WaitlistEntry:
    """Decline the offer (with `leave`, leave the line too): its time goes to the next in line."""
    with serialized_write():
        entry = _open_offer(user, entry_id)
        if not move_entry(entry, "decline", user):
            db.session.rollback()
            raise InvalidTransition(_("Someone else changed this entry a moment ago; reload the page."))
        booking = fresh_booking(entry.offer_booking_id or 0)
        why = "waitlist offer declined"
        transition(
            booking, "cancel", user, why=why, only_if=(Booking.offered_until.is_not(None),), reason=why
        )
        db.session.commit()
    return get_entry(user, entry_id)


def cancel_entry(user: User, entry_id: int) -> WaitlistEntry:
    """Leave the line; an open offer is declined first."""
    entry = get_entry(user, entry_id)
    if entry.state is EntryState.OFFERED:
        return decline_offer(user, entry_id)
    with serialized_write():
        entry = get_entry(user, entry_id)
        if not move_entry(entry, "cancel", user):
            db.session.rollback()
            raise InvalidTransition(
                _("A waitlist entry that is %(state)s cannot be cancelled.", state=entry.state.value),
                {"state": entry.state.value},
            )
        db.session.commit()
    return get_entry(user, entry_id)
