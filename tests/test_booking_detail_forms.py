"""A booking's page: every form on it shows again as typed after bad input; irreversible actions ask first.

The service-record form keeps every typed value and every file that passed its checks (held for the
next attempt); the decline, cancel, rating and upload forms keep their text. Contacts: the provider
sees who asked and how to reach them; the enterprise sees the operator's phone where it is told to call.
"""

from __future__ import annotations

import html
import io
import os
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from portal.booking import requests, transitions
from portal.booking.models import Booking, BookingState, ServiceFile, ServiceRecord
from portal.core import held_uploads, uploads
from portal.core.permissions import Role
from portal.extensions import db
from portal.notifications.messages import render
from portal.notifications.models import Notification
from tests.factories import completed_service, extract_csrf, login
from tests.pdf_samples import minimal_pdf
from tests.test_booking_rules import WEEKDAY_HOURS, bearer

TUESDAY_9 = datetime(2026, 12, 8, 1, 0, tzinfo=UTC)  # 09:00 Beijing
PDF = minimal_pdf()
HTML = b"<!doctype html><script>alert(1)</script>"


@pytest.fixture
def world(app, fake_clock, make_instrument, make_institution, make_user, make_booking):
    host = make_institution(name="聊城大学测试")
    instrument = make_instrument(
        institution=host,
        opening_hours=WEEKDAY_HOURS,
        fee_per_hour_fen=250_00,
        fee_per_sample_fen=120_00,
        operator_name="王操作",
        operator_phone="0635-8230001",
    )
    provider = make_user(Role.PROVIDER, institution=host)
    holder = make_user(Role.ENTERPRISE, full_name="赵主管", phone="13900000001")
    colleague = make_user(
        Role.ENTERPRISE,
        enterprise=holder.enterprise,
        is_holder=False,
        full_name="钱研究",
        phone="13900000002",
    )
    booking = make_booking(
        instrument, colleague, TUESDAY_9, TUESDAY_9 + timedelta(hours=2), state=BookingState.CONFIRMED
    )
    return {
        "instrument": instrument,
        "provider": provider,
        "holder": holder,
        "colleague": colleague,
        "booking": booking,
        "clock": fake_clock,
    }


def page(client, booking) -> str:
    return client.get(f"/bookings/{booking.id}").get_data(as_text=True)


def form_html(text: str, form_id: str) -> str:
    match = re.search(rf'<form[^>]*id="{form_id}".*?</form>', text, re.S)
    assert match, f"no form {form_id} on the page"
    return match.group(0)


def state_of(booking) -> BookingState:
    return db.session.get(Booking, booking.id, populate_existing=True).state


def a_request(world, make_booking) -> Booking:
    """A request for Wednesday 09:00-10:00, waiting for the provider's answer."""
    return make_booking(
        world["instrument"],
        world["colleague"],
        TUESDAY_9 + timedelta(days=1),
        TUESDAY_9 + timedelta(days=1, hours=1),
    )


def complete(client, booking, text, **fields):
    data = {"csrf_token": extract_csrf(text), "service_type": "analysis", **fields}
    return client.post(f"/bookings/{booking.id}/complete", data=data, content_type="multipart/form-data")


# --- the service-record form -----------------------------------------------------------------------


def test_the_service_form_keeps_every_typed_value_and_the_valid_files(client, app, world):
    world["clock"].set(TUESDAY_9 + timedelta(hours=2))
    login(client, world["provider"].username)
    text = page(client, world["booking"])
    response = complete(
        client,
        world["booking"],
        text,
        hours="2.5",  # more than the 2 booked, and no reason given
        fee="700.00",
        fee_reason="夜间加班<b>",
        result_summary="已完成形貌观察",
        contract=(io.BytesIO(PDF), "合同.pdf"),
        invoice=(io.BytesIO(HTML), "invoice.pdf"),  # a web page renamed: refused by content
    )
    assert response.status_code == 200
    form = form_html(response.get_data(as_text=True), "complete-form")
    assert 'value="2.5"' in form and 'value="700.00"' in form
    assert html.escape("夜间加班<b>") in form and "已完成形貌观察" in form
    assert "hours were used but" in form or "小时" in form  # the hours reason is asked for, at its field
    assert 'id="hours_reason"' in form and "is-invalid" in form
    assert "合同.pdf" in form and 'name="held-contract"' in form  # kept, not to be chosen again
    assert "PDF" in form  # the refused invoice says why, beside its field
    assert state_of(world["booking"]) is BookingState.CONFIRMED
    assert db.session.query(ServiceRecord).count() == 0
    held = Path(app.config["UPLOAD_FOLDER"]) / held_uploads.HELD_FOLDER
    assert len(list(held.iterdir())) == 1  # only the contract: the refused file was never kept

    token = re.search(r'name="held-contract" value="([^"]+)"', form).group(1)
    done = complete(
        client,
        world["booking"],
        response.get_data(as_text=True),
        hours="2.5",
        hours_reason="样品复杂，延长半小时",
        fee="700.00",
        fee_reason="夜间加班",
        **{"held-contract": token},
    )
    assert done.status_code == 302
    record = db.session.query(ServiceRecord).one()
    assert record.hours_reason == "样品复杂，延长半小时"
    files = db.session.query(ServiceFile).all()
    assert [(f.kind.value, f.original_name) for f in files] == [("contract", "合同.pdf")]
    assert (Path(app.config["UPLOAD_FOLDER"]) / files[0].stored_name).read_bytes() == PDF
    assert list(held.iterdir()) == []  # settled: no longer at risk of being purged
    detail = page(client, world["booking"])
    assert "样品复杂，延长半小时" in detail


