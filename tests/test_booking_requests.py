"""A booking request's own checks, at their edges: who may ask, the sample form's fields, the lengths.

Mutation testing showed `_check_sample_request` barely pinned (71 surviving mutants): each rule is
tried here on the last value that passes and the first that does not, with the exact field and text.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from flask_babel import force_locale
from sqlalchemy import func, select

from portal.accounts.models import VerificationState
from portal.booking import requests
from portal.booking.models import Booking, BookingMode, BookingState
from portal.catalog.models import InstrumentStatus
from portal.core.errors import Forbidden, NotFound, ValidationFailed
from portal.core.models import AuditEvent
from portal.core.permissions import Role
from portal.extensions import db
from portal.notifications.models import Notification
from tests.conftest import MONDAY_9AM

TODAY = date(2026, 12, 7)  # MONDAY_9AM in Liaocheng
MAX_DAYS_AHEAD = 10


@pytest.fixture
def setting(app, fake_clock, make_instrument, make_user, set_policy):
    instrument = make_instrument()
    set_policy(instrument, max_days_ahead=MAX_DAYS_AHEAD)
    return {"instrument": instrument, "user": make_user(Role.ENTERPRISE), "clock": fake_clock}


def samples(**overrides) -> requests.BookingRequest:
    values = {
        "mode": BookingMode.SAMPLE,
        "purpose": "成分分析",
        "sample_count": 3,
        "sample_description": "合金粉末",
        "sample_delivery_on": TODAY + timedelta(days=1),
    }
    return requests.BookingRequest(**{**values, **overrides})


def refusal(setting, request: requests.BookingRequest, user=None) -> ValidationFailed:
    """The refusal of the request, in English, with nothing written."""
    with force_locale("en"), pytest.raises(ValidationFailed) as refused:
        requests.request_booking(user or setting["user"], setting["instrument"].code, request)
    assert db.session.scalar(select(func.count()).select_from(Booking)) == 0
    return refused.value


def accepted(setting, request: requests.BookingRequest) -> Booking:
    booking = requests.request_booking(setting["user"], setting["instrument"].code, request)
    return db.session.get(Booking, booking.id, populate_existing=True)


# --- the sample form ----------------------------------------------------------------------------


@pytest.mark.parametrize("count", [None, 0, -1])
def test_a_sample_request_needs_at_least_one_sample(setting, count):
    refused = refusal(setting, samples(sample_count=count))
    assert refused.message == "Please correct the marked fields."
    assert refused.fields == {"sample_count": "At least one sample."}


def test_one_sample_is_enough(setting):
    assert accepted(setting, samples(sample_count=1)).sample_count == 1


@pytest.mark.parametrize("description", [None, "", "  \n "])
def test_a_sample_request_needs_a_description(setting, description):
    refused = refusal(setting, samples(sample_description=description))
    assert refused.fields == {"sample_description": "Describe the samples."}


def test_the_description_is_kept_without_its_surrounding_spaces(setting):
    booking = accepted(setting, samples(sample_description="  合金粉末 3 份 ", purpose="  分析  "))
    assert (booking.sample_description, booking.purpose) == ("合金粉末 3 份", "分析")


def test_a_sample_request_needs_a_delivery_date(setting):
    refused = refusal(setting, samples(sample_delivery_on=None))
    assert refused.fields == {"sample_delivery_on": "Give the date the samples will arrive."}


def test_samples_may_arrive_today_but_not_yesterday(setting):
    refused = refusal(setting, samples(sample_delivery_on=TODAY - timedelta(days=1)))
    assert refused.fields == {"sample_delivery_on": "This date has already passed."}
    assert accepted(setting, samples(sample_delivery_on=TODAY)).sample_delivery_on == TODAY


def test_samples_may_arrive_on_the_last_day_ahead_but_not_the_next(setting):
    last = TODAY + timedelta(days=MAX_DAYS_AHEAD)
    refused = refusal(setting, samples(sample_delivery_on=last + timedelta(days=1)))
    assert refused.fields == {"sample_delivery_on": f"At most {MAX_DAYS_AHEAD} days ahead."}
    assert accepted(setting, samples(sample_delivery_on=last)).sample_delivery_on == last


def test_today_is_the_date_in_liaocheng_not_in_utc(setting):
    # 01:00 on Tuesday in Liaocheng is still Monday in UTC: Monday has passed.
    setting["clock"].set(datetime(2026, 12, 7, 17, 0, tzinfo=UTC))
    refused = refusal(setting, samples(sample_delivery_on=TODAY))
    assert refused.fields == {"sample_delivery_on": "This date has already passed."}
    tuesday = TODAY + timedelta(days=1)
    assert accepted(setting, samples(sample_delivery_on=tuesday)).sample_delivery_on == tuesday


def test_every_wrong_field_is_named_at_once(setting):
    refused = refusal(
        setting, samples(sample_count=0, sample_description=" ", sample_delivery_on=TODAY - timedelta(days=1))
    )
    assert refused.message == "Please correct the marked fields."
    assert refused.fields == {
        "sample_count": "At least one sample.",
        "sample_description": "Describe the samples.",
        "sample_delivery_on": "This date has already passed.",
    }


# --- the instrument -----------------------------------------------------------------------------


@pytest.mark.parametrize("status", list(InstrumentStatus))
def test_samples_are_taken_only_in_a_bookable_status(setting, status):
    setting["instrument"].status = status
    db.session.commit()
    if status in (InstrumentStatus.NORMAL, InstrumentStatus.STANDBY, InstrumentStatus.OCCASIONAL_FAULT):
        assert accepted(setting, samples()).state is BookingState.REQUESTED
        return
    # Checked first: the sample fields are not looked at.
    refused = refusal(setting, samples(sample_count=0))
    assert refused.message == "This instrument cannot be booked in its present state."
    assert refused.fields == {"rule": "not_bookable"}


def test_an_instrument_for_machine_time_only_refuses_samples(setting, set_policy):
    set_policy(setting["instrument"], accepts_samples=False)
    refused = refusal(setting, samples(sample_count=0))
    assert refused.message == "This instrument takes machine-time bookings only."
    assert refused.fields == {"mode": "mode_not_offered"}


def test_an_instrument_that_cannot_be_booked_says_so_before_it_says_it_takes_no_samples(setting, set_policy):
    set_policy(setting["instrument"], accepts_samples=False)
    setting["instrument"].status = InstrumentStatus.AWAITING_REPAIR
    db.session.commit()
    assert refusal(setting, samples()).fields == {"rule": "not_bookable"}


def test_an_unknown_instrument_is_not_found(setting):
    with force_locale("en"), pytest.raises(NotFound) as refused:
        requests.request_booking(setting["user"], "NO-SUCH", samples())
    assert refused.value.message == "No instrument has the code NO-SUCH."


# --- who asks, and how much they write ----------------------------------------------------------


@pytest.mark.parametrize("role", [Role.PROVIDER, Role.ADMIN])
def test_only_enterprises_book(setting, make_user, role):
    with force_locale("en"), pytest.raises(Forbidden) as refused:
        requests.request_booking(make_user(role), setting["instrument"].code, samples())
    assert refused.value.message == "Only enterprise accounts can book instruments."


def test_an_enterprise_whose_verification_was_rejected_cannot_book(setting, make_user):
    user = make_user(Role.ENTERPRISE, verification_state=VerificationState.REJECTED)
    with force_locale("en"), pytest.raises(Forbidden) as refused:
        requests.request_booking(user, setting["instrument"].code, samples())
    assert refused.value.message == "Your enterprise's verification was rejected; contact the bureau."


def test_an_enterprise_still_being_verified_can_book(setting, make_user):
    user = make_user(Role.ENTERPRISE, verification_state=VerificationState.PENDING)
    booking = requests.request_booking(user, setting["instrument"].code, samples())
    assert booking.enterprise_id == user.enterprise_id


@pytest.mark.parametrize("field", ["purpose", "sample_description"])
def test_purpose_and_description_take_at_most_2000_characters(setting, field):
    refused = refusal(setting, samples(**{field: "x" * 2001}))
    assert refused.message == "At most 2,000 characters."
    assert refused.fields == {"purpose": "At most 2,000 characters."}
    assert getattr(accepted(setting, samples(**{field: "x" * 2000})), field) == "x" * 2000


@pytest.mark.parametrize("kind", ["research", "development", "teaching", "other"])
def test_the_purpose_category_is_stored_for_the_national_record(setting, kind):
    assert accepted(setting, samples(purpose_category=kind)).purpose_category == kind


@pytest.mark.parametrize("kind", ["", "commercial", "RESEARCH"])
def test_an_unknown_purpose_category_is_refused(setting, kind):
    refused = refusal(setting, samples(purpose_category=kind))
    assert refused.fields == {"purpose_category": "Choose what the service is for."}


def test_a_request_is_written_with_its_audit_row_and_the_providers_are_told(setting, make_user):
    provider = make_user(Role.PROVIDER, institution=setting["instrument"].institution)
    booking = accepted(setting, samples())
    assert (booking.state, booking.mode, booking.requested_by_id, booking.enterprise_id) == (
        BookingState.REQUESTED,
        BookingMode.SAMPLE,
        setting["user"].id,
        setting["user"].enterprise_id,
    )
    assert (booking.sample_count, booking.starts_at, booking.held_until) == (3, None, None)
    event = db.session.scalar(select(AuditEvent).where(AuditEvent.action == "booking.requested"))
    assert (event.object_id, event.actor_id) == (str(booking.id), setting["user"].id)
    assert event.after == {"state": "requested", "mode": "sample", "instrument": setting["instrument"].code}
    told = db.session.scalars(
        select(Notification.recipient_id).where(Notification.kind == "booking.requested")
    )
    assert list(told) == [provider.id]


# --- slots: what the sample checks do not cover -------------------------------------------------


def slot(starts: datetime | None, hours: int = 1) -> requests.BookingRequest:
    ends = starts + timedelta(hours=hours) if starts else None
    return requests.BookingRequest(mode=BookingMode.SLOT, purpose="测试", starts_at=starts, ends_at=ends)


@pytest.mark.parametrize("missing", ["starts_at", "ends_at"])
def test_a_slot_needs_a_start_and_an_end(setting, missing):
    request = slot(MONDAY_9AM + timedelta(days=2))
    refused = refusal(setting, requests.BookingRequest(**{**request.__dict__, missing: None}))
    assert refused.message == "Give a start and an end."
    assert refused.fields == {"starts_at": "Required."}


def test_a_slot_is_held_until_its_end_plus_the_buffer(setting, set_policy):
    set_policy(setting["instrument"], buffer_minutes=30)
    starts = MONDAY_9AM + timedelta(days=2)
    booking = accepted(setting, slot(starts))
    assert (booking.starts_at, booking.ends_at, booking.held_until) == (
        starts,
        starts + timedelta(hours=1),
        starts + timedelta(hours=1, minutes=30),
    )


def test_a_slot_that_breaks_rules_names_the_first_and_lists_them_all(setting):
    starts = MONDAY_9AM + timedelta(days=2, minutes=10)  # off the grid, and too short
    refused = refusal(
        setting, requests.BookingRequest(BookingMode.SLOT, "", starts, starts + timedelta(minutes=20))
    )
    assert refused.message == "Slots start and end on the 30-minute grid."
    assert refused.fields == {
        "starts_at": "Slots start and end on the 30-minute grid.",
        "rule": "off_grid",
        "rules": ["off_grid", "too_short"],
    }
