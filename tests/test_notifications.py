"""Notifications: written with the change (outbox), once per event, in the recipient's language, in-app."""

from __future__ import annotations

import email
from email import policy
from pathlib import Path

import pytest
from sqlalchemy import func, select

from portal.booking import requests, transitions
from portal.booking.models import Booking, BookingState
from portal.core.permissions import Role
from portal.extensions import db
from portal.notifications import services
from portal.notifications.models import EmailState, Notification
from portal.vouchers import claims as claim_services
from portal.vouchers import review
from tests.factories import extract_csrf, login


@pytest.fixture
def mailbox(app, tmp_path) -> Path:
    """Without MAIL_SERVER the portal writes each mail as an .eml file; this folder is the test's own."""
    folder = tmp_path / "mail"
    app.config["MAIL_FILE_FOLDER"] = str(folder)
    return folder


def mails(folder: Path) -> list[email.message.EmailMessage]:
    if not folder.exists():
        return []
    return [email.message_from_bytes(p.read_bytes(), policy=policy.default) for p in sorted(folder.iterdir())]


@pytest.fixture
def approve_claim(fake_clock, make_scheme, make_user, make_voucher, make_service):
    scheme = make_scheme()
    reviewer = make_user(Role.REVIEWER)

    def run(user):
        voucher = make_voucher(user, scheme)
        record = make_service(user)
        claim = claim_services.create_claim(user, voucher.id, [record.id])
        claim_services.submit_claim(user, claim.id)
        return review.approve_claim(reviewer, claim.id)

    return run


def test_an_approval_notifies_the_enterprise_once_in_app_and_by_mail(approve_claim, make_user, mailbox):
    user = make_user(Role.ENTERPRISE)
    claim = approve_claim(user)
    rows = db.session.scalars(select(Notification).where(Notification.kind == "claim.approved")).all()
    assert [(n.recipient_id, n.email_state) for n in rows] == [(user.id, EmailState.SENT)]
    sent = [m for m in mails(mailbox) if m["Message-ID"] == rows[0].message_id]
    assert len(sent) == 1
    assert sent[0]["To"] == user.email
    assert f"#{claim.id}" in sent[0].get_content()
    assert "/vouchers/claims/" in sent[0].get_content()


def test_mail_speaks_the_recipients_language(approve_claim, make_user, mailbox):
    chinese, english = make_user(Role.ENTERPRISE), make_user(Role.ENTERPRISE, language="en")
    approve_claim(chinese)
    approve_claim(english)
    by_recipient = {m["To"]: m for m in mails(mailbox)}
    assert by_recipient[english.email]["Subject"].startswith("Subsidy approved")
    assert "补贴" in by_recipient[chinese.email]["Subject"]


def test_a_user_who_opted_out_gets_no_mail_but_still_sees_it_in_app(approve_claim, make_user, mailbox):
    user = make_user(Role.ENTERPRISE, email_notifications=False)
    approve_claim(user)
    note = db.session.scalar(select(Notification).where(Notification.recipient_id == user.id))
    assert note.email_state is EmailState.SKIPPED
    assert mails(mailbox) == []
    assert services.unread_count(user) == 1


def test_the_same_event_twice_notifies_once(app, make_user):
    user = make_user(Role.ENTERPRISE, email_notifications=False)
    for _ in range(2):
        services.notify(
            [user, user], "claim.payable", "claim:1:payable", payload={"claim": 1, "amount": "¥1"}
        )
        db.session.commit()
    assert db.session.scalar(select(func.count()).select_from(Notification)) == 1


def test_a_change_rolled_back_leaves_no_notification_and_sends_nothing(app, make_user, mailbox):
    user = make_user(Role.ENTERPRISE)
    services.notify([user], "claim.payable", "claim:2:payable", payload={"claim": 2, "amount": "¥1"})
    db.session.rollback()
    db.session.commit()
    assert db.session.scalar(select(func.count()).select_from(Notification)) == 0
    assert mails(mailbox) == []


def test_delivery_is_idempotent_per_notification(app, make_user, mailbox):
    user = make_user(Role.ENTERPRISE)
    services.notify([user], "claim.payable", "claim:3:payable", payload={"claim": 3, "amount": "¥1"})
    db.session.commit()
    key = f"claim:3:payable:{user.id}"
    assert services.deliver_email(key) == "skipped"  # the queued delivery already sent it
    assert services.sweep(older_than_seconds=0) == 0
    assert len(mails(mailbox)) == 1


def test_a_booking_request_tells_the_providers_and_the_answer_tells_the_enterprise(
    app, fake_clock, make_instrument, make_institution, make_user
):
    from datetime import timedelta

    from portal.booking.models import BookingMode
    from portal.booking.requests import BookingRequest
    from tests.test_booking_flow import TUESDAY_9
    from tests.test_booking_rules import WEEKDAY_HOURS

    host = make_institution()
    instrument = make_instrument(institution=host, opening_hours=WEEKDAY_HOURS)
    provider = make_user(Role.PROVIDER, institution=host, email_notifications=False)
    customer = make_user(Role.ENTERPRISE, email_notifications=False)
    booking = requests.request_booking(
        customer,
        instrument.code,
        BookingRequest(
            mode=BookingMode.SLOT,
            starts_at=TUESDAY_9,
            ends_at=TUESDAY_9 + timedelta(hours=2),
            purpose="成分分析",
        ),
    )

    def kinds(who) -> list[str]:
        return [
            n.kind
            for n in db.session.scalars(select(Notification).where(Notification.recipient_id == who.id))
        ]

    assert kinds(provider) == ["booking.requested"]
    assert kinds(customer) == []
    transitions.confirm_booking(provider, booking.id)
    assert kinds(customer) == ["booking.confirmed"]


