"""Instrument-side clients: device keys, and the usage events an instrument's PC or relay sends.

A provider of the instrument's own institution makes a key (shown once; its SHA-256 is kept) and
revokes it. A PC sends `start` and `stop` events with it (`portal/usage/client.py` is the reference
client). Each event carries an idempotency key, unique per instrument in the database: an event sent
again (a retry after a lost answer, a queue flushed twice) changes nothing and gets the first answer.

An event is matched to the booking of its moment: a confirmed (or already completed) machine-time
booking of the instrument whose check-in lead time or slot holds the event's time, of the reported
user's enterprise when the portal knows the user. A start opens the booking's session (or joins the
one a QR check-in opened); a start with no booking opens an unbooked session and tells the
instrument's providers ("unbooked use"). A stop ends the reporting user's open session on the
instrument; a stop that comes after the periodic task ended the session at the booking's end moves
the end to the real one (overtime included): the PC knows better than the clock.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime

from flask_babel import gettext as _
from sqlalchemy import func, or_, select, update
from sqlalchemy.exc import IntegrityError

from portal.accounts.members import users_of_institution
from portal.accounts.models import User
from portal.booking.models import Booking, BookingMode, BookingState
from portal.catalog.models import Instrument
from portal.catalog.ownership import owns
from portal.catalog.services import get_instrument
from portal.core import audit, clock
from portal.core.database import changed_rows, serialized_write
from portal.core.errors import NotFound, Unauthorized
from portal.extensions import db
from portal.notifications.services import notify
from portal.usage.models import END_AUTO, DeviceKey, EventKind, UsageEvent, UsageSession, UsageSource
from portal.usage.services import (
    CHECK_IN_OPENS_BEFORE,
    end_session,
    overtime_minutes,
    queue_session_tally,
    record_check_in,
)

KEY_PREFIX = "dk_"
# PostgreSQL advisory-lock namespace (portal.core.database): one instrument's events one at a time.
LOCK_USAGE_EVENTS = 7311
# Bookings a late event can still belong to: confirmed, or completed before the event arrived.
MATCHED_STATES = (BookingState.CONFIRMED, BookingState.COMPLETED)


def _hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


# --- keys ------------------------------------------------------------------------------------------


def _owned_instrument(user: User, code: str) -> Instrument:
    """The instrument, if the user is a provider of its institution; otherwise NotFound, as for none."""
    instrument = get_instrument(code)
    if not owns(user, instrument):
        raise NotFound(_("No instrument has the code %(code)s.", code=code))
    return instrument


def create_device_key(user: User, code: str, label: str = "") -> tuple[DeviceKey, str]:
    """A new key for the instrument: the row and the key itself (shown this once, never stored)."""
    instrument = _owned_instrument(user, code)
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    with serialized_write():
        row = DeviceKey(
            instrument_id=instrument.id,
            label=(label or "").strip()[:80],
            key_hash=_hash(key),
            prefix=key[: len(KEY_PREFIX) + 6],
            created_by_id=user.id,
        )
        db.session.add(row)
        db.session.flush()
        audit.record(
            "instrument.device_key_created",
            "instrument",
            instrument.code,
            after={"device_key": row.id, "prefix": row.prefix, "label": row.label},
            actor_id=user.id,
        )
        db.session.commit()
    return row, key


def instrument_keys(user: User, code: str) -> list[DeviceKey]:
    """The instrument's keys, revoked ones included, the newest first."""
    instrument = _owned_instrument(user, code)
    return list(
        db.session.scalars(
            select(DeviceKey).where(DeviceKey.instrument_id == instrument.id).order_by(DeviceKey.id.desc())
        )
    )


