"""A year of demo activity: bookings in every state, service records with fees and ratings, their history.

Dates are relative to the day of loading (a year back, four weeks ahead), so the demo always has
past services to claim and future requests to answer. Each instrument is booked for a share of its
opening hours (most 5-60 %, see `_target_share`), which is what the dashboard's utilisation measures
(booked hours of confirmed and completed bookings over opening hours). One booking at most per
instrument per opening interval, so holding bookings never overlap (PostgreSQL's exclusion
constraint would refuse).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

from flask import current_app
from sqlalchemy import insert, select, update

from portal.accounts.models import Enterprise, User, VerificationState
from portal.booking.models import Booking, BookingMode, BookingState, ServiceRecord
from portal.booking.records import compute_fee
from portal.catalog.models import Instrument, InstrumentStatus, OpeningHours
from portal.core import clock
from portal.core.database import table_of
from portal.core.models import AuditEvent
from portal.core.permissions import Role
from portal.extensions import db

BATCH = 5000
BLOCKS = ((time(8, 30), time(12, 0)), (time(14, 0), time(17, 30)))
IDLE_SHARE, FULL_SHARE = 0.02, 0.03
# The share of booked intervals that ends up as used time (completed, or confirmed ahead) and of the
# interval a booking takes: asked-for bookings are divided by it to meet an instrument's target.
USED_FRACTION = 0.66
# The demo accounts' showcase: (user, state, days from today).
SHOWCASE = (
    ("enterprise", BookingState.REQUESTED, 9),
    ("enterprise", BookingState.CONFIRMED, 5),
    ("enterprise", BookingState.COMPLETED, -20),
    ("enterprise", BookingState.COMPLETED, -45),
    ("enterprise", BookingState.COMPLETED, -70),
    ("enterprise", BookingState.CANCELLED, -30),
    ("enterprise2", BookingState.COMPLETED, -15),
    ("enterprise2", BookingState.REQUESTED, 12),
    ("enterprise2", BookingState.REQUESTED, 6),
    # Issue 18: four no-shows, three of them within the credit rules' 90 days and the last one within
    # their 30 days' suspension, so this enterprise may not book online now (portal/demo/fairness.py
    # records the violations and waives the oldest).
    ("enterprise3", BookingState.NO_SHOW, -75),
    ("enterprise3", BookingState.NO_SHOW, -50),
    ("enterprise3", BookingState.NO_SHOW, -24),
    ("enterprise3", BookingState.NO_SHOW, -9),
)
# The showcase request (by position) that was asked almost the whole answer time ago.
EXPIRING_SOON = 8
# No-shows are rare: an enterprise of the demo books far more often than a real one (some 180 times a
# year), and each no-show counts against its credit (three within 90 days suspend its online booking).
PAST_STATES = {
    BookingState.COMPLETED: 80,
    BookingState.CANCELLED: 7,
    BookingState.REJECTED: 5,
    BookingState.NO_SHOW: 0.4,
    BookingState.EXPIRED: 5,
}
FUTURE_STATES = {BookingState.REQUESTED: 40, BookingState.CONFIRMED: 50, BookingState.CANCELLED: 10}
RATINGS = {5: 55, 4: 30, 3: 10, 2: 4, 1: 1}
PURPOSES = (
    "新材料样品物相分析",
    "产品成分检测",
    "失效分析与断口观察",
    "研发样品性能测试",
    "工艺改进前后对比测试",
    "质量问题排查",
    "新产品研发验证",
    "原料批次一致性检测",
)


@dataclass
class _Instrument:
    id: int
    institution_id: int
    fee_per_hour_fen: int | None
    fee_per_sample_fen: int | None


def _pick(rng: random.Random, weights: dict):
    return rng.choices(list(weights), weights=list(weights.values()))[0]


def _target_share(rng: random.Random) -> tuple[float, bool]:
    """How busy an instrument is over the year, as a share of its opening hours, and whether it is one
    of the few booked solid: most between 5 % and 60 % (log-uniform, so more quiet ones than busy
    ones), some idle, a few near full."""
    draw = rng.random()
    if draw < IDLE_SHARE:
        return 0.0, False
    if draw < IDLE_SHARE + FULL_SHARE:
        return rng.uniform(0.85, 0.97), True
    if draw < IDLE_SHARE + FULL_SHARE + 0.04:
        return rng.uniform(0.6, 0.8), False
    # 5 % × 12^(x²): from 5 % to 60 %, half of them under about 9 % (as in the bureau's surveys, most
    # instruments are quiet and a few are in demand).
    return 0.05 * 12 ** (rng.random() ** 2), False


def _working_moment(rng: random.Random, day: date, earliest: time = time(8, 30)) -> datetime:
    """A moment in office hours (Beijing time) on `day`, as UTC: when people ask, answer and record."""
    first = earliest.hour * 60 + earliest.minute
    minute = rng.randint(min(first, 17 * 60), 17 * 60 + 30)
    return clock.local_datetime_to_utc(day, time(minute // 60, minute % 60))


def _weekday_before(day: date, days: int) -> date:
    day -= timedelta(days=days)
    while day.weekday() >= 5:
        day -= timedelta(days=1)
    return day


def _slots(
    hours: list[tuple[int, time, time]], days_by_weekday: dict[int, list[date]]
) -> list[tuple[date, time, time]]:
    return [(day, opens, closes) for weekday, opens, closes in hours for day in days_by_weekday[weekday]]


def load_bookings(rng: random.Random, count: int, today: date | None = None) -> int:
    """Insert up to `count` demo bookings (with service records and history); returns how many.

    Each instrument gets a share of its opening hours (`_target_share`) and that many of its opening
    intervals, a year back to four weeks ahead, are booked (each interval at most once, so holding
    bookings never overlap); a smaller `count` scales every instrument down alike.
    """
    now = clock.utcnow()
    today = today or clock.local_today(now)
    ttl = timedelta(hours=current_app.config["BOOKING_REQUEST_TTL_HOURS"])
    instruments = [
        _Instrument(*row)
        for row in db.session.execute(
            select(
                Instrument.id,
                Instrument.institution_id,
                Instrument.fee_per_hour_fen,
                Instrument.fee_per_sample_fen,
            )
            .where(
                Instrument.status.in_(
                    [InstrumentStatus.NORMAL, InstrumentStatus.STANDBY, InstrumentStatus.OCCASIONAL_FAULT]
                )
            )
            .order_by(Instrument.id)
        )
    ]
    if not instruments or count <= 0:
        return 0
    opening: dict[int, list[tuple[int, time, time]]] = {}
    for instrument_id, weekday, opens, closes in db.session.execute(
        select(
            OpeningHours.instrument_id, OpeningHours.weekday, OpeningHours.opens_at, OpeningHours.closes_at
        ).order_by(OpeningHours.instrument_id, OpeningHours.weekday, OpeningHours.opens_at)
    ):
        opening.setdefault(instrument_id, []).append((weekday, opens, closes))
    days_by_weekday: dict[int, list[date]] = {d: [] for d in range(7)}
    for offset in range(-365, 29):
        day = today + timedelta(days=offset)
        days_by_weekday[day.weekday()].append(day)
    customers = db.session.execute(
        select(User.id, User.enterprise_id, User.username)
        .join(Enterprise, Enterprise.id == User.enterprise_id)
        .where(User.role == Role.ENTERPRISE, Enterprise.verification_state == VerificationState.VERIFIED)
        .order_by(User.id)
    ).all()
    providers = dict(
        db.session.execute(
            select(User.institution_id, User.id).where(User.role == Role.PROVIDER).order_by(User.id.desc())
        ).all()
    )
    named = {username: (user_id, enterprise_id) for user_id, enterprise_id, username in customers}
    taken: set[tuple[int, date, time]] = set()
    # (instrument, customer, day, opens, closes, state or None, solid)
    plans: list[tuple[_Instrument, tuple[int, int | None], date, time, time, BookingState | None, bool]] = []
    # The demo accounts get a little of everything on instruments whose provider is a demo login.
    lcu = db.session.scalar(select(User.institution_id).where(User.username == "provider"))
    lcu_instruments = [i for i in instruments if i.institution_id == lcu] or instruments
    state: BookingState | None
    for n, (username, state, offset) in enumerate(SHOWCASE):
        if username not in named:
            continue
        instrument = lcu_instruments[n % len(lcu_instruments)]
        day = today + timedelta(days=offset)
        while day.weekday() >= 5:
            day -= timedelta(days=1)
        taken.add((instrument.id, day, BLOCKS[0][0]))
        plans.append((instrument, named[username], day, *BLOCKS[0], state, False))
    shares = [_target_share(rng) for _instrument in instruments]
    slots = {i.id: _slots(opening.get(i.id, []), days_by_weekday) for i in instruments}
    # Only about two thirds of what is asked for ends up used (completed, or confirmed ahead), and not
    # always for the whole interval: ask for more so that the used share meets the target.
    wanted = [
        min(1.0, share / (0.97 if solid else USED_FRACTION)) * len(slots[i.id])
        for i, (share, solid) in zip(instruments, shares, strict=True)
    ]
    scale = min(1.0, max(count - len(plans), 0) / (sum(wanted) or 1))
    for instrument, want, (_share, solid) in zip(instruments, wanted, shares, strict=True):
        mine = slots[instrument.id]
        for day, opens, closes in rng.sample(mine, min(len(mine), round(want * scale))):
            if (instrument.id, day, opens) in taken:
                continue
            taken.add((instrument.id, day, opens))
            plans.append(
                (instrument, customers[rng.randrange(len(customers))][:2], day, opens, closes, None, solid)
            )
    bookings: list[dict] = []
    states: list[BookingState] = []
    for n, (instrument, (user_id, enterprise_id), day, opens, closes, state, solid) in enumerate(plans):
        future = day > today
        if state is None:
            if solid and not future:
                state = BookingState.COMPLETED
            else:
                state = _pick(rng, FUTURE_STATES if future else PAST_STATES)
        # Machine time where the instrument charges by the hour, samples where it charges per sample.
        if instrument.fee_per_hour_fen is None:
            mode = BookingMode.SAMPLE
        elif instrument.fee_per_sample_fen is None or solid:
            mode = BookingMode.SLOT
        else:
            mode = BookingMode.SLOT if rng.random() < 0.8 else BookingMode.SAMPLE
        if instrument.fee_per_hour_fen is None and rng.random() < 0.8:
            # Instruments priced per sample are mostly booked for machine time too (the samples are
            # counted and charged in the service record), so their time shows in the utilisation.
            mode = BookingMode.SLOT
        if state is BookingState.NO_SHOW:
            mode = BookingMode.SLOT  # only machine time can be missed (transitions.mark_no_show)
        starts_at = clock.local_datetime_to_utc(day, opens)
        if state is BookingState.NO_SHOW and starts_at + timedelta(minutes=30) > now:
            state = BookingState.CONFIRMED  # later today: nobody has missed it yet
        interval = clock.local_datetime_to_utc(day, closes) - starts_at
        # The whole interval, or a working day where the lab stays open through lunch (the booking
        # rules' longest booking is 8 hours unless an institution allows more).
        if solid or rng.random() < 0.75:
            ends_at = starts_at + min(interval, timedelta(hours=8))
        else:
            ends_at = starts_at + min(interval, timedelta(hours=rng.choice((2, 3, 4, 5))))
        if n == EXPIRING_SOON and state is BookingState.REQUESTED:
            # Asked almost the whole answer time ago: the demo's scheduler expires it in its first minutes.
            created_at = now - ttl + timedelta(minutes=4)
        elif state is BookingState.REQUESTED:
            # Asked recently, or the expiry task would already have closed it.
            created_at = now - timedelta(hours=rng.randint(1, 48), minutes=rng.randint(0, 59))
        else:
            created_at = min(
                _working_moment(rng, _weekday_before(day, rng.randint(2, 14))), now - timedelta(days=3)
            )
        decided_at = (
            None
            if state in (BookingState.REQUESTED, BookingState.EXPIRED)
            else created_at + timedelta(hours=rng.randint(1, 6), minutes=rng.randint(0, 59))
        )
        row: dict[str, Any] = {
            "instrument_id": instrument.id,
            "enterprise_id": enterprise_id,
            "requested_by_id": user_id,
            "mode": mode,
            "state": state,
            "purpose": rng.choice(PURPOSES),
            "created_at": created_at,
            "updated_at": created_at,
            "decided_at": decided_at,
            "reason": "仪器当天需校准"
            if state is BookingState.REJECTED
            else ("计划调整" if state is BookingState.CANCELLED else None),
            "starts_at": None,
            "ends_at": None,
            "held_until": None,
            "sample_count": None,
            "sample_description": None,
            "sample_delivery_on": None,
        }
        if mode is BookingMode.SLOT:
            row.update(starts_at=starts_at, ends_at=ends_at, held_until=ends_at)
        else:
            row.update(
                sample_count=rng.randint(1, 12),
                sample_description="送检样品（粉末/块体）",
                sample_delivery_on=day,
            )
        bookings.append(row)
        states.append(state)
    for offset in range(0, len(bookings), BATCH):
        db.session.execute(insert(table_of(Booking)), bookings[offset : offset + BATCH])
    ids = db.session.scalars(select(Booking.id).order_by(Booking.id)).all()[-len(bookings) :]
    records, history = [], []
    for booking_id, row, plan, state in zip(ids, bookings, plans, states, strict=True):
        instrument = plan[0]
        provider_id = providers.get(instrument.institution_id)
        if not (state is BookingState.REQUESTED and _about_to_expire(row["created_at"], now, ttl)):
            # (The request about to expire is dated, and its history written, at the end of the load.)
            history.append(
                _event(
                    "booking.requested",
                    booking_id,
                    row["requested_by_id"],
                    row["created_at"],
                    None,
                    "requested",
                )
            )
        if row["decided_at"]:
            decision = "rejected" if state is BookingState.REJECTED else "confirmed"
            history.append(
                _event(
                    f"booking.{decision}", booking_id, provider_id, row["decided_at"], "requested", decision
                )
            )
        if state is BookingState.COMPLETED:
            done_at = (
                row["ends_at"] or clock.local_datetime_to_utc(row["sample_delivery_on"], time(17))
            ) + timedelta(hours=1)
            slot_hours = (
                Decimal(str((row["ends_at"] - row["starts_at"]).total_seconds() / 3600))
                if row["ends_at"]
                else None
            )
            samples = row["sample_count"] or (
                rng.randint(1, 12) if instrument.fee_per_hour_fen is None else None
            )
            fee = compute_fee(instrument, slot_hours, samples)
            rating = _pick(rng, RATINGS) if rng.random() < 0.85 else None
            records.append(
                {
                    "booking_id": booking_id,
                    "hours": slot_hours,
                    "samples": samples,
                    "computed_fee_fen": fee,
                    "fee_fen": fee,
                    "fee_reason": None,
                    "result_summary": "已出具检测报告",
                    "recorded_by_id": provider_id,
                    "recorded_at": done_at,
                    "rating": rating,
                    "rating_comment": None,
                    "rated_at": done_at + timedelta(days=1) if rating else None,
                }
            )
            history.append(
                _event("booking.completed", booking_id, provider_id, done_at, "confirmed", "completed")
            )
        elif state in (BookingState.CANCELLED, BookingState.NO_SHOW, BookingState.EXPIRED):
            before = "confirmed" if row["decided_at"] else "requested"
            # A no-show is marked by the periodic task once the start plus the grace has passed.
            at = (
                row["starts_at"] + timedelta(minutes=30)
                if state is BookingState.NO_SHOW
                else row["created_at"] + timedelta(days=1)
            )
            history.append(_event(f"booking.{state.value}", booking_id, None, at, before, state.value))
    for offset in range(0, len(records), BATCH):
        db.session.execute(insert(table_of(ServiceRecord)), records[offset : offset + BATCH])
    for offset in range(0, len(history), BATCH):
        db.session.execute(insert(table_of(AuditEvent)), history[offset : offset + BATCH])
    return len(bookings)


def _event(
    action: str, booking_id: int, actor_id: int | None, at: datetime, before: str | None, after: str
) -> dict:
    return {
        "action": action,
        "object_type": "booking",
        "object_id": str(booking_id),
        "actor_id": actor_id,
        "created_at": at,
        "before": {"state": before} if before else None,
        "after": {"state": after},
        "reason": None,
        "ip": None,
    }


def _about_to_expire(asked: datetime, now: datetime, ttl: timedelta) -> bool:
    """Whether a waiting request falls due within the hour: only the showcase one does."""
    return asked < now - ttl + timedelta(hours=1)


def keep_the_expiring_request_due(now: datetime | None = None) -> None:
    """Date the showcase request asked almost the whole answer time ago (the oldest waiting one) from
    the end of the load, not its start: loading takes minutes on a busy machine, and the request must
    still be due in the demo's first minutes, not already overdue."""
    now = now or clock.utcnow()
    oldest = db.session.scalars(
        select(Booking.id)
        .where(Booking.state == BookingState.REQUESTED)
        .order_by(Booking.created_at, Booking.id)
        .limit(1)
    ).first()
    ttl = timedelta(hours=current_app.config["BOOKING_REQUEST_TTL_HOURS"])
    if oldest is None or not _about_to_expire(db.session.get_one(Booking, oldest).created_at, now, ttl):
        return  # a smaller demo without it
    asked = now - ttl + timedelta(minutes=4)
    db.session.execute(update(Booking).where(Booking.id == oldest).values(created_at=asked, updated_at=asked))
    asker = db.session.get_one(Booking, oldest).requested_by_id
    db.session.execute(
        insert(table_of(AuditEvent)), [_event("booking.requested", oldest, asker, asked, None, "requested")]
    )
