"""An instrument's booking settings, kept by its providers: the booking rules (policy), the weekly
opening hours and the closures (blackouts)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, time
from typing import Any

from flask_babel import gettext as _
from sqlalchemy import select

from portal.accounts.models import User
from portal.booking.availability import Calendar, conflict_error
from portal.booking.models import Blackout, BlackoutKind, BookingPolicy
from portal.booking.services import DEFAULT_POLICY, manages, require_manager
from portal.catalog.models import Instrument, OpeningHours
from portal.catalog.opening import refresh_opening_weeks
from portal.core import audit, clock
from portal.core.database import LOCK_INSTRUMENT_CALENDAR, serialized_write
from portal.core.errors import NotFound, ValidationFailed
from portal.core.paging import Page, paginate
from portal.core.permissions import Role
from portal.extensions import db
from portal.qualifications import services as use_rules


def _check_policy(values: dict[str, Any]) -> None:
    if values["min_minutes"] > values["max_minutes"]:
        raise ValidationFailed(
            _("The shortest booking is longer than the longest."), {"max_minutes": _("Below the minimum.")}
        )
    for name in ("min_minutes", "max_minutes", "buffer_minutes"):
        if values[name] % values["step_minutes"]:
            message = _("Use multiples of the %(n)d-minute grid.", n=values["step_minutes"])
            raise ValidationFailed(message, {name: message})


def _write_policy(user: User, instrument: Instrument, values: dict[str, Any]) -> BookingPolicy:
    """Store the booking rules with their audit row, in the caller's transaction."""
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
    return policy


def update_policy(user: User, instrument: Instrument, values: dict[str, Any]) -> BookingPolicy:
    """The provider changes how the instrument is booked."""
    require_manager(user, instrument)
    _check_policy(values)
    with serialized_write():
        policy = _write_policy(user, instrument, values)
        db.session.commit()
    return policy


Intervals = list[tuple[int, time, time]]


def _check_hours(intervals: Intervals) -> None:
    by_day: dict[int, list[tuple[time, time]]] = {}
    for weekday, opens, closes in intervals:
        if opens >= closes:
            message = _("Each opening must close after it opens.")
            raise ValidationFailed(message, {f"day{weekday}": message})
        for other_open, other_close in by_day.get(weekday, []):
            if opens < other_close and other_open < closes:
                message = _("Openings on the same day must not overlap.")
                raise ValidationFailed(message, {f"day{weekday}": message})
        by_day.setdefault(weekday, []).append((opens, closes))


def _write_hours(user: User, instrument: Instrument, intervals: Intervals) -> None:
    """Replace the weekly opening hours with their audit row, in the caller's transaction."""
    before = [f"{h.weekday} {h.opens_at:%H:%M}-{h.closes_at:%H:%M}" for h in instrument.opening_hours]
    instrument.opening_hours = [
        OpeningHours(weekday=d, opens_at=o, closes_at=c) for d, o, c in sorted(intervals)
    ]
    refresh_opening_weeks([instrument.id])  # what the dashboard's utilisation reads
    after = [f"{d} {o:%H:%M}-{c:%H:%M}" for d, o, c in sorted(intervals)]
    audit.record(
        "instrument.hours_changed",
        "instrument",
        instrument.code,
        before={"hours": before},
        after={"hours": after},
        actor_id=user.id,
    )


def set_opening_hours(user: User, instrument: Instrument, intervals: Intervals) -> None:
    """Replace the instrument's weekly opening hours (weekday, opens, closes in Shanghai time)."""
    require_manager(user, instrument)
    _check_hours(intervals)
    with serialized_write():
        _write_hours(user, instrument, intervals)
        db.session.commit()


@dataclass(frozen=True)
class PolicyChange:
    """What one save of the booking policy changes; None leaves that part as it is."""

    values: dict[str, Any] | None = None  # every key of DEFAULT_POLICY
    hours: Intervals | None = None
    operations: list[str] | None = None
    requires_qualification: bool | None = None


def save_booking_policy(user: User, instrument: Instrument, change: PolicyChange) -> None:
    """Save the booking rules, the opening hours and the use rules (issue 17) in one transaction:
    every part is checked first, and a part that fails leaves none of them saved."""
    require_manager(user, instrument)
    if change.values is not None:
        _check_policy(change.values)
    if change.hours is not None:
        try:
            _check_hours(change.hours)
        except ValidationFailed as error:
            raise ValidationFailed(error.message, {"hours": error.message}) from None
    rules = use_rules.use_rules_for(instrument)
    operations = rules.operations if change.operations is None else change.operations
    requires = (
        rules.requires_qualification
        if change.requires_qualification is None
        else change.requires_qualification
    )
    new_rules = change.operations is not None or change.requires_qualification is not None
    if new_rules:
        use_rules.check_operations(operations)
    with serialized_write():
        if change.values is not None:
            _write_policy(user, instrument, change.values)
        if change.hours is not None:
            _write_hours(user, instrument, change.hours)
        if new_rules:
            use_rules.write_use_rules(user, instrument, operations, requires)
        db.session.commit()


def add_blackout(
    user: User,
    instrument: Instrument,
    kind: BlackoutKind,
    starts_at: datetime,
    ends_at: datetime,
    reason: str | None,
) -> Blackout:
    """Close the instrument for a time. Bookings already holding that time must be cancelled first."""
    require_manager(user, instrument)
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
        instrument = db.session.get_one(Instrument, instrument_id)
        calendar = Calendar.load(instrument, starts_at, ends_at)
        holds = [h for h in calendar.holds if h.start < ends_at and h.end > starts_at]
        if holds:
            raise conflict_error(holds)
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


def upcoming_blackouts(instrument: Instrument) -> list[Blackout]:
    """The instrument's closures that are not over yet, soonest first."""
    return list(
        db.session.scalars(
            select(Blackout)
            .where(Blackout.instrument_id == instrument.id, Blackout.ends_at > clock.utcnow())
            .order_by(Blackout.starts_at)
        )
    )


def managed_blackout(user: User, blackout_id: int) -> Blackout | None:
    """A closure of an instrument the user manages; None for any other id."""
    blackout = db.session.get(Blackout, blackout_id)
    return blackout if blackout is not None and manages(user, blackout.instrument) else None


def remove_blackout(user: User, blackout_id: int) -> None:
    """Reopen the time of a blackout."""
    if managed_blackout(user, blackout_id) is None:
        raise NotFound(_("No such closure."))
    with serialized_write():
        blackout = db.session.get_one(Blackout, blackout_id)
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


def managed_instruments(
    user: User, *, query: str = "", page: int = 1, per_page: int = 50
) -> Page[Instrument]:
    """The provider's institution's instruments by code, those whose code, name or model holds
    `query` (a university holds hundreds: the page lists 50 at a time)."""
    if user.role is not Role.PROVIDER:
        return Page([], 0, 1, per_page)
    stmt = select(Instrument).where(Instrument.institution_id == user.institution_id)
    if query:
        stmt = stmt.where(
            Instrument.code.icontains(query, autoescape=True)
            | Instrument.name.icontains(query, autoescape=True)
            | Instrument.model.icontains(query, autoescape=True)
        )
    return paginate(stmt.order_by(Instrument.code), page, per_page)