def revoke_device_key(user: User, code: str, key_id: int) -> None:
    """Revoke the key now; events sent with it are refused from then on (again: no change)."""
    instrument = _owned_instrument(user, code)
    row = db.session.get(DeviceKey, key_id)
    if row is None or row.instrument_id != instrument.id:
        raise NotFound(_("No such device key."))
    with serialized_write():
        now = clock.utcnow()
        revoked = changed_rows(
            update(DeviceKey)
            .where(DeviceKey.id == key_id, DeviceKey.revoked_at.is_(None))
            .values(revoked_at=now, revoked_by_id=user.id)
        )
        if revoked:
            audit.record(
                "instrument.device_key_revoked",
                "instrument",
                instrument.code,
                before={"device_key": key_id, "prefix": row.prefix},
                actor_id=user.id,
            )
        db.session.commit()


def key_for(code: str, authorization: str) -> DeviceKey:
    """The live key of `Authorization: Device <key>` for this instrument; Unauthorized otherwise
    (a missing, unknown, revoked or other instrument's key all answer alike)."""
    scheme, _sep, key = (authorization or "").partition(" ")
    row = None
    if scheme.lower() == "device" and key.strip():
        row = db.session.scalar(
            select(DeviceKey)
            .join(Instrument, Instrument.id == DeviceKey.instrument_id)
            .where(DeviceKey.key_hash == _hash(key.strip()), Instrument.code == code)
        )
    if row is None or row.revoked_at is not None:
        raise Unauthorized(_("This needs a valid device key: Authorization: Device <key>."))
    return row


# --- events ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Event:
    kind: EventKind
    at: datetime
    username: str
    idempotency_key: str


def _user(username: str) -> User | None:
    if not username:
        return None
    return db.session.scalar(select(User).where(func.lower(User.username) == username.lower()))


def booking_at(instrument_id: int, at: datetime, user: User | None) -> Booking | None:
    """The booking of that moment on the instrument (of the user's enterprise, if the user has one)."""
    stmt = select(Booking).where(
        Booking.instrument_id == instrument_id,
        Booking.mode == BookingMode.SLOT,
        Booking.state.in_(MATCHED_STATES),
        Booking.starts_at <= at + CHECK_IN_OPENS_BEFORE,
        Booking.ends_at > at,
    )
    if user is not None and user.enterprise_id is not None:
        stmt = stmt.where(Booking.enterprise_id == user.enterprise_id)
    return db.session.scalars(stmt.order_by(Booking.starts_at)).first()


def _open_session_of(instrument_id: int, booking: Booking | None, username: str) -> UsageSession | None:
    stmt = select(UsageSession).where(
        UsageSession.instrument_id == instrument_id, UsageSession.ended_at.is_(None)
    )
    if booking is not None:
        stmt = stmt.where(UsageSession.booking_id == booking.id)
    else:
        stmt = stmt.where(UsageSession.booking_id.is_(None), UsageSession.reported_username == username)
    return db.session.scalars(stmt.order_by(UsageSession.id.desc())).first()


def _start(key: DeviceKey, event: Event, user: User | None) -> UsageSession:
    booking = booking_at(key.instrument_id, event.at, user)
    session = _open_session_of(key.instrument_id, booking, event.username)
    if session is not None:
        return session  # already in use (a QR check-in, or an earlier start): the same session
    session = UsageSession(
        booking_id=booking.id if booking else None,
        instrument_id=key.instrument_id,
        user_id=user.id if user else None,
        started_at=event.at,
        source=UsageSource.DEVICE,
        reported_username=event.username[:80] or None,
    )
    db.session.add(session)
    db.session.flush()
    if booking is not None:
        # The PC's start counts as the booking's check-in (unless it is no longer confirmed: the
        # session still records the use).
        record_check_in(booking.id, event.at)
        audit.record(
            "usage.device_started",
            "booking",
            booking.id,
            after={"session": session.id, "at": clock.iso_utc(event.at)},
        )
    else:
        _tell_unbooked(key, session, event)
    return session


