"""iCalendar feeds: a public one per instrument (no personal data) and a private one per user, whose
address holds a secret token."""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta

from flask import url_for
from icalendar import Calendar as ICalendar
from icalendar import Event
from sqlalchemy import false, select
from sqlalchemy.orm import joinedload

from portal.accounts.models import User
from portal.booking.models import HOLDING_STATES, STATE_LABELS, Blackout, Booking, BookingMode, BookingState
from portal.catalog.models import Instrument
from portal.core import audit, clock
from portal.core.permissions import Role
from portal.extensions import db

FEED_PAST_DAYS = 30
FEED_FUTURE_DAYS = 180


def _calendar(name: str) -> ICalendar:
    cal = ICalendar()
    cal.add("prodid", "-//Liaocheng Instrument & Voucher Portal//booking//ZH")
    cal.add("version", "2.0")
    cal.add("x-wr-calname", name)
    cal.add("x-wr-timezone", "Asia/Shanghai")
    return cal


def _event(uid: str, summary: str, start: datetime, end: datetime, stamp: datetime, **extra: str) -> Event:
    event = Event()
    event.add("uid", uid)
    event.add("summary", summary)
    event.add("dtstart", start)
    event.add("dtend", end)
    event.add("dtstamp", stamp)
    for key, value in extra.items():
        event.add(key, value)
    return event


def instrument_feed(instrument: Instrument) -> bytes:
    """When the instrument is taken or closed; no enterprise, purpose or person appears."""
    now = clock.utcnow()
    start, end = now - timedelta(days=FEED_PAST_DAYS), now + timedelta(days=FEED_FUTURE_DAYS)
    cal = _calendar(f"{instrument.name} {instrument.code}")
    bookings = db.session.scalars(
        select(Booking).where(
            Booking.instrument_id == instrument.id,
            Booking.mode == BookingMode.SLOT,
            Booking.state.in_([*HOLDING_STATES, BookingState.COMPLETED]),
            Booking.starts_at < end,
            Booking.ends_at > start,
        )
    )
    for booking in bookings:
        if booking.starts_at is None or booking.ends_at is None:  # never: a slot booking has its times
            continue
        cal.add_component(
            _event(
                f"booking-{booking.id}@liaocheng-portal",
                "已预约 Booked",
                booking.starts_at,
                booking.ends_at,
                booking.updated_at,
            )
        )
    blackouts = db.session.scalars(
        select(Blackout).where(
            Blackout.instrument_id == instrument.id, Blackout.starts_at < end, Blackout.ends_at > start
        )
    )
    for blackout in blackouts:
        cal.add_component(
            _event(
                f"blackout-{blackout.id}@liaocheng-portal",
                "暂停开放 Closed",
                blackout.starts_at,
                blackout.ends_at,
                blackout.created_at,
            )
        )
    return cal.to_ical()


def user_feed(user: User) -> bytes:
    """The user's own bookings (an enterprise's, or a provider's institution's), with details."""
    now = clock.utcnow()
    stmt = (
        select(Booking)
        .join(Instrument, Instrument.id == Booking.instrument_id)
        .where(
            Booking.mode == BookingMode.SLOT,
            Booking.state.in_([*HOLDING_STATES, BookingState.COMPLETED]),
            Booking.ends_at > now - timedelta(days=FEED_PAST_DAYS),
        )
        .options(joinedload(Booking.instrument), joinedload(Booking.enterprise))
    )
    if user.role is Role.ENTERPRISE:
        stmt = stmt.where(Booking.enterprise_id == user.enterprise_id)
    elif user.role is Role.PROVIDER:
        stmt = stmt.where(Instrument.institution_id == user.institution_id)
    else:
        stmt = stmt.where(false())
    cal = _calendar("我的预约 My bookings")
    for booking in db.session.scalars(stmt):
        if booking.starts_at is None or booking.ends_at is None:  # never: a slot booking has its times
            continue
        summary = f"{booking.instrument.name} ({STATE_LABELS[booking.state]})"
        if user.role is Role.PROVIDER:
            summary += f" · {booking.enterprise.name}"
        cal.add_component(
            _event(
                f"booking-{booking.id}@liaocheng-portal",
                summary,
                booking.starts_at,
                booking.ends_at,
                booking.updated_at,
                location=booking.instrument.address or booking.instrument.county,
                url=url_for("booking.detail", booking_id=booking.id, _external=True),
                description=booking.purpose or "",
            )
        )
    return cal.to_ical()


# --- the secret of a private feed -------------------------------------------------------------


def calendar_token(user: User) -> str:
    """The secret of the user's private calendar URL (made on first use)."""
    if not user.calendar_token:
        reset_calendar_token(user)
    return user.calendar_token


def reset_calendar_token(user: User) -> str:
    """A new secret: the old private calendar URL stops working."""
    user.calendar_token = secrets.token_urlsafe(32)
    audit.record("user.calendar_token_reset", "user", user.id, actor_id=user.id)
    db.session.commit()
    return user.calendar_token


def user_for_calendar_token(token: str) -> User | None:
    if not token or len(token) > 64:
        return None
    user = db.session.scalar(select(User).where(User.calendar_token == token))
    return user if user and user.is_active else None
