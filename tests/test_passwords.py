"""Passwords: change (current one required), forgotten (one-time link by mail), reset, limits, sessions."""

from __future__ import annotations

import hashlib
import statistics
import time
from datetime import timedelta

import pytest
from sqlalchemy import func, select, text

from portal.accounts import services
from portal.accounts.models import AccountToken, ApiToken, TokenPurpose
from portal.core.models import AuditEvent
from portal.extensions import db
from portal.notifications import services as outbox
from portal.notifications.models import Notification
from tests.accounts_helpers import link_in, mailbox_fixture, mails, post_form, run_deferred, signed_in  # noqa: F401
from tests.factories import PASSWORD, login

NEW = "a-brand-new-passphrase"


def audit_actions(user_id: int) -> list[str]:
    return list(
        db.session.scalars(
            select(AuditEvent.action)
            .where(AuditEvent.object_type == "user", AuditEvent.object_id == str(user_id))
            .order_by(AuditEvent.id)
        )
    )


# --- change ---------------------------------------------------------------------------------------


def test_changing_the_password_keeps_this_browser_and_ends_the_other_sessions_and_tokens(app, make_user):
    user = make_user(username="changer")
    here, elsewhere = signed_in(app, "changer"), signed_in(app, "changer")
    token, _row = services.issue_api_token(user)
    bearer = {"Authorization": f"Bearer {token}"}
    assert app.test_client().get("/api/v1/claims", headers=bearer).status_code == 200

    response = post_form(
        here, "/account/password", {"current_password": PASSWORD, "password": NEW, "confirm": NEW}
    )

    assert response.status_code == 302 and response.headers["Location"].endswith("/account")
    assert here.get("/account").status_code == 200  # this browser stays signed in
    assert elsewhere.get("/account").status_code == 302  # the other session has ended
    assert app.test_client().get("/api/v1/claims", headers=bearer).status_code == 401
    assert db.session.scalar(select(ApiToken.revoked_at).where(ApiToken.user_id == user.id)) is not None
    assert login(app.test_client(), "changer", PASSWORD).status_code == 200  # the old one is refused
    assert login(app.test_client(), "changer", NEW).status_code == 302
    assert "user.password_changed" in audit_actions(user.id)
    notice = db.session.scalar(select(Notification).where(Notification.recipient_id == user.id))
    assert notice.kind == "account.password_changed"


@pytest.mark.parametrize(
    ("current", "new", "confirm", "field", "message"),
    [
        ("wrong-password-1", NEW, NEW, "current_password", "当前密码不正确"),
        (PASSWORD, "short", "short", "password", "10"),
        (PASSWORD, "changer2", "changer2", "password", "10"),
        (PASSWORD, PASSWORD, PASSWORD, "password", "不能与当前密码相同"),
        (PASSWORD, NEW, NEW + "x", "confirm", "不一致"),
    ],
)
def test_a_bad_password_change_reshows_the_form_and_changes_nothing(
    app, make_user, current, new, confirm, field, message
):
    user = make_user(username="changer2")
    client = signed_in(app, "changer2")
    before = user.password_hash
    response = post_form(
        client, "/account/password", {"current_password": current, "password": new, "confirm": confirm}
    )
    page = response.get_data(as_text=True)
    assert response.status_code == 200
    assert message in page
    assert f'id="{field}"' in page and "is-invalid" in page
    db.session.refresh(user)
    assert user.password_hash == before
    assert client.get("/account").status_code == 200  # still signed in
    assert "user.password_changed" not in audit_actions(user.id)


def test_a_password_that_is_the_username_is_refused(app, make_user):
    make_user(username="samename12")
    client = signed_in(app, "samename12")
    response = post_form(
        client,
        "/account/password",
        {"current_password": PASSWORD, "password": "SameName12", "confirm": "SameName12"},
    )
    assert response.status_code == 200 and "不能包含用户名或电子邮箱" in response.get_data(as_text=True)


# --- forgotten and reset --------------------------------------------------------------------------


def forgot(client, address: str):
    response = post_form(client, "/password/forgot", {"email": address})
    run_deferred(response)
    return response


def test_the_sign_in_page_links_to_the_forgotten_password_page(client):
    assert 'href="/password/forgot"' in client.get("/login").get_data(as_text=True)