def test_without_files_kept_the_page_says_plainly_to_choose_them_again(client, world):
    world["clock"].set(TUESDAY_9 + timedelta(hours=2))
    login(client, world["provider"].username)
    response = complete(client, world["booking"], page(client, world["booking"]), hours="abc")
    form = form_html(response.get_data(as_text=True), "complete-form")
    assert 'value="abc"' in form
    assert form.count('id="contract-again"') == 1
    assert "choose it again" in form or "重新选择" in form


def test_a_held_file_token_is_good_only_for_its_own_booking_and_user(client, app, world, make_booking):
    world["clock"].set(TUESDAY_9 + timedelta(hours=2))
    login(client, world["provider"].username)
    first = complete(
        client, world["booking"], page(client, world["booking"]), contract=(io.BytesIO(PDF), "a.pdf")
    )
    token = re.search(r'name="held-contract" value="([^"]+)"', first.get_data(as_text=True)).group(1)
    other = make_booking(
        world["instrument"],
        world["colleague"],
        TUESDAY_9 + timedelta(hours=5),
        TUESDAY_9 + timedelta(hours=6),
        state=BookingState.CONFIRMED,
    )
    world["clock"].set(TUESDAY_9 + timedelta(hours=7))
    response = complete(client, other, page(client, other), hours="1", **{"held-contract": token})
    assert response.status_code == 302
    assert db.session.query(ServiceFile).count() == 0  # the token named another booking's form
    forged = complete(
        client,
        world["booking"],
        page(client, world["booking"]),
        hours="2",
        **{"held-contract": token[:-2] + "xx"},
    )
    assert forged.status_code == 302 and db.session.query(ServiceFile).count() == 0


def test_held_files_nobody_took_are_removed_after_a_day(app, world):
    stored = uploads.store_upload(io.BytesIO(PDF), "old.pdf")
    held_uploads.hold(stored, "x", 1)
    marker = Path(app.config["UPLOAD_FOLDER"]) / held_uploads.HELD_FOLDER / stored.stored_name
    old = marker.stat().st_mtime - held_uploads.MAX_AGE_SECONDS - 10
    os.utime(marker, (old, old))
    fresh = uploads.store_upload(io.BytesIO(PDF), "new.pdf")
    held_uploads.hold(fresh, "x", 1)
    assert not uploads.stored_path(stored.stored_name).exists() and not marker.exists()
    assert uploads.stored_path(fresh.stored_name).exists()


# --- decline, cancel, rate, upload -----------------------------------------------------------------


def test_a_decline_without_reason_shows_the_form_again_and_asks_first(client, world, make_booking):
    request = a_request(world, make_booking)
    login(client, world["provider"].username)
    text = page(client, request)
    assert "data-confirm=" in form_html(text, "reject-form")
    for box in ("reject-reason", "cancel-reason"):  # two reason boxes, each with its own label
        assert f'for="{box}"' in text and f'id="{box}"' in text
    too_long = "很长的理由" * 300  # above the 1,000 characters a reason may have
    response = client.post(
        f"/bookings/{request.id}/reject", data={"csrf_token": extract_csrf(text), "reason": too_long}
    )
    assert response.status_code == 200
    again = response.get_data(as_text=True)
    assert too_long in form_html(again, "reject-form")
    assert too_long not in form_html(again, "cancel-form")  # only the form that was sent is re-filled
    blank = client.post(
        f"/bookings/{request.id}/reject", data={"csrf_token": extract_csrf(text), "reason": " "}
    )
    assert blank.status_code == 200 and "is-invalid" in form_html(blank.get_data(as_text=True), "reject-form")
    assert state_of(request) is BookingState.REQUESTED