def _tell_unbooked(key: DeviceKey, session: UsageSession, event: Event) -> None:
    instrument = db.session.get_one(Instrument, key.instrument_id)
    audit.record(
        "usage.unbooked",
        "usage_session",
        session.id,
        after={"instrument": instrument.code, "username": event.username, "at": clock.iso_utc(event.at)},
    )
    notify(
        users_of_institution(instrument.institution_id),
        "usage.unbooked",
        f"usage-session:{session.id}:unbooked",
        payload={
            "instrument": instrument.name,
            "code": instrument.code,
            "username": event.username or "?",
            "when": clock.format_local(event.at),
        },
        link=f"/manage/instruments/{instrument.code}/usage",
    )


def _last_session_of(instrument_id: int, username: str) -> UsageSession | None:
    """The reporting user's open session on the instrument, else their last one the task ended."""
    by_user = or_(UsageSession.reported_username == username, UsageSession.user_id == (_user_id(username)))
    base = select(UsageSession).where(UsageSession.instrument_id == instrument_id, by_user)
    open_one = db.session.scalars(
        base.where(UsageSession.ended_at.is_(None)).order_by(UsageSession.id.desc())
    ).first()
    if open_one is not None:
        return open_one
    return db.session.scalars(
        base.where(UsageSession.ended_by == END_AUTO).order_by(UsageSession.id.desc())
    ).first()


def _user_id(username: str) -> int:
    user = _user(username)
    return user.id if user else -1


def _stop(key: DeviceKey, event: Event) -> UsageSession | None:
    session = _last_session_of(key.instrument_id, event.username)
    if session is None:
        return None  # a stop without a start: kept as an event, nothing to end
    booking = db.session.get(Booking, session.booking_id) if session.booking_id else None
    if session.ended_at is None:
        end_session(session, booking, event.at, UsageSource.DEVICE.value)
    elif event.at > session.started_at:
        # Ended at the booking's end by the task, before the PC's stop arrived: the PC's time counts.
        db.session.execute(
            update(UsageSession)
            .where(UsageSession.id == session.id, UsageSession.ended_by == END_AUTO)
            .values(
                ended_at=event.at,
                ended_by=UsageSource.DEVICE.value,
                overtime_minutes=overtime_minutes(booking, event.at),
            )
            .execution_options(synchronize_session=False)
        )
        queue_session_tally(session, booking)
        db.session.expire(session)
    if booking is not None:
        audit.record(
            "usage.device_stopped",
            "booking",
            booking.id,
            after={"session": session.id, "at": clock.iso_utc(event.at)},
        )
    return session


def _existing(instrument_id: int, idempotency_key: str) -> UsageEvent | None:
    return db.session.scalar(
        select(UsageEvent).where(
            UsageEvent.instrument_id == instrument_id, UsageEvent.idempotency_key == idempotency_key
        )
    )


def record_event(key: DeviceKey, event: Event) -> UsageEvent:
    """Take one event of the instrument's PC (see the module's doc); the same idempotency key again
    returns the first event and changes nothing."""
    key_id, instrument_id = key.id, key.instrument_id
    try:
        with serialized_write((LOCK_USAGE_EVENTS, instrument_id)):
            earlier = _existing(instrument_id, event.idempotency_key)
            if earlier is not None:
                return earlier
            row = _apply(db.session.get_one(DeviceKey, key_id), event)
            db.session.commit()
    except IntegrityError:  # the same event committed by another request in between (the backstop)
        earlier = _existing(instrument_id, event.idempotency_key)
        if earlier is None:
            raise
        return earlier
    return row


def _apply(key: DeviceKey, event: Event) -> UsageEvent:
    user = _user(event.username)
    session = _start(key, event, user) if event.kind is EventKind.START else _stop(key, event)
    row = UsageEvent(
        instrument_id=key.instrument_id,
        device_key_id=key.id,
        idempotency_key=event.idempotency_key,
        event=event.kind,
        at=event.at,
        username=event.username[:80],
        session_id=session.id if session else None,
        booking_id=session.booking_id if session else None,
    )
    db.session.add(row)
    key.last_used_at = clock.utcnow()
    db.session.flush()
    return row
