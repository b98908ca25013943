"""What every part of booking shares: who may see and manage a booking, an instrument's rules, the
lists and the history of bookings, whom to call and whom to tell.

The subjects have their own modules: availability (the calendar, conflicts, the week view), requests,
transitions (the state machine), records (service records and fees), files, policy (opening hours,
closures, rules) and calendar (iCalendar feeds and their tokens).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from flask_babel import gettext as _
from sqlalchemy import Select, false, func, or_, select
from sqlalchemy.orm import joinedload

from portal.accounts.members import users_of_enterprise, users_of_institution
from portal.accounts.models import Enterprise, User
from portal.booking.models import Booking, BookingPolicy, BookingSeries, BookingState, ServiceRecord
from portal.catalog.models import Instrument, InstrumentStatus
from portal.catalog.ownership import owns
from portal.core import clock
from portal.core.errors import Forbidden, NotFound, ValidationFailed
from portal.core.models import AuditEvent
from portal.core.permissions import BUREAU_ROLES, Role
from portal.extensions import db
from portal.notifications.services import notify

BOOKABLE_STATUSES = (InstrumentStatus.NORMAL, InstrumentStatus.STANDBY, InstrumentStatus.OCCASIONAL_FAULT)
DEFAULT_POLICY: dict[str, Any] = {
    "accepts_slots": True,
    "accepts_samples": True,
    "min_minutes": 60,
    "max_minutes": 480,
    "step_minutes": 30,
    "min_notice_hours": 24,
    "max_days_ahead": 60,
    "buffer_minutes": 0,
    "cancel_cutoff_hours": 24,
    "no_show_grace_minutes": 30,
}


# --- who may do what ---------------------------------------------------------------------------


def manages(user: User, instrument: Instrument) -> bool:
    """Provider users of the instrument's own institution manage its calendar and bookings."""
    return owns(user, instrument)


def can_view(user: User, booking: Booking) -> bool:
    return sees_bookings_of(user, booking.enterprise_id, booking.instrument)


def sees_bookings_of(user: User, enterprise_id: int, instrument: Instrument) -> bool:
    """Whether the user sees what this enterprise booked on this instrument: the enterprise's own
    users, the instrument's providers, the bureau (a recurring series is seen the same way)."""
    if not user.is_authenticated:
        return False
    if user.role is Role.ENTERPRISE:
        return user.enterprise_id == enterprise_id
    if user.role is Role.PROVIDER:
        return manages(user, instrument)
    return user.role in BUREAU_ROLES


def _scope(user: User, stmt: Select) -> Select:
    """Restrict a bookings query to what the user may see."""
    if user.role is Role.ENTERPRISE:
        return stmt.where(Booking.enterprise_id == user.enterprise_id)
    if user.role is Role.PROVIDER:
        # Waitlist offers not yet accepted are the enterprise's business until they are (issue 18).
        return stmt.join(Instrument, Instrument.id == Booking.instrument_id).where(
            Instrument.institution_id == user.institution_id, Booking.offered_until.is_(None)
        )
    if user.role in BUREAU_ROLES:
        return stmt
    return stmt.where(false())


def get_booking(user: User, booking_id: int) -> Booking:
    """A booking the user may see; any other id is simply not found."""
    booking = db.session.get(
        Booking,
        booking_id,
        options=[
            joinedload(Booking.instrument).joinedload(Instrument.institution),
            joinedload(Booking.enterprise),
            joinedload(Booking.service_record).selectinload(ServiceRecord.files),
        ],
    )
    if booking is None or not can_view(user, booking):
        raise NotFound(_("No booking with this number."))
    return booking


def require_manager(user: User, instrument: Instrument) -> None:
    if not manages(user, instrument):
        raise Forbidden(_("Only the instrument's own institution can do this."))


def is_booking_enterprise(user: User, booking: Booking) -> bool:
    """The user belongs to the enterprise that made the booking."""
    return (
        user.is_authenticated and user.role is Role.ENTERPRISE and user.enterprise_id == booking.enterprise_id
    )


def require_booking_enterprise(user: User, booking: Booking) -> None:
    if not is_booking_enterprise(user, booking):
        raise Forbidden(_("Only the enterprise that made the booking can do this."))


# --- rules of an instrument ---------------------------------------------------------------------


def policy_for(instrument: Instrument) -> BookingPolicy:
    """The instrument's booking rules (the defaults until its provider changes them)."""
    policy = db.session.get(BookingPolicy, instrument.id)
    return policy or BookingPolicy(instrument_id=instrument.id, **DEFAULT_POLICY)


def booking_history(booking: Booking) -> list[AuditEvent]:
    """Everything that happened to the booking and its service record, oldest first."""
    conditions = [(AuditEvent.object_type == "booking") & (AuditEvent.object_id == str(booking.id))]
    if booking.service_record:
        conditions.append(
            (AuditEvent.object_type == "service_record")
            & (AuditEvent.object_id == str(booking.service_record.id))
        )
    return list(db.session.scalars(select(AuditEvent).where(or_(*conditions)).order_by(AuditEvent.id)))


# --- lists -------------------------------------------------------------------------------------


@dataclass
class BookingList:
    items: list[Booking]
    total: int
    page: int
    per_page: int
    counts: dict[str, int]

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.per_page))


