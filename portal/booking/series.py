"""Recurring bookings (issue 18): a rule and the bookings it made, each occurrence an ordinary booking.

An enterprise asks for the same time daily, or weekly on chosen weekdays, every N days or weeks,
until a day or N times (portal.booking.recurrence gives the dates). Before booking it sees every
occurrence and what, if anything, stands in its way (`preview_series`); then each occurrence is
placed as an ordinary request (`requests.place_request`: every rule, the qualification, the frozen
price, the exclusion constraint), in its own savepoint of one transaction:

- without `skip_conflicts` the series is all or nothing: if any occurrence is refused, whether at
  the check or at the insert (another request took its time a moment ago), the transaction is
  rolled back and the answer (409 series_conflicts) lists each refused occurrence;
- with `skip_conflicts` each occurrence is booked or refused on its own (a refused insert undoes
  only its savepoint) and the series lists the refused ones as skipped.

So a race never leaves a series partly booked without the answer saying exactly which occurrences
it got. The provider is told once per series, not once per occurrence.

The series' transitions (cancel this and following or all, the provider's confirm all) move each
occurrence through the booking state machine (portal.booking.transitions), in one transaction, with
the booking's audit row for each and one for the series; cancelling a single occurrence is the
ordinary booking cancel.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, time, timedelta
from typing import Any

from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_babel import ngettext
from sqlalchemy import select
from sqlalchemy.orm import joinedload, selectinload

from portal.accounts.models import User
from portal.booking.availability import Calendar
from portal.booking.models import (
    HOLDING_STATES,
    Booking,
    BookingMode,
    BookingSeries,
    BookingState,
    RepeatUnit,
)
from portal.booking.recurrence import DAY, WEEK, Repeat, occurrence_times
from portal.booking.requests import BookingRequest, check_may_request, check_slot, place_request
from portal.booking.services import booking_when, manages, policy_for, sees_bookings_of, tell_series
from portal.booking.transitions import (
    NOT_AN_OPEN_OFFER,
    cancel_cutoff_passed,
    cancellation_deadline,
    required_reason,
    transition,
)
from portal.catalog.models import Instrument
from portal.core import audit, clock
from portal.core.database import LOCK_INSTRUMENT_CALENDAR, serialized_write
from portal.core.errors import (
    Forbidden,
    InvalidTransition,
    NotFound,
    SeriesConflicts,
    ServiceError,
    SlotConflict,
    SlotOffered,
    ValidationFailed,
)
from portal.core.permissions import Role
from portal.core.web import WEEKDAY_NAMES
from portal.extensions import db
from portal.qualifications.services import NotQualified, check_operation

# A series has at most this many occurrences (and ends inside the instrument's booking window).
MAX_OCCURRENCES = 100
MAX_INTERVAL = 52

# Why an occurrence cannot be booked: the `conflict` of a skipped occurrence, as the API names it.
CONFLICT_LABELS = {
    "slot_conflict": _l("Another booking holds this time"),
    "slot_offered": _l("Offered to an enterprise on the waitlist"),
    "closed": _l("The instrument is closed"),
    "outside_open_hours": _l("Outside the opening hours"),
    "too_late": _l("Too soon to book"),
    "not_qualified": _l("No qualification valid on this day"),
}
# Booking rules (Calendar.problems) that one occurrence can break and another not. Any other rule
# (the grid, the length, the instrument's state) is the same for every occurrence: the series' own.
OCCURRENCE_RULES = {"in_past": "too_late", "too_late": "too_late", "outside_open_hours": "outside_open_hours"}


@dataclass(frozen=True)
class SeriesRequest:
    """What an enterprise asks for: the first occurrence, how it repeats, and whether clashing
    occurrences are skipped (else any clash refuses the whole series)."""

    starts_at: datetime
    ends_at: datetime
    repeat: Repeat
    operation: str | None = None
    purpose: str = ""
    skip_conflicts: bool = False
    purpose_category: str = "development"

    def occurrence(self, starts_at: datetime, ends_at: datetime) -> BookingRequest:
        return BookingRequest(
            mode=BookingMode.SLOT,
            purpose=self.purpose,
            starts_at=starts_at,
            ends_at=ends_at,
            operation=self.operation,
            purpose_category=self.purpose_category,
        )


@dataclass(frozen=True)
class Occurrence:
    """One date of a series and why it cannot be booked (`conflict`, None when it can)."""

    starts_at: datetime
    ends_at: datetime
    conflict: str | None = None
    message: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "starts_at": clock.iso_utc(self.starts_at),
            "ends_at": clock.iso_utc(self.ends_at),
            "conflict": self.conflict,
            "message": self.message,
        }


# --- the rule ------------------------------------------------------------------------------------


def _refuse_rule(message: str) -> ValidationFailed:
    return ValidationFailed(message, {"repeat": message})


def _check_rule(request: SeriesRequest) -> None:
    repeat = request.repeat
    if request.starts_at >= request.ends_at:
        message = _("The end must be after the start.")
        raise ValidationFailed(message, {"ends_at": message})
    if repeat.every not in (DAY, WEEK) or not 1 <= repeat.interval <= MAX_INTERVAL:
        raise _refuse_rule(_("Repeat every 1 to %(n)d days or weeks.", n=MAX_INTERVAL))
    if (repeat.until is None) == (repeat.count is None):
        raise _refuse_rule(_("Give either the last day or the number of occurrences."))
    if repeat.every == DAY and repeat.weekdays:
        raise _refuse_rule(_("Weekdays are chosen only for a weekly series."))
    if any(not 0 <= day <= 6 for day in repeat.weekdays):
        raise _refuse_rule(_("Weekdays are numbered 0 (Monday) to 6 (Sunday)."))
    first_day = clock.to_local(request.starts_at).date()
    if repeat.weekdays and first_day.weekday() not in repeat.weekdays:
        raise _refuse_rule(_("The first occurrence must fall on one of the chosen weekdays."))
    if repeat.until is not None and repeat.until < first_day:
        raise _refuse_rule(_("The last day is before the first occurrence."))


def occurrences_of(request: SeriesRequest, max_days_ahead: int) -> list[tuple[datetime, datetime]]:
    """The times of the series' occurrences, once its rule is one a series may have: 2 to
    MAX_OCCURRENCES of them, the last inside the instrument's booking window (422 on `repeat`)."""
    _check_rule(request)
    times = occurrence_times(request.starts_at, request.ends_at, request.repeat, MAX_OCCURRENCES + 1)
    if len(times) > MAX_OCCURRENCES:
        raise _refuse_rule(_("A series has at most %(n)d occurrences.", n=MAX_OCCURRENCES))
    if len(times) < 2:
        raise _refuse_rule(_("A series repeats at least once: choose a later last day or more occurrences."))
    last_day = clock.local_today() + timedelta(days=max_days_ahead)
    if times[-1][1] > clock.local_datetime_to_utc(last_day + timedelta(days=1), time.min):
        raise _refuse_rule(
            _(
                "This instrument takes bookings at most %(n)d days ahead: the series must end by %(day)s.",
                n=max_days_ahead,
                day=last_day.isoformat(),
            )
        )
    return times


