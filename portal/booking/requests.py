"""Booking requests: an enterprise asks for machine time (a slot, held from that moment) or for a
sample service, and every rule of the instrument is checked first."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta

from flask_babel import gettext as _
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError, OperationalError

from portal.accounts.models import Enterprise, User, VerificationState
from portal.booking.availability import Calendar, conflict_error
from portal.booking.models import Booking, BookingMode, BookingPolicy, BookingState, PurposeCategory
from portal.booking.services import BOOKABLE_STATUSES, policy_for, tell
from portal.booking.signals import booking_wanted
from portal.catalog.models import Instrument
from portal.core import audit, clock
from portal.core.database import LOCK_INSTRUMENT_CALENDAR, serialized_write
from portal.core.errors import Forbidden, NotFound, SlotConflict, ValidationFailed
from portal.core.permissions import Role
from portal.extensions import db
from portal.qualifications import services as use_rules

PURPOSE_CATEGORIES = frozenset(c.value for c in PurposeCategory)


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
    # What the service is for: the national service direction (issue 19). Enterprises mostly develop.
    purpose_category: str = PurposeCategory.DEVELOPMENT.value
    # How the enterprise means to use its voucher (VOUCHER_MODES; None: not chosen, reimbursement).
    voucher_mode: str | None = None


# What an enterprise may say about paying a booking with its innovation voucher (portal.vouchers says
# whether the scheme offers the choice): pay the whole fee and claim later, or pay only its share.
VOUCHER_MODES = ("reimbursement", "at_payment")


def _check_enterprise_may_book(user: User) -> None:
    if not user.is_authenticated or user.role is not Role.ENTERPRISE:
        raise Forbidden(_("Only enterprise accounts can book instruments."))
    if db.session.get_one(Enterprise, user.enterprise_id).verification_state is VerificationState.REJECTED:
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


def check_may_request(user: User, instrument_code: str, request: BookingRequest) -> Instrument:
    """What is checked before anything is written: the user books for a verified enterprise that is
    not suspended (credit), the texts are not too long, the instrument exists."""
    _check_enterprise_may_book(user)
    if len(request.purpose) > 2000 or len(request.sample_description or "") > 2000:
        raise ValidationFailed(_("At most 2,000 characters."), {"purpose": _("At most 2,000 characters.")})
    if request.purpose_category not in PURPOSE_CATEGORIES:
        message = _("Choose what the service is for.")
        raise ValidationFailed(message, {"purpose_category": message})
    instrument = db.session.scalar(select(Instrument).where(Instrument.code == instrument_code))
    if instrument is None:
        raise NotFound(_("No instrument has the code %(code)s.", code=instrument_code))
    booking_wanted.send(user, instrument=instrument)  # credit: a suspended enterprise is refused
    return instrument


def request_booking(user: User, instrument_code: str, request: BookingRequest) -> Booking:
    """An enterprise asks for a slot or a sample service; a slot is held from this moment."""
    instrument_id = check_may_request(user, instrument_code, request).id
    with serialized_write((LOCK_INSTRUMENT_CALENDAR, instrument_id), shared=True):
        booking = place_request(user, instrument_id, request)
        tell(booking, "booking.requested", "provider")
        db.session.commit()
    return booking


def place_request(
    user: User, instrument_id: int, request: BookingRequest, *, series_id: int | None = None
) -> Booking:
    """Check one request against every rule of the instrument and write it with its audit row, in the
    caller's write transaction (serialized_write on the instrument's calendar). The caller notifies
    and commits: a recurring series (portal.booking.series) places each occurrence this way."""
    instrument = db.session.get_one(Instrument, instrument_id)
    policy = policy_for(instrument)
    booking = Booking(
        instrument_id=instrument_id,
        enterprise_id=user.enterprise_id,
        requested_by_id=user.id,
        mode=request.mode,
        state=BookingState.REQUESTED,
        purpose=request.purpose.strip(),
        purpose_category=request.purpose_category,
        series_id=series_id,
        voucher_mode=request.voucher_mode if request.voucher_mode in VOUCHER_MODES else None,
        # Issue 17: the operation mode (refused without a qualification) and the frozen price.
        **use_rules.booking_terms(
            user, instrument, request.mode.value, request.operation, request.starts_at, request.ends_at
        ),
    )
    if request.mode is BookingMode.SLOT:
        _hold_slot(booking, instrument, policy, request)
    else:
        _check_sample_request(instrument, policy, request)
        booking.sample_count = request.sample_count
        booking.sample_description = (request.sample_description or "").strip()  # checked: not empty
        booking.sample_delivery_on = request.sample_delivery_on
    _insert(booking, instrument, request)
    after = {"state": booking.state.value, "mode": booking.mode.value, "instrument": instrument.code}
    audit.record(
        "booking.requested",
        "booking",
        booking.id,
        after=after if series_id is None else {**after, "series": series_id},
        actor_id=user.id,
    )
    return booking


def _hold_slot(
    booking: Booking, instrument: Instrument, policy: BookingPolicy, request: BookingRequest
) -> None:
    """Check the slot against the instrument's rules and calendar, then hold it (and its buffer)."""
    if request.starts_at is None or request.ends_at is None:
        raise ValidationFailed(_("Give a start and an end."), {"starts_at": _("Required.")})
    buffer = timedelta(minutes=policy.buffer_minutes)
    calendar = Calendar.load(instrument, request.starts_at, request.ends_at + buffer)
    check_slot(calendar, request.starts_at, request.ends_at)
    booking.starts_at, booking.ends_at = request.starts_at, request.ends_at
    booking.held_until = request.ends_at + buffer


def check_slot(calendar: Calendar, starts_at: datetime, ends_at: datetime) -> None:
    """Refuse a slot that breaks a rule of the instrument (422 naming the first rule and all of them)
    or clashes with held or closed time (409 slot_conflict or slot_offered)."""
    problems = calendar.problems(starts_at, ends_at)
    if problems:
        raise ValidationFailed(
            problems[0].message,
            {"starts_at": problems[0].message, "rule": problems[0].rule, "rules": [p.rule for p in problems]},
        )
    clashes = calendar.conflicts(starts_at, ends_at)
    if clashes:
        raise conflict_error(clashes)


def _insert(booking: Booking, instrument: Instrument, request: BookingRequest) -> None:
    """Write the request; a slot another request took a moment ago is refused with its conflict."""
    held_until = booking.held_until
    try:
        # In a savepoint: a refused insert undoes only itself, so the transaction can still name the
        # winner below, and a series goes on with its other occurrences (portal.booking.series).
        with db.session.begin_nested():
            db.session.add(booking)
            db.session.flush()
    except (IntegrityError, OperationalError) as error:
        # Another request took the slot between our check and our insert: the exclusion
        # constraint refused this one (23P01), or two overlapping inserts waited for each other at
        # it and PostgreSQL broke the deadlock by aborting this one (40P01). Name the booking that won.
        if getattr(error.orig, "sqlstate", None) not in ("23P01", "40P01"):
            raise
        if request.starts_at is None or request.ends_at is None or held_until is None:
            raise  # never: only a slot, which has its times, can clash
        calendar = Calendar.load(instrument, request.starts_at, held_until)
        clashes = calendar.conflicts(request.starts_at, request.ends_at)
        if not clashes:  # the winner of a deadlock has not committed yet
            raise SlotConflict(_("Another request took this time a moment ago."), {"conflicts": []}) from None
        raise conflict_error(clashes) from None
