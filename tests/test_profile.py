"""The profile: name, phone, language, mail preference; a new address only once its link is opened."""

from __future__ import annotations

from sqlalchemy import select

from portal.accounts.models import AccountToken
from portal.core.models import AuditEvent
from portal.extensions import db
from portal.notifications.models import Notification
from tests.accounts_helpers import link_in, mailbox_fixture, mails, post_form, signed_in  # noqa: F401
from tests.factories import PASSWORD

FORM = {
    "full_name": "王小明",
    "phone": "0635-8239999",
    "email": "",
    "language": "en",
    "email_notifications": "y",
}


def test_the_profile_saves_name_phone_language_and_preference_with_an_audit_row(app, make_user):
    user = make_user(username="prof", email="prof@example.cn", email_notifications=False)
    client = signed_in(app, "prof")
    response = post_form(client, "/account/profile", {**FORM, "email": "prof@example.cn"})
    assert response.status_code == 302
    db.session.refresh(user)
    assert (user.full_name, user.phone, user.language, user.email_notifications) == (
        "王小明",
        "0635-8239999",
        "en",
        True,
    )
    event = db.session.scalar(select(AuditEvent).where(AuditEvent.action == "user.profile_updated"))
    assert event.after == {
        "full_name": "王小明",
        "phone": "0635-8239999",
        "language": "en",
        "email_notifications": True,
    }
    assert "Your profile is saved" in client.get("/account/profile").get_data(as_text=True)  # in English now


def test_bad_profile_input_is_shown_at_its_field_and_nothing_is_saved(app, make_user):
    user = make_user(username="badprof", email="badprof@example.cn", full_name="原名")
    client = signed_in(app, "badprof")
    response = post_form(
        client,
        "/account/profile",
        {**FORM, "full_name": "新名字", "phone": "12345", "email": "badprof@example.cn"},
    )
    page = response.get_data(as_text=True)
    assert response.status_code == 200 and "0635-8239999" in page and 'value="新名字"' in page
    db.session.refresh(user)
    assert user.full_name == "原名"


def test_a_new_address_takes_effect_only_when_its_link_is_opened_and_the_old_one_is_told(
    app, make_user, mailbox
):
    user = make_user(username="mover", email="old@example.cn")
    client = signed_in(app, "mover")
    response = post_form(
        client,
        "/account/profile",
        {**FORM, "email": "New@Example.cn", "current_password": PASSWORD, "language": "zh"},
    )
    assert response.status_code == 302
    db.session.refresh(user)
    assert user.email == "old@example.cn"  # not yet
    assert "new@example.cn" in client.get("/account/profile").get_data(as_text=True)  # shown as pending
    [confirm] = mails(mailbox, to="new@example.cn")
    [notice] = mails(mailbox, to="old@example.cn")
    assert "n***@example.cn" in notice.get_content() and "new@example.cn" not in notice.get_content()
    # Both are mails only: the in-app centre does not show them.
    assert not db.session.scalars(
        select(Notification).where(Notification.recipient_id == user.id, Notification.email_to.is_(None))
    ).all()
    path = link_in(confirm)
    assert path.startswith("/account/email/")

    # Another account cannot use the link, and it stays usable for its owner.
    make_user(username="thief")
    thief = signed_in(app, "thief")
    assert thief.get(path).status_code == 404
    assert post_form(thief, path, page="/account").status_code == 404

    assert client.get(path).status_code == 200
    assert post_form(client, path).status_code == 302
    db.session.refresh(user)
    assert user.email == "new@example.cn"
    assert any("n***@example.cn" in m.get_content() for m in mails(mailbox, to="old@example.cn")[1:])
    assert client.get(path).status_code == 404  # used
    actions = set(db.session.scalars(select(AuditEvent.action).where(AuditEvent.object_id == str(user.id))))
    assert {"user.email_change_requested", "user.email_changed"} <= actions


def test_the_link_to_a_new_address_needs_a_signed_in_owner(app, make_user, mailbox):
    make_user(username="owner", email="owner@example.cn")
    client = signed_in(app, "owner")
    post_form(
        client, "/account/profile", {**FORM, "email": "owner2@example.cn", "current_password": PASSWORD}
    )
    path = link_in(mails(mailbox, to="owner2@example.cn")[0])
    response = app.test_client().get(path)
    assert response.status_code == 302 and "/login" in response.headers["Location"]


def test_a_new_address_needs_the_current_password_and_a_free_address(app, make_user, mailbox):
    user = make_user(username="careful", email="careful@example.cn")
    make_user(username="other", email="taken@example.cn")
    client = signed_in(app, "careful")
    wrong = post_form(
        client, "/account/profile", {**FORM, "email": "fresh@example.cn", "current_password": "nope"}
    )
    assert wrong.status_code == 200 and "当前密码" in wrong.get_data(as_text=True)
    taken = post_form(
        client, "/account/profile", {**FORM, "email": "taken@example.cn", "current_password": PASSWORD}
    )
    assert taken.status_code == 200 and "已注册" in taken.get_data(as_text=True)
    removed = post_form(client, "/account/profile", {**FORM, "email": "", "current_password": PASSWORD})
    assert removed.status_code == 200
    assert db.session.scalar(select(AccountToken.id)) is None
    assert mails(mailbox) == []
    db.session.refresh(user)
    assert user.email == "careful@example.cn"


def test_an_address_taken_before_the_link_is_opened_is_refused(app, make_user, mailbox):
    user = make_user(username="late", email="late@example.cn")
    client = signed_in(app, "late")
    post_form(
        client,
        "/account/profile",
        {**FORM, "email": "race@example.cn", "current_password": PASSWORD, "language": "zh"},
    )
    path = link_in(mails(mailbox, to="race@example.cn")[0])
    make_user(username="faster", email="race@example.cn")
    response = post_form(client, path)
    assert response.status_code == 302
    assert "已注册" in client.get("/account/profile").get_data(as_text=True)
    db.session.refresh(user)
    assert user.email == "late@example.cn"


def test_the_notification_centre_switch_is_the_same_preference(app, make_user):
    user = make_user(username="switch")
    client = signed_in(app, "switch")
    post_form(client, "/notifications/", {})
    db.session.refresh(user)
    assert user.email_notifications is False
    page = client.get("/account/profile").get_data(as_text=True)
    assert (
        'id="email_notifications"' in page and "checked" not in page.split('id="email_notifications"')[1][:40]
    )
