"""A year of demo activity: bookings in every state, service records with fees and ratings, their history.

Dates are relative to the day of loading (a year back, four weeks ahead), so the demo always has
past services to claim and future requests to answer. One booking at most per instrument per
half-day block, so holding bookings never overlap (PostgreSQL's exclusion constraint would refuse).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from decimal import Decimal

from sqlalchemy import insert, select

from portal.accounts.models import Enterprise, User, VerificationState
from portal.booking.models import Booking, BookingMode, BookingState, ServiceRecord
from portal.booking.services import compute_fee
from portal.catalog.models import Instrument, InstrumentStatus
from portal.core import clock
from portal.core.models import AuditEvent
from portal.core.permissions import Role
from portal.extensions import db

BATCH = 5000
BLOCKS = ((time(8, 30), time(12, 0)), (time(14, 0), time(17, 30)))
PAST_STATES = {
    BookingState.COMPLETED: 80,
    BookingState.CANCELLED: 7,
    BookingState.REJECTED: 5,
    BookingState.NO_SHOW: 3,
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


def load_bookings(rng: random.Random, count: int, today: date | None = None) -> int:
    """Insert `count` demo bookings (with service records and history); returns how many."""
    now = clock.utcnow()
    today = today or clock.local_today(now)
    instruments = [
        _Instrument(*row)
        for row in db.session.execute(
            select(
                Instrument.id,
                Instrument.institution_id,
                Instrument.fee_per_hour_fen,
                Instrument.fee_per_sample_fen,
            )
            .where(Instrument.status.in_([InstrumentStatus.NORMAL, InstrumentStatus.STANDBY]))
            .order_by(Instrument.id)
        )
    ]
    if not instruments or count <= 0:
        return 0
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
    taken: set[tuple[int, date, int]] = set()
    bookings: list[dict] = []
    plans: list[tuple[_Instrument, BookingState]] = []
    # The demo accounts get a little of everything on instruments whose provider is a demo login.
    showcase = [
        ("enterprise", BookingState.REQUESTED, 9),
        ("enterprise", BookingState.CONFIRMED, 5),
        ("enterprise", BookingState.COMPLETED, -20),
        ("enterprise", BookingState.COMPLETED, -45),
        ("enterprise", BookingState.COMPLETED, -70),
        ("enterprise", BookingState.CANCELLED, -30),
        ("enterprise2", BookingState.COMPLETED, -15),
        ("enterprise2", BookingState.REQUESTED, 12),
    ]
    lcu = db.session.scalar(select(User.institution_id).where(User.username == "provider"))
    lcu_instruments = [i for i in instruments if i.institution_id == lcu] or instruments
    for n in range(count):
        if n < len(showcase) and showcase[n][0] in named:
            username, state, offset = showcase[n]
            user_id, enterprise_id = named[username]
            instrument = lcu_instruments[n % len(lcu_instruments)]
            day = today + timedelta(days=offset)
        else:
            user_id, enterprise_id, _name = customers[rng.randrange(len(customers))]
            instrument = instruments[rng.randrange(len(instruments))]
            day = today + timedelta(days=rng.randint(-365, 28))
            state = None
        while day.weekday() >= 5:
            day -= timedelta(days=1)
        block = rng.randrange(2)
        if (instrument.id, day, block) in taken:
            continue
        taken.add((instrument.id, day, block))
        future = day > today
        if state is None:
            state = _pick(rng, FUTURE_STATES if future else PAST_STATES)
        opens, _closes = BLOCKS[block]
        # Machine time where the instrument charges by the hour, samples where it charges per sample.
        if instrument.fee_per_hour_fen is None:
            mode = BookingMode.SAMPLE
        elif instrument.fee_per_sample_fen is None:
            mode = BookingMode.SLOT
        else:
            mode = BookingMode.SLOT if rng.random() < 0.7 else BookingMode.SAMPLE
        hours = rng.choice((1, 1.5, 2, 2.5, 3))
        starts_at = clock.local_datetime_to_utc(day, opens)
        ends_at = starts_at + timedelta(hours=hours)
        if state is BookingState.REQUESTED:  # asked recently, or the expiry task would already have closed it
            created_at = now - timedelta(hours=rng.randint(1, 48))
        else:
            created_at = min(
                starts_at - timedelta(days=rng.randint(2, 14), hours=rng.randint(0, 8)),
                now - timedelta(days=3),
            )
        row = {
            "instrument_id": instrument.id,
            "enterprise_id": enterprise_id,
            "requested_by_id": user_id,
            "mode": mode,
            "state": state,
            "purpose": rng.choice(PURPOSES),
            "created_at": created_at,
            "updated_at": created_at,
            "decided_at": None
            if state in (BookingState.REQUESTED, BookingState.EXPIRED)
            else created_at + timedelta(hours=5),
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
        plans.append((instrument, state))
    for offset in range(0, len(bookings), BATCH):
        db.session.execute(insert(Booking), bookings[offset : offset + BATCH])
    ids = db.session.scalars(select(Booking.id).order_by(Booking.id)).all()[-len(bookings) :]
    records, history = [], []
    for booking_id, row, (instrument, state) in zip(ids, bookings, plans, strict=True):
        provider_id = providers.get(instrument.institution_id)
        history.append(
            _event(
                "booking.requested", booking_id, row["requested_by_id"], row["created_at"], None, "requested"
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
            samples = row["sample_count"]
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
            history.append(
                _event(
                    f"booking.{state.value}",
                    booking_id,
                    None,
                    row["created_at"] + timedelta(days=1),
                    before,
                    state.value,
                )
            )
    for offset in range(0, len(records), BATCH):
        db.session.execute(insert(ServiceRecord), records[offset : offset + BATCH])
    for offset in range(0, len(history), BATCH):
        db.session.execute(insert(AuditEvent), history[offset : offset + BATCH])
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