def test_the_provider_cancels_only_with_a_reason_and_keeps_what_was_typed(client, world):
    login(client, world["provider"].username)
    text = page(client, world["booking"])
    assert "data-confirm=" in form_html(text, "cancel-form")
    response = client.post(
        f"/bookings/{world['booking'].id}/cancel", data={"csrf_token": extract_csrf(text), "reason": ""}
    )
    assert response.status_code == 200
    assert "is-invalid" in form_html(response.get_data(as_text=True), "cancel-form")
    assert state_of(world["booking"]) is BookingState.CONFIRMED


def test_no_show_asks_first(client, world):
    world["clock"].set(TUESDAY_9 + timedelta(minutes=40))
    login(client, world["provider"].username)
    assert "data-confirm=" in form_html(page(client, world["booking"]), "no-show-form")


@pytest.fixture
def recorded(client, world):
    """A completed, unrated service of the colleague's booking, with the colleague signed in."""
    record = completed_service(
        world["instrument"], world["colleague"], TUESDAY_9 - timedelta(days=3), fee_fen=1, hours=2
    )
    db.session.commit()
    login(client, world["colleague"].username)
    return record


def test_a_rating_without_a_choice_keeps_the_comment(client, recorded):
    text = page(client, recorded.booking)
    response = client.post(
        f"/bookings/{recorded.booking_id}/rate",
        data={"csrf_token": extract_csrf(text), "comment": "操作员很耐心"},
    )
    assert response.status_code == 200
    form = form_html(response.get_data(as_text=True), "rate-form")
    assert "操作员很耐心" in form and "invalid-feedback" in form
    assert db.session.get(ServiceRecord, recorded.id, populate_existing=True).rating is None


def test_an_upload_without_a_file_keeps_the_chosen_document_kind(client, recorded):
    text = page(client, recorded.booking)
    response = client.post(
        f"/bookings/{recorded.booking_id}/files",
        data={"csrf_token": extract_csrf(text), "kind": "receipt"},
        content_type="multipart/form-data",
    )
    assert response.status_code == 200
    assert re.search(
        r'<option[^>]*selected[^>]*value="receipt"|<option value="receipt" selected',
        response.get_data(as_text=True),
    )


# --- contacts ------------------------------------------------------------------------------------


def test_the_provider_sees_who_asked_and_the_enterprise_contact(client, world):
    login(client, world["provider"].username)
    text = page(client, world["booking"])
    requester = re.search(r'id="booking-requester">(.*?)</dd>', text, re.S).group(1)
    assert "钱研究" in requester and "13900000002" in requester
    contact = re.search(r'id="enterprise-contact">(.*?)</dd>', text, re.S).group(1)
    assert "赵主管" in contact and "13900000001" in contact


def test_too_late_to_cancel_online_shows_the_operators_phone(client, world):
    world["clock"].set(TUESDAY_9 - timedelta(hours=2))  # inside the 24-hour cut-off
    login(client, world["colleague"].username)
    text = page(client, world["booking"])
    call = re.search(r'id="call-operator">(.*?)</p>', text, re.S).group(1)
    assert "王操作" in call and "0635-8230001" in call
    answer = client.post(
        f"/api/v1/bookings/{world['booking'].id}/cancel", json={}, headers=bearer(client, world["colleague"])
    )
    assert answer.status_code == 409 and "0635-8230001" in answer.json["error"]["message"]


def test_notifications_carry_the_contacts(app, world, make_booking):
    request = a_request(world, make_booking)
    transitions.confirm_booking(world["provider"], request.id)
    confirmed = db.session.query(Notification).filter_by(kind="booking.confirmed").first()
    assert "0635-8230001" in render("booking.confirmed", confirmed.payload)[1]
    asked = requests.request_booking(
        world["colleague"],
        world["instrument"].code,
        requests.BookingRequest(
            mode=request.mode,
            purpose="x",
            starts_at=TUESDAY_9 + timedelta(days=2),
            ends_at=TUESDAY_9 + timedelta(days=2, hours=1),
        ),
    )
    assert asked.id
    to_provider = db.session.query(Notification).filter_by(kind="booking.requested").first()
    assert "13900000002" in render("booking.requested", to_provider.payload)[1]
