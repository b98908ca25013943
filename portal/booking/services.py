"""Booking rules: availability, requests, the state machine, service records, and who may do what.

Every transition is one function that checks the actor, changes the state with a conditional UPDATE
(so two clicks can never both succeed), writes an audit row and commits, all in one transaction.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, Protocol

from flask import current_app
from flask_babel import gettext as _
from sqlalchemy import Select, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import joinedload, selectinload

from portal.accounts.models import Enterprise, User, VerificationState
from portal.booking.models import (
    HOLDING_STATES,
    Blackout,
    BlackoutKind,
    Booking,
    BookingMode,
    BookingPolicy,
    BookingState,
    FileKind,
    ServiceFile,
    ServiceRecord,
    ServiceType,
)
from portal.catalog import prices
from portal.catalog.models import Instrument, InstrumentStatus, OpeningHours
from portal.core import audit, clock, held_uploads, uploads
from portal.core.database import LOCK_INSTRUMENT_CALENDAR, serialized_write
from portal.core.errors import Forbidden, InvalidTransition, NotFound, SlotConflict, ValidationFailed
from portal.core.models import AuditEvent
from portal.core.permissions import BUREAU_ROLES, Role
from portal.extensions import db
from portal.qualifications import services as use_rules

MIDNIGHT_MARK = time(23, 59)
# What a calendar may span: views ask for days, a closure may last years; beyond that, and outside
# the working years, it is a typing error (or an attack: the span is walked day by day).
CALENDAR_MAX_SPAN = timedelta(days=3660)
CALENDAR_EARLIEST = datetime(clock.FIRST_YEAR, 1, 1, tzinfo=UTC)
CALENDAR_LATEST = datetime(clock.LAST_YEAR + 1, 1, 1, tzinfo=UTC)
SERVICE_TYPES = tuple(t.value for t in ServiceType)
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
}

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


# --- who may do what ---------------------------------------------------------------------------


def manages(user: User, instrument: Instrument) -> bool:
    """Provider users of the instrument's own institution manage its calendar and bookings."""
    return (
        user.is_authenticated
        and user.role is Role.PROVIDER
        and user.institution_id is not None
        and user.institution_id == instrument.institution_id
    )


def can_view(user: User, booking: Booking) -> bool:
    if not user.is_authenticated:
        return False
    if user.role is Role.ENTERPRISE:
        return user.enterprise_id == booking.enterprise_id
    if user.role is Role.PROVIDER:
        return manages(user, booking.instrument)
    return user.role in BUREAU_ROLES


def _scope(user: User, stmt: Select) -> Select:
    """Restrict a bookings query to what the user may see."""
    if user.role is Role.ENTERPRISE:
        return stmt.where(Booking.enterprise_id == user.enterprise_id)
    if user.role is Role.PROVIDER:
        return stmt.join(Instrument, Instrument.id == Booking.instrument_id).where(
            Instrument.institution_id == user.institution_id
        )
    if user.role in BUREAU_ROLES:
        return stmt
    return stmt.where(False)


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


def _require_manager(user: User, instrument: Instrument) -> None:
    if not manages(user, instrument):
        raise Forbidden(_("Only the instrument's own institution can do this."))


def _require_booking_enterprise(user: User, booking: Booking) -> None:
    if user.role is not Role.ENTERPRISE or user.enterprise_id != booking.enterprise_id:
        raise Forbidden(_("Only the enterprise that made the booking can do this."))


# --- rules of an instrument ---------------------------------------------------------------------


def policy_for(instrument: Instrument) -> BookingPolicy:
    """The instrument's booking rules (the defaults until its provider changes them)."""
    policy = db.session.get(BookingPolicy, instrument.id)
    return policy or BookingPolicy(instrument_id=instrument.id, **DEFAULT_POLICY)


@dataclass
class Span:
    """A half-open UTC interval [start, end), with what it is when it is held or closed."""

    start: datetime
    end: datetime
    kind: str = ""
    note: str = ""

    def as_dict(self) -> dict[str, Any]:
        data = {"start": clock.iso_utc(self.start), "end": clock.iso_utc(self.end)}
        if self.kind:
            data["kind"] = self.kind
        return data


def _merge(spans: list[Span]) -> list[Span]:
    out: list[Span] = []
    for span in sorted(spans, key=lambda s: s.start):
        if out and span.start <= out[-1].end and span.kind == out[-1].kind:
            out[-1].end = max(out[-1].end, span.end)
        elif span.end > span.start:
            out.append(Span(span.start, span.end, span.kind, span.note))
    return out


def _subtract(spans: list[Span], cuts: list[Span]) -> list[Span]:
    out = []
    for span in spans:
        pieces = [span]
        for cut in cuts:
            next_pieces = []
            for piece in pieces:
                if cut.end <= piece.start or cut.start >= piece.end:
                    next_pieces.append(piece)
                    continue
                if cut.start > piece.start:
                    next_pieces.append(Span(piece.start, cut.start, piece.kind))
                if cut.end < piece.end:
                    next_pieces.append(Span(cut.end, piece.end, piece.kind))
            pieces = next_pieces
        out.extend(pieces)
    return _merge(out)


def _clip(span: Span, start: datetime, end: datetime) -> Span | None:
    clipped = Span(max(span.start, start), min(span.end, end), span.kind, span.note)
    return clipped if clipped.start < clipped.end else None


@dataclass
class Problem:
    rule: str
    message: str


