"""No-shows found by the clock (issue 18): a confirmed slot nobody checked in to by its start plus the
instrument's grace becomes `no_show`, which frees the rest of its time, and both sides are told.

"Checked in" is `Booking.checked_in_at`, set by check-in at the instrument (the usage area, by a
conditional UPDATE on a confirmed booking whose `checked_in_at` is still NULL). The transition here
carries the opposite condition, so a check-in and the no-show racing each other cannot both win.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from flask import current_app
from sqlalchemy import select

from portal.booking.models import Booking, BookingMode, BookingPolicy, BookingState
from portal.booking.services import DEFAULT_POLICY, fresh_booking, tell
from portal.booking.signals import booking_violation
from portal.booking.transitions import transition
from portal.core import clock
from portal.core.database import serialized_write
from portal.core.errors import InvalidTransition
from portal.extensions import db


def no_show_due_at(booking: Booking, grace_minutes: int) -> datetime | None:
    """When a confirmed slot without check-in becomes a no-show (None for sample submissions)."""
    if booking.mode is not BookingMode.SLOT or booking.starts_at is None:
        return None
    return booking.starts_at + timedelta(minutes=grace_minutes)


def _candidates(now: datetime) -> list[tuple[int, datetime, int]]:
    """(id, start, grace) of confirmed slots begun within the look-back that nobody checked in to.

    Only the look-back's bookings are read: older ones without check-in were made before check-in
    existed (or the task was stopped for days) and are left for their provider to settle by hand.
    """
    lookback = timedelta(hours=current_app.config["NO_SHOW_LOOKBACK_HOURS"])
    grace = db.func.coalesce(BookingPolicy.no_show_grace_minutes, DEFAULT_POLICY["no_show_grace_minutes"])
    rows = db.session.execute(
        select(Booking.id, Booking.starts_at, grace)
        .outerjoin(BookingPolicy, BookingPolicy.instrument_id == Booking.instrument_id)
        .where(
            Booking.state == BookingState.CONFIRMED,
            Booking.mode == BookingMode.SLOT,
            Booking.checked_in_at.is_(None),
            Booking.starts_at <= now,
            Booking.starts_at > now - lookback,
        )
        .order_by(Booking.starts_at, Booking.id)
    ).all()
    return [(row[0], row[1], row[2]) for row in rows if row[1] is not None]


def mark_no_shows(now: datetime | None = None) -> int:
    """Record every confirmed slot past its grace without check-in as a no-show; returns how many.

    Safe to run twice or at once: each booking moves by a conditional UPDATE (still confirmed, still
    not checked in), and one that moved meanwhile is skipped."""
    now = now or clock.utcnow()
    marked = 0
    for booking_id, starts_at, grace in _candidates(now):
        if starts_at + timedelta(minutes=grace) > now:
            continue
        with serialized_write():
            booking = fresh_booking(booking_id)
            if booking.state is not BookingState.CONFIRMED or booking.checked_in_at is not None:
                db.session.rollback()
                continue
            try:
                transition(
                    booking,
                    "no_show",
                    None,
                    why="no check-in by the start plus the grace",
                    only_if=(Booking.checked_in_at.is_(None),),
                )
            except InvalidTransition:
                continue  # checked in (or changed) a moment ago: not a no-show
            tell(booking, "booking.no_show", "enterprise", grace=grace)
            tell(booking, "booking.no_show_provider", "provider", grace=grace)
            booking_violation.send(booking, kind="no_show", at=now)
            db.session.commit()
            marked += 1
    return marked
