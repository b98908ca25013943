"""Booking rules: every refusal, named, and what the availability shows."""

from __future__ import annotations

from datetime import UTC, datetime, time
from itertools import pairwise

import pytest
from sqlalchemy import func, select

from portal.booking.models import Blackout, BlackoutKind, Booking, BookingState
from portal.catalog.models import InstrumentStatus
from portal.core.clock import SHANGHAI
from portal.core.permissions import Role
from portal.extensions import db
from tests.factories import PASSWORD

WEEKDAY_HOURS = [(d, time(8, 30), time(12, 0)) for d in range(5)] + [
    (d, time(14, 0), time(17, 30)) for d in range(5)
]


def local(text: str) -> str:
    """'2026-12-08 09:00' Beijing time as ISO 8601 with its offset (as a client would send it)."""
    return datetime.fromisoformat(text).replace(tzinfo=SHANGHAI).isoformat()


def bearer(client, user) -> dict[str, str]:
    token = client.post("/api/v1/tokens", json={"username": user.username, "password": PASSWORD}).json[
        "token"
    ]
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def setting(app, fake_clock, make_instrument, make_user):
    instrument = make_instrument(
        opening_hours=WEEKDAY_HOURS, fee_per_hour_fen=200_00, fee_per_sample_fen=80_00
    )
    user = make_user(Role.ENTERPRISE)
    return instrument, user


def request_slot(client, headers, instrument, start: str, end: str, **extra):
    body = {
        "instrument_code": instrument.code,
        "mode": "slot",
        "starts_at": local(start),
        "ends_at": local(end),
    }
    body.update(extra)
    return client.post("/api/v1/bookings", json={"purpose": "XRD 物相分析", **body}, headers=headers)


def test_a_valid_request_holds_the_slot(client, setting):
    instrument, user = setting
    response = request_slot(client, bearer(client, user), instrument, "2026-12-08 09:00", "2026-12-08 10:00")
    assert response.status_code == 201, response.json
    body = response.json
    assert body["state"] == "requested"
    assert body["starts_at"] == "2026-12-08T01:00:00Z"
    assert body["ends_at"] == "2026-12-08T02:00:00Z"
    assert body["instrument_code"] == instrument.code
    assert body["enterprise_id"] == user.enterprise_id
    assert body["service_record_id"] is None and body["fee_fen"] is None


@pytest.mark.parametrize(
    ("start", "end", "rule", "policy"),
    [
        ("2026-12-09 08:00", "2026-12-09 09:00", "outside_open_hours", {}),
        ("2026-12-09 11:30", "2026-12-09 12:30", "outside_open_hours", {}),  # across the lunch break
        ("2026-12-12 09:00", "2026-12-12 10:00", "outside_open_hours", {}),  # Saturday
        ("2026-12-09 09:00", "2026-12-09 09:30", "too_short", {}),
        ("2026-12-09 09:00", "2026-12-09 11:30", "too_long", {"max_minutes": 120}),
        ("2026-12-07 15:00", "2026-12-07 16:00", "too_late", {}),  # today, inside the 24 hours' notice
        ("2027-02-10 09:00", "2027-02-10 10:00", "too_far_ahead", {}),  # beyond 60 days
        ("2026-12-07 08:30", "2026-12-07 09:30", "in_past", {}),
        ("2026-12-09 09:10", "2026-12-09 10:10", "off_grid", {}),
        ("2026-12-09 10:00", "2026-12-09 09:00", "invalid_range", {}),
    ],
)
def test_rule_refusals_name_the_rule(client, setting, set_policy, start, end, rule, policy):
    instrument, user = setting
    if policy:
        set_policy(instrument, **policy)
    response = request_slot(client, bearer(client, user), instrument, start, end)
    assert response.status_code == 422, response.json
    error = response.json["error"]
    assert error["code"] == "validation_error"
    assert error["details"]["fields"]["rule"] == rule or rule in error["details"]["fields"]["rules"]
    assert db.session.scalar(select(func.count()).select_from(Booking)) == 0