@dataclass
class Calendar:
    """An instrument's time between two instants: when it opens, what is closed, what is held."""

    instrument: Instrument
    policy: BookingPolicy
    start: datetime
    end: datetime
    now: datetime
    opening: list[Span] = field(default_factory=list)
    blackouts: list[Span] = field(default_factory=list)
    holds: list[Span] = field(default_factory=list)

    @classmethod
    def load(
        cls, instrument: Instrument, start: datetime, end: datetime, now: datetime | None = None
    ) -> Calendar:
        # The loop below walks every day of the range: refuse input that would make it run for
        # seconds (a far end) or overflow (the edges of datetime), instead of a 500 after the wait.
        inside = CALENDAR_EARLIEST <= start <= CALENDAR_LATEST and CALENDAR_EARLIEST <= end <= CALENDAR_LATEST
        if not inside or end - start > CALENDAR_MAX_SPAN:
            message = _("Choose times between 2000 and 2099, at most ten years apart.")
            raise ValidationFailed(message, {"starts_at": message})
        calendar = cls(instrument, policy_for(instrument), start, end, now or clock.utcnow())
        hours = db.session.scalars(
            select(OpeningHours).where(OpeningHours.instrument_id == instrument.id)
        ).all()
        day = clock.to_local(start).date() - timedelta(days=1)
        while clock.local_datetime_to_utc(day, datetime.min.time()) < end:
            for h in hours:
                if h.weekday == day.weekday():
                    # 23:59 means "until midnight", so instruments open round the clock book across days.
                    closes = (
                        clock.local_datetime_to_utc(day + timedelta(days=1), datetime.min.time())
                        if h.closes_at >= MIDNIGHT_MARK
                        else clock.local_datetime_to_utc(day, h.closes_at)
                    )
                    span = _clip(Span(clock.local_datetime_to_utc(day, h.opens_at), closes), start, end)
                    if span:
                        calendar.opening.append(span)
            day += timedelta(days=1)
        calendar.opening = _merge(calendar.opening)
        blackouts = db.session.scalars(
            select(Blackout).where(
                Blackout.instrument_id == instrument.id, Blackout.starts_at < end, Blackout.ends_at > start
            )
        )
        calendar.blackouts = [Span(b.starts_at, b.ends_at, b.kind.value, b.reason) for b in blackouts]
        # Holds are loaded a buffer wider, so a slot's buffer can be checked against its neighbours.
        margin = timedelta(minutes=calendar.policy.buffer_minutes)
        holds = db.session.execute(
            select(Booking.starts_at, Booking.held_until, Booking.ends_at).where(
                Booking.instrument_id == instrument.id,
                Booking.mode == BookingMode.SLOT,
                Booking.state.in_(HOLDING_STATES),
                Booking.starts_at < end + margin,
                Booking.held_until > start,
            )
        ).all()
        calendar.holds = [Span(s, held_until, "booking") for s, held_until, _ends in holds]
        return calendar

    def bookable_window(self) -> Span:
        first = self.now + timedelta(hours=self.policy.min_notice_hours)
        last_day = clock.local_today(self.now) + timedelta(days=self.policy.max_days_ahead + 1)
        return Span(first, clock.local_datetime_to_utc(last_day, datetime.min.time()))

    def availability(self) -> dict[str, list[Span]]:
        """Free, held and closed time in [start, end): what the week view and the API show."""
        window = self.bookable_window()
        bookable = [s for s in (_clip(o, window.start, window.end) for o in self.opening) if s]
        if not self.instrument_is_bookable():
            bookable = []
        held = _merge([s for s in (_clip(h, self.start, self.end) for h in self.holds) if s])
        blackouts = [s for s in (_clip(b, self.start, self.end) for b in self.blackouts) if s]
        free = _subtract(bookable, [*blackouts, *held])
        taken = [Span(s.start, s.end) for s in (*free, *held, *blackouts)]
        closed = _subtract([Span(self.start, self.end, "closed")], taken)
        closed = sorted([*closed, *_subtract(blackouts, held)], key=lambda s: s.start)
        return {"free": free, "held": held, "closed": closed}

    def instrument_is_bookable(self) -> bool:
        return self.instrument.status in BOOKABLE_STATUSES and self.policy.accepts_slots

    def problems(self, starts_at: datetime, ends_at: datetime) -> list[Problem]:
        """Every booking rule this slot breaks (empty when it may be requested)."""
        policy = self.policy
        if self.instrument.status not in BOOKABLE_STATUSES:
            return [Problem("not_bookable", _("This instrument cannot be booked in its present state."))]
        if not policy.accepts_slots:
            return [Problem("mode_not_offered", _("This instrument takes sample submissions only."))]
        if starts_at >= ends_at:
            return [Problem("invalid_range", _("The end must be after the start."))]
        out = []
        minutes = (ends_at - starts_at).total_seconds() / 60
        local_start = clock.to_local(starts_at)
        if (
            (local_start.hour * 60 + local_start.minute) % policy.step_minutes
            or minutes % policy.step_minutes
            or (local_start.second or local_start.microsecond)
        ):
            out.append(
                Problem("off_grid", _("Slots start and end on the %(n)d-minute grid.", n=policy.step_minutes))
            )
        if minutes < policy.min_minutes:
            out.append(
                Problem("too_short", _("A booking lasts at least %(n)d minutes.", n=policy.min_minutes))
            )
        if minutes > policy.max_minutes:
            out.append(Problem("too_long", _("A booking lasts at most %(n)d minutes.", n=policy.max_minutes)))
        window = self.bookable_window()
        if starts_at < self.now:
            out.append(Problem("in_past", _("This time has already passed.")))
        elif starts_at < window.start:
            out.append(
                Problem("too_late", _("Book at least %(n)d hours in advance.", n=policy.min_notice_hours))
            )
        if ends_at > window.end:
            out.append(Problem("too_far_ahead", _("Book at most %(n)d days ahead.", n=policy.max_days_ahead)))
        if not any(o.start <= starts_at and ends_at <= o.end for o in self.opening):
            out.append(
                Problem("outside_open_hours", _("The instrument is not open for the whole of this time."))
            )
        return out

    def conflicts(self, starts_at: datetime, ends_at: datetime) -> list[Span]:
        """Blackouts and held slots this slot (with its buffer) would overlap."""
        held_until = ends_at + timedelta(minutes=self.policy.buffer_minutes)
        clashes = [b for b in self.blackouts if b.start < ends_at and b.end > starts_at]
        clashes += [h for h in self.holds if h.start < held_until and h.end > starts_at]
        return sorted(clashes, key=lambda s: s.start)

    def valid_ends(self, starts_at: datetime) -> list[datetime]:
        """The end times a form may offer for a slot starting at `starts_at`."""
        step = timedelta(minutes=self.policy.step_minutes)
        out = []
        ends_at = starts_at + timedelta(minutes=self.policy.min_minutes)
        while ends_at <= starts_at + timedelta(minutes=self.policy.max_minutes):
            if not self.problems(starts_at, ends_at) and not self.conflicts(starts_at, ends_at):
                out.append(ends_at)
            ends_at += step
        return out


