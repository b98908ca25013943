"""Demo data of issue 17: some of 聊城大学's instruments need a qualification for self-operated
time and have full price tables; the demo enterprise holds one qualification, enterprise2 none.

Deterministic from the instruments already loaded (no random numbers), so every other demo value
stays as it was.
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select, update

from portal.accounts.models import Institution, User
from portal.booking.models import Booking, BookingMode, ServiceRecord
from portal.catalog.models import Instrument, InstrumentStatus
from portal.catalog.prices import Price, Step, replace_rows
from portal.core import clock
from portal.extensions import db
from portal.qualifications.models import Qualification, UseRules

HOST = "聊城大学"
QUALIFIED_INSTRUMENTS = 6
# Each category's share of the enterprise price, self- and staff-operated and per sample (percent).
SHARES = {
    "internal": (50, 70, 50),
    "academic": (70, 90, 70),
    "enterprise": (100, 130, 100),
    "sme": (80, 110, 80),
}


def _yuan(fen: int, percent: int) -> int:
    """A share of a price, rounded to the yuan."""
    return max(100, round(fen * percent / 100 / 100) * 100)


def price_table(hour_fen: int | None, sample_fen: int | None) -> list[Price]:
    """A full table built on the instrument's published fees, whole yuan (which stay its enterprise
    prices: 100 % rounds to themselves)."""
    table = []
    for customer, (own, staff, sample) in SHARES.items():
        if hour_fen is not None:
            overtime = _yuan(hour_fen, own * 3 // 2) if customer == "enterprise" else None
            table.append(Price(customer, "self", "hour", _yuan(hour_fen, own), 1, (), overtime))
            table.append(Price(customer, "staff", "hour", _yuan(hour_fen, staff), 1))
        if sample_fen is not None:
            steps = (Step(11, _yuan(sample_fen, sample * 4 // 5)),)
            table.append(Price(customer, "sample", "sample", _yuan(sample_fen, sample), 0, steps))
    return table


def load_use_rules() -> int:
    """The demo's qualifications and price tables; returns how many instruments got a table."""
    # The demo's bookings were all run by the enterprises themselves; their records say so.
    db.session.execute(update(Booking).where(Booking.mode == BookingMode.SLOT).values(operation="self"))
    slot_ids = select(Booking.id).where(Booking.mode == BookingMode.SLOT)
    db.session.execute(
        update(ServiceRecord).where(ServiceRecord.booking_id.in_(slot_ids)).values(service_way="占用")
    )
    db.session.execute(
        update(ServiceRecord).where(ServiceRecord.booking_id.not_in(slot_ids)).values(service_way="委托")
    )
    host = db.session.scalar(select(Institution).where(Institution.name == HOST))
    if host is None:
        return 0
    chosen = db.session.scalars(
        select(Instrument)
        .where(
            Instrument.institution_id == host.id,
            Instrument.status == InstrumentStatus.NORMAL,
            Instrument.fee_per_hour_fen.is_not(None),
        )
        # The last ones by code: the first ones stay open to all, as the browser tests expect.
        .order_by(Instrument.code.desc())
        .limit(QUALIFIED_INSTRUMENTS)
    ).all()
    provider = db.session.scalar(select(User).where(User.username == "provider"))
    enterprise = db.session.scalar(select(User).where(User.username == "enterprise"))
    for instrument in chosen:
        db.session.add(
            UseRules(instrument_id=instrument.id, operations=["self", "staff"], requires_qualification=True)
        )
        replace_rows(instrument, price_table(instrument.fee_per_hour_fen, instrument.fee_per_sample_fen))
    if chosen and provider is not None and enterprise is not None:
        today = clock.local_today()
        db.session.add(
            Qualification(
                user_id=enterprise.id,
                instrument_id=chosen[0].id,
                granted_by_id=provider.id,
                valid_from=today - timedelta(days=30),
                valid_until=today + timedelta(days=335),
                note="2026年秋季上机培训考核合格",
            )
        )
    db.session.flush()
    return len(chosen)