# --- why an occurrence cannot be booked ----------------------------------------------------------


def conflict_code(error: ServiceError) -> str | None:
    """The `conflict` of an occurrence refused with this error; None when the error is not one
    occurrence's own (a broken rule of the whole series: the caller lets it through)."""
    if isinstance(error, SlotOffered):
        return "slot_offered"
    if isinstance(error, SlotConflict):
        kinds = {clash.get("kind") for clash in error.details.get("conflicts", [])}
        return "closed" if kinds and kinds <= {"closure", "maintenance"} else "slot_conflict"
    if isinstance(error, NotQualified):
        return "not_qualified"
    if isinstance(error, ValidationFailed):
        rules = error.fields.get("rules") or [error.fields.get("rule")]
        if all(rule in OCCURRENCE_RULES for rule in rules):
            return OCCURRENCE_RULES[rules[0]]
    return None


def _refused(starts_at: datetime, ends_at: datetime, error: ServiceError) -> Occurrence:
    code = conflict_code(error)
    if code is None:
        raise error
    return Occurrence(starts_at, ends_at, code, error.message)


def preview_series(user: User, instrument_code: str, request: SeriesRequest) -> list[Occurrence]:
    """Every occurrence the series would have and, for each that cannot be booked now, why: what the
    enterprise sees before it books. Nothing is written; the same rules as `request_series`."""
    instrument = check_may_request(
        user, instrument_code, request.occurrence(request.starts_at, request.ends_at)
    )
    policy = policy_for(instrument)
    times = occurrences_of(request, policy.max_days_ahead)
    buffer = timedelta(minutes=policy.buffer_minutes)
    calendar = Calendar.load(instrument, times[0][0], times[-1][1] + buffer)
    out = []
    for starts_at, ends_at in times:
        try:
            check_operation(user, instrument, request.operation or "self", starts_at, ends_at)
            check_slot(calendar, starts_at, ends_at)
        except ServiceError as error:
            out.append(_refused(starts_at, ends_at, error))
        else:
            out.append(Occurrence(starts_at, ends_at))
    return out