def _conflict_error(clashes: list[Span]) -> SlotConflict:
    first = clashes[0]
    when = f"{clock.format_local(first.start)}–{clock.format_local(first.end, '%H:%M')}"
    if first.kind == "booking":
        message = _("This time clashes with a booking held from %(when)s.", when=when)
    else:
        message = _("This time clashes with a closure of the instrument, %(when)s.", when=when)
    conflicts = [
        {**c.as_dict(), "starts_at": clock.iso_utc(c.start), "ends_at": clock.iso_utc(c.end)} for c in clashes
    ]
    for item, clash in zip(conflicts, clashes, strict=True):
        item.pop("start")
        item.pop("end")
        if clash.kind != "booking" and clash.note:
            item["reason"] = clash.note
    return SlotConflict(message, {"conflicts": conflicts})


# --- requests ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class BookingRequest:
    mode: BookingMode
    purpose: str = ""
    starts_at: datetime | None = None
    ends_at: datetime | None = None
    sample_count: int | None = None
    sample_description: str | None = None
    sample_delivery_on: date | None = None
    operation: str | None = None  # slots: "self" (default) or "staff" (issue 17)


def _check_enterprise_may_book(user: User) -> None:
    if not user.is_authenticated or user.role is not Role.ENTERPRISE:
        raise Forbidden(_("Only enterprise accounts can book instruments."))
    if user.enterprise.verification_state is VerificationState.REJECTED:
        raise Forbidden(_("Your enterprise's verification was rejected; contact the bureau."))


def _check_sample_request(instrument: Instrument, policy: BookingPolicy, request: BookingRequest) -> None:
    fields: dict[str, str] = {}
    if instrument.status not in BOOKABLE_STATUSES:
        raise ValidationFailed(
            _("This instrument cannot be booked in its present state."), {"rule": "not_bookable"}
        )
    if not policy.accepts_samples:
        raise ValidationFailed(
            _("This instrument takes machine-time bookings only."), {"mode": "mode_not_offered"}
        )
    if not request.sample_count or request.sample_count < 1:
        fields["sample_count"] = _("At least one sample.")
    if not (request.sample_description or "").strip():
        fields["sample_description"] = _("Describe the samples.")
    today = clock.local_today()
    if request.sample_delivery_on is None:
        fields["sample_delivery_on"] = _("Give the date the samples will arrive.")
    elif request.sample_delivery_on < today:
        fields["sample_delivery_on"] = _("This date has already passed.")
    elif request.sample_delivery_on > today + timedelta(days=policy.max_days_ahead):
        fields["sample_delivery_on"] = _("At most %(n)d days ahead.", n=policy.max_days_ahead)
    if fields:
        raise ValidationFailed(_("Please correct the marked fields."), fields)


