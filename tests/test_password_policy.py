"""The password policy, and that every place a password is chosen applies it."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from portal.accounts import colleagues, password_policy, passwords, tokens
from portal.accounts.models import User
from portal.accounts.services import check_password_strength, create_user
from portal.core.errors import ValidationFailed
from portal.core.permissions import Role
from portal.extensions import db
from tests.accounts_helpers import link_in, mailbox_fixture, mails, post_form, signed_in  # noqa: F401
from tests.factories import PASSWORD

COMMON = ["password12", "1234567890", "qwertyuiop", "a1b2c3d4e5", "PASSWORD12", " qwertyuiop "]


@pytest.mark.parametrize("password", COMMON)
def test_common_and_breached_passwords_are_refused(app, password):
    with app.test_request_context(headers={"Cookie": "lang=en"}), pytest.raises(ValidationFailed) as error:
        check_password_strength(password, "someone", "someone@example.cn")
    assert "most common" in error.value.fields["password"]


def test_the_bundled_list_is_the_big_one():
    assert len(password_policy.common_passwords()) > 19_000
    assert password_policy.is_common("Qwertyuiop") and not password_policy.is_common(PASSWORD)


@pytest.mark.parametrize(
    ("password", "username", "email"),
    [
        ("zhaomin2026!", "zhaomin", ""),  # contains the username
        ("NIMOAHZ-2026-x", "zhaomin", ""),  # the username reversed, another case
        ("my-zhao.min@corp.cn-1", "other", "zhao.min@corp.cn"),  # the whole address
        ("zhao.min-secret", "other", "zhao.min@corp.cn"),  # its local part
        ("secret-zhao-2026", "other", "zhao.min@corp.cn"),  # a word of it
        ("secret-nim-oahz", "zhao-nim", ""),  # a word reversed
    ],
)
def test_passwords_made_from_the_username_or_address_are_refused(app, password, username, email):
    assert password_policy.derived_from(password, username, email)
    with app.test_request_context(), pytest.raises(ValidationFailed):
        check_password_strength(password, username, email)


@pytest.mark.parametrize(
    ("password", "username", "email"),
    [
        (PASSWORD, "zhaomin", "zhaomin@example.cn"),
        ("example-sunrise-77", "li", "li@example.cn"),  # the mail domain and short names do not count
        ("a-long-password", "wu", "wu.li@qq.com"),
    ],
)
def test_good_passwords_pass(app, password, username, email):
    with app.test_request_context():
        check_password_strength(password, username, email)


def test_every_reason_is_given_at_once(app):
    with app.test_request_context(headers={"Cookie": "lang=en"}), pytest.raises(ValidationFailed) as error:
        check_password_strength("wang", "wang")
    message = error.value.fields["password"]
    assert "at least 10" in message and "username" in message


# --- where passwords are chosen -------------------------------------------------------------------


def test_a_password_change_applies_the_policy(app, make_user):
    make_user(username="changer")
    client = signed_in(app, "changer")
    page = post_form(
        client,
        "/account/password",
        {"current_password": PASSWORD, "password": "1234567890", "confirm": "1234567890"},
    ).get_data(as_text=True)
    assert "常见" in page


def test_a_reset_applies_the_policy_with_the_address(app, client, make_user, mailbox):
    user = make_user(username="resetter", email="liu.yang@example.cn")
    passwords.send_reset_link(user)
    path = link_in(mails(mailbox)[0])
    page = post_form(client, path, {"password": "yang-is-my-name", "confirm": "yang-is-my-name"})
    assert page.status_code == 200 and "不能包含用户名或电子邮箱" in page.get_data(as_text=True)


def test_an_invitation_is_accepted_only_with_a_good_password(app, make_user):
    holder = make_user(username="holder7", email="holder7@example.cn")
    row = colleagues.invite(holder, "sun.xiao@example.cn")
    with pytest.raises(ValidationFailed) as error:
        colleagues.accept_invitation(
            tokens.derive_secret("invitation", row.salt),
            colleagues.Acceptance(username="sunxiao", password="qwertyuiop", full_name="孙晓"),
        )
    assert "password" in error.value.fields


def test_console_and_cli_accounts_apply_the_policy(app):
    with pytest.raises(ValidationFailed) as error:
        create_user("opsadmin", "a1b2c3d4e5", Role.ADMIN)
    assert "password" in error.value.fields
    result = app.test_cli_runner().invoke(args=["users", "create", "ops3", "--password", "password12"])
    assert result.exit_code != 0
    assert db.session.scalar(select(User).where(User.username.in_(["opsadmin", "ops3"]))) is None
