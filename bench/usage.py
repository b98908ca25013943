"""Use at the instrument (issue 18): checking in, and a waitlist offer, with 1,000,000 bookings in the
database against 1,000.

    .venv/bin/python -m bench.usage SMALL_URL LARGE_URL [--explain] [checkin] [waitlist]

Check-in (case "checkin"), as a user at the instrument does it, in two measured steps:
- the QR label's page: the instrument, the user's bookings of the moment on it
  (`usage.services.bookings_at_instrument`), their use so far and whether each may be checked in or
  out: what /i/<code> computes before it renders;
- the check-in: what POST /bookings/<id>/check-in runs: the booking read for the user (`get_booking`)
  and `usage.services.check_in` (the window, the open-session check, the session row, the booking's
  `checked_in_at`, the audit row, the commit).
Each call has a booking of its own: a confirmed one-hour slot of the demo enterprise starting ten
minutes from now (so now is inside its check-in window), on a demo instrument holding nothing then.

Waitlist offer (case "waitlist"):
- cancel → offer: the enterprise cancels its booking (`cancel_booking`, what its booking page runs),
  and in the same transaction the freed time goes to the first in line
  (`waitlist.offers.offer_freed_time`: the line, the calendar, the offer's booking row under the
  exclusion constraint, the entry's move and audit row, the notification), then the commit and the
  mail (to files, eager tasks without a broker, the same in both databases);
- the offer alone: `offer_freed_time` for a free slot with one entry waiting for it, committed.
The slots are free one-hour slots of one demo instrument (the booking case's); the cancelled booking is
"enterprise"'s, the entry waiting for its time "enterprise2"'s.

Everything measured is made before (unmeasured) and removed after: each database is left as it was,
but for the audit rows (the audit log is append-only). The two databases are measured alternately, one
call each in turn, so a shared machine's load weighs on both alike; the first call of each is a warm-up.
`--explain` notes the tables of over 10,000 rows that PostgreSQL's plans for the measured statements
(recorded during the warm-up in the large database) read whole.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, func, select

from bench.booking import candidate_slots, slot_instrument_code
from bench.common import Result, latency_result, p90, portal_app, recorded_statements, sequential_scans
from portal.accounts.models import User
from portal.booking.availability import Calendar
from portal.booking.models import HOLDING_STATES, Booking, BookingMode, BookingState
from portal.booking.services import get_booking
from portal.booking.transitions import cancel_booking
from portal.catalog.models import Instrument, InstrumentStatus
from portal.catalog.services import get_instrument
from portal.core import clock
from portal.core.database import serialized_write
from portal.core.models import QueuedTask
from portal.extensions import db
from portal.notifications.models import Notification
from portal.usage import services as usage
from portal.usage.models import UsageSession
from portal.waitlist.models import EntryState, WaitlistEntry
from portal.waitlist.offers import offer_freed_time

if TYPE_CHECKING:
    from flask import Flask

RUNS = 40
TARGET = 1.5
HOLDER, WAITING = "enterprise", "enterprise2"  # demo users of two enterprises


@dataclass
class Side:
    """One database under measurement: its app, its size, and per step the milliseconds measured."""

    name: str
    app: Flask
    bookings: int
    times: dict[str, list[float]] = field(default_factory=dict)
    made: list[Any] = field(default_factory=list)  # what the step in progress measures, one per call
    statements: list[tuple[str, Any]] = field(default_factory=list)
    done: dict[str, int] = field(default_factory=dict)  # calls that did what they should, per step

    def timed(self, step: str, began: float) -> None:
        self.times.setdefault(step, []).append((time.perf_counter() - began) * 1000)

    def succeeded(self, step: str, ok: bool) -> None:
        self.done[step] = self.done.get(step, 0) + int(ok)


def _side(name: str, url: str, mail_folder: str) -> Side:
    app = portal_app(url, MAIL_FILE_FOLDER=mail_folder)
    with app.app_context():
        bookings = db.session.scalar(select(func.count()).select_from(Booking)) or 0
        db.session.rollback()
    return Side(name, app, bookings)


def _user(username: str) -> User:
    user = db.session.scalar(select(User).where(User.username == username))
    if user is None:
        raise LookupError(f"no user {username!r}: the benchmark databases hold the demo network")
    return user


@contextmanager
def _sides(small_url: str, large_url: str) -> Iterator[list[Side]]:
    with tempfile.TemporaryDirectory() as mail_folder:
        yield [_side("small", small_url, mail_folder), _side("large", large_url, mail_folder)]


def _alternate(sides: list[Side], calls: int, trial: Callable[[Side, int], None], explain: bool) -> None:
    """Call `trial(side, n)` for n in 0..calls-1 on each side in turn, each in its app's context; the
    large side's statements of call 0 (the warm-up) are recorded when `explain`."""
    for n in range(calls):
        for side in sides:
            with side.app.app_context():
                if n == 0 and explain and side.name == "large":
                    with recorded_statements() as seen:
                        trial(side, n)
                    side.statements.extend(seen)
                else:
                    trial(side, n)