def request_booking(user: User, instrument_code: str, request: BookingRequest) -> Booking:
    """An enterprise asks for a slot or a sample service; a slot is held from this moment."""
    _check_enterprise_may_book(user)
    if len(request.purpose) > 2000 or len(request.sample_description or "") > 2000:
        raise ValidationFailed(_("At most 2,000 characters."), {"purpose": _("At most 2,000 characters.")})
    instrument = db.session.scalar(select(Instrument).where(Instrument.code == instrument_code))
    if instrument is None:
        raise NotFound(_("No instrument has the code %(code)s.", code=instrument_code))
    instrument_id, user_id, enterprise_id = instrument.id, user.id, user.enterprise_id
    with serialized_write((LOCK_INSTRUMENT_CALENDAR, instrument_id), shared=True):
        instrument = db.session.get(Instrument, instrument_id)
        policy = policy_for(instrument)
        booking = Booking(
            instrument_id=instrument_id,
            enterprise_id=enterprise_id,
            requested_by_id=user_id,
            mode=request.mode,
            state=BookingState.REQUESTED,
            purpose=request.purpose.strip(),
            # Issue 17: the operation mode (refused without a qualification) and the frozen price.
            **use_rules.booking_terms(
                user, instrument, request.mode.value, request.operation, request.starts_at, request.ends_at
            ),
        )
        if request.mode is BookingMode.SLOT:
            if request.starts_at is None or request.ends_at is None:
                raise ValidationFailed(_("Give a start and an end."), {"starts_at": _("Required.")})
            buffer = timedelta(minutes=policy.buffer_minutes)
            calendar = Calendar.load(instrument, request.starts_at, request.ends_at + buffer)
            problems = calendar.problems(request.starts_at, request.ends_at)
            if problems:
                raise ValidationFailed(
                    problems[0].message,
                    {
                        "starts_at": problems[0].message,
                        "rule": problems[0].rule,
                        "rules": [p.rule for p in problems],
                    },
                )
            clashes = calendar.conflicts(request.starts_at, request.ends_at)
            if clashes:
                raise _conflict_error(clashes)
            booking.starts_at, booking.ends_at = request.starts_at, request.ends_at
            booking.held_until = request.ends_at + buffer
        else:
            _check_sample_request(instrument, policy, request)
            booking.sample_count = request.sample_count
            booking.sample_description = request.sample_description.strip()
            booking.sample_delivery_on = request.sample_delivery_on
        db.session.add(booking)
        try:
            db.session.flush()
        except IntegrityError as error:
            # Another request took the slot between our check and our insert: the exclusion
            # constraint refused this one. Name the booking that won.
            db.session.rollback()
            if getattr(error.orig, "sqlstate", None) != "23P01":
                raise
            calendar = Calendar.load(instrument, request.starts_at, request.ends_at + buffer)
            raise _conflict_error(calendar.conflicts(request.starts_at, request.ends_at)) from None
        audit.record(
            "booking.requested",
            "booking",
            booking.id,
            after={"state": booking.state.value, "mode": booking.mode.value, "instrument": instrument.code},
            actor_id=user_id,
        )
        _tell(booking, "booking.requested", "provider")
        db.session.commit()
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


def _when(booking: Booking) -> str:
    if booking.starts_at:
        return f"{clock.format_local(booking.starts_at)}–{clock.format_local(booking.ends_at, '%H:%M')}"
    return str(booking.sample_delivery_on or "")


def _tell(booking: Booking, kind: str, to: str, **extra: Any) -> None:
    """Notify the booking's enterprise ("enterprise") or the instrument's providers ("provider")."""
    from portal.notifications.services import notify, users_of_enterprise, users_of_institution

    instrument = db.session.get(Instrument, booking.instrument_id)
    recipients = (
        users_of_enterprise(booking.enterprise_id)
        if to == "enterprise"
        else users_of_institution(instrument.institution_id)
    )
    payload = {
        "instrument": instrument.name,
        "institution": instrument.institution.name,
        "enterprise": db.session.get(Enterprise, booking.enterprise_id).name,
        "when": _when(booking),
        "place": instrument.address or instrument.county,
        "booking": booking.id,
        "operator": operator_contact(instrument),
        "requester": _person(db.session.get(User, booking.requested_by_id)),
        **{k: ("" if v is None else v) for k, v in extra.items()},
    }
    notify(recipients, kind, f"booking:{booking.id}:{kind}", payload=payload, link=f"/bookings/{booking.id}")


# --- transitions -------------------------------------------------------------------------------


