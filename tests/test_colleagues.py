"""Several staff of an enterprise: invitations, the holder's rights, deactivation, hand-over, staff rights."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import func, select

from portal.accounts import colleagues, services, users
from portal.accounts.models import Invitation, User
from portal.core.errors import Forbidden, InvalidTransition
from portal.core.models import AuditEvent
from portal.core.permissions import Role
from portal.extensions import db
from portal.notifications.models import Notification
from portal.vouchers.models import Claim, ClaimState, VoucherApplication
from tests.accounts_helpers import link_in, mailbox_fixture, mails, post_form, run_deferred, signed_in  # noqa: F401
from tests.factories import extract_csrf, login

NEW = "colleague-pass-2026"


@pytest.fixture
def holder(make_user):
    return make_user(username="holder", email="holder@example.cn", full_name="王建国", phone="13900000001")


@pytest.fixture
def colleague(make_user, holder):
    return make_user(username="colleague", email="colleague@example.cn", enterprise=holder.enterprise)


def accept(client, path: str, username: str = "newbie", page: str | None = None, **overrides):
    data = {
        "full_name": "李新",
        "phone": "13800000002",
        "username": username,
        "password": NEW,
        "confirm": NEW,
    }
    return post_form(client, path, {**data, **overrides}, page=page)


def holders(enterprise_id: int) -> list[str]:
    return list(
        db.session.scalars(select(User.username).where(User.enterprise_id == enterprise_id, User.is_holder))
    )


# --- invitations ------------------------------------------------------------------------------------


def test_the_holder_invites_a_colleague_who_creates_a_staff_account(app, holder, mailbox):
    client = signed_in(app, "holder")
    response = post_form(client, "/account/colleagues", {"email": "Li.Xin@Example.cn"})
    assert response.status_code == 302

    [mail] = mails(mailbox, to="li.xin@example.cn")
    assert holder.enterprise.name in mail["Subject"] and "王建国" in mail.get_content()
    # A mail only, to an address without an account: no recipient, nothing in anyone's centre.
    row = db.session.scalar(select(Notification).where(Notification.kind == "enterprise.invitation"))
    assert row.recipient_id is None and row.email_to == "li.xin@example.cn"
    path = link_in(mail)
    assert path.startswith("/invitations/")

    visitor = app.test_client()
    page = visitor.get(path)
    assert page.status_code == 200 and "li.xin@example.cn" in page.get_data(as_text=True)
    assert accept(visitor, path).status_code == 302

    newbie = db.session.scalar(select(User).where(User.username == "newbie"))
    assert (newbie.enterprise_id, newbie.role, newbie.is_holder) == (
        holder.enterprise_id,
        Role.ENTERPRISE,
        False,
    )
    assert (newbie.email, newbie.full_name, newbie.phone) == ("li.xin@example.cn", "李新", "13800000002")
    assert login(app.test_client(), "newbie", NEW).status_code == 302
    told = db.session.scalar(
        select(Notification).where(Notification.kind == "enterprise.invitation_accepted")
    )
    assert told.recipient_id == holder.id
    actions = set(db.session.scalars(select(AuditEvent.action)))
    assert {"invitation.sent", "invitation.accepted"} <= actions


def test_an_invitation_works_once(app, holder, mailbox):
    colleagues.invite(holder, "once@example.cn")
    path = link_in(mails(mailbox)[0])
    assert accept(app.test_client(), path, "first").status_code == 302
    second = app.test_client()
    assert second.get(path).status_code == 404
    assert accept(second, path, "second", page="/login").status_code == 404
    assert db.session.scalar(select(func.count()).select_from(User).where(User.username == "second")) == 0


def test_an_expired_invitation_is_refused(app, holder, mailbox, fake_clock):
    colleagues.invite(holder, "late@example.cn")
    path = link_in(mails(mailbox)[0])
    fake_clock.advance(days=7, minutes=1)
    client = app.test_client()
    response = client.get(path)
    assert response.status_code == 404 and "已过期" in response.get_data(as_text=True)
    assert accept(client, path, page="/login").status_code == 404
    assert db.session.scalar(select(User.id).where(User.username == "newbie")) is None


def test_a_withdrawn_or_replaced_invitation_is_refused(app, holder, mailbox):
    colleagues.invite(holder, "twice@example.cn")
    colleagues.invite(holder, "twice@example.cn")
    first, second = (link_in(m) for m in mails(mailbox))
    client = signed_in(app, "holder")
    assert app.test_client().get(first).status_code == 404
    latest = db.session.scalar(select(Invitation).order_by(Invitation.id.desc()))
    path = f"/account/colleagues/invitations/{latest.id}/revoke"
    assert post_form(client, path, page="/account/colleagues").status_code == 302
    assert app.test_client().get(second).status_code == 404
    assert "invitation.revoked" in set(db.session.scalars(select(AuditEvent.action)))


def test_bad_acceptance_input_keeps_the_form_and_the_link(app, holder, colleague, mailbox):
    colleagues.invite(holder, "typo@example.cn")
    path = link_in(mails(mailbox)[0])
    client = app.test_client()
    taken = accept(client, path, "Colleague")
    assert taken.status_code == 200 and "用户名已被使用" in taken.get_data(as_text=True)
    assert 'value="李新"' in taken.get_data(as_text=True)
    weak = accept(client, path, "fine_name", password="short", confirm="short")
    assert weak.status_code == 200
    assert accept(client, path, "fine_name").status_code == 302


def test_invitations_are_refused_for_bad_or_registered_addresses_and_for_staff(app, holder, colleague):
    client = signed_in(app, "holder")
    bad = post_form(client, "/account/colleagues", {"email": "not-an-address"})
    assert bad.status_code == 200 and "is-invalid" in bad.get_data(as_text=True)
    taken = post_form(client, "/account/colleagues", {"email": "colleague@example.cn"})
    assert taken.status_code == 200 and "已有账号" in taken.get_data(as_text=True)
    staff = signed_in(app, "colleague")
    assert 'name="email"' not in staff.get("/account/colleagues").get_data(as_text=True)
    refused = post_form(staff, "/account/colleagues", {"email": "friend@example.cn"})
    assert refused.status_code == 403 and "王建国" in refused.get_data(as_text=True)
    assert db.session.scalar(select(func.count()).select_from(Invitation)) == 0


def test_signed_in_users_cannot_use_an_invitation(app, holder, colleague, mailbox):
    colleagues.invite(holder, "someone@example.cn")
    path = link_in(mails(mailbox)[0])
    assert signed_in(app, "colleague").get(path).status_code == 302


# --- the holder manages colleagues ----------------------------------------------------------------


def test_a_deactivated_colleague_cannot_sign_in_loses_the_session_and_the_api_token(
    app, holder, colleague, mailbox
):
    staff = signed_in(app, "colleague")
    token, _row = services.issue_api_token(colleague)
    bearer = {"Authorization": f"Bearer {token}"}
    assert app.test_client().get("/api/v1/bookings", headers=bearer).status_code == 200

    response = post_form(
        signed_in(app, "holder"), f"/account/colleagues/{colleague.id}/deactivate", page="/account/colleagues"
    )

    assert response.status_code == 302
    assert staff.get("/account").status_code == 302
    assert app.test_client().get("/api/v1/bookings", headers=bearer).status_code == 401
    refused = login(app.test_client(), "colleague")
    assert refused.status_code == 200 and "已停用" in refused.get_data(as_text=True)
    assert [m["To"] for m in mails(mailbox)] == ["colleague@example.cn"]

    post_form(signed_in(app, "holder"), f"/account/colleagues/{colleague.id}/reactivate", page="/account")
    assert login(app.test_client(), "colleague").status_code == 302
    assert app.test_client().get("/api/v1/bookings", headers=bearer).status_code == 401  # stays revoked
    actions = list(
        db.session.scalars(select(AuditEvent.action).where(AuditEvent.object_id == str(colleague.id)))
    )
    assert "user.deactivated" in actions and "user.reactivated" in actions


def test_the_holder_cannot_undo_what_the_bureau_did_nor_manage_others(app, holder, colleague, make_user):
    admin = make_user(Role.ADMIN, username="admin1")
    users.set_active(admin, colleague.id, "deactivate")
    with pytest.raises(Forbidden):
        users.set_active(holder, colleague.id, "reactivate")
    with pytest.raises(InvalidTransition):
        users.set_active(holder, holder.id, "deactivate")  # hand the role over first
    stranger = make_user(username="stranger")
    client = signed_in(app, "holder")
    for action in ("deactivate", "handover"):
        path = f"/account/colleagues/{stranger.id}/{action}"
        assert post_form(client, path, page="/account").status_code == 404
    assert post_form(client, "/account/colleagues/999999/deactivate", page="/account").status_code == 404
    make_user(username="staff2", enterprise=holder.enterprise)
    staff_client = signed_in(app, "staff2")
    assert (
        post_form(staff_client, f"/account/colleagues/{holder.id}/deactivate", page="/account").status_code
        == 403
    )


def test_hand_over_keeps_exactly_one_holder_and_tells_both(app, holder, colleague):
    client = signed_in(app, "holder")
    response = post_form(client, f"/account/colleagues/{colleague.id}/handover", page="/account/colleagues")
    assert response.status_code == 302
    assert holders(holder.enterprise_id) == ["colleague"]
    told = db.session.scalars(
        select(Notification.recipient_id).where(Notification.kind == "enterprise.holder_changed")
    )
    assert set(told) == {holder.id, colleague.id}
    event = db.session.scalar(select(AuditEvent).where(AuditEvent.action == "enterprise.holder_changed"))
    assert (event.before, event.after) == ({"holder_id": holder.id}, {"holder_id": colleague.id})
    # The former holder is staff now: the invitation form is gone, and a second hand-over is refused.
    assert 'name="email"' not in client.get("/account/colleagues").get_data(as_text=True)
    assert (
        post_form(client, f"/account/colleagues/{colleague.id}/handover", page="/account").status_code == 403
    )
    assert holders(holder.enterprise_id) == ["colleague"]


def test_only_an_active_colleague_can_become_holder(app, holder, colleague):
    users.set_active(holder, colleague.id, "deactivate")
    client = signed_in(app, "holder")
    post_form(client, f"/account/colleagues/{colleague.id}/handover", page="/account/colleagues")
    assert holders(holder.enterprise_id) == ["holder"]
    assert "正常状态" in client.get("/account/colleagues").get_data(as_text=True)


def test_concurrent_hand_overs_leave_exactly_one_holder(app, holder, make_user):
    """The holder hands over to two colleagues at the same moment (two tabs): one wins."""
    targets = [make_user(username=f"cand{n}", enterprise=holder.enterprise).id for n in range(2)]
    barrier = threading.Barrier(2)
    outcomes: list[str] = []

    def hand_over(target: int) -> None:
        with app.app_context():
            actor = db.session.get(User, holder.id)
            barrier.wait()
            try:
                colleagues.hand_over(actor, target)
                outcomes.append("done")
            except (InvalidTransition, Forbidden) as error:
                outcomes.append(type(error).__name__)
            finally:
                db.session.remove()

    threads = [threading.Thread(target=hand_over, args=(t,)) for t in targets]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    db.session.rollback()
    assert len(outcomes) == 2 and outcomes.count("done") == 1, outcomes
    assert len(holders(holder.enterprise_id)) == 1
    assert holders(holder.enterprise_id)[0] in {"cand0", "cand1"}


def test_registering_a_registered_credit_code_mails_how_to_get_an_invitation(client, holder, mailbox):
    token = extract_csrf(client.get("/register").get_data(as_text=True))
    response = client.post(
        "/register",
        data={
            "csrf_token": token,
            "company_name": "另一个名字",
            "uscc": holder.enterprise.uscc,
            "kind": "tech_sme",
            "county": "东昌府区",
            "full_name": "新人",
            "email": "newcomer@example.cn",
            "username": "newcomer",
            "password": NEW,
            "confirm": NEW,
        },
    )
    page = response.get_data(as_text=True)
    assert response.status_code == 200 and "该企业已注册" not in page  # the page tells nobody
    run_deferred(response)
    [mail] = mails(mailbox, to="newcomer@example.cn")
    text = mail.get_content()
    assert "已在平台注册" in mail["Subject"] and "王**" in text and "同事" in text and "邀请" in text
    for private in ("王建国", "holder@example.cn", "13900000001"):
        assert private not in text
    assert db.session.scalar(select(User).where(User.username == "newcomer")) is None


# --- what staff may and may not do ----------------------------------------------------------------


@pytest.fixture
def claim_world(fake_clock, holder, colleague, make_scheme, make_voucher, make_service):
    scheme = make_scheme()
    voucher = make_voucher(holder, scheme)
    record = make_service(holder)
    return {"voucher": voucher, "record": record}


def test_staff_see_the_enterprises_bookings_vouchers_and_claims_and_can_book(
    app, holder, colleague, claim_world, make_instrument
):
    from portal.vouchers import claims as claim_services

    claim = claim_services.create_claim(
        colleague, claim_world["voucher"].id, [claim_world["record"].id]
    )  # a draft
    staff = signed_in(app, "colleague")
    token, _row = services.issue_api_token(colleague)
    bearer = {"Authorization": f"Bearer {token}"}
    booking_id = claim_world["record"].booking_id
    assert staff.get(f"/bookings/{booking_id}").status_code == 200
    assert f'href="/bookings/{booking_id}"' in staff.get("/bookings/?state=").get_data(as_text=True)
    desk = staff.get("/vouchers/").get_data(as_text=True)
    assert f'href="/vouchers/claims/{claim.id}"' in desk and claim_world["voucher"].code in desk
    assert [c["id"] for c in app.test_client().get("/api/v1/claims", headers=bearer).json["items"]] == [
        claim.id
    ]
    assert (
        app.test_client().get(f"/api/v1/vouchers/{claim_world['voucher'].id}", headers=bearer).status_code
        == 200
    )

    instrument = make_instrument(fee_per_sample_fen=80_00)
    made = app.test_client().post(
        "/api/v1/bookings",
        headers=bearer,
        json={
            "instrument_code": instrument.code,
            "mode": "sample",
            "sample_count": 1,
            "sample_description": "粉末样品",
            "sample_delivery_on": "2026-12-10",
            "purpose": "成分分析",
        },
    )
    assert made.status_code == 201, made.json
    assert made.json["enterprise_id"] == holder.enterprise_id
    holder_page = signed_in(app, "holder").get("/bookings/?state=").get_data(as_text=True)
    assert f'href="/bookings/{made.json["id"]}"' in holder_page


def test_staff_cannot_submit_a_claim_in_the_page_or_the_api(app, holder, colleague, claim_world):
    from portal.vouchers import claims as claim_services

    claim = claim_services.create_claim(colleague, claim_world["voucher"].id, [claim_world["record"].id])
    staff = signed_in(app, "colleague")
    page = staff.get(f"/vouchers/claims/{claim.id}").get_data(as_text=True)
    assert 'id="submit-claim"' not in page and "王建国" in page
    token = extract_csrf(page)
    refused = staff.post(f"/vouchers/claims/{claim.id}", data={"csrf_token": token, "claim_action": "submit"})
    assert refused.status_code == 302
    assert "王建国" in staff.get(f"/vouchers/claims/{claim.id}").get_data(as_text=True)
    api_token, _row = services.issue_api_token(colleague)
    answer = app.test_client().post(
        f"/api/v1/claims/{claim.id}/submit", headers={"Authorization": f"Bearer {api_token}"}
    )
    assert answer.status_code == 403 and answer.json["error"]["code"] == "forbidden"
    assert answer.json["error"]["details"]["holder"] == "王建国"
    db.session.refresh(claim)
    assert claim.state is ClaimState.DRAFT
    # The holder submits the draft their colleague prepared.
    holder_page = signed_in(app, "holder").get(f"/vouchers/claims/{claim.id}").get_data(as_text=True)
    assert 'id="submit-claim"' in holder_page
    claim_services.submit_claim(holder, claim.id)
    assert db.session.get(Claim, claim.id).state is ClaimState.SUBMITTED


def test_staff_cannot_apply_for_a_voucher_in_the_page_or_the_api(app, holder, colleague, make_scheme):
    make_scheme()
    staff = signed_in(app, "colleague")
    desk = staff.get("/vouchers/").get_data(as_text=True)
    assert 'href="/vouchers/apply"' not in desk and "王建国" in desk
    form = staff.get("/vouchers/apply").get_data(as_text=True)
    assert 'name="plan"' not in form and "王建国" in form
    refused = post_form(staff, "/vouchers/apply", {"amount": "1000", "plan": "检测计划"})
    assert refused.status_code == 200 and "王建国" in refused.get_data(as_text=True)
    token, _row = services.issue_api_token(colleague)
    answer = app.test_client().post(
        "/api/v1/voucher-applications",
        headers={"Authorization": f"Bearer {token}"},
        json={"amount_fen": 100_000, "plan": "检测计划"},
    )
    assert answer.status_code == 403 and answer.json["error"]["code"] == "forbidden"
    assert db.session.scalar(select(func.count()).select_from(VoucherApplication)) == 0
    assert 'href="/vouchers/apply"' in signed_in(app, "holder").get("/vouchers/").get_data(as_text=True)


def test_staff_cannot_resubmit_a_returned_application(app, holder, colleague, make_scheme):
    from portal.vouchers import applications as application_services

    scheme = make_scheme()
    application = VoucherApplication(
        enterprise_id=holder.enterprise_id,
        scheme_id=scheme.id,
        amount_fen=1_000_00,
        plan="计划",
        state="returned",
    )
    db.session.add(application)
    db.session.commit()
    with pytest.raises(Forbidden):
        application_services.resubmit_application(colleague, application.id, 1_000_00, "新计划")
    assert 'name="plan"' not in signed_in(app, "colleague").get(
        f"/vouchers/applications/{application.id}/resubmit"
    ).get_data(as_text=True)
    assert (
        application_services.resubmit_application(holder, application.id, 1_000_00, "新计划").state.value
        == "submitted"
    )


def test_the_account_page_names_the_holder_and_links_the_colleagues(app, holder, colleague):
    page = signed_in(app, "colleague").get("/account").get_data(as_text=True)
    assert "王建国" in page and 'href="/account/colleagues"' in page
    people = signed_in(app, "colleague").get("/account/colleagues").get_data(as_text=True)
    assert "colleague" in people and "holder" in people and "deactivate" not in people


def test_the_demo_enterprise_has_a_staff_colleague_who_is_not_its_holder(demo_app):
    from portal.demo import DEMO_PASSWORD

    staff, holder = (
        db.session.scalar(select(User).where(User.username == name))
        for name in ("enterprise-staff", "enterprise")
    )
    assert staff.enterprise_id == holder.enterprise_id
    assert (staff.is_holder, holder.is_holder) == (False, True)
    client = signed_in(demo_app, "enterprise-staff", DEMO_PASSWORD)
    assert 'id="voucher-balance"' in client.get("/vouchers/").get_data(
        as_text=True
    )  # the enterprise's voucher
    assert holder.full_name in client.get("/account").get_data(as_text=True)
    assert "enterprise-staff" in client.get("/account/colleagues").get_data(as_text=True)