def _results(sides: list[Side], labels: dict[str, str], explain: bool) -> list[Result]:
    small, large = sides
    scans = []
    if explain and large.statements:
        with large.app.app_context():
            scans = sequential_scans(large.statements)
    results = []
    for step, label in labels.items():
        mine, base = large.times[step][1:], small.times[step][1:]  # the first call warms up
        ours, baseline = statistics.median(mine), statistics.median(base)
        note = (
            f"median of {len(mine)} calls each; p90 {p90(mine):.1f} vs {p90(base):.1f} ms; "
            f"did what it should {large.done.get(step, 0)} and {small.done.get(step, 0)} times "
            f"of {len(mine) + 1}"
        )
        if explain and step == next(iter(labels)):
            plans = "; ".join(scans) if scans else "none"
            note += f"; tables over 10,000 rows read whole in the large database's plans: {plans}"
        case = f"{label}, {large.bookings:,} vs {small.bookings:,} bookings"
        results.append(latency_result(case, ours, baseline, TARGET, note))
    return results


def _forget(booking_ids: list[int], since: datetime) -> None:
    """Remove the bookings a step made (and what hangs on them), and the notifications and tasks it
    queued (the tallies' recounts of its bookings, which no worker runs here)."""
    entries = select(WaitlistEntry.id).where(WaitlistEntry.offer_booking_id.in_(booking_ids))
    db.session.execute(delete(WaitlistEntry).where(WaitlistEntry.id.in_(entries)))
    db.session.execute(delete(UsageSession).where(UsageSession.booking_id.in_(booking_ids)))
    db.session.execute(delete(Booking).where(Booking.id.in_(booking_ids)))
    db.session.execute(delete(Notification).where(Notification.created_at >= since))
    db.session.execute(delete(QueuedTask).where(QueuedTask.created_at >= since))
    db.session.commit()


def _confirmed_slot(user: User, instrument_id: int, starts: datetime, ends: datetime) -> Booking:
    """A confirmed slot booking of the user's enterprise, added to the session (the caller commits)."""
    booking = Booking(
        instrument_id=instrument_id,
        enterprise_id=user.enterprise_id,
        requested_by_id=user.id,
        mode=BookingMode.SLOT,
        state=BookingState.CONFIRMED,
        starts_at=starts,
        ends_at=ends,
        held_until=ends,
        purpose="bench",
        decided_at=clock.utcnow(),
    )
    db.session.add(booking)
    return booking


# --- check-in ------------------------------------------------------------------------------------


def _free_instruments(starts_at: datetime, ends_at: datetime, count: int) -> list[Instrument]:
    """Demo instruments (not the generator's copies) in service that hold nothing in this time."""
    held = (
        select(Booking.id)
        .where(
            Booking.instrument_id == Instrument.id,
            Booking.mode == BookingMode.SLOT,
            Booking.state.in_(HOLDING_STATES),
            Booking.starts_at < ends_at,
            Booking.held_until > starts_at,
        )
        .exists()
    )
    return list(
        db.session.scalars(
            select(Instrument)
            .where(Instrument.status == InstrumentStatus.NORMAL, ~Instrument.code.like("B%-%"), ~held)
            .order_by(Instrument.code)
            .limit(count)
        )
    )


