"""Offers from the waitlist (issue 18): when held time frees up, the first in line is offered it.

The offer is a booking row of the offered enterprise in state `requested` with `offered_until` set:
it holds its time exactly as a request does, so the exclusion constraint on PostgreSQL (and BEGIN
IMMEDIATE on SQLite) keeps offers and bookings apart whatever the concurrency, and anyone else asking
for that time is refused with `slot_offered`. The offer is made inside the transaction that freed the
time (a receiver of `booking_state_changed`), so there is no moment in which the time is free.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

from flask import current_app
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from portal.accounts.members import users_of_enterprise
from portal.booking.availability import Calendar
from portal.booking.models import HOLDING_STATES, Booking, BookingMode, BookingState
from portal.booking.services import fresh_booking, policy_for
from portal.booking.transitions import transition
from portal.catalog.models import Instrument
from portal.core import clock
from portal.core.database import serialized_write
from portal.core.errors import InvalidTransition
from portal.extensions import db
from portal.notifications.services import notify
from portal.waitlist.models import EntryState, WaitlistEntry
from portal.waitlist.rules import move_entry

# Rules a freed time may break and still be offered: it may start sooner than the usual notice.
OFFER_IGNORES = {"too_late"}


def _fits(calendar: Calendar, start: datetime, end: datetime) -> bool:
    if start < calendar.now:
        return False
    problems = [p for p in calendar.problems(start, end) if p.rule not in OFFER_IGNORES]
    return not problems and not calendar.conflicts(start, end)


def _candidates(
    entry: WaitlistEntry, freed_start: datetime, freed_end: datetime
) -> Iterator[tuple[datetime, datetime]]:
    """The periods the entry would take, earliest first, each overlapping the freed time."""
    if entry.length_minutes is None:
        yield entry.starts_at, entry.ends_at
        return
    length = timedelta(minutes=entry.length_minutes)
    step = timedelta(minutes=policy_for(entry.instrument).step_minutes)
    start = entry.starts_at
    while start + length <= entry.ends_at:
        if start < freed_end and start + length > freed_start:
            yield start, start + length
        start += step


def _period_for(
    entry: WaitlistEntry, freed_start: datetime, freed_end: datetime
) -> tuple[datetime, datetime] | None:
    calendar = Calendar.load(
        entry.instrument, entry.starts_at - timedelta(days=1), entry.ends_at + timedelta(days=1)
    )
    return next(
        (p for p in _candidates(entry, freed_start, freed_end) if _fits(calendar, *p)),
        None,
    )


def offer_freed_time(instrument_id: int, freed_start: datetime, freed_end: datetime) -> int:
    """Offer freed time to the waiting entries of the instrument in their order; returns how many.

    Runs in the caller's transaction (which has freed the time). Each entry first in line whose
    wanted period now fits gets an offer; an entry whose period does not fit keeps its place."""
    now = clock.utcnow()
    waiting = db.session.scalars(
        select(WaitlistEntry)
        .where(
            WaitlistEntry.instrument_id == instrument_id,
            WaitlistEntry.state == EntryState.WAITING,
            WaitlistEntry.starts_at < freed_end,
            WaitlistEntry.ends_at > max(freed_start, now),
        )
        .order_by(WaitlistEntry.created_at, WaitlistEntry.id)
    ).all()
    offered = 0
    for entry in waiting:
        period = _period_for(entry, freed_start, freed_end)
        if period is not None and _make_offer(entry, *period, now):
            offered += 1
    return offered


def _make_offer(entry: WaitlistEntry, start: datetime, end: datetime, now: datetime) -> bool:
    """Hold the period for the entry's enterprise until the offer's window ends, and tell it."""
    window = timedelta(hours=current_app.config["WAITLIST_OFFER_HOURS"])
    until = min(now + window, start)
    buffer = timedelta(minutes=policy_for(entry.instrument).buffer_minutes)
    try:
        with db.session.begin_nested():  # a refused hold undoes only this offer
            if not move_entry(entry, "offer", offered_until=until):
                return False
            offer = Booking(
                instrument_id=entry.instrument_id,
                enterprise_id=entry.enterprise_id,
                requested_by_id=entry.requested_by_id,
                mode=BookingMode.SLOT,
                state=BookingState.REQUESTED,
                starts_at=start,
                ends_at=end,
                held_until=end + buffer,
                purpose=entry.purpose,
                offered_until=until,
            )
            db.session.add(offer)
            db.session.flush()  # PostgreSQL's exclusion constraint refuses any overlap here
            db.session.execute(
                update(WaitlistEntry).where(WaitlistEntry.id == entry.id).values(offer_booking_id=offer.id)
            )
    except IntegrityError as error:
        if getattr(error.orig, "sqlstate", None) != "23P01":
            raise
        return False  # taken a moment ago by someone else: the entry keeps waiting
    instrument = db.session.get_one(Instrument, entry.instrument_id)
    notify(
        users_of_enterprise(entry.enterprise_id),
        "waitlist.offered",
        f"waitlist:{entry.id}:offered:{offer.id}",
        payload={
            "instrument": instrument.name,
            "when": f"{clock.format_local(start)}–{clock.format_local(end, '%H:%M')}",
            "until": clock.format_local(until),
            "entry": entry.id,
        },
        link="/waitlist/",
    )
    return True


def on_booking_state_changed(
    booking: Booking, *, before: BookingState, after: BookingState, action: str, **_kw: Any
) -> None:
    """Receiver of `booking_state_changed`: time a slot stops holding goes to the waitlist.

    Cancelled, rejected, expired (an unanswered request, or a lapsed offer) and no-show (the rest of
    the slot) all free time. An offer that was cancelled or expired also closes its entry."""
    if booking.mode is not BookingMode.SLOT or before not in HOLDING_STATES or after in HOLDING_STATES:
        return
    if booking.starts_at is None or booking.held_until is None:
        return
    if booking.offered_until is not None:
        entry = db.session.scalar(select(WaitlistEntry).where(WaitlistEntry.offer_booking_id == booking.id))
        if entry is not None and entry.state is EntryState.OFFERED:
            move_entry(entry, "lapse" if action == "expire" else "decline")
    offer_freed_time(booking.instrument_id, max(booking.starts_at, clock.utcnow()), booking.held_until)


def lapse_offers(now: datetime | None = None) -> int:
    """Offers whose window passed lapse (their time moves on to the next in line), and entries whose
    wanted time has passed expire; returns how many offers lapsed. Safe to run twice or at once."""
    now = now or clock.utcnow()
    due = db.session.scalars(
        select(WaitlistEntry.offer_booking_id).where(
            WaitlistEntry.state == EntryState.OFFERED, WaitlistEntry.offered_until <= now
        )
    ).all()
    lapsed = 0
    for booking_id in due:
        if booking_id is None:
            continue
        with serialized_write():
            booking = fresh_booking(booking_id)
            try:
                transition(
                    booking,
                    "expire",
                    None,
                    why="waitlist offer not accepted in time",
                    only_if=(Booking.offered_until.is_not(None),),
                )
            except InvalidTransition:
                continue  # accepted or declined a moment ago
            db.session.commit()
            lapsed += 1
    _expire_passed_entries(now)
    return lapsed


def _expire_passed_entries(now: datetime) -> None:
    with serialized_write():
        passed = db.session.scalars(
            select(WaitlistEntry).where(
                WaitlistEntry.state == EntryState.WAITING, WaitlistEntry.ends_at <= now
            )
        ).all()
        for entry in passed:
            move_entry(entry, "expire")
        db.session.commit()