def _transition(
    booking: Booking, action: str, actor: User | None, *, why: str | None = None, **values
) -> Booking:
    """Move a booking along the state machine, atomically, with its audit row (`why` goes in the audit)."""
    before = booking.state
    target = TRANSITIONS.get((before, action))
    if target is None:
        raise InvalidTransition(
            _("A booking that is %(state)s cannot be changed this way.", state=_state_text(before)),
            {"state": before.value, "action": action},
        )
    now = clock.utcnow()
    result = db.session.execute(
        update(Booking)
        .where(Booking.id == booking.id, Booking.state == before)
        .values(state=target, updated_at=now, **values)
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:
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
    return booking


def _state_text(state: BookingState) -> str:
    from portal.booking.models import STATE_LABELS

    return str(STATE_LABELS[state])


def _fresh(booking_id: int) -> Booking:
    booking = db.session.get(Booking, booking_id, populate_existing=True)
    if booking is None:
        raise NotFound(_("No booking with this number."))
    return booking


def _required_reason(reason: str | None) -> str:
    reason = (reason or "").strip()
    if not reason:
        raise ValidationFailed(_("Please give a reason."), {"reason": _("Required.")})
    if len(reason) > 1000:
        raise ValidationFailed(_("At most 1,000 characters."), {"reason": _("At most 1,000 characters.")})
    return reason


def confirm_booking(user: User, booking_id: int) -> Booking:
    """The provider accepts a request."""
    with serialized_write():
        booking = _fresh(booking_id)
        _require_manager(user, booking.instrument)
        _transition(booking, "confirm", user, decided_at=clock.utcnow())
        _tell(booking, "booking.confirmed", "enterprise")
        db.session.commit()
    return _fresh(booking_id)


def reject_booking(user: User, booking_id: int, reason: str | None) -> Booking:
    """The provider declines a request, saying why; the slot is free again."""
    reason = _required_reason(reason)
    with serialized_write():
        booking = _fresh(booking_id)
        _require_manager(user, booking.instrument)
        _transition(booking, "reject", user, why=reason, reason=reason, decided_at=clock.utcnow())
        _tell(booking, "booking.rejected", "enterprise", reason=reason)
        db.session.commit()
    return _fresh(booking_id)


def cancellation_deadline(booking: Booking) -> datetime | None:
    """Until when the enterprise may still cancel a confirmed booking itself."""
    cutoff = timedelta(hours=policy_for(booking.instrument).cancel_cutoff_hours)
    if booking.mode is BookingMode.SLOT:
        return booking.starts_at - cutoff
    if booking.sample_delivery_on:
        return clock.local_datetime_to_utc(booking.sample_delivery_on, datetime.min.time()) - cutoff
    return None


def cancel_booking(user: User, booking_id: int, reason: str | None) -> Booking:
    """The enterprise cancels (confirmed ones before the cut-off only); the provider any time, saying why."""
    with serialized_write():
        booking = _fresh(booking_id)
        if user.role is Role.PROVIDER:
            _require_manager(user, booking.instrument)
            reason = _required_reason(reason)
        else:
            _require_booking_enterprise(user, booking)
            reason = (reason or "").strip()[:1000] or None
            deadline = cancellation_deadline(booking)
            if booking.state is BookingState.CONFIRMED and deadline and clock.utcnow() > deadline:
                raise InvalidTransition(
                    _(
                        "Confirmed bookings can be cancelled online until %(when)s; "
                        "please call the operator: %(contact)s.",
                        when=clock.format_local(deadline),
                        contact=operator_contact(booking.instrument),
                    ),
                    {"rule": "cancel_cutoff"},
                )
        _transition(booking, "cancel", user, why=reason, reason=reason)
        _tell(
            booking,
            "booking.cancelled",
            "enterprise" if user.role is Role.PROVIDER else "provider",
            reason=reason,
        )
        db.session.commit()
    return _fresh(booking_id)


def recordable_from(booking: Booking) -> datetime:
    """When the service of a booking can be recorded: its start, or the day its samples arrive.

    A sample booking without a delivery date (older rows) counts from the day it was made.
    """
    if booking.mode is BookingMode.SLOT:
        return booking.starts_at
    day = booking.sample_delivery_on or clock.to_local(booking.created_at).date()
    return clock.local_datetime_to_utc(day, time.min)


def _require_started(booking: Booking, what: str) -> None:
    if clock.utcnow() >= recordable_from(booking):
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


def mark_no_show(user: User, booking_id: int) -> Booking:
    """The provider records that the enterprise did not come."""
    with serialized_write():
        booking = _fresh(booking_id)
        _require_manager(user, booking.instrument)
        if booking.mode is not BookingMode.SLOT:
            raise InvalidTransition(_("Only machine-time bookings can be no-shows."))
        _require_started(booking, "no_show")
        _transition(booking, "no_show", user)
        db.session.commit()
    return _fresh(booking_id)


class PricedInstrument(Protocol):
    fee_per_hour_fen: int | None
    fee_per_sample_fen: int | None


def compute_fee(instrument: PricedInstrument, hours: Decimal | None, samples: int | None) -> int:
    """The fee the instrument's published standard gives (fen, rounded half up)."""
    total = Decimal(0)
    if hours and instrument.fee_per_hour_fen is not None:
        total += Decimal(instrument.fee_per_hour_fen) * hours
    if samples and instrument.fee_per_sample_fen is not None:
        total += Decimal(instrument.fee_per_sample_fen) * samples
    return int(total.quantize(Decimal(1), rounding=ROUND_HALF_UP))


@dataclass(frozen=True)
class ServiceReport:
    hours: Decimal | None = None
    samples: int | None = None
    fee_fen: int | None = None
    fee_reason: str | None = None
    result_summary: str = ""
    service_type: str = "analysis"
    hours_reason: str | None = None


def booked_hours(booking: Booking) -> Decimal | None:
    """The hours a slot booking reserved (None for samples)."""
    if booking.mode is not BookingMode.SLOT or booking.starts_at is None:
        return None
    return Decimal((booking.ends_at - booking.starts_at).total_seconds()) / 3600


def _check_report(report: ServiceReport) -> None:
    fields: dict[str, str] = {}
    if report.hours is None and report.samples is None:
        fields["hours"] = _("Give the hours used or the number of samples.")
    if report.hours is not None and (
        report.hours <= 0 or report.hours > 1000 or report.hours != report.hours.quantize(Decimal("0.01"))
    ):
        fields["hours"] = _("Hours above 0, with at most two decimals.")
    if report.samples is not None and not 0 < report.samples <= 100_000:
        fields["samples"] = _("At least one sample.")
    if report.fee_fen is not None and not 0 <= report.fee_fen <= 10**11:
        fields["fee_fen"] = _("Must not be negative.")
    if report.service_type not in SERVICE_TYPES:
        fields["service_type"] = _("Unknown service type.")
    for name in ("fee_reason", "hours_reason"):
        if len(getattr(report, name) or "") > 500:
            fields[name] = _("At most 500 characters.")
    if fields:
        raise ValidationFailed(_("Please correct the marked fields."), fields)


def _check_hours(booking: Booking, report: ServiceReport) -> str | None:
    """The reason for billing more hours than were booked; refused when it is missing."""
    booked = booked_hours(booking)
    reason = (report.hours_reason or "").strip() or None
    if booked is None or report.hours is None or report.hours <= booked:
        return None
    if not reason:
        message = _(
            "%(hours)s hours were used but %(booked)s booked: say why.",
            hours=f"{report.hours.normalize():f}",
            booked=f"{booked.normalize():f}",
        )
        raise ValidationFailed(message, {"hours_reason": message})
    return reason


def complete_booking(
    user: User,
    booking_id: int,
    report: ServiceReport,
    files: dict[FileKind, uploads.StoredFile] | None = None,
) -> ServiceRecord:
    """The provider records the service done, its fee and its evidence files, in one transaction.

    The fee is the standard one unless a reason is given; more hours than booked need a reason too.
    `files` are uploads already checked and stored (`portal.core.uploads`); they become the record's.
    """
    _check_report(report)
    with serialized_write():
        booking = _fresh(booking_id)
        _require_manager(user, booking.instrument)
        _require_started(booking, "complete")
        hours_reason = _check_hours(booking, report)
        # Issue 17: the price frozen at booking; bookings from before price tables use the standard.
        computed = prices.booking_fee(
            booking.price_terms, report.hours, report.samples, booked_hours(booking)
        )
        if computed is None:
            computed = compute_fee(booking.instrument, report.hours, report.samples)
        fee = computed if report.fee_fen is None else report.fee_fen
        reason = (report.fee_reason or "").strip() or None
        if fee != computed and not reason:
            message = _("A fee other than the standard %(fee)s needs a reason.", fee=_yuan(computed))
            raise ValidationFailed(message, {"fee_reason": message})
        _transition(booking, "complete", user)
        record = ServiceRecord(
            booking_id=booking.id,
            hours=report.hours,
            samples=report.samples,
            computed_fee_fen=computed,
            fee_fen=fee,
            fee_reason=reason if fee != computed else None,
            hours_reason=hours_reason,
            result_summary=report.result_summary.strip()[:4000],
            service_type=report.service_type,
            service_way=use_rules.service_way(booking.mode.value, booking.operation),
            recorded_by_id=user.id,
            recorded_at=clock.utcnow(),
        )
        db.session.add(record)
        db.session.flush()
        audit.record(
            "service.recorded",
            "service_record",
            record.id,
            after={
                "booking": booking.id,
                "hours": None if report.hours is None else str(report.hours),
                "booked_hours": None if booked_hours(booking) is None else str(booked_hours(booking)),
                "fee_fen": fee,
                "computed_fee_fen": computed,
            },
            reason="; ".join(r for r in (record.fee_reason, hours_reason) if r) or None,
            actor_id=user.id,
        )
        for kind, stored in (files or {}).items():
            _add_file(user, record.id, kind, stored)
        _tell(booking, "service.recorded", "enterprise", fee=_yuan(fee))
        db.session.commit()
    return record


def _yuan(fen: int) -> str:
    from portal.core.money import format_yuan

    return format_yuan(fen)


def rate_service(user: User, booking_id: int, rating: int, comment: str | None = None) -> ServiceRecord:
    """The enterprise confirms the service and rates it (1 = very poor … 5 = very satisfied), once."""
    if rating not in range(1, 6):
        raise ValidationFailed(
            _("Choose one of the five ratings."), {"rating": _("Choose one of the five ratings.")}
        )
    with serialized_write():
        booking = _fresh(booking_id)
        _require_booking_enterprise(user, booking)
        record = booking.service_record
        if booking.state is not BookingState.COMPLETED or record is None:
            raise InvalidTransition(_("Only a completed service can be rated."))
        result = db.session.execute(
            update(ServiceRecord)
            .where(ServiceRecord.id == record.id, ServiceRecord.rating.is_(None))
            .values(
                rating=rating, rating_comment=(comment or "").strip()[:1000] or None, rated_at=clock.utcnow()
            )
            .execution_options(synchronize_session=False)
        )
        if result.rowcount != 1:
            db.session.rollback()
            raise InvalidTransition(_("This service has already been rated."))
        audit.record("service.rated", "service_record", record.id, after={"rating": rating}, actor_id=user.id)
        db.session.commit()
    return db.session.get(ServiceRecord, record.id, populate_existing=True)


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
            claimed = db.session.execute(
                update(Booking)
                .where(Booking.id == booking_id, Booking.reminded_at.is_(None))
                .values(reminded_at=now)
                .execution_options(synchronize_session=False)
            ).rowcount
            if claimed:
                _tell(_fresh(booking_id), "booking.reminder", "enterprise")
                sent += 1
            db.session.commit()
    return sent


def expire_unanswered(now: datetime | None = None) -> int:
    """Requests nobody answered in time (or whose slot has begun) expire; returns how many."""
    now = now or clock.utcnow()
    ttl = timedelta(hours=current_app.config["BOOKING_REQUEST_TTL_HOURS"])
    due = db.session.scalars(
        select(Booking.id).where(
            Booking.state == BookingState.REQUESTED,
            or_(Booking.created_at <= now - ttl, Booking.starts_at <= now),
        )
    ).all()
    expired = 0
    for booking_id in due:
        with serialized_write():
            booking = _fresh(booking_id)
            if booking.state is not BookingState.REQUESTED:
                continue
            _transition(booking, "expire", None, why="no answer in time")
            _tell(booking, "booking.expired", "enterprise")
            db.session.commit()
            expired += 1
    return expired


def booking_history(booking: Booking) -> list[AuditEvent]:
    """Everything that happened to the booking and its service record, oldest first."""
    conditions = [(AuditEvent.object_type == "booking") & (AuditEvent.object_id == str(booking.id))]
    if booking.service_record:
        conditions.append(
            (AuditEvent.object_type == "service_record")
            & (AuditEvent.object_id == str(booking.service_record.id))
        )
    return list(db.session.scalars(select(AuditEvent).where(or_(*conditions)).order_by(AuditEvent.id)))


# --- evidence files ----------------------------------------------------------------------------


def attach_file(user: User, record_id: int, kind: FileKind, stream, filename: str | None) -> ServiceFile:
    """Add a contract, invoice, receipt or result to a service record (either side of the service)."""
    record = db.session.get(ServiceRecord, record_id)
    if record is None or not can_view(user, record.booking):
        raise NotFound(_("No service record with this number."))
    booking = record.booking
    if not (
        manages(user, booking.instrument)
        or (user.role is Role.ENTERPRISE and user.enterprise_id == booking.enterprise_id)
    ):
        raise Forbidden(_("Only the provider and the enterprise of this service can add files."))
    stored = uploads.store_upload(stream, filename)
    try:
        with serialized_write():
            row = _add_file(user, record_id, kind, stored)
            db.session.commit()
    except BaseException:
        uploads.discard(stored.stored_name)
        raise
    return row


def _add_file(user: User, record_id: int, kind: FileKind, stored: uploads.StoredFile) -> ServiceFile:
    """The row and the audit entry of a checked, stored file (committed by the caller)."""
    held_uploads.settle(stored.stored_name)  # before the commit: at worst an unused file stays behind
    row = ServiceFile.from_upload(stored, record_id, kind, user.id)
    db.session.add(row)
    db.session.flush()
    audit.record(
        "service.file_added",
        "service_record",
        record_id,
        after={"file": row.id, "kind": kind.value, "sha256": stored.sha256, "size": stored.size},
        actor_id=user.id,
    )
    return row


def get_service_file(user: User, record_id: int, file_id: int) -> ServiceFile:
    row = db.session.get(ServiceFile, file_id)
    if row is None or row.record_id != record_id or not can_view(user, row.record.booking):
        raise NotFound(_("No such file."))
    return row


def get_service_record(user: User, record_id: int) -> ServiceRecord:
    record = db.session.get(ServiceRecord, record_id, options=[selectinload(ServiceRecord.files)])
    if record is None or not can_view(user, record.booking):
        raise NotFound(_("No service record with this number."))
    return record


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
    total = db.session.scalar(select(func.count()).select_from(filtered.subquery()))
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


# --- instrument settings (providers) ------------------------------------------------------------


def update_policy(user: User, instrument: Instrument, values: dict[str, Any]) -> BookingPolicy:
    """The provider changes how the instrument is booked."""
    _require_manager(user, instrument)
    if values["min_minutes"] > values["max_minutes"]:
        raise ValidationFailed(
            _("The shortest booking is longer than the longest."), {"max_minutes": _("Below the minimum.")}
        )
    for name in ("min_minutes", "max_minutes", "buffer_minutes"):
        if values[name] % values["step_minutes"]:
            message = _("Use multiples of the %(n)d-minute grid.", n=values["step_minutes"])
            raise ValidationFailed(message, {name: message})
    with serialized_write():
        policy = db.session.get(BookingPolicy, instrument.id)
        before = None
        if policy is None:
            policy = BookingPolicy(instrument_id=instrument.id, **DEFAULT_POLICY)
            db.session.add(policy)
        else:
            before = {k: getattr(policy, k) for k in DEFAULT_POLICY}
        for key in DEFAULT_POLICY:
            setattr(policy, key, values[key])
        audit.record(
            "instrument.policy_changed",
            "instrument",
            instrument.code,
            before=before,
            after=dict(values),
            actor_id=user.id,
        )
        db.session.commit()
    return policy


def set_opening_hours(user: User, instrument: Instrument, intervals: list[tuple[int, Any, Any]]) -> None:
    """Replace the instrument's weekly opening hours (weekday, opens, closes in Shanghai time)."""
    _require_manager(user, instrument)
    by_day: dict[int, list] = {}
    for weekday, opens, closes in intervals:
        if opens >= closes:
            message = _("Each opening must close after it opens.")
            raise ValidationFailed(message, {f"day{weekday}": message})
        for other_open, other_close in by_day.get(weekday, []):
            if opens < other_close and other_open < closes:
                message = _("Openings on the same day must not overlap.")
                raise ValidationFailed(message, {f"day{weekday}": message})
        by_day.setdefault(weekday, []).append((opens, closes))
    with serialized_write():
        instrument = db.session.get(Instrument, instrument.id)
        before = [f"{h.weekday} {h.opens_at:%H:%M}-{h.closes_at:%H:%M}" for h in instrument.opening_hours]
        instrument.opening_hours = [
            OpeningHours(weekday=d, opens_at=o, closes_at=c) for d, o, c in sorted(intervals)
        ]
        after = [f"{d} {o:%H:%M}-{c:%H:%M}" for d, o, c in sorted(intervals)]
        audit.record(
            "instrument.hours_changed",
            "instrument",
            instrument.code,
            before={"hours": before},
            after={"hours": after},
            actor_id=user.id,
        )
        db.session.commit()


def add_blackout(
    user: User,
    instrument: Instrument,
    kind: BlackoutKind,
    starts_at: datetime,
    ends_at: datetime,
    reason: str,
) -> Blackout:
    """Close the instrument for a time. Bookings already holding that time must be cancelled first."""
    _require_manager(user, instrument)
    if starts_at >= ends_at:
        raise ValidationFailed(
            _("The end must be after the start."), {"ends_at": _("The end must be after the start.")}
        )
    if ends_at <= clock.utcnow():
        raise ValidationFailed(
            _("This time has already passed."), {"ends_at": _("This time has already passed.")}
        )
    instrument_id = instrument.id
    # The exclusive lock waits for booking requests in flight and keeps new ones out until we commit.
    with serialized_write((LOCK_INSTRUMENT_CALENDAR, instrument_id)):
        instrument = db.session.get(Instrument, instrument_id)
        calendar = Calendar.load(instrument, starts_at, ends_at)
        holds = [h for h in calendar.holds if h.start < ends_at and h.end > starts_at]
        if holds:
            raise _conflict_error(holds)
        blackout = Blackout(
            instrument_id=instrument_id,
            kind=kind,
            starts_at=starts_at,
            ends_at=ends_at,
            reason=(reason or "").strip()[:200],
            created_by_id=user.id,
        )
        db.session.add(blackout)
        db.session.flush()
        audit.record(
            "instrument.blackout_added",
            "instrument",
            instrument.code,
            after={
                "blackout": blackout.id,
                "kind": kind.value,
                "starts_at": clock.iso_utc(starts_at),
                "ends_at": clock.iso_utc(ends_at),
            },
            reason=blackout.reason,
            actor_id=user.id,
        )
        db.session.commit()
    return blackout


def remove_blackout(user: User, blackout_id: int) -> None:
    """Reopen the time of a blackout."""
    blackout = db.session.get(Blackout, blackout_id)
    if blackout is None or not manages(user, blackout.instrument):
        raise NotFound(_("No such closure."))
    with serialized_write():
        blackout = db.session.get(Blackout, blackout_id)
        code = blackout.instrument.code
        audit.record(
            "instrument.blackout_removed",
            "instrument",
            code,
            before={
                "blackout": blackout.id,
                "starts_at": clock.iso_utc(blackout.starts_at),
                "ends_at": clock.iso_utc(blackout.ends_at),
            },
            actor_id=user.id,
        )
        db.session.delete(blackout)
        db.session.commit()


def managed_instruments(user: User) -> list[Instrument]:
    if user.role is not Role.PROVIDER:
        return []
    return list(
        db.session.scalars(
            select(Instrument)
            .where(Instrument.institution_id == user.institution_id)
            .order_by(Instrument.code)
        )
    )


# --- private calendar feeds ---------------------------------------------------------------------


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


def next_free_time(instrument: Instrument, days: int = 14) -> datetime | None:
    """When the instrument can next be booked for its shortest slot (live, never cached)."""
    now = clock.utcnow()
    calendar = Calendar.load(instrument, now, now + timedelta(days=days))
    if not calendar.instrument_is_bookable():
        return None
    step = timedelta(minutes=calendar.policy.step_minutes)
    for span in calendar.availability()["free"]:
        start = _ceil_to_grid(span.start, calendar.policy.step_minutes)
        while start < span.end:
            if calendar.valid_ends(start):
                return start
            start += step
    return None


def opening_week(instrument: Instrument) -> tuple[date, datetime | None]:
    """Where a calendar opens when no week is asked for: a day of the week of the next free time (else
    today), and that time (None when nothing is free in the next two weeks)."""
    free = next_free_time(instrument)
    return (clock.to_local(free).date() if free else clock.local_today()), free


def _ceil_to_grid(moment: datetime, step_minutes: int) -> datetime:
    local = clock.to_local(moment).replace(second=0, microsecond=0)
    if local < clock.to_local(moment):
        local += timedelta(minutes=1)
    extra = (local.hour * 60 + local.minute) % step_minutes
    if extra:
        local += timedelta(minutes=step_minutes - extra)
    return local.astimezone(moment.tzinfo)


# --- the week view ------------------------------------------------------------------------------


@dataclass
class Cell:
    start: datetime
    status: str  # free | held | closed | maintenance | closure | past
    bookable: bool = False


@dataclass
class WeekView:
    days: list[date]
    times: list[str]
    rows: list[list[Cell]]
    availability: dict[str, list[Span]]
    first_day: date

    @property
    def previous_week(self) -> date:
        return self.first_day - timedelta(days=7)

    @property
    def next_week(self) -> date:
        return self.first_day + timedelta(days=7)


def week_view(instrument: Instrument, any_day: date, now: datetime | None = None) -> WeekView:
    """Free, held and closed time of one week (Monday to Sunday, Beijing time) on the policy's grid."""
    now = now or clock.utcnow()
    first = clock.week_start(any_day)
    start = clock.local_datetime_to_utc(first, datetime.min.time())
    end = clock.local_datetime_to_utc(first + timedelta(days=7), datetime.min.time())
    calendar = Calendar.load(instrument, start, end + timedelta(days=1), now)
    availability = calendar.availability()
    step = calendar.policy.step_minutes
    hours = instrument.opening_hours
    first_minute = min((h.opens_at.hour * 60 + h.opens_at.minute for h in hours), default=8 * 60)
    last_minute = max((h.closes_at.hour * 60 + h.closes_at.minute for h in hours), default=18 * 60)
    first_minute -= first_minute % step
    days = [first + timedelta(days=i) for i in range(7)]
    rows, times = [], []
    for minute in range(first_minute, last_minute, step):
        times.append(f"{minute // 60:02d}:{minute % 60:02d}")
        row = []
        for day in days:
            cell_start = clock.local_datetime_to_utc(day, datetime.min.time()) + timedelta(minutes=minute)
            row.append(_cell(calendar, availability, cell_start, now))
        rows.append(row)
    week = {k: [s for s in v if s.start < end] for k, v in availability.items()}
    return WeekView(days, times, rows, week, first)


def _cell(calendar: Calendar, availability: dict[str, list[Span]], start: datetime, now: datetime) -> Cell:
    if start < now:
        return Cell(start, "past")
    for status in ("held", "free"):
        if any(s.start <= start < s.end for s in availability[status]):
            bookable = status == "free" and bool(calendar.valid_ends(start))
            return Cell(start, status, bookable)
    kind = next((s.kind for s in availability["closed"] if s.start <= start < s.end), "closed")
    return Cell(start, kind)
