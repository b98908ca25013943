"""The console's users: search, staff accounts, roles and institutions, deactivation, reset links, holders."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import select

from portal.accounts import services
from portal.accounts.models import AccountToken, TokenPurpose, User
from portal.core.models import AuditEvent
from portal.core.permissions import Role
from portal.extensions import db
from tests.accounts_helpers import link_in, mailbox_fixture, mails, post_form, signed_in  # noqa: F401
from tests.factories import extract_csrf, login

NEW = "staff-pass-2026-x"


@pytest.fixture
def admin(make_user):
    return make_user(Role.ADMIN, username="root", email="root@example.cn")


@pytest.fixture
def console(app, admin):
    return signed_in(app, "root")


def actions_on(user_id: int) -> list[str]:
    return list(
        db.session.scalars(
            select(AuditEvent.action)
            .where(AuditEvent.object_type == "user", AuditEvent.object_id == str(user_id))
            .order_by(AuditEvent.id)
        )
    )


def test_the_console_front_page_lists_the_users_section(console):
    assert 'href="/admin/users"' in console.get("/admin/").get_data(as_text=True)


def test_the_list_is_searchable_and_filtered_by_role_and_status(console, make_user, make_institution):
    host = make_institution(name="聊城大学测试")
    make_user(Role.PROVIDER, username="prov_a", full_name="张仪器", institution=host)
    make_user(Role.REVIEWER, username="rev_a", full_name="李审核", email="li@bureau.cn")
    make_user(username="ent_a", full_name="王企业", is_active_account=False)

    def usernames(**query) -> set[str]:
        page = console.get("/admin/users", query_string=query).get_data(as_text=True)
        return set(re.findall(r'href="/admin/users/\d+" class="font-monospace">([^<]+)<', page))

    assert {"prov_a", "rev_a", "ent_a", "root"} <= usernames()
    assert usernames(q="审核") == {"rev_a"}
    assert usernames(q="LI@BUREAU") == {"rev_a"}
    assert usernames(q="聊城大学测试") == {"prov_a"}  # by organisation
    assert usernames(role="provider") == {"prov_a"}
    assert usernames(status="inactive") == {"ent_a"}
    assert usernames(q="%") == set()  # a LIKE wildcard is only a character
    assert console.get("/admin/users", query_string={"role": "nonsense", "page": "x"}).status_code == 200


def test_an_administrator_creates_a_provider_who_chooses_a_password_by_link(
    app, console, make_institution, mailbox
):
    host = make_institution(name="聊城职业技术学院测试")
    form = {
        "username": "newprov",
        "full_name": "赵管理",
        "email": "newprov@example.cn",
        "phone": "13700000000",
        "role": "provider",
        "institution_id": str(host.id),
    }
    response = post_form(console, "/admin/users/new", form)
    assert response.status_code == 302
    user = db.session.scalar(select(User).where(User.username == "newprov"))
    assert (user.role, user.institution_id, user.full_name) == (Role.PROVIDER, host.id, "赵管理")
    assert "user.created" in actions_on(user.id)
    path = link_in(mails(mailbox, to="newprov@example.cn")[0])
    visitor = app.test_client()
    assert post_form(visitor, path, {"password": NEW, "confirm": NEW}).status_code == 302
    assert login(app.test_client(), "newprov", NEW).status_code == 302


@pytest.mark.parametrize(
    ("changes", "field", "message"),
    [
        ({"institution_id": ""}, "institution_id", "依托单位"),
        ({"username": "root"}, "username", "用户名已被使用"),
        ({"username": "bad name!"}, "username", "字母"),
        ({"email": ""}, "email", "必填"),
        ({"role": "enterprise"}, "role", ""),
    ],
)
def test_bad_new_accounts_are_refused_at_their_field(console, make_institution, changes, field, message):
    host = make_institution()
    form = {
        "username": "someone",
        "full_name": "某人",
        "email": "someone@example.cn",
        "role": "provider",
        "institution_id": str(host.id),
        **changes,
    }
    response = post_form(console, "/admin/users/new", form)
    page = response.get_data(as_text=True)
    assert response.status_code == 200 and message in page and 'value="某人"' in page
    assert db.session.scalar(select(User.id).where(User.username == "someone")) is None


def test_an_administrator_changes_role_institution_and_details(console, make_user, make_institution):
    host = make_institution()
    user = make_user(Role.REVIEWER, username="mover")
    form = {
        "full_name": "新名字",
        "email": "mover@example.cn",
        "phone": "",
        "role": "provider",
        "institution_id": "",
    }
    refused = post_form(console, f"/admin/users/{user.id}", form)
    assert refused.status_code == 200 and "依托单位" in refused.get_data(as_text=True)
    done = post_form(console, f"/admin/users/{user.id}", {**form, "institution_id": str(host.id)})
    assert done.status_code == 302
    db.session.refresh(user)
    assert (user.role, user.institution_id, user.full_name) == (Role.PROVIDER, host.id, "新名字")
    event = db.session.scalar(select(AuditEvent).where(AuditEvent.action == "user.updated"))
    assert event.before["role"] == "reviewer" and event.after["role"] == "provider"
    assert event.after["institution_id"] == host.id
    # Back to finance: the institution goes.
    post_form(console, f"/admin/users/{user.id}", {**form, "role": "finance", "institution_id": str(host.id)})
    db.session.refresh(user)
    assert (user.role, user.institution_id) == (Role.FINANCE, None)


def test_an_administrator_cannot_change_their_own_role_nor_an_enterprise_users(console, admin, make_user):
    page = post_form(
        console,
        f"/admin/users/{admin.id}",
        {"full_name": "我", "email": "root@example.cn", "role": "reviewer"},
    )
    assert page.status_code == 200 and "自己的角色" in page.get_data(as_text=True)
    company = make_user(username="company")
    refused = post_form(console, f"/admin/users/{company.id}", {"full_name": "x", "role": "admin"})
    assert refused.status_code == 200
    db.session.refresh(admin)
    db.session.refresh(company)
    assert admin.role is Role.ADMIN and company.role is Role.ENTERPRISE


def test_a_deactivated_user_cannot_sign_in_and_loses_sessions_and_tokens(app, console, make_user, mailbox):
    user = make_user(Role.FINANCE, username="leaver", email="leaver@example.cn")
    remembered = app.test_client()
    page = remembered.get("/login")
    remembered.post(
        "/login",
        data={
            "username": "leaver",
            "password": "correct-horse-battery",
            "remember": "y",
            "csrf_token": extract_csrf(page.text),
        },
    )
    token, _row = services.issue_api_token(user)
    bearer = {"Authorization": f"Bearer {token}"}
    assert remembered.get("/finance/").status_code == 200

    assert (
        post_form(console, f"/admin/users/{user.id}/deactivate", page=f"/admin/users/{user.id}").status_code
        == 302
    )

    assert remembered.get("/finance/").status_code == 302  # the session (even remembered) is over
    assert app.test_client().get("/api/v1/finance/totals?month=2026-12", headers=bearer).status_code == 401
    answer = app.test_client().post(
        "/api/v1/tokens", json={"username": "leaver", "password": "correct-horse-battery"}
    )
    assert answer.status_code == 403 and answer.json["error"]["code"] == "forbidden"
    refused = login(app.test_client(), "leaver")
    assert refused.status_code == 200 and "已停用" in refused.get_data(as_text=True)
    assert login(app.test_client(), "leaver", "a-wrong-password").get_data(as_text=True).count("已停用") == 0
    db.session.refresh(user)
    assert user.deactivated_by_id is not None and user.deactivated_at is not None
    assert [m["To"] for m in mails(mailbox)] == ["leaver@example.cn"]

    post_form(console, f"/admin/users/{user.id}/reactivate", page=f"/admin/users/{user.id}")
    assert login(app.test_client(), "leaver").status_code == 302
    # What was ended stays ended: the old session and token do not come back with the account.
    assert remembered.get("/finance/").status_code == 302
    assert app.test_client().get("/api/v1/finance/totals?month=2026-12", headers=bearer).status_code == 401
    assert actions_on(user.id).count("user.deactivated") == 1 and "user.reactivated" in actions_on(user.id)


def test_an_administrator_cannot_deactivate_themselves(console, admin):
    response = post_form(console, f"/admin/users/{admin.id}/deactivate", page="/admin/users")
    assert response.status_code == 302
    assert "不能停用自己的账号" in console.get(f"/admin/users/{admin.id}").get_data(as_text=True)
    db.session.refresh(admin)
    assert admin.is_active_account


def test_an_administrator_sends_a_reset_link_without_seeing_it(app, console, make_user, mailbox):
    user = make_user(Role.PROVIDER, username="lost", email="lost@example.cn")
    response = post_form(console, f"/admin/users/{user.id}/reset-link", page=f"/admin/users/{user.id}")
    assert response.status_code == 302
    path = link_in(mails(mailbox, to="lost@example.cn")[0])
    page = console.get(f"/admin/users/{user.id}").get_data(as_text=True)
    assert path.rsplit("/", 1)[1] not in page and "重置密码" in page
    row = db.session.scalar(select(AccountToken).where(AccountToken.user_id == user.id))
    assert row.purpose is TokenPurpose.PASSWORD_RESET
    assert post_form(app.test_client(), path, {"password": NEW, "confirm": NEW}).status_code == 302
    event = db.session.scalar(select(AuditEvent).where(AuditEvent.action == "user.reset_link_sent"))
    assert event.after["by"] == "administrator"


def test_a_reset_link_needs_an_address(console, make_user, mailbox):
    user = make_user(Role.REVIEWER, username="noaddress", email=None)
    post_form(console, f"/admin/users/{user.id}/reset-link", page=f"/admin/users/{user.id}")
    assert "没有可发送链接的电子邮箱" in console.get(f"/admin/users/{user.id}").get_data(as_text=True)
    assert mails(mailbox) == []


def test_an_administrator_makes_a_colleague_the_holder(console, make_user):
    holder = make_user(username="oldholder")
    colleague = make_user(username="next", enterprise=holder.enterprise)
    assert (
        post_form(
            console, f"/admin/users/{colleague.id}/holder", page=f"/admin/users/{colleague.id}"
        ).status_code
        == 302
    )
    db.session.refresh(holder)
    db.session.refresh(colleague)
    assert (holder.is_holder, colleague.is_holder) == (False, True)


def test_missing_accounts_are_not_found_and_others_may_not_enter(app, console, make_user):
    for path in (
        "/admin/users/999999/deactivate",
        "/admin/users/999999/reset-link",
        "/admin/users/999999/holder",
    ):
        assert post_form(console, path, page="/admin/users").status_code == 404
    assert console.get("/admin/users/999999").status_code == 404
    make_user(Role.REVIEWER, username="notadmin")
    outsider = signed_in(app, "notadmin")
    assert outsider.get("/admin/users").status_code == 403


def test_the_users_create_command_uses_the_same_service(app, make_institution):
    host = make_institution(name="命令行单位")
    runner = app.test_cli_runner()
    result = runner.invoke(
        args=[
            "users",
            "create",
            "cliprov",
            "--role",
            "provider",
            "--institution",
            "命令行单位",
            "--password",
            NEW,
        ]
    )
    assert result.exit_code == 0, result.output
    user = db.session.scalar(select(User).where(User.username == "cliprov"))
    assert user.institution_id == host.id and "user.created" in actions_on(user.id)
    missing = runner.invoke(args=["users", "create", "cliprov2", "--role", "provider", "--password", NEW])
    assert missing.exit_code != 0 and "institution" in missing.output


MARKUP = '<script>alert("x")</script><b>'


def test_names_people_typed_are_shown_as_text(app, console, make_user, mailbox):
    from portal.accounts import colleagues

    holder = make_user(username="marked", full_name=f"王{MARKUP}", email="marked@example.cn")
    holder.enterprise.name = f"企业{MARKUP}"
    db.session.commit()
    make_user(username="markedstaff", full_name=f"李{MARKUP}", enterprise=holder.enterprise)
    colleagues.invite(holder, "guest@example.cn")
    pages = [
        console.get("/admin/users").get_data(as_text=True),
        console.get(f"/admin/users/{holder.id}").get_data(as_text=True),
        signed_in(app, "marked").get("/account/colleagues").get_data(as_text=True),
        app.test_client().get(link_in(mails(mailbox)[0])).get_data(as_text=True),
    ]
    for page in pages:
        assert "<script>alert" not in page and "<b>" not in page
        assert "&lt;script&gt;" in page
