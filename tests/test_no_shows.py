"""No-shows found by the clock (issue 18, deliverable 4): a confirmed slot without check-in by its start
plus the instrument's grace becomes `no_show`, frees its time and is told to both sides."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from portal import BEAT_SCHEDULE
from portal.booking import no_shows, requests
from portal.booking.models import Booking, BookingMode, BookingState
from portal.booking.signals import booking_violation
from portal.core.errors import SlotConflict
from portal.core.models import AuditEvent
from portal.core.permissions import Role
from portal.extensions import db
from portal.notifications.models import Notification
from portal.usage import services as usage
from tests.conftest import MONDAY_9AM
from tests.test_booking_rules import WEEKDAY_HOURS

# Tuesday 8 December 2026, 09:00 in Liaocheng: the booked slot runs 09:00-11:00.
TUESDAY_9 = MONDAY_9AM + timedelta(days=1)


@pytest.fixture
def world(app, fake_clock, make_instrument, make_institution, make_user, make_booking):
    host = make_institution()
    instrument = make_instrument(institution=host, opening_hours=WEEKDAY_HOURS)
    enterprise = make_user(Role.ENTERPRISE)
    provider = make_user(Role.PROVIDER, institution=host)
    booking = make_booking(
        instrument, enterprise, TUESDAY_9, TUESDAY_9 + timedelta(hours=2), state=BookingState.CONFIRMED
    )
    return {
        "instrument": instrument,
        "enterprise": enterprise,
        "provider": provider,
        "booking": booking,
        "clock": fake_clock,
        "make_booking": make_booking,
        "make_user": make_user,
    }


def state_of(booking_id: int) -> BookingState:
    db.session.rollback()
    return db.session.get_one(Booking, booking_id, populate_existing=True).state


def test_a_confirmed_slot_without_check_in_becomes_a_no_show_at_start_plus_the_default_grace(world):
    booking = world["booking"]
    assert no_shows.mark_no_shows(TUESDAY_9 + timedelta(minutes=29, seconds=59)) == 0
    assert state_of(booking.id) is BookingState.CONFIRMED
    assert no_shows.mark_no_shows(TUESDAY_9 + timedelta(minutes=30)) == 1
    assert state_of(booking.id) is BookingState.NO_SHOW


def test_the_grace_is_the_instruments_own(world, set_policy):
    set_policy(world["instrument"], no_show_grace_minutes=45)
    booking = world["booking"]
    assert no_shows.mark_no_shows(TUESDAY_9 + timedelta(minutes=44)) == 0
    assert no_shows.mark_no_shows(TUESDAY_9 + timedelta(minutes=45)) == 1
    assert state_of(booking.id) is BookingState.NO_SHOW


def test_a_checked_in_booking_is_never_a_no_show(world):
    booking = world["booking"]
    booking.checked_in_at = TUESDAY_9 + timedelta(minutes=10)
    db.session.commit()
    assert no_shows.mark_no_shows(TUESDAY_9 + timedelta(hours=1)) == 0
    assert state_of(booking.id) is BookingState.CONFIRMED


@pytest.mark.parametrize("state", [BookingState.REQUESTED, BookingState.COMPLETED, BookingState.CANCELLED])
def test_only_confirmed_bookings_are_considered(world, state):
    booking = world["booking"]
    booking.state = state
    db.session.commit()
    assert no_shows.mark_no_shows(TUESDAY_9 + timedelta(hours=1)) == 0
    assert state_of(booking.id) is state


def test_sample_submissions_are_never_no_shows(world):
    sample = world["make_booking"](world["instrument"], world["enterprise"], state=BookingState.CONFIRMED)
    assert sample.mode is BookingMode.SAMPLE
    no_shows.mark_no_shows(TUESDAY_9 + timedelta(hours=1))
    assert state_of(sample.id) is BookingState.CONFIRMED


def test_slots_older_than_the_look_back_are_left_to_the_provider(world, app):
    booking = world["booking"]
    hours = app.config["NO_SHOW_LOOKBACK_HOURS"]
    assert no_shows.mark_no_shows(TUESDAY_9 + timedelta(hours=hours, seconds=1)) == 0
    assert state_of(booking.id) is BookingState.CONFIRMED


def test_the_no_show_is_audited_told_to_both_sides_and_counted_once(world):
    booking = world["booking"]
    heard: list[str] = []

    def listen(sender, **kw):
        heard.append(kw["kind"])

    booking_violation.connect(listen)
    try:
        now = TUESDAY_9 + timedelta(minutes=31)
        assert no_shows.mark_no_shows(now) == 1
        assert no_shows.mark_no_shows(now + timedelta(minutes=5)) == 0  # the second run changes nothing
    finally:
        booking_violation.disconnect(listen)
    assert heard == ["no_show"]
    audit = db.session.scalars(
        select(AuditEvent).where(AuditEvent.object_type == "booking", AuditEvent.object_id == str(booking.id))
    ).all()
    assert [(a.action, a.actor_id) for a in audit] == [("booking.no_show", None)]
    told = {
        (n.kind, n.recipient_id)
        for n in db.session.scalars(
            select(Notification).where(Notification.link == f"/bookings/{booking.id}")
        )
    }
    assert told == {
        ("booking.no_show", world["enterprise"].id),
        ("booking.no_show_provider", world["provider"].id),
    }


def test_the_rest_of_the_slot_is_free_again(world, make_user, set_policy):
    world["clock"].set(TUESDAY_9 + timedelta(minutes=31))
    other = make_user(Role.ENTERPRISE)
    # The no-show's remaining hour, bookable at no notice: refused while the booking holds it.
    set_policy(world["instrument"], min_notice_hours=0)
    wanted = requests.BookingRequest(
        mode=BookingMode.SLOT,
        starts_at=TUESDAY_9 + timedelta(hours=1),
        ends_at=TUESDAY_9 + timedelta(hours=2),
    )
    with pytest.raises(SlotConflict):
        requests.request_booking(other, world["instrument"].code, wanted)
    no_shows.mark_no_shows()
    taken = requests.request_booking(other, world["instrument"].code, wanted)
    assert taken.state is BookingState.REQUESTED


def test_a_check_in_a_moment_before_the_update_wins(world, monkeypatch):
    """The check-in commits between the task's read and its UPDATE: the conditional UPDATE refuses."""
    booking = world["booking"]
    real_fresh = no_shows.fresh_booking

    def fresh_then_check_in(booking_id):
        row = real_fresh(booking_id)
        db.session.execute(
            Booking.__table__.update().where(Booking.id == booking_id).values(checked_in_at=TUESDAY_9)
        )
        return row

    monkeypatch.setattr(no_shows, "fresh_booking", fresh_then_check_in)
    assert no_shows.mark_no_shows(TUESDAY_9 + timedelta(hours=1)) == 0
    assert state_of(booking.id) is BookingState.CONFIRMED


