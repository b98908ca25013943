"""`can_<action>(user, booking)` says yes exactly when the transition it guards would succeed.

The booking page offers only what these answer; so for every state, kind of booking, moment (before
the enterprise's cut-off, after it, once the booking has begun) and kind of user, each answer is
compared with what the transition itself does to a fresh booking.
"""

from __future__ import annotations

import io
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest

from portal.booking import files, records, transitions
from portal.booking.models import Booking, BookingMode, BookingState, FileKind, ServiceRecord
from portal.core.errors import InvalidTransition, ServiceError
from portal.core.permissions import Role
from portal.extensions import db
from tests.conftest import MONDAY_9AM
from tests.pdf_samples import minimal_pdf

STARTS = MONDAY_9AM + timedelta(days=2)  # Wednesday 09:00 in Liaocheng
DELIVERY = date(2026, 12, 9)  # the same Wednesday
MOMENTS = {
    "early": MONDAY_9AM,  # before every cut-off (24 hours)
    "late": datetime(2026, 12, 8, 4, 0, tzinfo=UTC),  # Tuesday noon: past the cut-off, not begun
    "begun": datetime(2026, 12, 9, 2, 0, tzinfo=UTC),  # Wednesday 10:00: the booking has begun
}
ACTORS = ("owner", "other_enterprise", "manager", "other_provider", "admin")
PDF = minimal_pdf()


def _complete(user, booking: Booking) -> None:
    slot = booking.mode is BookingMode.SLOT
    report = records.ServiceReport(hours=Decimal(1)) if slot else records.ServiceReport(samples=1)
    records.complete_booking(user, booking.id, report)


def _attach(user, booking: Booking) -> None:
    if booking.service_record is None:  # the page has no form, the API no record to post to
        raise InvalidTransition("no service record")
    files.attach_file(user, booking.service_record.id, FileKind.CONTRACT, io.BytesIO(PDF), "contract.pdf")


ACTIONS = {
    "confirm": (transitions.can_confirm, lambda u, b: transitions.confirm_booking(u, b.id)),
    "reject": (transitions.can_reject, lambda u, b: transitions.reject_booking(u, b.id, "设备故障")),
    "cancel": (transitions.can_cancel, lambda u, b: transitions.cancel_booking(u, b.id, "改期")),
    "no_show": (transitions.can_mark_no_show, lambda u, b: transitions.mark_no_show(u, b.id)),
    "complete": (records.can_complete, _complete),
    "rate": (records.can_rate, lambda u, b: records.rate_service(u, b.id, 5)),
    "attach_file": (files.can_attach_file, _attach),
}
STATES = ["requested", "confirmed", "completed", "rated", "cancelled", "no_show"]


@pytest.fixture
def world(app, fake_clock, make_instrument, make_user):
    instrument = make_instrument(fee_per_sample_fen=50_00)
    owner = make_user(Role.ENTERPRISE)
    return {
        "clock": fake_clock,
        "instrument": instrument,
        # A slot held by an earlier case must not overlap the next (PostgreSQL's exclusion constraint).
        "new_instrument": lambda: make_instrument(
            institution=instrument.institution, fee_per_sample_fen=50_00
        ),
        "owner": owner,
        "other_enterprise": make_user(Role.ENTERPRISE),
        "manager": make_user(Role.PROVIDER, institution=instrument.institution),
        "other_provider": make_user(Role.PROVIDER),
        "admin": make_user(Role.ADMIN),
    }


def booking_in(world, make_booking, state: str, mode: BookingMode) -> Booking:
    stored = BookingState.COMPLETED if state == "rated" else BookingState(state)
    times = (STARTS, STARTS + timedelta(hours=1)) if mode is BookingMode.SLOT else ()
    extra = {} if times else {"sample_delivery_on": DELIVERY}
    booking = make_booking(world["new_instrument"](), world["owner"], *times, state=stored, **extra)
    if stored is BookingState.COMPLETED:
        db.session.add(
            ServiceRecord(
                booking_id=booking.id,
                hours=Decimal(1) if times else None,
                samples=None if times else 1,
                computed_fee_fen=300_00,
                fee_fen=300_00,
                recorded_by_id=world["manager"].id,
                recorded_at=STARTS,
                rating=4 if state == "rated" else None,
            )
        )
        db.session.commit()
    return db.session.get(Booking, booking.id, populate_existing=True)


def outcome(action, user, booking: Booking) -> ServiceError | None:
    try:
        action(user, booking)
    except ServiceError as error:
        db.session.rollback()
        return error
    return None


