"""Dates and times exactly at the edge of each window: the last moment that is in, the first that is out.

Mutation testing showed that `<` and `<=` could be swapped in these rules without a test noticing.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest

from portal.booking import records, transitions
from portal.booking import services as booking
from portal.booking.models import Booking, BookingState
from portal.core.errors import InvalidTransition, ValidationFailed
from portal.core.permissions import Role
from portal.extensions import db
from portal.vouchers import claims, wallet
from portal.vouchers.checks import voucher_checks
from portal.vouchers.models import VoucherState
from tests.conftest import MONDAY_9AM
from tests.test_booking_rules import WEEKDAY_HOURS, bearer, request_slot


@pytest.fixture
def setting(app, fake_clock, make_instrument, make_user, set_policy):
    instrument = make_instrument(opening_hours=WEEKDAY_HOURS, fee_per_hour_fen=200_00)
    set_policy(instrument, min_notice_hours=24, max_days_ahead=2, cancel_cutoff_hours=24)
    return {"instrument": instrument, "user": make_user(Role.ENTERPRISE), "clock": fake_clock}


def rule_of(response) -> str | None:
    if response.status_code == 201:
        return None
    fields = response.json["error"]["details"]["fields"]
    return fields.get("rule") or ",".join(fields.get("rules", []))


def test_a_slot_exactly_the_notice_ahead_is_accepted_a_minute_less_is_not(client, setting):
    headers = bearer(client, setting["user"])
    setting["clock"].set(MONDAY_9AM + timedelta(minutes=1))
    late = request_slot(client, headers, setting["instrument"], "2026-12-08 09:00", "2026-12-08 10:00")
    assert rule_of(late) == "too_late"
    setting["clock"].set(MONDAY_9AM)
    on_time = request_slot(client, headers, setting["instrument"], "2026-12-08 09:00", "2026-12-08 10:00")
    assert on_time.status_code == 201, on_time.json


def test_a_slot_on_the_last_day_ahead_is_accepted_the_next_day_is_not(client, setting):
    headers = bearer(client, setting["user"])
    # Monday plus two days: Wednesday is the last bookable day, to its closing time.
    last = request_slot(client, headers, setting["instrument"], "2026-12-09 16:30", "2026-12-09 17:30")
    assert last.status_code == 201, last.json
    beyond = request_slot(client, headers, setting["instrument"], "2026-12-10 09:00", "2026-12-10 10:00")
    assert rule_of(beyond) == "too_far_ahead"


def test_the_enterprise_cancels_at_the_cut_off_itself_but_not_a_minute_later(setting, make_booking):
    def confirmed(starts: datetime) -> Booking:
        return make_booking(
            setting["instrument"],
            setting["user"],
            starts,
            starts + timedelta(hours=1),
            state=BookingState.CONFIRMED,
        )

    wednesday_9, wednesday_10 = MONDAY_9AM + timedelta(days=2), MONDAY_9AM + timedelta(days=2, hours=1)
    late, on_time = confirmed(wednesday_9), confirmed(wednesday_10)
    setting["clock"].set(wednesday_9 - timedelta(hours=24) + timedelta(minutes=1))
    with pytest.raises(InvalidTransition) as refused:
        transitions.cancel_booking(setting["user"], late.id, None)
    assert refused.value.details == {"rule": "cancel_cutoff"}
    setting["clock"].set(wednesday_10 - timedelta(hours=24))
    assert transitions.cancel_booking(setting["user"], on_time.id, None).state is BookingState.CANCELLED


def test_a_request_expires_exactly_when_its_time_to_answer_has_run_out(app, setting, make_booking):
    starts = MONDAY_9AM + timedelta(days=9)
    rows = [
        make_booking(
            setting["instrument"],
            setting["user"],
            starts + timedelta(hours=h),
            starts + timedelta(hours=h + 1),
        )
        for h in (0, 1)
    ]
    ttl = timedelta(hours=app.config["BOOKING_REQUEST_TTL_HOURS"])
    deadline = max(r.created_at for r in rows) + ttl
    assert transitions.expire_unanswered(deadline - timedelta(seconds=1)) == 0
    assert transitions.expire_unanswered(deadline) == 2
    for row in rows:
        assert db.session.get(Booking, row.id, populate_existing=True).state is BookingState.EXPIRED
        assert [e.reason for e in booking.booking_history(row)] == ["no answer in time"]


def test_a_request_expires_the_moment_its_slot_begins(setting, make_booking):
    starts = MONDAY_9AM + timedelta(days=1)
    row = make_booking(setting["instrument"], setting["user"], starts, starts + timedelta(hours=1))
    assert transitions.expire_unanswered(starts - timedelta(seconds=1)) == 0
    assert transitions.expire_unanswered(starts) == 1
    assert db.session.get(Booking, row.id, populate_existing=True).state is BookingState.EXPIRED


@pytest.mark.parametrize("action", ["no_show", "complete"])
def test_a_no_show_or_a_service_is_recorded_from_the_start_of_the_slot_not_before(
    setting, make_booking, make_user, action
):
    provider = make_user(Role.PROVIDER, institution=setting["instrument"].institution)
    starts = MONDAY_9AM + timedelta(days=1)
    row = make_booking(
        setting["instrument"],
        setting["user"],
        starts,
        starts + timedelta(hours=1),
        state=BookingState.CONFIRMED,
    )

    def record():
        if action == "no_show":
            return transitions.mark_no_show(provider, row.id)
        return records.complete_booking(provider, row.id, records.ServiceReport(hours=Decimal(1)))

    setting["clock"].set(starts - timedelta(seconds=1))
    with pytest.raises(InvalidTransition) as refused:
        record()
    assert refused.value.details == {"rule": f"{action}_too_early"}
    setting["clock"].set(starts)
    record()
    assert db.session.get(Booking, row.id, populate_existing=True).state is not BookingState.CONFIRMED


# --- vouchers ------------------------------------------------------------------------------------


@pytest.fixture
def claimant(app, fake_clock, make_scheme, make_user, make_voucher):
    scheme = make_scheme(service_window_start=date(2026, 1, 1), service_window_end=date(2026, 12, 31))
    user = make_user(Role.ENTERPRISE)
    return {"scheme": scheme, "user": user, "voucher": make_voucher(user, scheme, 100_000_00)}


def window_check(claimant, record) -> bool:
    preview = claims.preview_claim(claimant["user"], claimant["voucher"].id, [record.id])
    return next(c.passed for c in preview.checks if c.code == "service_window")


@pytest.mark.parametrize(
    ("starts_at", "inside"),
    [
        (datetime(2025, 12, 31, 15, 59, tzinfo=UTC), False),  # 23:59 on 31 December 2025 in Liaocheng
        (datetime(2025, 12, 31, 16, 0, tzinfo=UTC), True),  # 00:00 on 1 January 2026 in Liaocheng
        (datetime(2026, 12, 31, 15, 59, tzinfo=UTC), True),  # 23:59 on the window's last day
        (datetime(2026, 12, 31, 16, 0, tzinfo=UTC), False),  # 00:00 on 1 January 2027
    ],
)
def test_the_service_window_counts_local_days_both_ends_included(claimant, make_service, starts_at, inside):
    record = make_service(claimant["user"], 1_000_00, starts_at=starts_at, booked_hours=1, hours=1)
    assert window_check(claimant, record) is inside


def test_a_voucher_is_valid_on_its_last_day_and_expires_the_day_after(
    app, fake_clock, make_scheme, make_user, make_voucher
):
    today = date(2026, 12, 7)  # the fake clock's day in Liaocheng
    user = make_user(Role.ENTERPRISE)
    voucher = make_voucher(user, make_scheme(), 10_000_00, valid_until=today)
    checks = {c.code: c.passed for c in voucher_checks(voucher)}
    assert checks["voucher_valid"] is True
    assert wallet.expire_vouchers(today) == 0
    assert wallet.expire_vouchers(today + timedelta(days=1)) == 1
    db.session.refresh(voucher)
    assert voucher.state is VoucherState.EXPIRED


# --- reasons and sample bookings -----------------------------------------------------------------


@pytest.fixture
def provider(setting, make_user):
    return make_user(Role.PROVIDER, institution=setting["instrument"].institution)


def requested(setting, make_booking, hours: int = 0) -> Booking:
    starts = MONDAY_9AM + timedelta(days=2, hours=hours)
    return make_booking(setting["instrument"], setting["user"], starts, starts + timedelta(hours=1))


@pytest.mark.parametrize(
    ("reason", "accepted"), [("", False), ("   ", False), ("x" * 1000, True), ("x" * 1001, False)]
)
def test_a_rejection_needs_a_reason_of_at_most_1000_characters(
    setting, make_booking, provider, reason, accepted
):
    row = requested(setting, make_booking)
    if accepted:
        assert transitions.reject_booking(provider, row.id, reason).reason == reason
        return
    with pytest.raises(ValidationFailed) as refused:
        transitions.reject_booking(provider, row.id, reason)
    assert set(refused.value.fields) == {"reason"}
    assert db.session.get(Booking, row.id, populate_existing=True).state is BookingState.REQUESTED


@pytest.mark.parametrize(
    ("given", "kept"), [(None, None), ("   ", None), (" 改期 ", "改期"), ("x" * 1001, "x" * 1000)]
)
def test_the_enterprise_may_cancel_without_a_reason_and_a_long_one_is_cut(setting, make_booking, given, kept):
    row = requested(setting, make_booking)
    assert transitions.cancel_booking(setting["user"], row.id, given).reason == kept
    assert [e.reason for e in booking.booking_history(row)] == [kept]


@pytest.mark.parametrize("action", ["reject", "cancel"])
def test_the_reason_reaches_the_notification(setting, make_booking, provider, action):
    from sqlalchemy import select

    from portal.notifications.models import Notification

    row = requested(setting, make_booking)
    getattr(transitions, f"{action}_booking")(provider, row.id, "设备故障")
    payloads = db.session.scalars(
        select(Notification.payload).where(
            Notification.kind == {"reject": "booking.rejected", "cancel": "booking.cancelled"}[action]
        )
    )
    assert [p["reason"] for p in payloads] == ["设备故障"]


def test_a_confirmed_sample_booking_is_cancelled_online_until_the_cut_off_before_delivery(
    setting, make_booking
):
    delivery = date(2026, 12, 10)  # Thursday; the cut-off is 24 hours before its first minute in Liaocheng
    rows = [
        make_booking(
            setting["instrument"], setting["user"], state=BookingState.CONFIRMED, sample_delivery_on=delivery
        )
        for _ in range(2)
    ]
    cutoff = datetime(2026, 12, 8, 16, 0, tzinfo=UTC)  # 00:00 on 9 December in Liaocheng
    assert transitions.cancellation_deadline(rows[0]) == cutoff
    setting["clock"].set(cutoff + timedelta(seconds=1))
    with pytest.raises(InvalidTransition):
        transitions.cancel_booking(setting["user"], rows[0].id, None)
    setting["clock"].set(cutoff)
    assert transitions.cancel_booking(setting["user"], rows[1].id, None).state is BookingState.CANCELLED


def test_a_sample_service_is_recorded_from_the_day_the_samples_arrive(setting, make_booking, provider):
    delivery = date(2026, 12, 10)
    row = make_booking(
        setting["instrument"], setting["user"], state=BookingState.CONFIRMED, sample_delivery_on=delivery
    )
    arrival = datetime(2026, 12, 9, 16, 0, tzinfo=UTC)  # 00:00 on the delivery day in Liaocheng
    report = records.ServiceReport(samples=3)
    setting["clock"].set(arrival - timedelta(seconds=1))
    with pytest.raises(InvalidTransition) as refused:
        records.complete_booking(provider, row.id, report)
    assert refused.value.details == {"rule": "complete_too_early"}
    setting["clock"].set(arrival)
    records.complete_booking(provider, row.id, report)
    assert db.session.get(Booking, row.id, populate_existing=True).state is BookingState.COMPLETED


def test_a_cancellation_without_a_reason_tells_an_empty_reason_not_none(setting, make_booking, provider):
    from sqlalchemy import select

    from portal.notifications.models import Notification

    row = requested(setting, make_booking)
    transitions.cancel_booking(setting["user"], row.id, None)
    payloads = db.session.scalars(
        select(Notification.payload).where(Notification.kind == "booking.cancelled")
    )
    assert {p["reason"] for p in payloads} == {""}  # the message shows nothing, not "None"


# --- reminders ----------------------------------------------------------------------------------


def test_a_reminder_goes_to_confirmed_bookings_within_a_day_once_each(setting, make_booking, make_instrument):
    from sqlalchemy import select

    from portal.notifications.models import Notification

    now = MONDAY_9AM
    starts = {
        "now": now,  # already begun: too late for a reminder
        "next_minute": now + timedelta(minutes=1),
        "in_a_day": now + timedelta(hours=24),
        "a_day_and_a_second": now + timedelta(hours=24, seconds=1),
    }
    rows = {  # one instrument each: the slots overlap
        name: make_booking(
            make_instrument(), setting["user"], at, at + timedelta(hours=1), state=BookingState.CONFIRMED
        )
        for name, at in starts.items()
    }
    requested = make_booking(
        setting["instrument"], setting["user"], now + timedelta(hours=2), now + timedelta(hours=3)
    )
    assert transitions.send_reminders() == 2  # the fake clock's now, 24 hours ahead
    reminded = {
        name
        for name, row in rows.items()
        if db.session.get(Booking, row.id, populate_existing=True).reminded_at
    }
    assert reminded == {"next_minute", "in_a_day"}
    assert db.session.get(Booking, rows["in_a_day"].id).reminded_at == now
    assert db.session.get(Booking, requested.id, populate_existing=True).reminded_at is None
    told = db.session.scalars(select(Notification.payload).where(Notification.kind == "booking.reminder"))
    assert sorted(p["booking"] for p in told) == sorted([rows["next_minute"].id, rows["in_a_day"].id])
    assert transitions.send_reminders() == 0
    # A second later, the one that was a day and a second away is within a day; the rest were told.
    assert transitions.send_reminders(now + timedelta(seconds=1)) == 1
    assert transitions.send_reminders(now, ahead_hours=25) == 0
