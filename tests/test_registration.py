"""Registration: the same answer for every valid submission, the detail by mail, activation by link, and
the limits that stop a sign-up flood before any password is hashed."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import func, select

from portal.accounts import services
from portal.accounts.models import Enterprise, User
from portal.core.models import AuditEvent
from portal.extensions import db
from tests.accounts_helpers import link_in, mailbox_fixture, mails, post_form, run_deferred  # noqa: F401
from tests.conftest import make_app
from tests.factories import extract_csrf, login, valid_uscc

PASS = "jingce-lab-2026"


def form(client, **overrides) -> dict:
    data = {
        "csrf_token": extract_csrf(client.get("/register").get_data(as_text=True)),
        "company_name": "聊城精测科技有限公司",
        "uscc": valid_uscc(77),
        "kind": "tech_sme",
        "county": "高新区",
        "full_name": "赵敏",
        "phone": "13806350042",
        "email": "zhao@example.cn",
        "username": "zhaomin",
        "password": PASS,
        "confirm": PASS,
    }
    data.update(overrides)
    return data


def register(client, **overrides):
    return client.post("/register", data=form(client, **overrides))


def without_csrf(response) -> str:
    """The page without the session's CSRF token (if it shows one)."""
    return re.sub(r'(name="csrf_token"[^>]*value=")[^"]+', r"\1", response.get_data(as_text=True))


@pytest.fixture
def existing(make_user):
    return make_user(username="taken", email="taken@example.cn", full_name="钱多多")


def test_every_valid_submission_gets_the_same_answer_and_the_mail_says_what_happened(app, existing, mailbox):
    cases = {
        "new": {},
        "username": {"username": "TAKEN", "email": "a@example.cn", "uscc": valid_uscc(78)},
        "email": {"username": "other1", "email": "Taken@example.cn", "uscc": valid_uscc(79)},
        "credit code": {"username": "other2", "email": "b@example.cn", "uscc": existing.enterprise.uscc},
    }
    answers = {}
    for case, overrides in cases.items():
        client = app.test_client()
        response = register(client, **overrides)
        answers[case] = (response.status_code, without_csrf(response))
        run_deferred(response)
    assert len(set(answers.values())) == 1, "the answers differ"
    assert next(iter(answers.values()))[0] == 200

    [new] = mails(mailbox, to="zhao@example.cn")
    assert "确认" in new["Subject"] and "zhaomin" in new.get_content()
    assert link_in(new).startswith("/register/confirm/")
    [username] = mails(mailbox, to="a@example.cn")
    assert "TAKEN" in username.get_content() and "另选一个用户名" in username.get_content()
    [email] = mails(mailbox, to="taken@example.cn")
    assert (
        "已有账户" in email["Subject"]
        and "taken" in email.get_content()
        and "忘记密码" in email.get_content()
    )
    [code] = mails(mailbox, to="b@example.cn")
    assert "邀请" in code.get_content() and "钱**" in code.get_content()
    # Only the new submission made an account.
    assert db.session.scalar(select(func.count()).select_from(User)) == 2
    assert db.session.scalar(select(func.count()).select_from(Enterprise)) == 2


def test_the_account_is_usable_only_once_its_link_is_opened(app, client, mailbox):
    run_deferred(register(client))
    refused = login(client, "zhaomin", PASS)
    assert refused.status_code == 200 and "尚未激活" in refused.get_data(as_text=True)
    assert client.post("/api/v1/tokens", json={"username": "zhaomin", "password": PASS}).status_code == 403

    path = link_in(mails(mailbox, to="zhao@example.cn")[0])
    assert "激活我的账户" in client.get(path).get_data(as_text=True)
    done = post_form(client, path)
    assert done.status_code == 302 and done.headers["Location"].endswith("/login")
    assert client.get("/account").status_code == 302  # the link activates; it does not sign in
    user = db.session.scalar(select(User).where(User.username == "zhaomin"))
    assert not user.awaiting_confirmation
    assert db.session.scalar(
        select(AuditEvent.object_id).where(AuditEvent.action == "user.registration_confirmed")
    )
    assert app.test_client().get(path).status_code == 404  # once
    signed_in = app.test_client()
    assert login(signed_in, "zhaomin", PASS).status_code == 302
    assert "zhaomin" in signed_in.get("/account").get_data(as_text=True)


