"""Monthly usage tallies (portal.usage.tallies): each change that moves an instrument's hours queues
its month's recount, the recount is idempotent, a month is the Beijing one, and the tallies of a
year add up to what the raw records say. Both backends; tasks run as the outbox sends them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import select

from portal.booking import records
from portal.booking.models import BookingState
from portal.core.clock import local_month_bounds
from portal.core.permissions import Role
from portal.extensions import db
from portal.usage import internal, services, tallies, tasks
from portal.usage.models import UsageTally
from tests.conftest import MONDAY_9AM

START = MONDAY_9AM + timedelta(hours=1)  # Monday 7 December 2026, 10:00 in Liaocheng
END = START + timedelta(hours=2)


@pytest.fixture
def world(app, fake_clock, make_instrument, make_user, make_booking, make_institution):
    host = make_institution()
    instrument = make_instrument(institution=host)
    user = make_user(Role.ENTERPRISE)
    return {
        "instrument": instrument,
        "user": user,
        "booking": make_booking(instrument, user, START, END, state=BookingState.CONFIRMED),
        "provider": make_user(Role.PROVIDER, institution=host),
        "clock": fake_clock,
    }


def tally(instrument_id: int, month: str = "2026-12") -> UsageTally | None:
    db.session.expire_all()
    return db.session.scalar(
        select(UsageTally).where(UsageTally.instrument_id == instrument_id, UsageTally.period == month)
    )


def test_a_metered_service_recorded_and_rated_is_in_its_months_tally_once(world):
    clock, booking, instrument = world["clock"], world["booking"], world["instrument"]
    clock.set(START)
    services.check_in(world["user"], booking.id)
    clock.set(START + timedelta(minutes=90))
    services.check_out(world["user"], booking.id)
    assert tally(instrument.id) is None  # the session alone is not a service yet
    records.complete_booking(world["provider"], booking.id, records.ServiceReport(hours=Decimal(2)))
    row = tally(instrument.id)
    # Metered 1.5 h counts, never the record's 2 h as well.
    assert (row.metered_seconds, row.recorded_seconds, row.services) == (5400, 0, 1)
    assert row.income_fen > 0 and row.enterprises == 1 and row.ratings == 0
    records.rate_service(world["user"], booking.id, 4)
    assert (tally(instrument.id).ratings, tally(instrument.id).rating_total) == (1, 4)


def test_internal_use_recorded_and_deleted_moves_the_tally_of_its_own_month(world):
    clock, instrument = world["clock"], world["instrument"]
    clock.set(START + timedelta(days=40))  # January 2027: the use below is in November
    data = internal.InternalUseData(
        datetime(2026, 11, 30, 16, tzinfo=UTC), datetime(2026, 11, 30, 19, tzinfo=UTC)
    )
    row = internal.record_internal_use(world["provider"], instrument.code, data)
    # 16:00 UTC on 30 November is midnight of 1 December in Beijing: December's tally, not November's.
    assert tally(instrument.id, "2026-11") is None
    assert tally(instrument.id, "2026-12").internal_seconds == 3 * 3600
    internal.delete_internal_use(world["provider"], instrument.code, row.id)
    assert tally(instrument.id, "2026-12") is None  # nothing left that month: no row


def test_a_recount_is_idempotent_and_leaves_other_instruments_alone(world, make_instrument):
    other = make_instrument()
    db.session.add(UsageTally(instrument_id=other.id, period="2026-12", services=7))
    db.session.commit()
    world["clock"].set(END)
    records.complete_booking(world["provider"], world["booking"].id, records.ServiceReport(hours=Decimal(2)))
    first = tally(world["instrument"].id)
    first = (first.recorded_seconds, first.services)
    assert tallies.tally_month("2026-12", [world["instrument"].id]) == 1
    again = tally(world["instrument"].id)
    assert (again.recorded_seconds, again.services) == first == (7200, 1)
    assert tally(other.id).services == 7  # a recount of one instrument leaves the others' rows


def test_the_nightly_recount_repairs_this_month_and_the_last_in_beijing_time(world):
    clock, instrument = world["clock"], world["instrument"]
    clock.set(END)
    records.complete_booking(world["provider"], world["booking"].id, records.ServiceReport(hours=Decimal(2)))
    db.session.execute(UsageTally.__table__.delete())  # a lost recount
    db.session.commit()
    # 31 December 20:00 UTC is already 1 January in Beijing: the last month is December, not November.
    clock.set(datetime(2026, 12, 31, 20, tzinfo=UTC))
    assert tasks.tally_recent() == 1
    assert tally(instrument.id).recorded_seconds == 7200


def test_the_months_and_the_years_rows_equal_the_raw_records(world, make_booking):
    clock, instrument, user, provider = world["clock"], world["instrument"], world["user"], world["provider"]
    clock.set(END)
    records.complete_booking(provider, world["booking"].id, records.ServiceReport(hours=Decimal("1.25")))
    later = make_booking(
        instrument, user, START + timedelta(days=1), END + timedelta(days=1), state=BookingState.CONFIRMED
    )
    clock.set(START + timedelta(days=1))
    services.check_in(user, later.id)
    clock.set(START + timedelta(days=1, minutes=47, seconds=13))
    services.check_out(user, later.id)
    records.complete_booking(provider, later.id, records.ServiceReport(hours=Decimal(1)))
    raw = tallies.period_figures(*local_month_bounds("2026-12"))[instrument.id]
    assert tallies.tallied_figures("2026-12") == {instrument.id: raw}
    assert raw.metered_seconds == 47 * 60 + 13 and raw.recorded_seconds == 4500 and raw.services == 2
    # The year's row: the same, as December is the year's only month with use here.
    assert tallies.tallied_figures("2026") == {instrument.id: raw}


def test_flask_usage_tally_recounts_every_month_with_use(app, world):
    world["clock"].set(END)
    records.complete_booking(world["provider"], world["booking"].id, records.ServiceReport(hours=Decimal(2)))
    db.session.execute(UsageTally.__table__.delete())  # e.g. right after the upgrade that adds the table
    db.session.commit()
    result = app.test_cli_runner().invoke(args=["usage", "tally"])
    assert result.exit_code == 0 and "1 tally rows written" in result.output
    assert tally(world["instrument"].id).recorded_seconds == 7200
    assert tally(world["instrument"].id, "2026").recorded_seconds == 7200  # and the year's row