def test_a_reset_link_is_mailed_works_once_and_ends_every_session(app, client, make_user, mailbox):
    user = make_user(username="forgetful", email="forgetful@example.cn")
    other = signed_in(app, "forgetful")
    token, _row = services.issue_api_token(user)

    response = forgot(client, " Forgetful@Example.CN ")

    assert response.status_code == 200 and 'id="reset-sent"' in response.get_data(as_text=True)
    [mail] = mails(mailbox, to="forgetful@example.cn")
    path = link_in(mail)
    assert path.startswith("/password/reset/")
    page = client.get(path)
    assert page.status_code == 200 and "forgetful" in page.get_data(as_text=True)
    assert page.headers["Referrer-Policy"] == "no-referrer" and page.headers["Cache-Control"] == "no-store"

    done = post_form(client, path, {"password": NEW, "confirm": NEW})

    assert done.status_code == 302 and done.headers["Location"].endswith("/login")
    assert login(app.test_client(), "forgetful", NEW).status_code == 302
    assert other.get("/account").status_code == 302  # signed out everywhere
    bearer = {"Authorization": f"Bearer {token}"}
    assert app.test_client().get("/api/v1/claims", headers=bearer).status_code == 401
    assert client.get(path).status_code == 404  # used: it works once
    assert (
        post_form(client, path, {"password": "x" * 12, "confirm": "x" * 12}, page="/login").status_code == 404
    )
    assert login(app.test_client(), "forgetful", NEW).status_code == 302
    assert {"user.reset_link_sent", "user.password_reset"} <= set(audit_actions(user.id))


def test_the_clear_secret_of_a_link_is_nowhere_in_the_database(app, client, make_user, mailbox):
    make_user(username="hashonly", email="hashonly@example.cn")
    forgot(client, "hashonly@example.cn")
    secret = link_in(mails(mailbox)[0]).rsplit("/", 1)[1]
    row = db.session.scalar(select(AccountToken))
    assert row.token_hash == hashlib.sha256(secret.encode()).hexdigest()
    for table in ("account_tokens", "notifications", "audit_events"):
        dump = " ".join(str(r) for r in db.session.execute(text(f"SELECT * FROM {table}")).all())
        assert secret not in dump, table
    # The outbox keeps a placeholder; a retry of the mail derives the same link again.
    notification = db.session.scalar(
        select(Notification).where(Notification.kind == "account.password_reset")
    )
    assert notification.link == "/password/reset/{secret}" and notification.email_to == "hashonly@example.cn"
    assert secret in outbox.build_message(notification).get_content()


def test_an_expired_link_is_refused(app, client, make_user, mailbox, fake_clock):
    make_user(username="slowpoke", email="slowpoke@example.cn")
    forgot(client, "slowpoke@example.cn")
    path = link_in(mails(mailbox)[0])
    fake_clock.advance(minutes=59)
    assert client.get(path).status_code == 200
    fake_clock.advance(minutes=2)
    response = client.get(path)
    assert response.status_code == 404 and "已过期" in response.get_data(as_text=True)
    assert post_form(client, path, {"password": NEW, "confirm": NEW}, page="/login").status_code == 404
    assert login(app.test_client(), "slowpoke", NEW).status_code == 200  # nothing changed


def test_a_newer_link_replaces_the_older_one_and_bad_links_answer_alike(app, client, make_user, mailbox):
    make_user(username="twice", email="twice@example.cn")
    forgot(client, "twice@example.cn")
    forgot(client, "twice@example.cn")
    first, second = (link_in(m) for m in mails(mailbox))
    assert first != second
    assert client.get(first).status_code == 404
    assert client.get(second).status_code == 200
    # An unknown link and a replaced one look the same (but for the page's own address in its links).
    bodies = {
        client.get(path).get_data(as_text=True).replace(path, "<path>")
        for path in (first, "/password/reset/nonsense")
    }
    assert len(bodies) == 1


def test_a_weak_new_password_keeps_the_link_usable(app, client, make_user, mailbox):
    make_user(username="weakling", email="weak@example.cn")
    forgot(client, "weak@example.cn")
    path = link_in(mails(mailbox)[0])
    response = post_form(client, path, {"password": "short", "confirm": "short"})
    assert response.status_code == 200 and "10" in response.get_data(as_text=True)
    assert post_form(client, path, {"password": "weakling", "confirm": "weakling"}).status_code == 200
    assert post_form(client, path, {"password": NEW, "confirm": NEW}).status_code == 302


def test_unknown_and_deactivated_addresses_get_the_same_answer_and_no_mail(app, client, make_user, mailbox):
    make_user(username="known", email="known@example.cn")
    make_user(username="gone", email="gone@example.cn", is_active_account=False)
    answers = []
    for address in ("known@example.cn", "nobody@example.cn", "gone@example.cn"):
        response = forgot(client, address)
        answers.append((response.status_code, response.get_data(as_text=True).replace(address, "<address>")))
    assert answers[0] == answers[1] == answers[2]
    assert [m["To"] for m in mails(mailbox)] == ["known@example.cn"]
    assert db.session.scalar(select(func.count()).select_from(AccountToken)) == 1


