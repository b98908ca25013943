"""Check-in and check-out at the instrument (issue 18): the window's edges, who may, the session's
end without a check-out, overtime, the API's fields, the QR page and the label. Both backends."""

from __future__ import annotations

import io
from datetime import timedelta
from decimal import Decimal

import pytest
from pypdf import PdfReader
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from portal.booking.models import BookingState
from portal.core.errors import Forbidden, InvalidTransition, NotFound, ValidationFailed
from portal.core.models import AuditEvent
from portal.core.permissions import Role
from portal.extensions import db
from portal.usage import labels, services
from portal.usage.models import END_AUTO, UsageSession, UsageSource
from tests.conftest import MONDAY_9AM
from tests.factories import extract_csrf, login
from tests.test_booking_rules import bearer

START = MONDAY_9AM + timedelta(hours=1)  # 10:00 in Liaocheng
END = START + timedelta(hours=2)


@pytest.fixture
def world(app, fake_clock, make_instrument, make_user, make_booking, make_institution):
    host = make_institution()
    instrument = make_instrument(institution=host)
    user = make_user(Role.ENTERPRISE)
    booking = make_booking(instrument, user, START, END, state=BookingState.CONFIRMED)
    return {
        "instrument": instrument,
        "user": user,
        "booking": booking,
        "provider": make_user(Role.PROVIDER, institution=host),
        "clock": fake_clock,
    }


def _fresh(booking_id: int) -> UsageSession:
    db.session.expire_all()
    return db.session.scalars(select(UsageSession).where(UsageSession.booking_id == booking_id)).one()


# --- the window ---------------------------------------------------------------------------------


def test_check_in_opens_exactly_15_minutes_before_the_start(world):
    clock, user, booking = world["clock"], world["user"], world["booking"]
    clock.set(START - timedelta(minutes=15, seconds=1))
    with pytest.raises(InvalidTransition, match="签到将于 09:45 开放"):
        services.check_in(user, booking.id)
    assert db.session.scalar(select(UsageSession.id)) is None
    clock.set(START - timedelta(minutes=15))
    session = services.check_in(user, booking.id)
    assert (session.source, session.started_at, session.user_id) == (UsageSource.QR, clock(), user.id)


@pytest.mark.parametrize("grace", [30, 10])
def test_check_in_closes_at_the_start_plus_the_grace_included(world, set_policy, grace):
    clock, user, booking = world["clock"], world["user"], world["booking"]
    if grace != 30:  # 30 is the default: no policy row at all
        set_policy(world["instrument"], no_show_grace_minutes=grace)
    clock.set(START + timedelta(minutes=grace, seconds=1))
    assert not services.can_check_in(user, booking, clock())
    with pytest.raises(InvalidTransition, match=r"签到已于 .* 截止"):
        services.check_in(user, booking.id)
    clock.set(START + timedelta(minutes=grace))
    assert services.can_check_in(user, booking, clock())
    services.check_in(user, booking.id)
    assert _fresh(booking.id).started_at == START + timedelta(minutes=grace)


def test_only_a_confirmed_slot_is_checked_in(world, make_booking):
    world["clock"].set(START)
    requested = make_booking(
        world["instrument"], world["user"], END, END + timedelta(hours=1), state=BookingState.REQUESTED
    )
    world["clock"].set(END)
    with pytest.raises(InvalidTransition, match="只有已确认的预约"):
        services.check_in(world["user"], requested.id)
    sample = make_booking(world["instrument"], world["user"], state=BookingState.CONFIRMED)
    with pytest.raises(InvalidTransition, match="送样预约"):
        services.check_in(world["user"], sample.id)


def test_a_second_check_in_is_refused_and_the_database_refuses_a_second_open_session(world):
    world["clock"].set(START)
    services.check_in(world["user"], world["booking"].id)
    with pytest.raises(InvalidTransition, match="该预约已签到"):
        services.check_in(world["user"], world["booking"].id)
    # What stops two racing check-ins: one open session per booking, in the database itself.
    db.session.add(
        UsageSession(
            booking_id=world["booking"].id,
            instrument_id=world["instrument"].id,
            started_at=START,
            source=UsageSource.QR,
        )
    )
    with pytest.raises(IntegrityError):
        db.session.commit()
    db.session.rollback()