# --- making a series -----------------------------------------------------------------------------


def request_series(user: User, instrument_code: str, request: SeriesRequest) -> BookingSeries:
    """An enterprise books a recurring slot: every occurrence a request of its own (see the module's
    docstring for what happens to clashes and races); the provider is told once."""
    instrument = check_may_request(
        user, instrument_code, request.occurrence(request.starts_at, request.ends_at)
    )
    times = occurrences_of(request, policy_for(instrument).max_days_ahead)
    instrument_id = instrument.id
    with serialized_write((LOCK_INSTRUMENT_CALENDAR, instrument_id), shared=True):
        series = _new_series(user, instrument_id, request)
        booked: list[Booking] = []
        skipped: list[Occurrence] = []
        for starts_at, ends_at in times:
            try:
                booked.append(
                    place_request(
                        user, instrument_id, request.occurrence(starts_at, ends_at), series_id=series.id
                    )
                )
            except ServiceError as error:
                skipped.append(_refused(starts_at, ends_at, error))
        if not booked or (skipped and not request.skip_conflicts):
            raise _conflicts(skipped, any_booked=bool(booked))
        series.skipped = [o.as_dict() for o in skipped]
        audit.record(
            "series.requested",
            "booking_series",
            series.id,
            after={
                "instrument": instrument_code,
                "bookings": [b.id for b in booked],
                "skipped": [o.as_dict() for o in skipped],
            },
            actor_id=series.requested_by_id,
        )
        tell_series(series, "series.requested", "provider", "requested", booked, skipped=len(skipped))
        db.session.commit()
    return series


def _new_series(user: User, instrument_id: int, request: SeriesRequest) -> BookingSeries:
    repeat = request.repeat
    series = BookingSeries(
        instrument_id=instrument_id,
        enterprise_id=user.enterprise_id,
        requested_by_id=user.id,
        starts_at=request.starts_at,
        ends_at=request.ends_at,
        repeat_every=RepeatUnit(repeat.every),
        repeat_interval=repeat.interval,
        repeat_weekdays=sorted(set(repeat.weekdays)) if repeat.every == WEEK else [],
        repeat_until=repeat.until,
        repeat_count=repeat.count,
        operation=request.operation or "self",
        purpose=request.purpose.strip(),
        skip_conflicts=request.skip_conflicts,
        skipped=[],
    )
    db.session.add(series)
    db.session.flush()
    return series