def test_a_blackout_blocks_and_the_refusal_names_it(client, setting, make_user):
    instrument, user = setting
    db.session.add(
        Blackout(
            instrument_id=instrument.id,
            kind=BlackoutKind.MAINTENANCE,
            starts_at=datetime(2026, 12, 9, 6, 0, tzinfo=UTC),  # 14:00 Beijing
            ends_at=datetime(2026, 12, 9, 9, 30, tzinfo=UTC),  # 17:30
            reason="年度保养",
        )
    )
    db.session.commit()
    response = request_slot(client, bearer(client, user), instrument, "2026-12-09 15:00", "2026-12-09 16:00")
    assert response.status_code == 409
    error = response.json["error"]
    assert error["code"] == "slot_conflict"
    assert error["details"]["conflicts"] == [
        {
            "kind": "maintenance",
            "starts_at": "2026-12-09T06:00:00Z",
            "ends_at": "2026-12-09T09:30:00Z",
            "reason": "年度保养",
        }
    ]


def test_a_clash_names_the_held_slot_and_reveals_nobody(client, setting, make_user, make_booking):
    instrument, user = setting
    other = make_user(Role.ENTERPRISE)
    make_booking(
        instrument,
        other,
        datetime(2026, 12, 9, 1, 0, tzinfo=UTC),
        datetime(2026, 12, 9, 2, 0, tzinfo=UTC),
        state=BookingState.CONFIRMED,
    )
    response = request_slot(client, bearer(client, user), instrument, "2026-12-09 09:30", "2026-12-09 10:30")
    assert response.status_code == 409
    error = response.json["error"]
    assert error["details"]["conflicts"] == [
        {"kind": "booking", "starts_at": "2026-12-09T01:00:00Z", "ends_at": "2026-12-09T02:00:00Z"}
    ]
    assert "09:00" in error["message"]
    assert other.enterprise.name not in str(response.json)


def test_released_slots_are_free_again(client, setting, make_user, make_booking):
    instrument, user = setting
    other = make_user(Role.ENTERPRISE)
    start, end = datetime(2026, 12, 9, 1, 0, tzinfo=UTC), datetime(2026, 12, 9, 2, 0, tzinfo=UTC)
    for state in (BookingState.REJECTED, BookingState.CANCELLED, BookingState.EXPIRED, BookingState.NO_SHOW):
        make_booking(instrument, other, start, end, state=state)
    response = request_slot(client, bearer(client, user), instrument, "2026-12-09 09:00", "2026-12-09 10:00")
    assert response.status_code == 201


def test_buffer_between_bookings(client, setting, set_policy, make_user):
    instrument, user = setting
    set_policy(instrument, buffer_minutes=30, min_minutes=30)
    headers = bearer(client, user)
    assert (
        request_slot(client, headers, instrument, "2026-12-09 09:00", "2026-12-09 10:00").status_code == 201
    )
    assert (
        request_slot(client, headers, instrument, "2026-12-09 10:00", "2026-12-09 11:00").status_code == 409
    )
    assert (
        request_slot(client, headers, instrument, "2026-12-09 08:30", "2026-12-09 09:00").status_code == 409
    )
    assert (
        request_slot(client, headers, instrument, "2026-12-09 10:30", "2026-12-09 11:30").status_code == 201
    )


def test_back_to_back_slots_both_succeed(client, setting):
    instrument, user = setting
    headers = bearer(client, user)
    assert (
        request_slot(client, headers, instrument, "2026-12-09 09:00", "2026-12-09 10:00").status_code == 201
    )
    assert (
        request_slot(client, headers, instrument, "2026-12-09 10:00", "2026-12-09 11:00").status_code == 201
    )


def test_only_enterprises_book(client, setting, make_user):
    instrument, _user = setting
    for role in (Role.PROVIDER, Role.REVIEWER, Role.ADMIN):
        user = make_user(role)
        response = request_slot(
            client, bearer(client, user), instrument, "2026-12-09 09:00", "2026-12-09 10:00"
        )
        assert response.status_code == 403
        assert response.json["error"]["code"] == "forbidden"
    anonymous = request_slot(client, {}, instrument, "2026-12-09 09:00", "2026-12-09 10:00")
    assert anonymous.status_code == 401


def test_a_rejected_enterprise_cannot_book(client, setting, make_user):
    from portal.accounts.models import VerificationState

    instrument, _user = setting
    rejected = make_user(Role.ENTERPRISE, verification_state=VerificationState.REJECTED)
    response = request_slot(
        client, bearer(client, rejected), instrument, "2026-12-09 09:00", "2026-12-09 10:00"
    )
    assert response.status_code == 403


def test_an_instrument_awaiting_repair_cannot_be_booked(client, setting):
    instrument, user = setting
    instrument.status = InstrumentStatus.AWAITING_REPAIR
    db.session.commit()
    response = request_slot(client, bearer(client, user), instrument, "2026-12-09 09:00", "2026-12-09 10:00")
    assert response.status_code == 422
    assert response.json["error"]["details"]["fields"]["rule"] == "not_bookable"


