"""Demo data of issue 18's fair use: the no-shows' credit violations, one suspended enterprise, and a
waitlist with a live offer.

Violations go through the real receiver (`credit.services.record_violation`) on the simulated clock,
one no-show at a time in the order they happened, so each is dated as the no-show task would have
dated it and a suspension it caused told to the enterprise then. No-shows are rare in the demo year
(`activity.PAST_STATES`); should an enterprise still end up suspended by chance, its provider has
waived the violation that suspended it (with a reason, as the credit page shows), so that exactly
one enterprise is suspended: `enterprise3`, with four no-shows (`activity.SHOWCASE`), the oldest
waived.

The waitlist is made last, through the real services, so that its offer's window runs from the end
of the load (loading takes minutes): `enterprise` waits for an hour on one instrument and was
offered another when its holder cancelled; `enterprise2` waits behind it for the same time.
"""

from __future__ import annotations

from datetime import datetime, time, timedelta

from flask import current_app
from sqlalchemy import select

from portal.accounts.models import User
from portal.booking import transitions
from portal.booking.availability import NOTICE_RULES, Calendar
from portal.booking.models import Booking, BookingMode, BookingState
from portal.catalog.models import Instrument
from portal.core import clock
from portal.core.permissions import Role
from portal.credit import services as credit
from portal.credit.models import Violation
from portal.credit.rules import suspended_until
from portal.demo.vouchers import simulated_clock
from portal.extensions import db
from portal.usage import tallies
from portal.waitlist import services as waitlist
from portal.waitlist.models import EntryState, WaitlistEntry

SUSPENDED = "enterprise3"
GRACE = timedelta(minutes=30)  # the booking policy's default no-show grace
WAIVED_BECAUSE = "仪器当天故障，企业未能上机，经核实不计入信用记录"
SUSPENDED_WAIVER = "首次爽约，已电话提醒，本次不计入"
HOLDER_CANCELS = "项目计划调整，改期"
DEMO_ACCOUNTS = ("enterprise", "enterprise-staff", "enterprise2", SUSPENDED)


def load_credit(now: datetime | None = None) -> int:
    """Every no-show's violation, recorded as it happened; the waivers. Returns how many violations."""
    now = now or clock.utcnow()
    no_shows = db.session.scalars(
        select(Booking)
        .where(Booking.state == BookingState.NO_SHOW, Booking.mode == BookingMode.SLOT)
        .order_by(Booking.starts_at, Booking.id)
    ).all()
    with simulated_clock(now) as moment:
        for booking in no_shows:
            if booking.starts_at is None:
                continue
            moment[0] = min(booking.starts_at + GRACE, now)
            credit.record_violation(booking, kind="no_show", at=moment[0])
        db.session.commit()
    _waive(now)
    return len(no_shows)


def _waive(now: datetime) -> None:
    """The suspended enterprise's oldest violation, and whatever suspends any other enterprise now."""
    rules = credit.rules_in_force()
    times: dict[int, list[tuple[datetime, int]]] = {}
    for row_id, enterprise_id, occurred_at in db.session.execute(
        select(Violation.id, Violation.enterprise_id, Violation.occurred_at)
        .where(Violation.waived_at.is_(None))
        .order_by(Violation.occurred_at, Violation.id)
    ):
        times.setdefault(enterprise_id, []).append((occurred_at, row_id))
    suspended = db.session.scalar(select(User.enterprise_id).where(User.username == SUSPENDED))
    waivers: list[tuple[int, str]] = []
    for enterprise_id, counted in times.items():
        if enterprise_id == suspended:
            if len(counted) > rules.max_violations:
                waivers.append((counted[0][1], SUSPENDED_WAIVER))
            continue
        # The latest first: the one that suspends now is the provider's to look into.
        while counted and suspended_until([at for at, _id in counted], rules, now) is not None:
            waivers.append((counted.pop()[1], WAIVED_BECAUSE))
    for violation_id, reason in waivers:
        _waive_one(violation_id, reason, now)


def _waive_one(violation_id: int, reason: str, now: datetime) -> None:
    """The instrument's provider waives it the next working morning (or a moment before `now`)."""
    violation = db.session.get_one(Violation, violation_id)
    institution_id = db.session.scalar(
        select(Instrument.institution_id)
        .join(Booking, Booking.instrument_id == Instrument.id)
        .where(Booking.id == violation.booking_id)
    )
    provider = db.session.scalar(
        select(User)
        .where(User.role == Role.PROVIDER, User.institution_id == institution_id)
        .order_by(User.id)
    ) or db.session.scalar(select(User).where(User.role == Role.REVIEWER).order_by(User.id))
    if provider is None:
        return  # a demo without the bureau's logins: nobody to waive it
    day = clock.local_today(violation.occurred_at) + timedelta(days=1)
    while day.weekday() >= 5:
        day += timedelta(days=1)
    at = min(clock.local_datetime_to_utc(day, time(10, 0)), now - timedelta(minutes=5))
    with simulated_clock(max(at, violation.occurred_at)):
        credit.waive_violation(provider, violation_id, reason)


