"""Qualifications (上机资格): granting and revoking with audit and notice, the check a self-operated
booking makes, the reminder before expiry, training sessions, and the provider's pages."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from sqlalchemy import func, select

from portal.core.errors import Forbidden, NotFound, ValidationFailed
from portal.core.models import AuditEvent
from portal.core.permissions import Role
from portal.extensions import db
from portal.notifications.models import Notification
from portal.qualifications import services
from portal.qualifications.models import Qualification
from tests.conftest import MONDAY_9AM
from tests.factories import extract_csrf, login

TODAY = date(2026, 12, 7)  # MONDAY_9AM in Beijing


@pytest.fixture
def world(app, fake_clock, make_instrument, make_user):
    instrument = make_instrument()
    provider = make_user(Role.PROVIDER, institution=instrument.institution)
    user = make_user(Role.ENTERPRISE)
    services.set_use_rules(provider, instrument, ["self", "staff"], True)
    return instrument, provider, user


def kinds(user) -> list[str]:
    return list(db.session.scalars(select(Notification.kind).where(Notification.recipient_id == user.id)))


def booking_day(day: date, hours: int = 2):
    start = MONDAY_9AM + timedelta(days=(day - TODAY).days)
    return start, start + timedelta(hours=hours)


def test_a_grant_is_audited_and_the_user_told(world):
    instrument, provider, user = world
    q = services.grant_qualification(
        provider, instrument.code, user.username, TODAY + timedelta(days=365), "培训考核合格"
    )
    event = db.session.scalar(select(AuditEvent).where(AuditEvent.action == "qualification.granted"))
    assert event.object_id == str(q.id) and event.actor_id == provider.id and event.reason == "培训考核合格"
    assert kinds(user) == ["qualification.granted"]
    assert [x.id for x in services.user_qualifications(user)] == [q.id]


def test_a_revocation_is_audited_told_and_happens_once(world):
    instrument, provider, user = world
    q = services.grant_qualification(provider, instrument.code, user.username, TODAY + timedelta(days=30))
    services.revoke_qualification(provider, instrument.code, q.id, "违规操作")
    services.revoke_qualification(provider, instrument.code, q.id, "再次")
    assert db.session.get(Qualification, q.id).revoke_reason == "违规操作"
    actions = db.session.scalars(
        select(AuditEvent.action).where(AuditEvent.object_type == "qualification")
    ).all()
    assert sorted(actions) == ["qualification.granted", "qualification.revoked"]
    assert sorted(kinds(user)) == ["qualification.granted", "qualification.revoked"]


@pytest.mark.parametrize(
    ("valid_until", "revoked", "operation", "days_ahead", "allowed"),
    [
        (TODAY + timedelta(days=10), False, "self", 3, True),
        # expiring the day before the booking
        (TODAY + timedelta(days=2), False, "self", 3, False),
        # the last valid day is the booking's day
        (TODAY + timedelta(days=3), False, "self", 3, True),
        # revoked
        (TODAY + timedelta(days=10), True, "self", 3, False),
        # none at all
        (None, False, "self", 3, False),
        # staff mode needs none
        (None, False, "staff", 3, True),
        (TODAY + timedelta(days=2), True, "staff", 3, True),
    ],
)
def test_the_check_a_self_operated_booking_makes(world, valid_until, revoked, operation, days_ahead, allowed):
    instrument, provider, user = world
    if valid_until:
        q = services.grant_qualification(provider, instrument.code, user.username, valid_until)
        if revoked:
            services.revoke_qualification(provider, instrument.code, q.id)
    starts, ends = booking_day(TODAY + timedelta(days=days_ahead))
    if allowed:
        services.check_operation(user, instrument, operation, starts, ends)
    else:
        with pytest.raises(services.NotQualified) as refusal:
            services.check_operation(user, instrument, operation, starts, ends)
        assert refusal.value.status == 409 and refusal.value.code == "not_qualified"
        assert (
            "培训" in refusal.value.message and "代为操作" in refusal.value.message
        )  # how to qualify, what instead


def test_an_instrument_that_needs_no_qualification_is_open(world):
    instrument, provider, user = world
    services.set_use_rules(provider, instrument, ["self", "staff"], False)
    services.check_operation(user, instrument, "self", *booking_day(TODAY + timedelta(days=3)))


def test_a_mode_not_offered_is_refused(world):
    instrument, provider, user = world
    services.set_use_rules(provider, instrument, ["staff"], False)
    with pytest.raises(ValidationFailed):
        services.check_operation(user, instrument, "self", *booking_day(TODAY + timedelta(days=3)))


def test_only_the_owning_institution_or_an_admin_grants(world, make_user):
    instrument, _provider, user = world
    stranger = make_user(Role.PROVIDER)
    with pytest.raises(NotFound):
        services.grant_qualification(stranger, instrument.code, user.username, TODAY + timedelta(days=9))
    with pytest.raises(NotFound):
        services.grant_qualification(user, instrument.code, user.username, TODAY + timedelta(days=9))
    admin = make_user(Role.ADMIN)
    services.grant_qualification(admin, instrument.code, user.username, TODAY + timedelta(days=9))
    with pytest.raises(Forbidden):
        services.set_use_rules(admin, instrument, ["self"], False)


@pytest.mark.parametrize(
    ("username", "valid_until", "field"),
    [("nobody", TODAY + timedelta(days=9), "username"), (None, TODAY - timedelta(days=1), "valid_until")],
)
def test_bad_grants_are_refused(world, username, valid_until, field):
    instrument, provider, user = world
    with pytest.raises(ValidationFailed) as refusal:
        services.grant_qualification(provider, instrument.code, username or user.username, valid_until)
    assert field in refusal.value.fields


def test_providers_cannot_be_qualified(world):
    instrument, provider, _user = world
    with pytest.raises(ValidationFailed):
        services.grant_qualification(provider, instrument.code, provider.username, TODAY + timedelta(days=9))


def test_the_reminder_goes_once_30_days_before_expiry(world, fake_clock):
    instrument, provider, user = world
    services.grant_qualification(provider, instrument.code, user.username, TODAY + timedelta(days=40))
    q2 = services.grant_qualification(provider, instrument.code, user.username, TODAY + timedelta(days=100))
    assert services.send_expiry_reminders() == 0
    fake_clock.advance(days=10)
    assert services.send_expiry_reminders() == 1
    assert services.send_expiry_reminders() == 0
    services.revoke_qualification(provider, instrument.code, q2.id)
    fake_clock.advance(days=70)
    assert services.send_expiry_reminders() == 0
    assert kinds(user).count("qualification.expiring") == 1


def test_training_publish_and_enrol(world, make_user):
    instrument, provider, user = world
    data = services.TrainingInput(
        MONDAY_9AM + timedelta(days=3), MONDAY_9AM + timedelta(days=3, hours=2), 1, "实验楼101"
    )
    session = services.publish_training(provider, instrument.code, data)
    services.enrol(user, session.id)
    services.enrol(user, session.id)  # twice changes nothing
    with pytest.raises(ValidationFailed):
        services.enrol(make_user(Role.ENTERPRISE), session.id)  # full
    listed = services.instrument_training(provider, instrument.code)
    assert [e.user_id for e in listed[0].enrolments] == [user.id]
    assert services.upcoming_training(instrument)[0].id == session.id


# --- pages ----------------------------------------------------------------------------------------


def test_the_provider_grants_and_revokes_on_the_page(client, world):
    instrument, provider, user = world
    login(client, provider.username)
    page = client.get(f"/manage/instruments/{instrument.code}/qualifications")
    assert page.status_code == 200
    token = extract_csrf(page.text)
    response = client.post(
        f"/manage/instruments/{instrument.code}/qualifications",
        data={
            "csrf_token": token,
            "grant-username": user.username,
            "grant-valid_until": "2027-06-30",
            "grant-note": "考核合格",
            "grant-submit": "1",
        },
    )
    assert response.status_code == 302
    q = db.session.scalar(select(Qualification))
    assert q.valid_until == date(2027, 6, 30)
    assert user.username in client.get(f"/manage/instruments/{instrument.code}/qualifications").text
    response = client.post(
        f"/manage/instruments/{instrument.code}/qualifications/{q.id}/revoke", data={"csrf_token": token}
    )
    assert response.status_code == 302
    db.session.expire_all()
    assert db.session.get(Qualification, q.id).revoked_at is not None


def test_the_account_page_lists_the_users_qualifications(client, world):
    instrument, provider, user = world
    services.grant_qualification(provider, instrument.code, user.username, date(2027, 3, 1))
    login(client, user.username)
    page = client.get("/account").text
    assert 'id="my-qualifications"' in page and instrument.name in page and "2027-03-01" in page


def test_the_provider_edits_the_price_table_on_the_page(client, world):
    instrument, provider, _user = world
    login(client, provider.username)
    page = client.get(f"/manage/instruments/{instrument.code}/prices")
    assert page.status_code == 200
    response = client.post(
        f"/manage/instruments/{instrument.code}/prices",
        data={
            "csrf_token": extract_csrf(page.text),
            "enterprise-self-price": "300",
            "enterprise-self-unit": "hour",
            "enterprise-self-min_units": "2",
            "enterprise-self-overtime": "450.50",
            "sme-sample-price": "80",
            "sme-sample-steps": "11:60; 51:40",
        },
    )
    assert response.status_code == 302, response.text
    from portal.catalog import prices

    table = {(p.customer, p.mode): p for p in prices.price_table(instrument)}
    assert table["enterprise", "self"].overtime_unit_price_fen == 450_50
    assert table["enterprise", "self"].min_units == 2
    assert [s.from_units for s in table["sme", "sample"].steps] == [11, 51]
    assert len(table) == 2


def test_the_detail_page_marks_the_visitors_row_and_lists_training(client, world):
    instrument, provider, user = world
    from portal.catalog import prices

    prices.set_price_table(
        provider,
        instrument.code,
        [
            {"customer": "enterprise", "mode": "self", "unit": "hour", "unit_price_fen": 400_00},
            {"customer": "sme", "mode": "self", "unit": "hour", "unit_price_fen": 300_00},
        ],
    )
    data = services.TrainingInput(
        MONDAY_9AM + timedelta(days=3), MONDAY_9AM + timedelta(days=3, hours=2), 5, "实验楼101"
    )
    session = services.publish_training(provider, instrument.code, data)
    login(client, user.username)  # a verified tech SME
    page = client.get(f"/instruments/{instrument.code}").text
    marked = page.split('class="table-primary"')[1].split("</tr>")[0]
    assert "300.00" in marked
    assert 'id="qualification-note"' in page and 'id="training"' in page
    token = extract_csrf(page)
    assert client.post(f"/training/{session.id}/enrol", data={"csrf_token": token}).status_code == 302
    assert len(services.instrument_training(provider, instrument.code)[0].enrolments) == 1


def test_the_demo_has_qualifications_and_full_price_tables(demo_app):
    from portal.accounts.models import Institution, User
    from portal.catalog import prices
    from portal.qualifications.models import UseRules

    required = db.session.scalars(select(UseRules).where(UseRules.requires_qualification)).all()
    assert len(required) >= 3
    for rules in required:
        assert rules.instrument.institution.name == "聊城大学"
        table = prices.price_table(rules.instrument)
        assert {p.customer for p in table} == {"internal", "academic", "enterprise", "sme"}
        assert {p.mode for p in table} >= {"self", "staff"}
    held = {
        username: db.session.scalar(
            select(func.count())
            .select_from(Qualification)
            .join(User, User.id == Qualification.user_id)
            .where(User.username == username)
        )
        for username in ("enterprise", "enterprise2")
    }
    assert held == {"enterprise": 1, "enterprise2": 0}
    assert db.session.scalar(select(Institution).where(Institution.name == "聊城大学")) is not None