def make_check_ins(count: int) -> list[tuple[str, int]]:
    """`count` confirmed slots of the demo enterprise whose check-in window is open now, one per
    instrument: (instrument code, booking id)."""
    user = _user(HOLDER)
    now = clock.utcnow()
    starts = now.replace(second=0, microsecond=0) + timedelta(minutes=10)
    ends = starts + timedelta(hours=1)
    made = []
    for instrument in _free_instruments(starts, ends, count):
        made.append((instrument.code, _confirmed_slot(user, instrument.id, starts, ends)))
    db.session.commit()
    return [(code, booking.id) for code, booking in made]


def label_page(user: User, code: str) -> list[int]:
    """What the QR label's page (usage.views.at_instrument) computes before it renders; the ids of
    the bookings it offers."""
    instrument = get_instrument(code)
    now = clock.utcnow()
    bookings = usage.bookings_at_instrument(user, instrument, now)
    usage.usage_of([b.id for b in bookings], now)
    for booking in bookings:
        usage.check_in_window(booking)
        usage.can_check_in(user, booking, now)
        usage.can_check_out(user, booking)
    shown = [b.id for b in bookings]
    db.session.rollback()  # the request's end
    return shown


def _check_in_trial(side: Side, n: int) -> None:
    code, booking_id = side.made[n]
    user = _user(HOLDER)
    began = time.perf_counter()
    shown = label_page(user, code)
    side.timed("page", began)
    side.succeeded("page", booking_id in shown)
    began = time.perf_counter()
    get_booking(user, booking_id)  # the view's own read, before the service's
    session = usage.check_in(user, booking_id)
    side.timed("check_in", began)
    side.succeeded("check_in", session.booking_id == booking_id)


def run_check_in(small_url: str, large_url: str, runs: int = RUNS, explain: bool = False) -> list[Result]:
    started = clock.utcnow()
    with _sides(small_url, large_url) as sides:
        for side in sides:
            with side.app.app_context():
                side.made = make_check_ins(runs + 1)
        calls = min(len(side.made) for side in sides)
        try:
            _alternate(sides, calls, _check_in_trial, explain)
        finally:
            for side in sides:
                with side.app.app_context():
                    _forget([booking_id for _code, booking_id in side.made], started)
        labels = {
            "page": "QR label page: the user's booking of the moment",
            "check_in": "check in (get_booking + check_in, commit)",
        }
        return _results(sides, labels, explain)


# --- waitlist offer ------------------------------------------------------------------------------


def free_slots(count: int) -> tuple[int, list[tuple[datetime, datetime]]]:
    """The booking case's instrument and `count` one-hour slots on it that could be booked now and
    nobody waits for."""
    code = slot_instrument_code()
    instrument = db.session.scalar(select(Instrument).where(Instrument.code == code))
    if instrument is None:
        raise LookupError("no demo instrument open on weekday mornings")
    slots = list(candidate_slots())
    calendar = Calendar.load(instrument, slots[0][0], slots[-1][1])
    # Time someone already waits for is left alone: an offer must go to the entry made here.
    waited = db.session.execute(
        select(WaitlistEntry.starts_at, WaitlistEntry.ends_at).where(
            WaitlistEntry.instrument_id == instrument.id,
            WaitlistEntry.state.in_((EntryState.WAITING, EntryState.OFFERED)),
            WaitlistEntry.ends_at > slots[0][0],
        )
    ).all()
    free = [
        (starts, ends)
        for starts, ends in slots
        if not calendar.problems(starts, ends)
        and not calendar.conflicts(starts, ends)
        and not any(s < ends and e > starts for s, e in waited)
    ]
    db.session.rollback()
    return instrument.id, free[:count]