def _conflicts(refused: list[Occurrence], *, any_booked: bool) -> SeriesConflicts:
    if any_booked:
        message = ngettext(
            "%(num)d date of the series cannot be booked, so nothing was booked. Skip it to book the others.",
            "%(num)d dates of the series cannot be booked, so nothing was booked. "
            "Skip them to book the others.",
            len(refused),
        )
    else:
        message = _("None of the dates of the series can be booked.")
    return SeriesConflicts(message, {"conflicts": [o.as_dict() for o in refused]})


# --- seeing a series -----------------------------------------------------------------------------


def rule_text(series: BookingSeries) -> str:
    """'Weekly on Monday, Wednesday, 6 times' in the reader's language."""
    n = series.repeat_interval
    if series.repeat_every is RepeatUnit.DAY:
        head = _("Daily") if n == 1 else _("Every %(n)d days", n=n)
    else:
        days = ", ".join(str(WEEKDAY_NAMES[d]) for d in series.repeat_weekdays)
        head = (
            _("Weekly on %(days)s", days=days)
            if n == 1
            else _("Every %(n)d weeks on %(days)s", n=n, days=days)
        )
    if series.repeat_count is not None:
        end = ngettext("%(num)d time", "%(num)d times", series.repeat_count)
    else:
        end = _("until %(day)s", day=series.repeat_until.isoformat() if series.repeat_until else "")
    return _("%(repeat)s, %(end)s", repeat=head, end=end)


@dataclass(frozen=True)
class SeriesDate:
    """A line of a series' page: an occurrence booked (whatever became of it) or one skipped."""

    starts_at: datetime
    ends_at: datetime
    booking: Booking | None = None
    conflict: str | None = None


def series_dates(series: BookingSeries) -> list[SeriesDate]:
    """Every date of the series in order: its bookings and the dates skipped when it was made."""
    rows = [
        SeriesDate(b.starts_at, b.ends_at, booking=b) for b in series.bookings if b.starts_at and b.ends_at
    ]
    rows += [
        SeriesDate(clock.parse_iso(s["starts_at"]), clock.parse_iso(s["ends_at"]), conflict=s["conflict"])
        for s in series.skipped
    ]
    return sorted(rows, key=lambda row: row.starts_at)


def can_view_series(user: User, series: BookingSeries) -> bool:
    """Who sees a series is who sees its bookings: its enterprise, the instrument's providers, the bureau."""
    return sees_bookings_of(user, series.enterprise_id, series.instrument)


def get_series(user: User, series_id: int) -> BookingSeries:
    """A series the user may see, its occurrences loaded; any other id is simply not found."""
    series = db.session.get(
        BookingSeries,
        series_id,
        options=[
            joinedload(BookingSeries.instrument).joinedload(Instrument.institution),
            joinedload(BookingSeries.enterprise),
            selectinload(BookingSeries.bookings),
        ],
        populate_existing=True,
    )
    if series is None or not can_view_series(user, series):
        raise NotFound(_("No recurring booking with this number."))
    return series


# --- cancelling and confirming -------------------------------------------------------------------


def _upcoming(series_id: int, now: datetime, since: datetime | None = None) -> list[Booking]:
    """The occurrences that still hold their time and have not begun (from `since` on), in order."""
    stmt = select(Booking).where(
        Booking.series_id == series_id,
        Booking.state.in_(HOLDING_STATES),
        Booking.starts_at > now,
    )
    if since is not None:
        stmt = stmt.where(Booking.starts_at >= since)
    return list(db.session.scalars(stmt.order_by(Booking.starts_at)))


def cancellable(user: User, series: BookingSeries, now: datetime | None = None) -> list[Booking]:
    """The occurrences this user could cancel together now (the page offers "from" each of them)."""
    now = now or clock.utcnow()
    if manages(user, series.instrument):
        return _upcoming(series.id, now)
    if not _is_series_enterprise(user, series):
        return []
    return [b for b in _upcoming(series.id, now) if not cancel_cutoff_passed(b, now)]


def _is_series_enterprise(user: User, series: BookingSeries) -> bool:
    return (
        user.is_authenticated and user.role is Role.ENTERPRISE and user.enterprise_id == series.enterprise_id
    )


