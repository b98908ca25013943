"""Demo data of issue 18: metered use of most of the year's completed machine-time bookings.

About 85 % of the completed slot bookings get a usage session: checked in by the QR label (most),
the instrument PC or the provider (with a reason); users come a little early or late and leave early,
on time or after the end (overtime); one in ten never checks out and the session ends at the
booking's end. A metered service record bills the metered hours where they are fewer than the booked
ones, as a provider recording from the prefilled form would, so the demo's claims pass
hours_above_usage. A generator of its own keeps every other demo value as it was, and the rows go in
by bulk inserts (about 3 s of processor time for the demo's 75,000 sessions, of some 40 s).
"""

from __future__ import annotations

import random
from datetime import datetime, timedelta
from decimal import ROUND_DOWN, Decimal

from sqlalchemy import bindparam, insert, select, update

from portal.booking.models import Booking, BookingMode, BookingState, ServiceRecord
from portal.core.database import table_of
from portal.extensions import db
from portal.usage.models import END_AUTO, UsageSession, UsageSource

SEED = 18
METERED_SHARE = 0.85
BATCH = 5000
SOURCES = ((UsageSource.QR, 0.70), (UsageSource.DEVICE, 0.25), (UsageSource.PROVIDER, 0.05))


def _minutes(rng: random.Random, shape: tuple[tuple[float, int, int], ...]) -> int:
    """Minutes drawn from (share, low, high) bands."""
    pick, total = rng.random(), 0.0
    for share, low, high in shape:
        total += share
        if pick < total:
            return rng.randint(low, high)
    return 0


# Arrival against the start (minutes), and leaving against the end.
ARRIVAL = ((0.55, -12, 0), (0.35, 1, 14), (0.10, 15, 30))
LEAVING = ((0.30, -40, -5), (0.45, -4, 4), (0.25, 5, 45))


def _session(rng: random.Random, booking_id: int, user_id: int, starts: datetime, ends: datetime) -> dict:
    started = starts + timedelta(minutes=_minutes(rng, ARRIVAL))
    source = rng.choices([s for s, _w in SOURCES], [w for _s, w in SOURCES])[0]
    if rng.random() < 0.10:  # nobody checked out: the periodic task ended it at the booking's end
        ended, ended_by, overtime = max(ends, started), END_AUTO, 0
    else:
        ended = max(ends + timedelta(minutes=_minutes(rng, LEAVING)), started + timedelta(minutes=10))
        ended_by, overtime = source.value, max(0, int((ended - ends).total_seconds() // 60))
    return {
        "booking_id": booking_id,
        "user_id": user_id,
        "started_at": started,
        "ended_at": ended,
        "source": source.value,
        "ended_by": ended_by,
        "overtime_minutes": overtime,
        "reported_username": None,
        "reason": "用户手机无法扫码，管理员代为签到" if source is UsageSource.PROVIDER else None,
        "created_at": started,
    }


def load_usage() -> int:
    """The demo's usage sessions; returns how many."""
    rng = random.Random(SEED)
    rows = db.session.execute(
        select(
            Booking.id,
            Booking.instrument_id,
            Booking.requested_by_id,
            Booking.starts_at,
            Booking.ends_at,
            ServiceRecord.id,
            ServiceRecord.hours,
        )
        .join(ServiceRecord, ServiceRecord.booking_id == Booking.id)
        .where(Booking.mode == BookingMode.SLOT, Booking.state == BookingState.COMPLETED)
        .order_by(Booking.id)
    ).all()
    sessions, billed = [], []
    for booking_id, instrument_id, user_id, starts, ends, record_id, hours in rows:
        if rng.random() >= METERED_SHARE or starts is None or ends is None:
            continue
        session = {**_session(rng, booking_id, user_id, starts, ends), "instrument_id": instrument_id}
        sessions.append(session)
        used = session["ended_at"] - session["started_at"]
        metered = (Decimal(int(used.total_seconds() // 60)) / 60).quantize(Decimal("0.01"), ROUND_DOWN)
        if hours is not None and metered < hours:
            billed.append({"id": record_id, "hours": max(metered, Decimal("0.01"))})
    for offset in range(0, len(sessions), BATCH):
        db.session.execute(insert(table_of(UsageSession)), sessions[offset : offset + BATCH])
    for offset in range(0, len(billed), BATCH):
        db.session.execute(update(ServiceRecord), billed[offset : offset + BATCH])
    for offset in range(0, len(sessions), BATCH):
        # Each metered booking's first check-in, on the booking as a real check-in records it.
        db.session.execute(
            update(table_of(Booking)).where(table_of(Booking).c.id == bindparam("b_id")),
            [
                {"b_id": s["booking_id"], "checked_in_at": s["started_at"]}
                for s in sessions[offset : offset + BATCH]
            ],
        )
    db.session.flush()
    return len(sessions)