def test_the_beat_runs_the_task():
    assert BEAT_SCHEDULE["booking-no-shows"]["task"] == "booking.mark_no_shows"


def test_the_registered_task_marks_them(world, app):
    world["clock"].set(TUESDAY_9 + timedelta(minutes=30))
    assert app.extensions["celery"].tasks["booking.mark_no_shows"].apply().get() == 1
    assert state_of(world["booking"].id) is BookingState.NO_SHOW


def test_a_check_in_at_the_instrument_keeps_the_booking_from_being_a_no_show(world):
    """The join of check-in (portal.usage) and the no-show task (portal.booking): a QR check-in puts
    the booking's first check-in on the booking, where the task looks."""
    booking = world["booking"]
    world["clock"].current = TUESDAY_9 + timedelta(minutes=5)
    usage.check_in(world["enterprise"], booking.id)
    db.session.rollback()
    assert (
        db.session.get_one(Booking, booking.id, populate_existing=True).checked_in_at
        == world["clock"].current
    )
    assert no_shows.mark_no_shows(TUESDAY_9 + timedelta(hours=1)) == 0
    assert state_of(booking.id) is BookingState.CONFIRMED


def test_a_check_in_racing_a_no_show_loses_once_the_no_show_is_marked(world):
    booking = world["booking"]
    assert no_shows.mark_no_shows(TUESDAY_9 + timedelta(minutes=30)) == 1
    assert usage.record_check_in(booking.id, TUESDAY_9 + timedelta(minutes=29)) is False
    db.session.rollback()
    assert db.session.get_one(Booking, booking.id, populate_existing=True).checked_in_at is None