def test_registering_again_while_waiting_sends_a_new_link_and_voids_the_old(app, client, mailbox):
    run_deferred(register(client))
    run_deferred(register(app.test_client(), username="zhaomin2", uscc=valid_uscc(80)))
    first, second = (link_in(m) for m in mails(mailbox, to="zhao@example.cn"))
    assert first != second
    assert client.get(first).status_code == 404
    assert client.get(second).status_code == 200
    assert db.session.scalar(select(func.count()).select_from(User)) == 1


def test_form_errors_are_shown_before_anything_is_looked_up_or_hashed(app, client, existing, monkeypatch):
    hashed = []
    monkeypatch.setattr(services, "generate_password_hash", lambda *a, **k: hashed.append(1) or "x")
    response = register(client, password="password12", confirm="password12", uscc="91110000600037341M")
    page = response.get_data(as_text=True)
    assert response.status_code == 200 and "常见" in page and "校验" in page
    assert 'value="聊城精测科技有限公司"' in page  # what was typed stays
    assert hashed == []


@pytest.mark.parametrize(
    ("password", "message"),
    [
        ("zhaomin-2026", "不能包含用户名或电子邮箱"),
        ("nimoahz-2026", "不能包含用户名或电子邮箱"),  # reversed
        ("ZHAO@example.cn", "不能包含用户名或电子邮箱"),
        ("qwertyuiop", "常见"),
    ],
)
def test_the_form_shows_the_password_policy(client, password, message):
    page = register(client, password=password, confirm=password).get_data(as_text=True)
    assert message in page


# --- the limits -------------------------------------------------------------------------------------


def _flood(app, count: int, address: str = "203.0.113.7", first: int = 0) -> list[int]:
    client = app.test_client()
    client.environ_base["REMOTE_ADDR"] = address
    statuses = []
    for n in range(first, first + count):
        response = register(
            client, username=f"flood{n}", email=f"flood{n}@example.cn", uscc=valid_uscc(200 + n)
        )
        statuses.append(response.status_code)
        response.close()  # as a server would: the deferred work runs
    return statuses


def test_a_sign_up_flood_from_one_address_is_stopped(app):
    app.config["REGISTRATION_CLIENT_RATE_LIMIT"] = "5 per hour"
    statuses = _flood(app, 8)
    assert statuses == [200] * 5 + [429] * 3
    assert _flood(app, 1, address="203.0.113.8", first=8) == [200]  # another visitor is not held up by it
    db.session.rollback()
    assert db.session.scalar(select(func.count()).select_from(User)) == 6


def test_a_sign_up_flood_from_many_addresses_meets_the_global_limit(app):
    app.config["REGISTRATION_GLOBAL_RATE_LIMIT"] = "6 per hour"
    statuses = [_flood(app, 1, address=f"198.51.100.{n}", first=n)[0] for n in range(9)]
    assert statuses == [200] * 6 + [429] * 3


def test_one_mailbox_gets_a_bounded_number_of_registration_mails(app, mailbox):
    app.config["REGISTRATION_ADDRESS_RATE_LIMIT"] = "2 per hour"
    statuses = []
    for n in range(4):
        client = app.test_client()
        client.environ_base["REMOTE_ADDR"] = f"198.51.100.{n}"
        response = register(client, email="Victim@example.cn", username=f"victim{n}")
        statuses.append(response.status_code)
        run_deferred(response)
    assert statuses == [200, 200, 429, 429]
    assert len(mails(mailbox, to="victim@example.cn")) == 2


def test_the_flood_limit_holds_through_redis_and_without_it(database_url, redis_url):
    import redis

    redis.Redis.from_url(redis_url).flushdb()
    limits = {"REGISTRATION_CLIENT_RATE_LIMIT": "3 per hour"}
    # Two web processes share the count in Redis.
    first = make_app(database_url, RATELIMIT_STORAGE_URI=redis_url, **limits)
    second = make_app(database_url, RATELIMIT_STORAGE_URI=redis_url, **limits)
    statuses = []
    for n in range(5):
        app = first if n % 2 else second
        with app.app_context():
            statuses += _flood(app, 1, address="203.0.113.9", first=n)
    assert statuses == [200, 200, 200, 429, 429]
    # A store that cannot be reached: the same limit, counted in process (never no limit).
    down = make_app(database_url, RATELIMIT_STORAGE_URI="redis://127.0.0.1:9/0", **limits)
    with down.app_context():
        assert _flood(down, 5, address="203.0.113.10", first=10) == [200, 200, 200, 429, 429]


def test_the_sent_page_names_no_address(app, client):
    page = register(client).get_data(as_text=True)
    assert "zhao@example.cn" not in page and not re.search(r"zhaomin|聊城精测", page)
