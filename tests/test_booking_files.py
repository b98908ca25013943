"""Evidence uploads (checked by content, stored outside static/, served only to those allowed); ICS feeds."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from icalendar import Calendar as ICalendar

from portal.booking.models import BookingState, ServiceFile, ServiceRecord
from portal.core.permissions import Role
from portal.extensions import db
from tests.factories import login
from tests.pdf_samples import minimal_pdf
from tests.test_booking_rules import bearer

PDF = minimal_pdf()
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64
EXE = b"MZ\x90\x00\x03\x00\x00\x00\x04\x00\x00\x00\xff\xff" + b"\x00" * 64
START = datetime(2026, 12, 8, 1, 0, tzinfo=UTC)


@pytest.fixture
def service(app, fake_clock, make_institution, make_instrument, make_user, make_booking):
    host = make_institution()
    instrument = make_instrument(institution=host)
    provider = make_user(Role.PROVIDER, institution=host)
    owner = make_user(Role.ENTERPRISE)
    booking = make_booking(instrument, owner, START, START + timedelta(hours=1), state=BookingState.COMPLETED)
    record = ServiceRecord(
        booking_id=booking.id, hours=1, computed_fee_fen=300_00, fee_fen=300_00, recorded_by_id=provider.id
    )
    db.session.add(record)
    db.session.commit()
    return {
        "record": record,
        "provider": provider,
        "owner": owner,
        "booking": booking,
        "instrument": instrument,
    }


def upload(client, user, record, data: bytes, name: str, kind: str = "invoice"):
    return client.post(
        f"/api/v1/service-records/{record.id}/files",
        data={"kind": kind, "file": (io.BytesIO(data), name)},
        headers=bearer(client, user),
        content_type="multipart/form-data",
    )


def test_a_pdf_invoice_is_stored_outside_static_and_listed(client, app, service):
    response = upload(client, service["provider"], service["record"], PDF, "发票.pdf")
    assert response.status_code == 201, response.json
    assert response.json == {"id": response.json["id"], "kind": "invoice", "size": len(PDF)}
    row = db.session.get(ServiceFile, response.json["id"])
    stored = Path(app.config["UPLOAD_FOLDER"]) / row.stored_name
    assert stored.read_bytes() == PDF
    static = Path(app.static_folder).resolve()
    assert static not in stored.resolve().parents
    assert row.content_type == "application/pdf" and row.original_name == "发票.pdf"
    record = client.get(
        f"/api/v1/service-records/{service['record'].id}", headers=bearer(client, service["owner"])
    )
    assert [f["kind"] for f in record.json["files"]] == ["invoice"]


def test_the_enterprise_can_add_its_payment_receipt(client, service):
    response = upload(client, service["owner"], service["record"], PNG, "receipt.png", kind="receipt")
    assert response.status_code == 201


def test_a_renamed_executable_is_refused_as_an_invoice(client, service):
    response = upload(client, service["provider"], service["record"], EXE, "invoice.pdf")
    assert response.status_code == 422
    assert "PDF" in response.json["error"]["message"]
    assert db.session.query(ServiceFile).count() == 0


def test_an_oversized_file_is_refused_and_nothing_is_left(client, app, service):
    app.config["UPLOAD_MAX_BYTES"] = 1024
    response = upload(client, service["provider"], service["record"], PDF + b"0" * 2048, "big.pdf")
    assert response.status_code == 422
    assert list(Path(app.config["UPLOAD_FOLDER"]).glob("*")) == []


def test_unknown_kinds_and_missing_files_are_validation_errors(client, service):
    assert (
        upload(client, service["provider"], service["record"], PDF, "x.pdf", kind="selfie").status_code == 422
    )
    response = client.post(
        f"/api/v1/service-records/{service['record'].id}/files",
        data={"kind": "invoice"},
        headers=bearer(client, service["provider"]),
        content_type="multipart/form-data",
    )
    assert response.status_code == 422


def test_files_are_served_only_to_those_allowed(client, app, service, make_user):
    file_id = upload(client, service["provider"], service["record"], PDF, "发票.pdf").json["id"]
    path = f"/service-records/{service['record'].id}/files/{file_id}"
    assert client.get(path).status_code == 302  # anonymous: to the login page
    stranger = make_user(Role.ENTERPRISE)
    login(client, stranger.username)
    assert client.get(path).status_code == 404
    other = app.test_client()
    login(other, service["owner"].username)
    response = other.get(path)
    assert response.status_code == 200 and response.data == PDF
    assert response.headers["Content-Type"] == "application/pdf"
    assert "attachment" in response.headers["Content-Disposition"]
    api = client.get(
        f"/api/v1/service-records/{service['record'].id}/files/{file_id}", headers=bearer(client, stranger)
    )
    assert api.status_code == 404


def test_the_instrument_feed_parses_and_carries_no_personal_data(client, service, make_booking, make_user):
    confirmed = make_booking(
        service["instrument"],
        service["owner"],
        START + timedelta(days=1),
        START + timedelta(days=1, hours=2),
        state=BookingState.CONFIRMED,
        purpose="机密配方检测",
    )
    response = client.get(f"/instruments/{service['instrument'].code}/calendar.ics")
    assert response.status_code == 200 and response.mimetype == "text/calendar"
    calendar = ICalendar.from_ical(response.data)
    events = {str(e["uid"]): e for e in calendar.walk("VEVENT")}
    event = events[f"booking-{confirmed.id}@liaocheng-portal"]
    assert event.decoded("dtstart") == confirmed.starts_at
    assert event.decoded("dtend") == confirmed.ends_at
    text = response.data.decode()
    assert service["owner"].enterprise.name not in text and "机密配方检测" not in text


def test_the_private_feed_shows_own_bookings_and_its_address_can_be_replaced(client, service, make_booking):
    login(client, service["owner"].username)
    page = client.get("/account/calendar").get_data(as_text=True)
    url = page.split('id="calendar-url" readonly value="')[1].split('"')[0]
    path = url.split("localhost", 1)[1]
    feed = client.get(path)
    assert feed.status_code == 200
    events = list(ICalendar.from_ical(feed.data).walk("VEVENT"))
    assert [str(e["uid"]) for e in events] == [f"booking-{service['booking'].id}@liaocheng-portal"]
    assert service["instrument"].name in str(events[0]["summary"])
    from tests.factories import extract_csrf

    client.post("/account/calendar", data={"csrf_token": extract_csrf(page)})
    assert client.get(path).status_code == 404
    assert client.get("/calendar/not-a-token.ics").status_code == 404