def test_times_without_an_offset_are_refused(client, setting):
    instrument, user = setting
    response = client.post(
        "/api/v1/bookings",
        json={
            "instrument_code": instrument.code,
            "starts_at": "2026-12-09T09:00:00",
            "ends_at": "2026-12-09T10:00:00",
        },
        headers=bearer(client, user),
    )
    assert response.status_code == 422
    assert "starts_at" in response.json["error"]["details"]["fields"]


def test_sample_submission(client, setting):
    instrument, user = setting
    headers = bearer(client, user)
    body = {
        "instrument_code": instrument.code,
        "mode": "sample",
        "purpose": "元素含量",
        "sample_count": 5,
        "sample_description": "合金粉末 5 份",
        "sample_delivery_on": "2026-12-10",
    }
    response = client.post("/api/v1/bookings", json=body, headers=headers)
    assert response.status_code == 201, response.json
    assert (response.json["mode"], response.json["sample_count"], response.json["starts_at"]) == (
        "sample",
        5,
        None,
    )
    bad = client.post(
        "/api/v1/bookings",
        json={**body, "sample_count": 0, "sample_delivery_on": "2026-12-01"},
        headers=headers,
    )
    assert bad.status_code == 422
    assert {"sample_count"} <= set(bad.json["error"]["details"]["fields"])
    past = client.post("/api/v1/bookings", json={**body, "sample_delivery_on": "2026-12-01"}, headers=headers)
    assert "sample_delivery_on" in past.json["error"]["details"]["fields"]


def test_availability_shows_free_held_and_closed(client, setting, make_user, make_booking):
    instrument, _user = setting
    make_booking(
        instrument,
        make_user(),
        datetime(2026, 12, 9, 1, 0, tzinfo=UTC),
        datetime(2026, 12, 9, 2, 0, tzinfo=UTC),
    )
    db.session.add(
        Blackout(
            instrument_id=instrument.id,
            kind=BlackoutKind.CLOSURE,
            starts_at=datetime(2026, 12, 10, 0, 30, tzinfo=UTC),
            ends_at=datetime(2026, 12, 10, 9, 30, tzinfo=UTC),
        )
    )
    db.session.commit()
    body = client.get(
        f"/api/v1/instruments/{instrument.code}/availability",
        query_string={"start": "2026-12-09T00:00:00+08:00", "end": "2026-12-11T00:00:00+08:00"},
    ).json
    free = [(s["start"], s["end"]) for s in body["free"]]
    assert free == [
        ("2026-12-09T00:30:00Z", "2026-12-09T01:00:00Z"),  # 08:30-09:00
        ("2026-12-09T02:00:00Z", "2026-12-09T04:00:00Z"),  # 10:00-12:00
        ("2026-12-09T06:00:00Z", "2026-12-09T09:30:00Z"),  # 14:00-17:30
    ]
    assert [(s["start"], s["end"]) for s in body["held"]] == [
        ("2026-12-09T01:00:00Z", "2026-12-09T02:00:00Z")
    ]
    assert {"start": "2026-12-10T00:30:00Z", "end": "2026-12-10T09:30:00Z", "kind": "closure"} in body[
        "closed"
    ]
    # Everything in the window is exactly one of free, held or closed.
    spans = sorted((s["start"], s["end"]) for k in ("free", "held", "closed") for s in body[k])
    assert spans[0][0] == "2026-12-08T16:00:00Z" and spans[-1][1] == "2026-12-10T16:00:00Z"
    assert all(a[1] == b[0] for a, b in pairwise(spans))


def test_a_booking_at_half_past_eleven_at_night(client, app, fake_clock, make_instrument, make_user):
    # An instrument open round the clock ("23:59" means until midnight).
    instrument = make_instrument(opening_hours=[(d, time(0, 0), time(23, 59)) for d in range(7)])
    user = make_user()
    response = request_slot(client, bearer(client, user), instrument, "2026-12-09 23:30", "2026-12-10 00:30")
    assert response.status_code == 201, response.json
    assert response.json["starts_at"] == "2026-12-09T15:30:00Z"
    booking = db.session.get(Booking, response.json["id"])
    assert booking.starts_at == datetime(2026, 12, 9, 15, 30, tzinfo=UTC)
    from tests.factories import login

    login(client, user.username)
    page = client.get(f"/bookings/{booking.id}").get_data(as_text=True)
    assert "2026-12-09 23:30–00:30" in page