def make_waitlist(count: int, holding: bool) -> list[tuple[int, int | None, datetime, datetime]]:
    """For each of `count` free slots, an entry of the second enterprise waiting for it and, when
    `holding`, a confirmed booking of the first enterprise holding it: (entry, booking, start, end)."""
    holder, waiting = _user(HOLDER), _user(WAITING)
    instrument_id, slots = free_slots(count)
    made = []
    for starts, ends in slots:
        booking = None
        if holding:
            booking = _confirmed_slot(holder, instrument_id, starts, ends)
        entry = WaitlistEntry(
            instrument_id=instrument_id,
            enterprise_id=waiting.enterprise_id,
            requested_by_id=waiting.id,
            starts_at=starts,
            ends_at=ends,
            purpose="bench",
            state=EntryState.WAITING,
        )
        db.session.add(entry)
        made.append((entry, booking, starts, ends))
    db.session.commit()
    return [(entry.id, booking.id if booking else None, s, e) for entry, booking, s, e in made]


def _offered(entry_id: int) -> bool:
    entry = db.session.get(WaitlistEntry, entry_id, populate_existing=True)
    offered = entry is not None and entry.state is EntryState.OFFERED
    db.session.rollback()
    return offered


def _cancel_trial(side: Side, n: int) -> None:
    entry_id, booking_id, _starts, _ends = side.made[n]
    user = _user(HOLDER)
    began = time.perf_counter()
    cancel_booking(user, booking_id, None)
    side.timed("cancel", began)
    side.succeeded("cancel", _offered(entry_id))


def _offer_trial(side: Side, n: int) -> None:
    entry_id, _booking_id, starts, ends = side.made[n]
    instrument_id = db.session.get_one(WaitlistEntry, entry_id).instrument_id
    db.session.rollback()
    began = time.perf_counter()
    with serialized_write():
        offer_freed_time(instrument_id, starts, ends)
        db.session.commit()
    side.timed("offer", began)
    side.succeeded("offer", _offered(entry_id))


def _waitlist_bookings(made: list[tuple[int, int | None, datetime, datetime]]) -> list[int]:
    """The bookings a waitlist step made: the holding ones and the offers."""
    entries = [entry_id for entry_id, _b, _s, _e in made]
    offers = db.session.scalars(
        select(WaitlistEntry.offer_booking_id).where(
            WaitlistEntry.id.in_(entries), WaitlistEntry.offer_booking_id.is_not(None)
        )
    ).all()
    return [b for _e, b, _s, _e2 in made if b is not None] + [b for b in offers if b is not None]


def _forget_waitlist(made: list[tuple[int, int | None, datetime, datetime]], since: datetime) -> None:
    entries = [entry_id for entry_id, _b, _s, _e in made]
    bookings = _waitlist_bookings(made)
    db.session.execute(delete(WaitlistEntry).where(WaitlistEntry.id.in_(entries)))
    _forget(bookings, since)


def run_waitlist(small_url: str, large_url: str, runs: int = RUNS, explain: bool = False) -> list[Result]:
    started = clock.utcnow()
    with _sides(small_url, large_url) as sides:
        for step, holding, trial in (("cancel", True, _cancel_trial), ("offer", False, _offer_trial)):
            for side in sides:
                with side.app.app_context():
                    side.made = make_waitlist(runs + 1, holding)
            calls = min(len(side.made) for side in sides)
            try:
                _alternate(sides, calls, trial, explain and step == "cancel")
            finally:
                for side in sides:
                    with side.app.app_context():
                        _forget_waitlist(side.made, started)
        labels = {
            "cancel": "waitlist: cancel a booking → offer to the first in line",
            "offer": "waitlist: the offer alone (offer_freed_time, commit)",
        }
        return _results(sides, labels, explain)


def run(small_url: str, large_url: str, explain: bool = False) -> list[Result]:
    return run_check_in(small_url, large_url, explain=explain) + run_waitlist(
        small_url, large_url, explain=explain
    )


def main(argv: list[str]) -> None:
    from bench.common import table

    explain = "--explain" in argv
    words = [a for a in argv if not a.startswith("--")]
    urls, cases = words[:2], words[2:] or ["checkin", "waitlist"]
    if len(urls) != 2 or set(cases) - {"checkin", "waitlist"}:
        sys.exit(__doc__)
    results = []
    if "checkin" in cases:
        results += run_check_in(*urls, explain=explain)
    if "waitlist" in cases:
        results += run_waitlist(*urls, explain=explain)
    print(table(results))


if __name__ == "__main__":
    main(sys.argv[1:])
