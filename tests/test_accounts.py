"""Accounts: credit-code checks, registration, passwords, sessions, CSRF and login rate limiting."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from config import ProductionConfig
from portal.accounts.models import Enterprise, User, VerificationState
from portal.accounts.services import check_uscc, hash_password
from portal.core.errors import ValidationFailed
from portal.core.models import AuditEvent
from portal.core.permissions import Role
from portal.extensions import db
from tests.accounts_helpers import run_deferred
from tests.conftest import make_app
from tests.factories import PASSWORD, extract_csrf, login, valid_uscc

VALID = "91110000600037341L"  # python-stdnum's own documented example


def test_valid_credit_codes_pass_and_are_compacted():
    assert check_uscc(VALID) == VALID
    assert check_uscc(" 9111 0000-6000 37341l ") == VALID
    for seed in range(20):
        code = valid_uscc(seed)
        assert check_uscc(code) == code


@pytest.mark.parametrize(
    ("code", "message"),
    [
        ("9111000060003734", "has 18 characters; this one has 16"),
        ("91110000600037341L9", "has 18 characters; this one has 19"),
        ("9111000A600037341L", "Character 8 (“A”) must be a digit"),
        ("91110000600O37341L", "Character 12 (“O”) is not allowed"),
        ("91110000600037341Z", "Character 18 (“Z”) is not allowed"),
        ("91110000600037341M", "should be “L”, not “M”"),
    ],
)
def test_wrong_credit_codes_say_what_is_wrong(app, code, message):
    with app.test_request_context(headers={"Cookie": "lang=en"}), pytest.raises(ValidationFailed) as error:
        check_uscc(code)
    assert message in error.value.message


def test_credit_code_messages_are_chinese_by_default(app):
    with app.test_request_context(), pytest.raises(ValidationFailed) as error:
        check_uscc("9111000060003734")
    assert error.value.message == "统一社会信用代码应为 18 位，当前为 16 位。"


def registration_form(client, **overrides):
    token = extract_csrf(client.get("/register").get_data(as_text=True))
    data = {
        "csrf_token": token,
        "company_name": "聊城新材料科技有限公司",
        "uscc": valid_uscc(99),
        "kind": "tech_sme",
        "county": "东昌府区",
        "full_name": "刘洋",
        "phone": "13800000000",
        "email": "liu@example.cn",
        "username": "liuyang",
        "password": "a-long-password",
        "confirm": "a-long-password",
    }
    data.update(overrides)
    return data


def test_registration_creates_a_pending_enterprise_its_user_and_an_audit_row(client):
    response = client.post("/register", data=registration_form(client))
    assert response.status_code == 200 and "请查收邮件" in response.get_data(as_text=True)
    run_deferred(response)
    user = db.session.scalar(select(User).where(User.username == "liuyang"))
    assert user.role is Role.ENTERPRISE
    assert user.enterprise.uscc == valid_uscc(99)
    assert user.enterprise.verification_state is VerificationState.PENDING
    assert user.password_hash != "a-long-password"
    assert user.awaiting_confirmation  # usable once the mailed link is opened (test_registration)
    events = db.session.scalars(select(AuditEvent).where(AuditEvent.action == "enterprise.registered")).all()
    assert [e.object_id for e in events] == [str(user.enterprise_id)]


def test_registration_with_a_bad_checksum_reshows_the_form_with_the_message_and_keeps_the_input(client):
    bad = valid_uscc(99)[:17] + ("0" if valid_uscc(99)[17] != "0" else "1")
    response = client.post("/register", data=registration_form(client, uscc=bad))
    page = response.get_data(as_text=True)
    assert response.status_code == 200
    assert "校验" in page  # the Chinese message about the check character
    assert 'value="聊城新材料科技有限公司"' in page
    assert db.session.scalar(select(Enterprise.id)) is None


def test_forms_refuse_a_post_without_csrf_token(client):
    response = client.post("/register", data={"company_name": "x"})
    assert response.status_code == 400
    response = client.post("/login", data={"username": "a", "password": "b"})
    assert response.status_code == 400


def test_login_and_logout_through_the_real_forms(client, make_user):
    user = make_user(username="zhang")
    response = login(client, "zhang")
    assert response.status_code == 302
    assert "zhang" in client.get("/account").get_data(as_text=True)
    token = extract_csrf(client.get("/account").get_data(as_text=True))
    assert client.post("/logout", data={"csrf_token": token}).status_code == 302
    assert client.get("/account").status_code == 302  # back to the login page
    assert user.id


def test_wrong_password_is_refused_with_a_message(client, make_user):
    make_user(username="wang")
    response = login(client, "wang", "not-the-password")
    assert response.status_code == 200
    assert "用户名或密码错误" in response.get_data(as_text=True)


def test_a_session_cookie_replayed_after_logout_is_refused(app, make_user):
    make_user(username="replay")
    client = app.test_client()
    login(client, "replay")
    stolen = client.get_cookie("session").value
    token = extract_csrf(client.get("/account").get_data(as_text=True))
    client.post("/logout", data={"csrf_token": token})
    attacker = app.test_client()
    attacker.set_cookie("session", stolen)
    assert attacker.get("/account").status_code == 302


def test_session_cookie_is_httponly_and_samesite(client, make_user):
    make_user(username="cookie")
    response = login(client, "cookie")
    header = next(h for h in response.headers.getlist("Set-Cookie") if h.startswith("session="))
    assert "HttpOnly" in header
    assert "SameSite=Lax" in header


def test_production_hashes_passwords_with_scrypt_n_2_17(app):
    app.config["PASSWORD_HASH_METHOD"] = ProductionConfig.PASSWORD_HASH_METHOD
    hashed = hash_password(PASSWORD)
    method, n, _r, _p = hashed.split("$")[0].split(":")
    assert method == "scrypt"
    assert int(n) >= 2**17


def test_login_is_rate_limited_per_address(client, make_user):
    make_user(username="slow")
    statuses = [login(client, "slow", f"wrong-{i}").status_code for i in range(11)]
    assert statuses[:10] == [200] * 10
    assert statuses[10] == 429


def test_login_rate_limit_is_shared_through_redis(database_url, redis_url, make_user):
    import redis

    redis.Redis.from_url(redis_url).flushdb()
    make_user(username="viaredis")
    # Two app instances stand for two web processes: the limit holds across them.
    first = make_app(database_url, RATELIMIT_STORAGE_URI=redis_url).test_client()
    second = make_app(database_url, RATELIMIT_STORAGE_URI=redis_url).test_client()
    codes = [login(first if i % 2 else second, "viaredis", "wrong").status_code for i in range(11)]
    assert codes[-1] == 429
    assert any(key.startswith(b"LIMITS") for key in redis.Redis.from_url(redis_url).scan_iter())


def test_users_create_command_makes_an_admin(app):
    runner = app.test_cli_runner()
    result = runner.invoke(args=["users", "create", "ops", "--password", "a-strong-pass-1"])
    assert result.exit_code == 0, result.output
    user = db.session.scalar(select(User).where(User.username == "ops"))
    assert user.role is Role.ADMIN
    short = runner.invoke(args=["users", "create", "ops2", "--password", "short"])
    assert short.exit_code != 0
    assert "10" in short.output


def test_behind_a_trusted_proxy_the_rate_limit_keys_on_the_visitor(database_url, make_user):
    from tests.conftest import make_app

    make_user(username="proxied")
    app = make_app(database_url, TRUSTED_PROXIES=1)
    visitor_a, visitor_b = app.test_client(), app.test_client()
    for client, address in ((visitor_a, "203.0.113.1"), (visitor_b, "203.0.113.2")):
        client.environ_base["HTTP_X_FORWARDED_FOR"] = address
    codes_a = [login(visitor_a, "proxied", f"wrong-{i}").status_code for i in range(10)]
    assert codes_a == [200] * 10
    # Another visitor behind the same proxy is not locked out by the first one's attempts
    # (the per-username limit still applies, so use another username).
    make_user(username="proxied2")
    assert login(visitor_b, "proxied2", "wrong").status_code == 200
    assert login(visitor_a, "proxied2", "wrong").status_code == 429
