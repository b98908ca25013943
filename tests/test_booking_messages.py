"""What a refused transition says, word for word (in English; the Chinese come from the catalogue).

People act on these texts: the state a booking is in, the moment from which a service can be
recorded, until when a booking could be cancelled and whom to call instead.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
from flask_babel import force_locale
from sqlalchemy import update

from portal.booking import records, transitions
from portal.booking.models import Booking, BookingState
from portal.core.errors import InvalidTransition, ServiceError, ValidationFailed
from portal.core.permissions import Role
from portal.extensions import db
from tests.conftest import MONDAY_9AM

STARTS = MONDAY_9AM + timedelta(days=2)  # Wednesday 09:00 in Liaocheng


@pytest.fixture
def world(app, fake_clock, make_instrument, make_user):
    instrument = make_instrument()
    return {
        "clock": fake_clock,
        "instrument": instrument,
        "owner": make_user(Role.ENTERPRISE),
        "provider": make_user(Role.PROVIDER, institution=instrument.institution),
    }


def slot(world, make_booking, state: BookingState = BookingState.REQUESTED) -> Booking:
    return make_booking(world["instrument"], world["owner"], STARTS, STARTS + timedelta(hours=1), state=state)


def refused(action, *args, error: type[ServiceError] = InvalidTransition) -> ServiceError:
    with force_locale("en"), pytest.raises(error) as raised:
        action(*args)
    return raised.value


@pytest.mark.parametrize(
    ("state", "label"), [(BookingState.CONFIRMED, "Confirmed"), (BookingState.NO_SHOW, "No-show")]
)
def test_a_forbidden_transition_names_the_state_the_booking_is_in(world, make_booking, state, label):
    booking = slot(world, make_booking, state)
    error = refused(transitions.reject_booking, world["provider"], booking.id, "晚了")
    assert error.message == f"A booking that is {label} cannot be changed this way."
    assert error.details == {"state": state.value, "action": "reject"}


def test_a_booking_changed_since_it_was_read_asks_for_a_reload(world, make_booking):
    booking = slot(world, make_booking)
    stale = db.session.get(Booking, booking.id)
    db.session.execute(
        update(Booking)
        .where(Booking.id == booking.id)
        .values(state=BookingState.CANCELLED)
        .execution_options(synchronize_session=False)
    )
    error = refused(transitions.transition, stale, "confirm", world["provider"])
    assert error.message == "Someone else changed this booking a moment ago; reload the page."
    assert db.session.get(Booking, booking.id, populate_existing=True).state is BookingState.REQUESTED


@pytest.mark.parametrize(
    ("reason", "message", "field"),
    [
        (None, "Please give a reason.", "Required."),
        (" ", "Please give a reason.", "Required."),
        ("x" * 1001, "At most 1,000 characters.", "At most 1,000 characters."),
    ],
)
def test_a_missing_or_long_reason_is_refused_in_words(world, make_booking, reason, message, field):
    booking = slot(world, make_booking)
    error = refused(transitions.reject_booking, world["provider"], booking.id, reason, error=ValidationFailed)
    assert (error.message, error.fields) == (message, {"reason": field})


def test_a_service_recorded_too_early_says_when_the_booked_time_begins(world, make_booking):
    booking = slot(world, make_booking, BookingState.CONFIRMED)
    for action in (
        transitions.mark_no_show,
        lambda u, i: records.complete_booking(u, i, records.ServiceReport(hours=Decimal(1))),
    ):
        error = refused(action, world["provider"], booking.id)
        assert error.message == "This can be recorded only once the booked time has begun (2026-12-09 09:00)."


def test_a_sample_service_recorded_too_early_says_the_day_the_samples_arrive(world, make_booking):
    booking = make_booking(
        world["instrument"],
        world["owner"],
        state=BookingState.CONFIRMED,
        sample_delivery_on=date(2026, 12, 10),
    )
    error = refused(records.complete_booking, world["provider"], booking.id, records.ServiceReport(samples=1))
    assert error.message == "A sample service can be recorded from the day the samples arrive (2026-12-10)."
    assert error.details == {"rule": "complete_too_early"}
    world["clock"].set(datetime(2026, 12, 10, 2, 0, tzinfo=UTC))
    error = refused(transitions.mark_no_show, world["provider"], booking.id)
    assert error.message == "Only machine-time bookings can be no-shows."


def test_too_late_to_cancel_online_says_until_when_and_whom_to_call(world, make_booking):
    booking = slot(world, make_booking, BookingState.CONFIRMED)
    world["clock"].set(STARTS - timedelta(hours=23))
    error = refused(transitions.cancel_booking, world["owner"], booking.id, None)
    assert error.message == (
        "Confirmed bookings can be cancelled online until 2026-12-08 09:00; "
        "please call the operator: 张三, 0635-8239999."
    )
    assert error.details == {"rule": "cancel_cutoff"}
