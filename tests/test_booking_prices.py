"""Issue 17 at the booking: the operation mode, the qualification check, prices frozen at booking,
the service record's fee and national service way, and the claim preview of the frozen fee."""

from __future__ import annotations

from datetime import date

import pytest
from sqlalchemy import select

from portal.booking.models import Booking, ServiceRecord
from portal.catalog import prices
from portal.core.permissions import Role
from portal.extensions import db
from portal.qualifications import services as qualifications
from tests.factories import extract_csrf, login
from tests.test_booking_rules import WEEKDAY_HOURS, bearer, request_slot

TABLE = [
    {"customer": "enterprise", "mode": "self", "unit": "hour", "unit_price_fen": 400_00},
    {"customer": "enterprise", "mode": "staff", "unit": "hour", "unit_price_fen": 600_00},
    {
        "customer": "sme",
        "mode": "self",
        "unit": "hour",
        "unit_price_fen": 300_00,
        "min_units": 1,
        "overtime_unit_price_fen": 450_00,
    },
    {"customer": "sme", "mode": "staff", "unit": "hour", "unit_price_fen": 500_00},
    {
        "customer": "enterprise",
        "mode": "sample",
        "unit": "sample",
        "unit_price_fen": 100_00,
        "steps": [{"from_units": 6, "unit_price_fen": 50_00}],
    },
]


@pytest.fixture
def setting(app, fake_clock, make_instrument, make_user):
    instrument = make_instrument(
        opening_hours=WEEKDAY_HOURS, fee_per_hour_fen=200_00, fee_per_sample_fen=80_00
    )
    provider = make_user(Role.PROVIDER, institution=instrument.institution)
    user = make_user(Role.ENTERPRISE)  # a verified tech SME: the sme rows
    prices.set_price_table(provider, instrument.code, TABLE)
    qualifications.set_use_rules(provider, instrument, ["self", "staff"], True)
    return instrument, provider, user


WEDNESDAY = ("2026-12-09 09:00", "2026-12-09 11:00")


def test_unqualified_self_time_is_refused_and_staff_time_booked_at_the_staff_price(client, setting):
    instrument, provider, user = setting
    headers = bearer(client, user)
    refused = request_slot(client, headers, instrument, *WEDNESDAY)
    assert refused.status_code == 409
    assert refused.json["error"]["code"] == "not_qualified"
    assert "代为操作" in refused.json["error"]["message"]  # says what to do instead, in Chinese
    assert db.session.scalar(select(Booking)) is None
    staff = request_slot(client, headers, instrument, *WEDNESDAY, operation="staff")
    assert staff.status_code == 201, staff.json
    assert (
        staff.json["operation"],
        staff.json["tier"],
        staff.json["unit"],
        staff.json["unit_price_fen"],
    ) == (
        "staff",
        "sme",
        "hour",
        500_00,
    )
    qualifications.grant_qualification(provider, instrument.code, user.username, date(2027, 6, 30))
    own = request_slot(client, headers, instrument, "2026-12-10 09:00", "2026-12-10 10:00", operation="self")
    assert own.status_code == 201, own.json
    assert (own.json["operation"], own.json["unit_price_fen"]) == ("self", 300_00)


@pytest.mark.parametrize(
    ("valid_until", "revoke", "status"),
    [(date(2026, 12, 8), False, 409), (date(2026, 12, 9), False, 201), (date(2027, 1, 1), True, 409)],
)
def test_expired_the_day_before_or_revoked_is_refused(client, setting, valid_until, revoke, status):
    instrument, provider, user = setting
    q = qualifications.grant_qualification(provider, instrument.code, user.username, valid_until)
    if revoke:
        qualifications.revoke_qualification(provider, instrument.code, q.id)
    answer = request_slot(client, bearer(client, user), instrument, *WEDNESDAY)
    assert answer.status_code == status, answer.json


def test_a_mode_the_policy_does_not_offer_is_refused(client, setting):
    instrument, provider, user = setting
    qualifications.set_use_rules(provider, instrument, ["self"], False)
    answer = request_slot(client, bearer(client, user), instrument, *WEDNESDAY, operation="staff")
    assert answer.status_code == 422 and "operation" in answer.json["error"]["details"]["fields"]


def _complete(client, provider, booking_id: int, fake_clock, **body):
    headers = bearer(client, provider)
    assert client.post(f"/api/v1/bookings/{booking_id}/confirm", json={}, headers=headers).status_code == 200
    fake_clock.advance(days=3)  # past the day an API token lasts: the provider signs in again
    answer = client.post(
        f"/api/v1/bookings/{booking_id}/complete", json=body, headers=bearer(client, provider)
    )
    assert answer.status_code == 200, answer.json
    return db.session.scalar(select(ServiceRecord).where(ServiceRecord.booking_id == booking_id))


