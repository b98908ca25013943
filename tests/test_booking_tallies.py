"""Booking, month and customer tallies (portal.usage.booking_tallies): a booking that starts or stops
holding time, or a service, moves its month's rows at once (the outbox runs the recount), so the
dashboard and the public page show a change on the next visit, with a cache in front or not. Both
backends; tasks run as the outbox sends them."""

from __future__ import annotations

import re
from datetime import timedelta
from decimal import Decimal

import pytest
from sqlalchemy import select

from portal.booking import records, transitions
from portal.core.permissions import Role
from portal.extensions import db
from portal.usage import booking_tallies
from portal.usage.models import BookingTally, CustomerTally, MonthTotal
from portal.usage.periods import Scope
from tests.conftest import MONDAY_9AM
from tests.factories import login

pytestmark = pytest.mark.both_backends

START = MONDAY_9AM + timedelta(hours=1)  # Monday 7 December 2026, 10:00 in Liaocheng
END = START + timedelta(hours=2)


@pytest.fixture
def world(app, fake_clock, make_instrument, make_user, make_booking, make_institution):
    host = make_institution()
    instrument = make_instrument(institution=host)
    user = make_user(Role.ENTERPRISE)
    fake_clock.set(MONDAY_9AM - timedelta(days=1))
    return {
        "instrument": instrument,
        "user": user,
        "booking": make_booking(instrument, user, START, END),
        "provider": make_user(Role.PROVIDER, institution=host),
        "host": host,
        "clock": fake_clock,
    }


def month_row(instrument_id: int, month: str = "2026-12") -> BookingTally | None:
    db.session.expire_all()
    return db.session.scalar(
        select(BookingTally).where(BookingTally.instrument_id == instrument_id, BookingTally.month == month)
    )


def month_total(instrument, month: str = "2026-12") -> tuple[int, int, int, int] | None:
    """(bookings, booked seconds, services, hours billed) of the instrument's county and first-level
    category in the month."""
    db.session.expire_all()
    row = db.session.scalar(
        select(MonthTotal).where(
            MonthTotal.month == month,
            MonthTotal.county == instrument.county,
            MonthTotal.category_group == instrument.category.code[:2],
        )
    )
    return None if row is None else (row.bookings, row.booked_seconds, row.services, row.record_seconds)


def customers(period: str) -> list[tuple[int, str, int, int, int]]:
    db.session.expire_all()
    rows = db.session.scalars(select(CustomerTally).where(CustomerTally.period == period))
    return sorted((r.institution_id, r.county, r.enterprise_id, r.bookings, r.services) for r in rows)


def test_a_booking_counts_while_it_holds_time_and_no_longer(world):
    instrument, booking, provider = world["instrument"], world["booking"], world["provider"]
    assert month_row(instrument.id) is None  # a request holds no time yet
    transitions.confirm_booking(provider, booking.id)
    row = month_row(instrument.id)
    assert (row.bookings, row.booked_seconds) == (1, 7200)
    assert month_total(instrument) == (1, 7200, 0, 0)
    key = (world["host"].id, instrument.county, world["user"].enterprise_id)
    assert customers("2026-12") == [(*key, 1, 0)] and customers("2026") == [(*key, 1, 0)]
    transitions.cancel_booking(world["user"], booking.id, "计划有变")
    assert month_row(instrument.id) is None  # no booking holds time that month: no row
    assert month_total(instrument) is None
    assert customers("2026-12") == []


def test_a_completed_service_is_a_booking_and_a_service_of_its_customer(world):
    instrument, booking, provider = world["instrument"], world["booking"], world["provider"]
    transitions.confirm_booking(provider, booking.id)
    world["clock"].set(END)
    records.complete_booking(provider, booking.id, records.ServiceReport(hours=Decimal(2)))
    assert month_row(instrument.id).bookings == 1
    assert month_total(instrument) == (1, 7200, 1, 7200)
    key = (world["host"].id, instrument.county, world["user"].enterprise_id)
    assert customers("2026-12") == [(*key, 1, 1)]


def test_the_rows_equal_a_direct_count(world, make_booking, make_user):
    instrument, provider = world["instrument"], world["provider"]
    other = make_user(Role.ENTERPRISE)
    later = make_booking(instrument, other, START + timedelta(days=1), END + timedelta(days=1, minutes=30))
    for booking in (world["booking"], later):
        transitions.confirm_booking(provider, booking.id)
    row = month_row(instrument.id)
    scope = Scope(instrument_ids=(instrument.id,))
    start, end = START.replace(day=1) - timedelta(hours=9), START.replace(day=31) + timedelta(hours=15)
    assert booking_tallies.booked(start, end, scope) == {instrument.id: (2, 7200 + 9000)}
    assert (row.bookings, row.booked_seconds) == (2, 16200)
    assert {(r[2], r[3]) for r in customers("2026-12")} == {
        (world["user"].enterprise_id, 1),
        (other.enterprise_id, 1),
    }


def figure(page: str, name: str) -> str:
    return re.search(rf'id="fig-{name}" data-value="([^"]*)"', page).group(1)


def headline(page: str, name: str) -> str:
    return re.search(rf'id="pub-{name}">([^<]*)<', page).group(1)


def test_a_change_shows_on_the_dashboard_and_the_public_page_at_once(client, world, make_user):
    instrument, booking, provider = world["instrument"], world["booking"], world["provider"]
    login(client, make_user(Role.REVIEWER).username)
    before = client.get("/dashboard/").get_data(as_text=True)
    public_before = client.get("/network/").get_data(as_text=True)
    assert instrument.name not in public_before  # nothing booked yet: not among the most used
    transitions.confirm_booking(provider, booking.id)
    world["clock"].set(END)
    records.complete_booking(provider, booking.id, records.ServiceReport(hours=Decimal(2)))
    after = client.get("/dashboard/").get_data(as_text=True)
    assert (figure(before, "bookings"), figure(after, "bookings")) == ("0", "1")
    assert (figure(before, "hours"), figure(after, "hours")) == ("0.0", "2.0")
    public = client.get("/network/").get_data(as_text=True)
    assert (headline(public, "services"), headline(public, "hours")) == ("1", "2")
    assert instrument.name in public
