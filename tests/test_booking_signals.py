"""Booking talks upward by signals: what it sends on each transition, and what it asks of the areas
above it (the voucher hint) and answers to the one below it (the catalogue's instrument page)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from portal.booking import signals, transitions
from portal.booking.models import Booking, BookingState
from portal.catalog.signals import RECORD_DEFAULTS, instrument_shown, record_extras
from portal.core.errors import InvalidTransition
from portal.core.permissions import Role
from tests.conftest import MONDAY_9AM


@pytest.fixture
def world(app, fake_clock, make_instrument, make_user, make_booking):
    instrument = make_instrument()
    owner = make_user(Role.ENTERPRISE)
    starts = MONDAY_9AM + timedelta(days=2)
    return {
        "instrument": instrument,
        "owner": owner,
        "provider": make_user(Role.PROVIDER, institution=instrument.institution),
        "booking": make_booking(instrument, owner, starts, starts + timedelta(hours=1)),
    }


@pytest.fixture
def sent():
    calls = []

    def receiver(sender, **kwargs):
        calls.append((sender, kwargs))

    with signals.booking_state_changed.connected_to(receiver):
        yield calls


def test_a_transition_tells_who_moved_which_booking_from_where_to_where(world, sent):
    transitions.confirm_booking(world["provider"], world["booking"].id)
    ((booking, details),) = sent
    assert isinstance(booking, Booking) and booking.id == world["booking"].id
    assert details == {
        "before": BookingState.REQUESTED,
        "after": BookingState.CONFIRMED,
        "action": "confirm",
        "actor": world["provider"],
    }


def test_a_refused_transition_sends_nothing(world, sent):
    transitions.confirm_booking(world["provider"], world["booking"].id)
    sent.clear()
    with pytest.raises(InvalidTransition):
        transitions.reject_booking(world["provider"], world["booking"].id, "晚了")
    assert sent == []


def test_an_expiry_has_no_actor(world, sent, fake_clock):
    fake_clock.set(MONDAY_9AM + timedelta(days=3))
    assert transitions.expire_unanswered() == 1
    assert [(d["action"], d["after"], d["actor"]) for _b, d in sent] == [
        ("expire", BookingState.EXPIRED, None)
    ]


def test_the_fee_hint_is_the_first_answer_and_none_without_one(world):
    user, instrument = world["owner"], world["instrument"]
    answers = []

    def silent(sender, **kwargs):
        answers.append((sender, kwargs))

    def hint(sender, **kwargs):
        return f"hint for {kwargs['fee_fen']}"

    with signals.fee_hint_wanted.connected_to(silent):
        # The app connects the vouchers' hint; it answers whatever the fee.
        assert signals.fee_hint(user, instrument, 100_00) is not None
    assert answers == [(user, {"instrument": instrument, "fee_fen": 100_00})]
    receivers = dict(signals.fee_hint_wanted.receivers)
    signals.fee_hint_wanted.receivers.clear()
    try:
        assert signals.fee_hint(user, instrument, 100_00) is None
        with signals.fee_hint_wanted.connected_to(silent), signals.fee_hint_wanted.connected_to(hint):
            assert signals.fee_hint(user, instrument, 100_00) == "hint for 10000"
    finally:
        signals.fee_hint_wanted.receivers.update(receivers)


def test_the_catalogue_page_shows_what_booking_answers_and_nothing_to_book_without_it(world):
    instrument = world["instrument"]
    extras = record_extras(instrument)
    assert (extras["bookable"], extras["policy"].accepts_slots) == (True, True)
    assert extras["next_free"] is not None
    receivers = dict(instrument_shown.receivers)
    instrument_shown.receivers.clear()
    try:
        assert record_extras(instrument) == RECORD_DEFAULTS
    finally:
        instrument_shown.receivers.update(receivers)