def test_a_price_change_after_booking_does_not_change_the_fee(client, setting, fake_clock):
    instrument, provider, user = setting
    qualifications.grant_qualification(provider, instrument.code, user.username, date(2027, 6, 30))
    made = request_slot(client, bearer(client, user), instrument, *WEDNESDAY)
    assert made.json["unit_price_fen"] == 300_00
    prices.set_price_table(
        provider, instrument.code, [{**row, "unit_price_fen": row["unit_price_fen"] * 2} for row in TABLE]
    )
    record = _complete(client, provider, made.json["id"], fake_clock, hours="2.5", hours_reason="延长半小时")
    # 2 booked hours at the frozen 300, half an hour of overtime at the frozen 450
    assert record.computed_fee_fen == record.fee_fen == 2 * 300_00 + 225_00
    assert record.service_way == "占用"


@pytest.mark.parametrize(
    ("operation", "hours", "fee", "way"),
    [("staff", "0.5", 250_00, "技术"), ("self", "0.5", 300_00, "占用")],  # self: at least one hour
)
def test_the_standard_fee_is_the_frozen_price_times_the_usage(
    client, setting, fake_clock, operation, hours, fee, way
):
    instrument, provider, user = setting
    qualifications.grant_qualification(provider, instrument.code, user.username, date(2027, 6, 30))
    made = request_slot(client, bearer(client, user), instrument, *WEDNESDAY, operation=operation)
    record = _complete(client, provider, made.json["id"], fake_clock, hours=hours)
    assert (record.computed_fee_fen, record.service_way) == (fee, way)


def test_samples_are_priced_by_steps_and_reported_as_commissioned(client, setting, fake_clock):
    instrument, provider, user = setting
    made = client.post(
        "/api/v1/bookings",
        json={
            "instrument_code": instrument.code,
            "mode": "sample",
            "sample_count": 8,
            "sample_description": "粉末",
            "sample_delivery_on": "2026-12-09",
            "purpose": "成分分析",
        },
        headers=bearer(client, user),
    )
    assert made.status_code == 201, made.json
    assert (made.json["operation"], made.json["tier"], made.json["unit"]) == (None, "enterprise", "sample")
    record = _complete(client, provider, made.json["id"], fake_clock, samples=8)
    assert (record.computed_fee_fen, record.service_way) == (5 * 100_00 + 3 * 50_00, "委托")


def test_the_claim_preview_is_the_subsidy_of_the_frozen_fee(
    client, setting, fake_clock, make_scheme, make_voucher
):
    instrument, provider, user = setting
    voucher = make_voucher(user, make_scheme())
    made = request_slot(client, bearer(client, user), instrument, *WEDNESDAY, operation="staff")
    prices.set_price_table(provider, instrument.code, [])  # the table changes: the fee does not
    record = _complete(client, provider, made.json["id"], fake_clock, hours="2")
    preview = client.post(
        "/api/v1/claims/preview",
        json={"voucher_id": voucher.id, "service_record_ids": [record.id]},
        headers=bearer(client, user),
    ).json
    assert preview["fee_fen"] == 1000_00 == record.fee_fen
    assert preview["funds"] == [
        {"fund": "province", "raw_fen": 600_00, "amount_fen": 600_00},
        {"fund": "city", "raw_fen": 300_00, "amount_fen": 300_00},
    ]


def test_the_booking_page_offers_both_modes_with_their_prices(client, setting):
    instrument, _provider, user = setting
    login(client, user.username)
    start = "2026-12-09T01:00:00Z"
    page = client.get(f"/instruments/{instrument.code}/book?start={start}&operation=staff")
    assert page.status_code == 200
    assert 'id="operation-staff"' in page.text and "500.00" in page.text
    answer = client.post(
        f"/instruments/{instrument.code}/book",
        data={
            "csrf_token": extract_csrf(page.text),
            "starts_at": start,
            "ends_at": "2026-12-09T03:00:00Z",
            "operation": "self",
            "purpose": "测试",
        },
    )
    assert answer.status_code == 200 and "培训" in answer.text  # refused, saying how to qualify
    answer = client.post(
        f"/instruments/{instrument.code}/book",
        data={
            "csrf_token": extract_csrf(page.text),
            "starts_at": start,
            "ends_at": "2026-12-09T03:00:00Z",
            "operation": "staff",
            "purpose": "测试",
        },
    )
    assert answer.status_code == 302
    assert db.session.scalar(select(Booking)).unit_price_fen == 500_00