def list_bookings(
    user: User,
    *,
    state: str | None = None,
    instrument_code: str | None = None,
    page: int = 1,
    per_page: int = 20,
) -> BookingList:
    """The bookings the user may see (own, own institution's, or all for the bureau), newest first."""
    if state and state not in BookingState.__members__.values():
        raise ValidationFailed(_("Unknown state."), {"state": _("Unknown state.")})
    base = _scope(user, select(Booking.id))
    if instrument_code:
        instrument_id = db.session.scalar(select(Instrument.id).where(Instrument.code == instrument_code))
        base = base.where(Booking.instrument_id == (instrument_id or -1))
    counts = {
        s.value: n
        for s, n in db.session.execute(
            select(Booking.state, func.count())
            .where(Booking.id.in_(base.scalar_subquery()))
            .group_by(Booking.state)
        )
    }
    filtered = base.where(Booking.state == BookingState(state)) if state else base
    total = db.session.execute(select(func.count()).select_from(filtered.subquery())).scalar_one()
    ids = db.session.scalars(
        filtered.order_by(Booking.created_at.desc(), Booking.id.desc())
        .limit(per_page)
        .offset((page - 1) * per_page)
    ).all()
    rows = db.session.scalars(
        select(Booking)
        .where(Booking.id.in_(ids))
        .options(
            joinedload(Booking.instrument).joinedload(Instrument.institution),
            joinedload(Booking.enterprise),
            joinedload(Booking.service_record),
        )
    ).unique()
    by_id = {b.id: b for b in rows}
    return BookingList([by_id[i] for i in ids], total, page, per_page, counts)


def fresh_booking(booking_id: int) -> Booking:
    """The booking as the database has it now (read again inside a transition's transaction)."""
    booking = db.session.get(Booking, booking_id, populate_existing=True)
    if booking is None:
        raise NotFound(_("No booking with this number."))
    return booking


# --- contacts ----------------------------------------------------------------------------------


def operator_contact(instrument: Instrument) -> str:
    """Whom to call about an instrument: '张三, 0635-8239999', what of it is known, else its host."""
    known = [part for part in (instrument.operator_name, instrument.operator_phone) if part]
    return ", ".join(known) if known else instrument.institution.name


@dataclass(frozen=True)
class Contacts:
    """Who to call about a booking: the person who made it, the enterprise's account holder, the operator."""

    requester: User
    holder: User | None
    operator: str


def booking_contacts(booking: Booking) -> Contacts:
    holder = db.session.scalar(
        select(User).where(
            User.enterprise_id == booking.enterprise_id, User.is_holder, User.is_active_account
        )
    )
    return Contacts(booking.requested_by, holder, operator_contact(booking.instrument))


def _person(user: User | None) -> str:
    """'李四, 13812345678' for a notification: the name and the phone, as far as they are known."""
    if user is None:
        return ""
    return ", ".join(part for part in (user.full_name or user.username, user.phone) if part)


# --- notifications --------------------------------------------------------------------------------


def booking_when(booking: Booking) -> str:
    if booking.starts_at:
        return f"{clock.format_local(booking.starts_at)}–{clock.format_local(booking.ends_at, '%H:%M')}"
    return str(booking.sample_delivery_on or "")


def tell(booking: Booking, kind: str, to: str, **extra: Any) -> None:
    """Notify the booking's enterprise ("enterprise") or the instrument's providers ("provider")."""
    instrument = db.session.get_one(Instrument, booking.instrument_id)
    recipients, parties = notified_parties(instrument, booking.enterprise_id, booking.requested_by_id, to)
    payload = {
        **parties,
        "when": booking_when(booking),
        "place": instrument.address or instrument.county,
        "booking": booking.id,
        "operator": operator_contact(instrument),
        **{k: ("" if v is None else v) for k, v in extra.items()},
    }
    notify(recipients, kind, f"booking:{booking.id}:{kind}", payload=payload, link=f"/bookings/{booking.id}")


def notified_parties(
    instrument: Instrument, enterprise_id: int, requested_by_id: int, to: str
) -> tuple[list[User], dict[str, Any]]:
    """Whom a booking's news goes to (the enterprise's users, or the instrument's providers: `to`
    "enterprise" or "provider"), and who and what it is about: the payload every such message has."""
    if to == "enterprise":
        recipients = users_of_enterprise(enterprise_id)
    elif to == "provider":
        recipients = users_of_institution(instrument.institution_id)
    else:  # a misspelt audience must not quietly reach the providers
        raise ValueError(f"a booking's news goes to 'enterprise' or 'provider', not {to!r}")
    return list(recipients), {
        "instrument": instrument.name,
        "institution": instrument.institution.name,
        "enterprise": db.session.get_one(Enterprise, enterprise_id).name,
        "requester": _person(db.session.get(User, requested_by_id)),
    }


def tell_series(
    series: BookingSeries, kind: str, to: str, event: str, bookings: list[Booking], **extra: Any
) -> None:
    """One notification about several occurrences of a recurring booking (not one per occurrence),
    to its enterprise's users or the instrument's providers, linked to the series' page; `event`
    tells this news of the series from any other of the same kind."""
    instrument = db.session.get_one(Instrument, series.instrument_id)
    recipients, parties = notified_parties(instrument, series.enterprise_id, series.requested_by_id, to)
    payload = {
        **parties,
        "count": len(bookings),
        "first": booking_when(bookings[0]),
        "last": booking_when(bookings[-1]),
        "series": series.id,
        **{k: ("" if v is None else v) for k, v in extra.items()},
    }
    notify(
        recipients, kind, f"series:{series.id}:{event}", payload=payload, link=f"/bookings/series/{series.id}"
    )