@pytest.mark.parametrize("moment", list(MOMENTS))
@pytest.mark.parametrize("mode", list(BookingMode))
@pytest.mark.parametrize("state", STATES)
def test_each_can_says_yes_exactly_when_its_transition_succeeds(world, make_booking, state, mode, moment):
    world["clock"].set(MOMENTS[moment])
    disagreements = []
    booking = booking_in(world, make_booking, state, mode)
    for actor in ACTORS:
        user = world[actor]
        for name, (can, act) in ACTIONS.items():
            said = can(user, booking)
            error = outcome(act, user, booking)
            if said != (error is None):
                disagreements.append((actor, name, said, error and error.message))
            if error is None:  # a refusal changed nothing; a success needs a fresh booking
                booking = booking_in(world, make_booking, state, mode)
            else:
                booking = db.session.get(Booking, booking.id, populate_existing=True)
    assert disagreements == []


@pytest.mark.parametrize("moment", list(MOMENTS))
@pytest.mark.parametrize("mode", list(BookingMode))
@pytest.mark.parametrize("state", ["requested", "confirmed", "cancelled"])
def test_the_enterprise_is_told_to_call_exactly_when_the_cut_off_refuses_it(
    world, make_booking, state, mode, moment
):
    world["clock"].set(MOMENTS[moment])
    for actor in ("owner", "manager"):
        booking = booking_in(world, make_booking, state, mode)
        said = transitions.must_call_to_cancel(world[actor], booking)
        error = outcome(lambda u, b: transitions.cancel_booking(u, b.id, "改期"), world[actor], booking)
        assert said == (error is not None and error.details == {"rule": "cancel_cutoff"}), actor


@pytest.mark.parametrize("moment", list(MOMENTS))
@pytest.mark.parametrize("mode", list(BookingMode))
@pytest.mark.parametrize("state", ["requested", "confirmed", "completed"])
def test_the_service_waits_exactly_when_recording_it_is_too_early(world, make_booking, state, mode, moment):
    world["clock"].set(MOMENTS[moment])
    for actor in ("manager", "other_provider", "owner"):
        booking = booking_in(world, make_booking, state, mode)
        said = records.will_complete(world[actor], booking)
        error = outcome(_complete, world[actor], booking)
        too_early = error is not None and error.details == {"rule": "complete_too_early"}
        # Recording checks the time before the state: only a confirmed booking waits for it.
        assert said == (state == "confirmed" and too_early), actor


@pytest.mark.parametrize("mode", list(BookingMode))
def test_the_page_is_asked_at_the_moment_it_is_shown(world, make_booking, mode):
    booking = booking_in(world, make_booking, "confirmed", mode)
    manager, owner = world["manager"], world["owner"]
    late, begun = MOMENTS["late"], MOMENTS["begun"]
    assert transitions.can_cancel(owner, booking, MOMENTS["early"])
    assert not transitions.can_cancel(owner, booking, late)
    assert transitions.must_call_to_cancel(owner, booking, late)
    assert not transitions.must_call_to_cancel(owner, booking, MOMENTS["early"])
    assert records.will_complete(manager, booking, late) and not records.will_complete(
        manager, booking, begun
    )
    assert records.can_complete(manager, booking, begun) and not records.can_complete(manager, booking, late)
    slot = mode is BookingMode.SLOT
    assert transitions.can_mark_no_show(manager, booking, begun) is slot
    assert not transitions.can_mark_no_show(manager, booking, late)


def test_the_enterprise_s_own_cut_off_is_shown_only_to_it_and_only_while_confirmed(world, make_booking):
    confirmed = booking_in(world, make_booking, "confirmed", BookingMode.SLOT)
    requested = booking_in(world, make_booking, "requested", BookingMode.SLOT)
    assert transitions.enterprise_cancel_deadline(world["owner"], confirmed) == STARTS - timedelta(hours=24)
    assert transitions.enterprise_cancel_deadline(world["owner"], requested) is None
    assert transitions.enterprise_cancel_deadline(world["manager"], confirmed) is None
    assert transitions.enterprise_cancel_deadline(world["other_enterprise"], confirmed) is None


@pytest.mark.parametrize("at", [timedelta(seconds=-1), timedelta(0), timedelta(seconds=1)])
def test_the_cut_off_itself_still_lets_the_enterprise_cancel(world, make_booking, at):
    booking = booking_in(world, make_booking, "confirmed", BookingMode.SLOT)
    cutoff = STARTS - timedelta(hours=24)
    assert transitions.cancel_cutoff_passed(booking, cutoff + at) is (at > timedelta(0))
    assert transitions.has_begun(booking, STARTS + at) is (at >= timedelta(0))
