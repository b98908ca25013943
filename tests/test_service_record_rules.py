"""Recording a service: more hours than booked need a reason; no sample service before the samples arrive."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest

from portal.booking import records
from portal.booking.models import Booking, BookingState, ServiceRecord
from portal.core.errors import InvalidTransition, ValidationFailed
from portal.core.permissions import Role
from portal.extensions import db
from tests.factories import extract_csrf, login
from tests.test_booking_rules import WEEKDAY_HOURS, bearer

TUESDAY_9 = datetime(2026, 12, 8, 1, 0, tzinfo=UTC)  # 09:00 Beijing; the fake clock starts Monday 09:00


@pytest.fixture
def world(app, fake_clock, make_instrument, make_institution, make_user, make_booking):
    host = make_institution()
    instrument = make_instrument(
        institution=host, opening_hours=WEEKDAY_HOURS, fee_per_hour_fen=250_00, fee_per_sample_fen=120_00
    )
    owner = make_user(Role.ENTERPRISE)
    slot = make_booking(
        instrument, owner, TUESDAY_9, TUESDAY_9 + timedelta(hours=2), state=BookingState.CONFIRMED
    )
    return {
        "instrument": instrument,
        "provider": make_user(Role.PROVIDER, institution=host),
        "owner": owner,
        "slot": slot,
        "clock": fake_clock,
    }


def complete(client, world, booking, body):
    return client.post(
        f"/api/v1/bookings/{booking.id}/complete", json=body, headers=bearer(client, world["provider"])
    )


def state_of(booking) -> BookingState:
    return db.session.get(Booking, booking.id, populate_existing=True).state


@pytest.mark.parametrize(
    ("hours", "reason", "status"),
    [
        ("2", None, 200),  # exactly the booked time
        ("1.5", None, 200),  # less
        ("2.01", None, 422),  # more, without a reason
        ("2.5", "   ", 422),  # a blank reason is no reason
        ("2.5", "样品多，延长半小时", 200),
    ],
)
def test_more_hours_than_booked_need_a_reason(client, world, hours, reason, status):
    world["clock"].set(TUESDAY_9 + timedelta(hours=3))
    response = complete(client, world, world["slot"], {"hours": hours, "hours_reason": reason})
    assert response.status_code == status, response.json
    if status == 422:
        assert response.json["error"]["code"] == "validation_error"
        assert "hours_reason" in response.json["error"]["details"]["fields"]
        assert state_of(world["slot"]) is BookingState.CONFIRMED
        assert db.session.query(ServiceRecord).count() == 0
    else:
        record = client.get(
            f"/api/v1/service-records/{response.json['service_record_id']}",
            headers=bearer(client, world["owner"]),
        ).json
        assert record["hours_reason"] == (reason if Decimal(hours) > 2 else None)


def test_the_page_asks_for_the_hours_reason_and_shows_the_booked_hours(client, world):
    world["clock"].set(TUESDAY_9 + timedelta(hours=3))
    login(client, world["provider"].username)
    page = client.get(f"/bookings/{world['slot'].id}").get_data(as_text=True)
    assert 'name="hours_reason"' in page and 'id="booked-hours"' in page
    response = client.post(
        f"/bookings/{world['slot'].id}/complete",
        data={"csrf_token": extract_csrf(page), "hours": "3", "service_type": "analysis"},
    )
    assert response.status_code == 200
    assert "is-invalid" in response.get_data(as_text=True).split('id="hours_reason"')[0][-300:]
    assert state_of(world["slot"]) is BookingState.CONFIRMED


def sample_booking(world, make_booking, delivery: date | None):
    return make_booking(
        world["instrument"], world["owner"], state=BookingState.CONFIRMED, sample_delivery_on=delivery
    )


def test_a_sample_service_cannot_be_recorded_before_the_samples_arrive(client, world, make_booking):
    booking = sample_booking(world, make_booking, date(2026, 12, 9))  # Wednesday; today is Monday
    refused = complete(client, world, booking, {"samples": 3})
    assert refused.status_code == 409
    assert refused.json["error"]["code"] == "invalid_transition"
    assert refused.json["error"]["details"]["rule"] == "complete_too_early"
    assert "2026-12-09" in refused.json["error"]["message"]
    assert state_of(booking) is BookingState.CONFIRMED
    world["clock"].set(datetime(2026, 12, 8, 15, 59, tzinfo=UTC))  # Tuesday 23:59 Beijing: still too early
    assert complete(client, world, booking, {"samples": 3}).status_code == 409
    world["clock"].set(datetime(2026, 12, 8, 16, 0, tzinfo=UTC))  # Wednesday 00:00 Beijing
    assert complete(client, world, booking, {"samples": 3}).json["state"] == "completed"


def test_a_sample_booking_without_a_delivery_date_counts_from_the_day_it_was_made(app, world, make_booking):
    booking = sample_booking(world, make_booking, None)
    booking.created_at = datetime(2026, 12, 9, 2, 0, tzinfo=UTC)  # made on Wednesday (as if)
    db.session.commit()
    with pytest.raises(InvalidTransition):
        records.complete_booking(world["provider"], booking.id, records.ServiceReport(samples=1))
    world["clock"].set(datetime(2026, 12, 9, 1, 0, tzinfo=UTC))
    assert records.complete_booking(world["provider"], booking.id, records.ServiceReport(samples=1)).id


def test_the_page_says_from_when_a_sample_service_can_be_recorded(client, world, make_booking):
    booking = sample_booking(world, make_booking, date(2026, 12, 9))
    login(client, world["provider"].username)
    page = client.get(f"/bookings/{booking.id}").get_data(as_text=True)
    assert 'id="complete-form"' not in page
    assert "2026-12-09" in page.split('id="recordable-from"')[1][:300]


def test_hours_reason_longer_than_allowed_is_refused_by_the_service(app, world):
    world["clock"].set(TUESDAY_9 + timedelta(hours=3))
    with pytest.raises(ValidationFailed) as refused:
        records.complete_booking(
            world["provider"],
            world["slot"].id,
            records.ServiceReport(hours=Decimal(3), hours_reason="长" * 501),
        )
    assert "hours_reason" in refused.value.fields