def test_the_answer_does_not_wait_for_the_work_of_a_known_address(
    app, client, make_user, mailbox, monkeypatch
):
    """The lookup, the link and the mail happen after the answer: a known address answers as fast as an
    unknown one even when the mail takes long (here 0.4 s: a slow mail server)."""
    make_user(username="timed", email="timed@example.cn")
    app.config["PASSWORD_RESET_ADDRESS_RATE_LIMIT"] = "100 per hour"
    app.config["PASSWORD_RESET_ACCOUNT_RATE_LIMIT"] = "100 per hour"
    slow_send = outbox.send_mail

    def send_slowly(message):
        time.sleep(0.4)
        slow_send(message)

    monkeypatch.setattr(outbox, "send_mail", send_slowly)
    timings: dict[str, list[float]] = {"timed@example.cn": [], "nobody@example.cn": []}
    for _round in range(3):
        for address, times in timings.items():
            started = time.perf_counter()
            response = post_form(client, "/password/forgot", {"email": address})
            times.append(time.perf_counter() - started)
            run_deferred(response)  # the server closes the response after sending it
    known, unknown = (statistics.median(t) for t in timings.values())
    assert abs(known - unknown) < 0.2, (known, unknown)
    assert len(mails(mailbox, to="timed@example.cn")) == 3  # the mails were sent all the same


def test_forgotten_password_requests_are_limited_per_address(app, client, make_user, mailbox):
    make_user(username="limited", email="limited@example.cn")
    app.config["PASSWORD_RESET_ADDRESS_RATE_LIMIT"] = "2 per hour"
    for address in ("limited@example.cn", "unknown@example.cn"):
        codes = [forgot(client, address).status_code for _ in range(3)]
        assert codes == [200, 200, 429]  # the same for a known and an unknown address
    assert forgot(client, "LIMITED@example.cn").status_code == 429  # the same address, spelt otherwise
    assert len(mails(mailbox)) == 2


def test_forgotten_password_requests_are_limited_per_visitor(app, client, make_user):
    app.config["PASSWORD_RESET_CLIENT_RATE_LIMIT"] = "3 per hour"
    codes = [forgot(client, f"someone{i}@example.cn").status_code for i in range(4)]
    assert codes == [200, 200, 200, 429]


def test_the_per_account_limit_answers_the_same_but_mails_no_more(app, client, make_user, mailbox):
    user = make_user(username="bombed", email="bombed@example.cn")
    app.config["PASSWORD_RESET_ACCOUNT_RATE_LIMIT"] = "2 per hour"
    codes = [forgot(client, "bombed@example.cn").status_code for _ in range(4)]
    assert codes == [200] * 4
    assert len(mails(mailbox)) == 2
    assert audit_actions(user.id).count("user.reset_link_sent") == 2


def test_a_limit_store_that_is_down_lets_requests_through(database_url, make_user, tmp_path):
    """Redis on a closed port: the pages still answer (no 500) and the mail still goes."""
    from tests.conftest import make_app

    make_user(username="failopen", email="failopen@example.cn")
    folder = tmp_path / "mail"
    app = make_app(database_url, RATELIMIT_STORAGE_URI="redis://127.0.0.1:9/0", MAIL_FILE_FOLDER=str(folder))
    client = app.test_client()
    with app.app_context():
        response = post_form(client, "/password/forgot", {"email": "failopen@example.cn"})
        assert response.status_code == 200
        run_deferred(response)
        assert login(client, "failopen").status_code == 302
    assert len(mails(folder)) == 1


def test_a_deactivated_account_cannot_use_a_link_it_was_sent(app, client, make_user, mailbox):
    user = make_user(username="leaving", email="leaving@example.cn")
    forgot(client, "leaving@example.cn")
    path = link_in(mails(mailbox)[0])
    user.is_active_account = False
    db.session.commit()
    assert client.get(path).status_code == 404


def test_signed_in_users_are_sent_home_from_the_reset_pages(app, make_user):
    make_user(username="inside")
    client = signed_in(app, "inside")
    assert client.get("/password/forgot").status_code == 302
    assert client.get("/password/reset/whatever").status_code == 302


def test_a_welcome_link_lets_a_new_staff_member_choose_a_password(app, client, mailbox):
    from portal.core.permissions import Role

    user = services.create_user(
        "newstaff", None, Role.REVIEWER, email="newstaff@example.cn", full_name="新人"
    )
    assert login(app.test_client(), "newstaff", NEW).status_code == 200
    [mail] = mails(mailbox)
    row = db.session.scalar(select(AccountToken).where(AccountToken.user_id == user.id))
    assert row.purpose is TokenPurpose.WELCOME
    assert row.expires_at - row.created_at == timedelta(days=7)
    path = link_in(mail)
    assert "设置您的密码" in client.get(path).get_data(as_text=True)
    assert post_form(client, path, {"password": NEW, "confirm": NEW}).status_code == 302
    assert login(app.test_client(), "newstaff", NEW).status_code == 302