# --- the waitlist -----------------------------------------------------------------------------------


def _user(username: str) -> User | None:
    return db.session.scalar(select(User).where(User.username == username))


def _offerable(booking: Booking) -> bool:
    """Whether its time, once freed, can be offered: no rule against it, nothing else in its way."""
    if booking.starts_at is None or booking.ends_at is None:
        return False
    calendar = Calendar.load(
        booking.instrument, booking.starts_at - timedelta(days=1), booking.ends_at + timedelta(days=1)
    )
    if [p for p in calendar.problems(booking.starts_at, booking.ends_at) if p.rule not in NOTICE_RULES]:
        return False
    others = [
        c
        for c in calendar.conflicts(booking.starts_at, booking.ends_at)
        if (c.start, c.end) != (booking.starts_at, booking.held_until)
    ]
    return not others


def _held_times(institution_id: int, now: datetime, demo_enterprises: set[int]) -> list[Booking]:
    """Confirmed machine time of other enterprises on the institution's instruments, three days to
    three weeks ahead (cancelled online before the cut-off; offered within the days ahead allowed)."""
    return list(
        db.session.scalars(
            select(Booking)
            .join(Instrument, Instrument.id == Booking.instrument_id)
            .where(
                Instrument.institution_id == institution_id,
                Booking.state == BookingState.CONFIRMED,
                Booking.mode == BookingMode.SLOT,
                Booking.starts_at > now + timedelta(days=3),
                Booking.starts_at < now + timedelta(days=21),
                Booking.enterprise_id.not_in(demo_enterprises),
            )
            .order_by(Booking.starts_at, Booking.id)
            .limit(200)
        )
    )


def _join(user: User, held: Booking, at: datetime, purpose: str) -> WaitlistEntry:
    """`user` joins the line for exactly the held booking's time, at the moment `at`."""
    with simulated_clock(at):
        # (The held bookings were chosen among slots, which have both times.)
        return waitlist.join_waitlist(
            user, held.instrument.code, held.starts_at or at, held.ends_at or at, purpose=purpose
        )


def load_waitlist(now: datetime | None = None) -> WaitlistEntry | None:
    """`enterprise` waits for one held hour and is offered another its holder cancels now, with
    `enterprise2` behind it in line; returns the offered entry (None in a demo too small for it)."""
    now = now or clock.utcnow()
    first, second, provider = _user("enterprise"), _user("enterprise2"), _user("provider")
    if first is None or second is None or provider is None or provider.institution_id is None:
        return None
    demo_enterprises = {
        u.enterprise_id for u in map(_user, DEMO_ACCOUNTS) if u is not None and u.enterprise_id is not None
    }
    offerable = (b for b in _held_times(provider.institution_id, now, demo_enterprises) if _offerable(b))
    freed = next(offerable, None)
    # The other wait is on another instrument (the first such after the freed one), so both show.
    waited = next((b for b in offerable if freed and b.instrument_id != freed.instrument_id), None)
    if freed is None or waited is None:
        return None
    # They joined the line over the last days, each on the simulated clock.
    _join(first, waited, now - timedelta(days=3), "新产品研发验证")
    entry = _join(first, freed, now - timedelta(days=2), "原料批次一致性检测")
    _join(second, freed, now - timedelta(days=1, hours=3), "质量问题排查")
    holder = db.session.get_one(User, freed.requested_by_id)
    transitions.cancel_booking(holder, freed.id, HOLDER_CANCELS)  # now: the offer's window starts here
    # The freed hour leaves the month's booking tally: recounted here, as the worker would after the
    # load (the demo's tallies are exact as soon as it is loaded).
    if freed.starts_at is not None:  # a held hour always has its start
        tallies.tally_month(clock.local_month(freed.starts_at), [freed.instrument_id])
    offered = db.session.get_one(WaitlistEntry, entry.id, populate_existing=True)
    if offered.state is not EntryState.OFFERED:
        current_app.logger.warning("demo waitlist: the freed hour was not offered (%s)", offered.state)
    return offered