# --- who -------------------------------------------------------------------------------------------


def test_the_provider_checks_in_for_the_user_only_with_a_reason(world):
    world["clock"].set(START + timedelta(minutes=5))
    provider, booking = world["provider"], world["booking"]
    with pytest.raises(ValidationFailed) as refused:
        services.check_in(provider, booking.id, "  ")
    assert "reason" in refused.value.fields
    session = services.check_in(provider, booking.id, "用户手机没电")
    assert (session.source, session.user_id, session.reason) == (
        UsageSource.PROVIDER,
        world["user"].id,
        "用户手机没电",
    )
    audit = db.session.scalars(select(AuditEvent).where(AuditEvent.action == "usage.checked_in")).one()
    assert (audit.object_type, audit.object_id, audit.actor_id, audit.reason) == (
        "booking",
        str(booking.id),
        provider.id,
        "用户手机没电",
    )
    assert audit.after["source"] == "provider"


def test_others_may_not_check_in(world, make_user):
    world["clock"].set(START)
    booking = world["booking"]
    for stranger in (make_user(Role.ENTERPRISE), make_user(Role.PROVIDER)):
        with pytest.raises(NotFound):
            services.check_in(stranger, booking.id)
    with pytest.raises(Forbidden):
        services.check_in(make_user(Role.REVIEWER), booking.id)
    assert db.session.scalar(select(UsageSession.id)) is None


# --- the end ----------------------------------------------------------------------------------------


def test_without_a_check_out_the_session_ends_at_the_booking_end(world):
    clock, booking = world["clock"], world["booking"]
    clock.set(START + timedelta(minutes=3))
    services.check_in(world["user"], booking.id)
    clock.set(END - timedelta(seconds=1))
    assert services.close_ended_sessions() == 0
    clock.set(END + timedelta(minutes=7))
    assert services.close_ended_sessions() == 1
    session = _fresh(booking.id)
    assert (session.ended_at, session.ended_by, session.overtime_minutes) == (END, END_AUTO, 0)
    assert services.close_ended_sessions() == 0  # safe to run twice
    used = services.usage_of([booking.id])[booking.id]
    assert (used.used_minutes, used.checked_out_at) == (117, END)
    with pytest.raises(InvalidTransition, match="该预约尚未签到"):
        services.check_out(world["user"], booking.id)
    actions = db.session.scalars(
        select(AuditEvent.action).where(AuditEvent.object_id == str(booking.id)).order_by(AuditEvent.id)
    )
    assert list(actions) == ["usage.checked_in", "usage.auto_checked_out"]


def test_use_past_the_end_is_overtime(world, client):
    clock, booking = world["clock"], world["booking"]
    clock.set(START - timedelta(minutes=10))
    services.check_in(world["user"], booking.id)
    clock.set(END + timedelta(minutes=25, seconds=59))
    services.check_out(world["user"], booking.id)
    session = _fresh(booking.id)
    assert (session.overtime_minutes, session.ended_by) == (25, "qr")
    answer = client.get(f"/api/v1/bookings/{booking.id}", headers=bearer(client, world["user"])).json
    assert answer["checked_in_at"] == "2026-12-07T01:50:00Z"
    assert answer["checked_out_at"] == "2026-12-07T04:25:59Z"
    assert answer["used_minutes"] == 155


def test_a_check_out_before_the_end_has_no_overtime_and_an_early_one_counts_its_minutes(world):
    clock, booking = world["clock"], world["booking"]
    clock.set(START)
    services.check_in(world["user"], booking.id)
    clock.set(START + timedelta(minutes=40))
    services.check_out(world["provider"], booking.id, "用户忘记签退")
    session = _fresh(booking.id)
    assert (session.overtime_minutes, session.ended_by) == (0, "provider")
    assert services.metered_hours(services.usage_of([booking.id])[booking.id]) == Decimal("0.67")


# --- the API ---------------------------------------------------------------------------------------