def _from_time(series: BookingSeries, from_booking_id: int | None) -> datetime | None:
    if from_booking_id is None:
        return None
    first = db.session.get(Booking, from_booking_id)
    if first is None or first.series_id != series.id:
        message = _("This booking is not an occurrence of this recurring booking.")
        raise ValidationFailed(message, {"from_booking_id": message})
    return first.starts_at


def cancel_series(
    user: User, series_id: int, from_booking_id: int | None = None, reason: str | None = None
) -> BookingSeries:
    """Cancel every occurrence that still holds its time and has not begun, from the given occurrence
    on (this and following) or all of them: the enterprise before each one's cut-off, the provider any
    time with a reason. All or nothing; each occurrence through the booking state machine."""
    with serialized_write():
        series = get_series(user, series_id)
        targets = _upcoming(series.id, clock.utcnow(), _from_time(series, from_booking_id))
        reason = _cancel_reason(user, series, targets, reason)
        if not targets:
            raise InvalidTransition(_("No occurrence of this recurring booking is left to cancel."))
        for booking in targets:
            transition(booking, "cancel", user, why=reason, reason=reason)
        audit.record(
            "series.cancelled",
            "booking_series",
            series.id,
            after={"bookings": [b.id for b in targets], "from_booking_id": from_booking_id},
            reason=reason,
            actor_id=user.id,
        )
        other_side = "enterprise" if user.role is Role.PROVIDER else "provider"
        tell_series(
            series, "series.cancelled", other_side, f"cancelled:{targets[0].id}", targets, reason=reason or ""
        )
        db.session.commit()
    return get_series(user, series_id)


def _cancel_reason(
    user: User, series: BookingSeries, targets: list[Booking], reason: str | None
) -> str | None:
    """Who may cancel, and the reason they give: a provider must, the enterprise may (and only
    occurrences before their cut-off: past it, the operator cancels them)."""
    if user.role is Role.PROVIDER and manages(user, series.instrument):
        return required_reason(reason)
    if not _is_series_enterprise(user, series):
        raise Forbidden(_("Only the enterprise that made the booking can do this."))
    late = [b for b in targets if cancel_cutoff_passed(b)]
    if late:
        raise InvalidTransition(
            _(
                "The occurrence of %(when)s can be cancelled online only until %(deadline)s; cancel from "
                "the next one, and call the operator about this one.",
                when=booking_when(late[0]),
                deadline=clock.format_local(cancellation_deadline(late[0])),
            ),
            {"rule": "cancel_cutoff", "booking_ids": [b.id for b in late]},
        )
    return (reason or "").strip()[:1000] or None


def confirmable(user: User, series: BookingSeries, now: datetime | None = None) -> list[Booking]:
    """The occurrences the instrument's provider could confirm together: requests not yet begun."""
    if not manages(user, series.instrument):
        return []
    upcoming = _upcoming(series.id, now or clock.utcnow())
    return [b for b in upcoming if b.state is BookingState.REQUESTED and b.offered_until is None]


def confirm_series(user: User, series_id: int) -> BookingSeries:
    """The provider confirms every requested occurrence not yet begun; the enterprise is told once."""
    with serialized_write():
        series = get_series(user, series_id)
        if not manages(user, series.instrument):
            raise Forbidden(_("Only the instrument's own institution can do this."))
        targets = confirmable(user, series)
        if not targets:
            raise InvalidTransition(_("No occurrence of this recurring booking waits for confirmation."))
        now = clock.utcnow()
        for booking in targets:
            transition(booking, "confirm", user, only_if=NOT_AN_OPEN_OFFER, decided_at=now)
        audit.record(
            "series.confirmed",
            "booking_series",
            series.id,
            after={"bookings": [b.id for b in targets]},
            actor_id=user.id,
        )
        tell_series(series, "series.confirmed", "enterprise", f"confirmed:{targets[0].id}", targets)
        db.session.commit()
    return get_series(user, series_id)