def test_reminders_go_out_once_per_booking(app, fake_clock, make_instrument, make_user, make_booking):
    instrument = make_instrument()
    customer = make_user(Role.ENTERPRISE, email_notifications=False)
    from datetime import timedelta

    soon = make_booking(
        instrument,
        customer,
        starts_at=fake_clock() + timedelta(hours=5),
        ends_at=fake_clock() + timedelta(hours=6),
        state=BookingState.CONFIRMED,
    )
    make_booking(
        instrument,
        customer,
        starts_at=fake_clock() + timedelta(days=3),
        ends_at=fake_clock() + timedelta(days=3, hours=1),
        state=BookingState.CONFIRMED,
    )
    assert transitions.send_reminders() == 1
    assert transitions.send_reminders() == 0
    notes = db.session.scalars(select(Notification).where(Notification.kind == "booking.reminder")).all()
    assert [n.payload["booking"] for n in notes] == [soon.id]
    assert db.session.get(Booking, soon.id).reminded_at is not None


def test_the_centre_shows_unread_first_marks_read_and_keeps_the_preference(
    app, client, approve_claim, make_user, mailbox
):
    user = make_user(Role.ENTERPRISE)
    claim = approve_claim(user)
    login(client, user.username)
    page = client.get("/notifications/").get_data(as_text=True)
    assert 'id="unread-count">1<' in page
    assert f"#{claim.id}" in page
    note = db.session.scalar(select(Notification).where(Notification.recipient_id == user.id))
    token = extract_csrf(page)
    opened = client.post(
        f"/notifications/{note.id}/open", data={"csrf_token": token, "next": f"/vouchers/claims/{claim.id}"}
    )
    assert opened.status_code == 302 and opened.location.endswith(f"/vouchers/claims/{claim.id}")
    assert services.unread_count(user) == 0
    # Someone else's notification cannot be marked read by id.
    other = make_user(Role.ENTERPRISE, email_notifications=False)
    services.notify([other], "claim.payable", "claim:9:payable", payload={"claim": 9, "amount": "¥1"})
    db.session.commit()
    foreign = db.session.scalar(select(Notification).where(Notification.recipient_id == other.id))
    client.post(f"/notifications/{foreign.id}/open", data={"csrf_token": token, "next": "/"})
    assert services.unread_count(other) == 1
    # An outside link is not followed.
    away = client.post(
        f"/notifications/{note.id}/open", data={"csrf_token": token, "next": "https://evil.example/"}
    )
    assert "evil" not in away.location
    saved = client.post("/notifications/", data={"csrf_token": token, "submit": "1"})
    assert saved.status_code == 302
    db.session.refresh(user)
    assert user.email_notifications is False


def test_only_administrators_see_failed_mail(app, client, make_user):
    user = make_user(Role.REVIEWER)
    login(client, user.username)
    assert client.get("/notifications/failed").status_code == 403


def test_every_kind_renders_in_both_languages(app):
    from flask_babel import force_locale

    from portal.notifications.messages import MESSAGES, render

    for kind in MESSAGES:
        for locale in ("zh", "en"):
            with app.test_request_context(), force_locale(locale):
                subject, body = render(kind, {"claim": 1, "amount": "¥1.00", "instrument": "质谱仪"})
            assert subject and body and "%(" not in subject + body, (kind, locale)


def test_a_mail_that_cannot_be_built_is_retried_then_listed_as_failed(app, fake_clock, make_user, mailbox):
    app.config.update(NOTIFY_MAX_ATTEMPTS=2, NOTIFY_RETRY_BACKOFF_SECONDS=30)
    user = make_user(Role.ENTERPRISE)
    services.notify([user], "no.such.kind", "broken:1", payload={})
    db.session.commit()  # the queued delivery makes the first attempt, and fails
    key = f"broken:1:{user.id}"
    note = db.session.scalar(select(Notification).where(Notification.dedup_key == key))
    assert (note.email_state, note.email_attempts) == (EmailState.PENDING, 1)
    assert services.deliver_email(key) == "skipped"  # held until its retry is due
    fake_clock.advance(seconds=31)
    with pytest.raises(services.DeliveryFailed):
        services.deliver_email(key)
    db.session.refresh(note)
    assert (note.email_state, note.email_attempts) == (EmailState.FAILED, 2)
    assert "KeyError" in note.email_error
    assert [n.id for n in services.failed_deliveries()] == [note.id]
    assert mails(mailbox) == []
    client = app.test_client()
    login(client, user.username)
    assert "no.such.kind" in client.get("/notifications/").get_data(as_text=True)  # shown, not a crash