def test_the_api_checks_in_and_out_and_says_null_when_not_metered(world, client):
    clock, booking = world["clock"], world["booking"]
    headers = bearer(client, world["user"])
    before = client.get(f"/api/v1/bookings/{booking.id}", headers=headers).json
    assert (before["checked_in_at"], before["checked_out_at"], before["used_minutes"]) == (None, None, None)
    early = client.post(f"/api/v1/bookings/{booking.id}/check-in", headers=headers)
    assert (early.status_code, early.json["error"]["code"]) == (409, "invalid_transition")
    clock.set(START)
    answer = client.post(f"/api/v1/bookings/{booking.id}/check-in", headers=headers)
    assert answer.status_code == 200, answer.json
    assert (answer.json["checked_in_at"], answer.json["used_minutes"]) == ("2026-12-07T02:00:00Z", 0)
    clock.set(START + timedelta(minutes=61))
    listed = client.get("/api/v1/bookings", headers=headers).json["items"][0]
    assert (listed["used_minutes"], listed["checked_out_at"]) == (61, None)
    out = client.post(f"/api/v1/bookings/{booking.id}/check-out", headers=headers, json={})
    assert (out.json["used_minutes"], out.json["checked_out_at"]) == (61, "2026-12-07T03:01:00Z")
    provider = bearer(client, world["provider"])
    refused = client.post(f"/api/v1/bookings/{booking.id}/check-out", headers=provider, json={"reason": "x"})
    assert (refused.status_code, refused.json["error"]["code"]) == (409, "invalid_transition")


def test_the_api_wants_a_providers_reason(world, client):
    world["clock"].set(START)
    provider = bearer(client, world["provider"])
    url = f"/api/v1/bookings/{world['booking'].id}/check-in"
    refused = client.post(url, headers=provider)
    assert refused.status_code == 422 and "reason" in refused.json["error"]["details"]["fields"]
    assert client.post(url, headers=provider, json={"reason": "代为签到"}).status_code == 200


# --- the pages ----------------------------------------------------------------------------------


def test_the_short_url_shows_the_booking_of_the_moment_and_checks_in_and_out(world, client):
    clock, booking, code = world["clock"], world["booking"], world["instrument"].code
    assert client.get(f"/i/{code}").status_code == 302  # signed out: to the sign-in page
    login(client, world["user"].username)
    clock.set(START - timedelta(minutes=15, seconds=1))
    page = client.get(f"/i/{code}").get_data(as_text=True)
    assert 'id="no-booking"' in page and f"booking-{booking.id}" not in page
    clock.set(START - timedelta(minutes=5))
    page = client.get(f"/i/{code}").get_data(as_text=True)
    assert f'id="check-in-{booking.id}"' in page
    token = extract_csrf(page)
    done = client.post(f"/bookings/{booking.id}/check-in", data={"csrf_token": token})
    assert done.status_code == 302 and done.headers["Location"].endswith(f"/i/{code}")
    clock.set(START + timedelta(minutes=30))
    page = client.get(f"/i/{code}").get_data(as_text=True)
    assert "35" in page and f'id="check-out-{booking.id}"' in page
    client.post(f"/bookings/{booking.id}/check-out", data={"csrf_token": token, "back": "booking"})
    detail = client.get(f"/bookings/{booking.id}").get_data(as_text=True)
    assert 'id="booking-usage"' in detail and "35" in detail
    assert client.post(f"/bookings/{booking.id}/check-in", data={}).status_code == 400  # no CSRF token


def test_the_label_points_to_the_short_url(world, client):
    login(client, world["provider"].username)
    code = world["instrument"].code
    svg = client.get(f"/manage/instruments/{code}/label.svg")
    assert svg.mimetype == "image/svg+xml" and f"/i/{code}" in svg.get_data(as_text=True)
    pdf = client.get(f"/manage/instruments/{code}/label.pdf")
    assert pdf.mimetype == "application/pdf"
    reader = PdfReader(io.BytesIO(pdf.data))
    assert len(reader.pages) == 1 and code in reader.pages[0].extract_text()
    label = labels.Label(code=code, name="测试仪器", url=f"http://localhost/i/{code}")
    # The QR code's modules are the PDF's rectangles: one per dark module.
    dark = sum(sum(row) for row in label.matrix())
    assert labels.label_pdf(label).count(b" re\n") == dark
    assert client.get(f"/manage/instruments/{code}/usage").status_code == 200
