"""The booking state machine: every transition, every refusal, the audit trail and the expiry task."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import select

from portal.booking.models import Booking, BookingState, ServiceRecord
from portal.booking.transitions import TRANSITIONS
from portal.core.models import AuditEvent
from portal.core.permissions import Role
from portal.extensions import db
from tests.test_booking_rules import WEEKDAY_HOURS, bearer

pytestmark = pytest.mark.both_backends  # the backend's own paths: see tests/conftest.py

TUESDAY_9 = datetime(2026, 12, 8, 1, 0, tzinfo=UTC)  # 09:00 Beijing


@pytest.fixture
def world(app, fake_clock, make_instrument, make_institution, make_user, make_booking):
    host = make_institution(name="聊城大学测试")
    instrument = make_instrument(
        institution=host, opening_hours=WEEKDAY_HOURS, fee_per_hour_fen=250_00, fee_per_sample_fen=120_00
    )
    provider = make_user(Role.PROVIDER, institution=host)
    other_provider = make_user(Role.PROVIDER)
    owner = make_user(Role.ENTERPRISE)
    stranger = make_user(Role.ENTERPRISE)
    booking = make_booking(instrument, owner, TUESDAY_9, TUESDAY_9 + timedelta(hours=2))
    return {
        "instrument": instrument,
        "provider": provider,
        "other_provider": other_provider,
        "owner": owner,
        "stranger": stranger,
        "booking": booking,
        "clock": fake_clock,
    }


def post(client, user, booking, action, body=None):
    return client.post(
        f"/api/v1/bookings/{booking.id}/{action}", json=body or {}, headers=bearer(client, user)
    )


def state_of(booking) -> str:
    return db.session.get(Booking, booking.id, populate_existing=True).state.value


def audit_rows(booking) -> list[AuditEvent]:
    return db.session.scalars(
        select(AuditEvent).where(AuditEvent.object_type == "booking", AuditEvent.object_id == str(booking.id))
    ).all()


def test_the_transitions_are_written_in_one_table():
    assert TRANSITIONS[(BookingState.REQUESTED, "confirm")] is BookingState.CONFIRMED
    assert {s for (s, _a) in TRANSITIONS} == {BookingState.REQUESTED, BookingState.CONFIRMED}


def test_provider_confirms_and_the_audit_row_says_who_from_and_to(client, world):
    response = post(client, world["provider"], world["booking"], "confirm")
    assert response.status_code == 200 and response.json["state"] == "confirmed"
    (row,) = audit_rows(world["booking"])
    assert (row.action, row.actor_id, row.before, row.after) == (
        "booking.confirmed",
        world["provider"].id,
        {"state": "requested"},
        {"state": "confirmed"},
    )
    assert row.created_at is not None


def test_provider_of_another_institution_cannot_see_or_touch_it(client, world):
    response = post(client, world["other_provider"], world["booking"], "confirm")
    assert response.status_code == 404
    assert state_of(world["booking"]) == "requested"
    listed = client.get("/api/v1/bookings", headers=bearer(client, world["other_provider"])).json
    assert listed["total"] == 0


def test_another_enterprise_cannot_see_the_booking_under_any_path(client, world):
    headers = bearer(client, world["stranger"])
    booking = world["booking"]
    assert client.get(f"/api/v1/bookings/{booking.id}", headers=headers).status_code == 404
    assert client.post(f"/api/v1/bookings/{booking.id}/cancel", json={}, headers=headers).status_code == 404
    assert client.get("/api/v1/bookings", headers=headers).json["total"] == 0
    from tests.factories import login

    login(client, world["stranger"].username)
    assert client.get(f"/bookings/{booking.id}").status_code == 404


def test_the_enterprise_cannot_confirm_its_own_request(client, world):
    response = post(client, world["owner"], world["booking"], "confirm")
    assert response.status_code == 403
    assert response.json["error"]["code"] == "forbidden"


def test_reject_needs_a_reason_and_frees_the_slot(client, world):
    assert post(client, world["provider"], world["booking"], "reject").status_code == 422
    response = post(client, world["provider"], world["booking"], "reject", {"reason": "仪器当天校准"})
    assert response.json["state"] == "rejected" and response.json["reason"] == "仪器当天校准"
    assert audit_rows(world["booking"])[-1].reason == "仪器当天校准"
    retry = client.post(
        "/api/v1/bookings",
        json={
            "instrument_code": world["instrument"].code,
            "starts_at": "2026-12-08T09:00:00+08:00",
            "ends_at": "2026-12-08T11:00:00+08:00",
            "purpose": "再次预约",
        },
        headers=bearer(client, world["stranger"]),
    )
    assert retry.status_code == 201


def test_the_enterprise_cancels_a_request(client, world):
    response = post(client, world["owner"], world["booking"], "cancel", {"reason": "计划变更"})
    assert response.json["state"] == "cancelled"


def test_the_enterprise_cancels_a_confirmed_booking_only_before_the_cut_off(client, world, make_booking):
    post(client, world["provider"], world["booking"], "confirm")
    world["clock"].set(TUESDAY_9 - timedelta(hours=23))  # inside the 24-hour cut-off
    late = post(client, world["owner"], world["booking"], "cancel")
    assert late.status_code == 409
    assert late.json["error"]["details"]["rule"] == "cancel_cutoff"
    assert state_of(world["booking"]) == "confirmed"
    world["clock"].set(TUESDAY_9 - timedelta(hours=25))
    assert post(client, world["owner"], world["booking"], "cancel").json["state"] == "cancelled"


def test_the_provider_cancels_any_time_but_must_say_why(client, world):
    post(client, world["provider"], world["booking"], "confirm")
    world["clock"].set(TUESDAY_9 + timedelta(minutes=10))
    assert post(client, world["provider"], world["booking"], "cancel").status_code == 422
    response = post(client, world["provider"], world["booking"], "cancel", {"reason": "突发故障"})
    assert response.json["state"] == "cancelled"


def test_no_show_only_once_the_slot_has_begun(client, world):
    post(client, world["provider"], world["booking"], "confirm")
    early = post(client, world["provider"], world["booking"], "no-show")
    assert early.status_code == 409
    world["clock"].set(TUESDAY_9 + timedelta(minutes=30))
    assert post(client, world["provider"], world["booking"], "no-show").json["state"] == "no_show"


def test_record_the_service_with_the_standard_fee(client, world):
    post(client, world["provider"], world["booking"], "confirm")
    assert (
        post(client, world["provider"], world["booking"], "complete", {"hours": 2}).status_code == 409
    )  # not yet
    world["clock"].set(TUESDAY_9 + timedelta(hours=2))
    response = post(
        client, world["provider"], world["booking"], "complete", {"hours": 1.5, "result_summary": "完成"}
    )
    assert response.status_code == 200, response.json
    assert response.json["state"] == "completed"
    assert response.json["fee_fen"] == 375_00  # 1.5 h x 250 yuan
    record = db.session.get(ServiceRecord, response.json["service_record_id"])
    assert (record.hours, record.computed_fee_fen, record.fee_reason) == (Decimal("1.50"), 375_00, None)


def test_a_different_fee_needs_a_reason(client, world):
    post(client, world["provider"], world["booking"], "confirm")
    world["clock"].set(TUESDAY_9 + timedelta(hours=2))
    refused = post(client, world["provider"], world["booking"], "complete", {"hours": 2, "fee_fen": 400_00})
    assert refused.status_code == 422
    assert "fee_reason" in refused.json["error"]["details"]["fields"]
    assert state_of(world["booking"]) == "confirmed"
    ok = post(
        client,
        world["provider"],
        world["booking"],
        "complete",
        {"hours": 2, "fee_fen": 400_00, "fee_reason": "优惠"},
    )
    assert ok.json["fee_fen"] == 400_00
    record = db.session.get(ServiceRecord, ok.json["service_record_id"])
    assert (record.computed_fee_fen, record.fee_reason) == (500_00, "优惠")


def test_sample_services_are_charged_per_sample(client, world, make_booking):
    booking = make_booking(world["instrument"], world["owner"], state=BookingState.CONFIRMED)
    response = post(client, world["provider"], booking, "complete", {"samples": 4})
    assert response.json["fee_fen"] == 480_00


def test_the_enterprise_rates_once(client, world):
    post(client, world["provider"], world["booking"], "confirm")
    assert (
        post(client, world["owner"], world["booking"], "rate", {"rating": 5}).status_code == 409
    )  # not completed
    world["clock"].set(TUESDAY_9 + timedelta(hours=2))
    post(client, world["provider"], world["booking"], "complete", {"hours": 2})
    assert post(client, world["provider"], world["booking"], "rate", {"rating": 5}).status_code == 403
    assert post(client, world["owner"], world["booking"], "rate", {"rating": 6}).status_code == 422
    response = post(client, world["owner"], world["booking"], "rate", {"rating": 4, "comment": "基本满意"})
    assert response.json["rating"] == 4
    again = post(client, world["owner"], world["booking"], "rate", {"rating": 1})
    assert again.status_code == 409
    assert db.session.get(ServiceRecord, response.json["service_record_id"]).rating == 4


@pytest.mark.parametrize(
    ("state", "action"),
    [
        (BookingState.CANCELLED, "confirm"),
        (BookingState.REJECTED, "cancel"),
        (BookingState.COMPLETED, "reject"),
        (BookingState.EXPIRED, "complete"),
        (BookingState.REQUESTED, "no-show"),
        (BookingState.NO_SHOW, "confirm"),
    ],
)
def test_invalid_transitions_are_refused(client, world, make_booking, state, action):
    booking = make_booking(
        world["instrument"],
        world["owner"],
        TUESDAY_9 + timedelta(days=1),
        TUESDAY_9 + timedelta(days=1, hours=1),
        state=state,
    )
    world["clock"].set(TUESDAY_9 + timedelta(days=1, hours=1))
    body = {"reject": {"reason": "x"}, "cancel": {"reason": "x"}, "complete": {"hours": 1}}.get(action)
    response = post(client, world["provider"], booking, action, body)
    assert response.status_code == 409
    assert response.json["error"]["code"] == "invalid_transition"
    assert state_of(booking) == state.value


def test_unanswered_requests_expire_by_the_periodic_task(app, world, make_booking):
    from portal.booking.tasks import expire_requests

    old = make_booking(
        world["instrument"],
        world["owner"],
        TUESDAY_9 + timedelta(days=7),
        TUESDAY_9 + timedelta(days=7, hours=1),
    )
    old.created_at = world["clock"]() - timedelta(hours=73)
    confirmed = make_booking(
        world["instrument"],
        world["owner"],
        TUESDAY_9 + timedelta(days=2),
        TUESDAY_9 + timedelta(days=2, hours=1),
        state=BookingState.CONFIRMED,
    )
    db.session.commit()
    assert expire_requests.delay().get() == 1  # eager here: Celery runs it in-process
    assert state_of(old) == "expired" and state_of(world["booking"]) == "requested"
    world["clock"].set(TUESDAY_9 + timedelta(minutes=1))  # the requested slot has begun unanswered
    assert expire_requests.delay().get() == 1
    assert state_of(world["booking"]) == "expired" and state_of(confirmed) == "confirmed"
    assert expire_requests.delay().get() == 0  # running again changes nothing
    assert audit_rows(old)[-1].action == "booking.expired"


def test_lists_have_filters_and_counts(client, world, make_booking):
    make_booking(world["instrument"], world["owner"], state=BookingState.CONFIRMED)
    make_booking(world["instrument"], world["stranger"], state=BookingState.CANCELLED)
    mine = client.get("/api/v1/bookings", headers=bearer(client, world["owner"])).json
    assert mine["total"] == 2 and mine["counts"] == {"requested": 1, "confirmed": 1}
    queue = client.get(
        "/api/v1/bookings", query_string={"state": "requested"}, headers=bearer(client, world["provider"])
    ).json
    assert [b["id"] for b in queue["items"]] == [world["booking"].id]
    assert queue["counts"] == {"requested": 1, "confirmed": 1, "cancelled": 1}
    by_code = client.get(
        "/api/v1/bookings",
        query_string={"instrument_code": "NOPE"},
        headers=bearer(client, world["provider"]),
    ).json
    assert by_code["total"] == 0


def test_pages_show_the_queue_and_the_actions(client, world):
    from tests.factories import extract_csrf, login

    login(client, world["provider"].username)
    queue = client.get("/bookings/").get_data(as_text=True)
    assert f'href="/bookings/{world["booking"].id}"' in queue
    detail = client.get(f"/bookings/{world['booking'].id}").get_data(as_text=True)
    assert "confirm-booking" in detail
    response = client.post(
        f"/bookings/{world['booking'].id}/confirm", data={"csrf_token": extract_csrf(detail)}
    )
    assert response.status_code == 302
    assert state_of(world["booking"]) == "confirmed"
    assert (
        client.post(f"/bookings/{world['booking'].id}/confirm", data={}).status_code == 400
    )  # no CSRF token


def test_opening_hours_till_midnight_join_across_days(app, fake_clock, make_instrument):
    from portal.booking.availability import Calendar

    instrument = make_instrument(opening_hours=[(d, time(0, 0), time(23, 59)) for d in range(7)])
    start = datetime(2026, 12, 9, 0, 0, tzinfo=UTC)
    calendar = Calendar.load(instrument, start, start + timedelta(days=2))
    assert len(calendar.opening) == 1
