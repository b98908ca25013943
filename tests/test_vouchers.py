"""Vouchers end to end through the services and the API: verification, applications, claims, notice."""

from __future__ import annotations

import io
import json
from datetime import UTC, date, datetime, timedelta

import flask_migrate
import pytest
from flask_babel import force_locale
from flask_login import AnonymousUserMixin
from sqlalchemy import func, select, text
from werkzeug.datastructures import MultiDict

from portal.accounts.models import Enterprise, VerificationState
from portal.booking.models import FileKind, ServiceRecord
from portal.core.errors import Forbidden, InvalidTransition, LimitExceeded, NotFound, ValidationFailed
from portal.core.models import AuditEvent
from portal.core.permissions import Role
from portal.extensions import db
from portal.vouchers import applications as application_services
from portal.vouchers import claims as claim_services
from portal.vouchers import notice, wallet
from portal.vouchers import review as voucher_review
from portal.vouchers import verification as verification_services
from portal.vouchers.models import (
    ApplicationState,
    CapLedger,
    Claim,
    ClaimState,
    EnterpriseRelation,
    Fund,
    LedgerKind,
    RelationKind,
    VerificationRequest,
    Voucher,
    VoucherApplication,
)
from tests.test_booking_files import PDF
from tests.test_booking_rules import bearer

pytestmark = pytest.mark.both_backends  # the backend's own paths: see tests/conftest.py


@pytest.fixture
def desk(app, fake_clock, make_scheme, make_user):
    scheme = make_scheme()
    return {
        "scheme": scheme,
        "reviewer": make_user(Role.REVIEWER),
        "reviewer2": make_user(Role.REVIEWER),
        "clock": fake_clock,
    }


def checks_by_code(checks) -> dict[str, bool]:
    return {
        (c.code if hasattr(c, "code") else c["code"]): (c.passed if hasattr(c, "passed") else c["passed"])
        for c in checks
    }


# --- verification --------------------------------------------------------------------------------


def test_verification_records_the_controller_and_the_group(desk, make_user):
    user = make_user(Role.ENTERPRISE, verification_state=VerificationState.PENDING)
    request = verification_services.submit_verification(
        user,
        verification_services.VerificationData(
            kind="tech_sme", actual_controller="  张 建 国 ", tech_sme_number="202637150100123"
        ),
        io.BytesIO(PDF),
        "入库证明.pdf",
    )
    verification_services.verify_enterprise(desk["reviewer"], request.id)
    enterprise = db.session.get(Enterprise, user.enterprise_id)
    assert enterprise.verification_state is VerificationState.VERIFIED
    assert (enterprise.actual_controller, enterprise.controller_group) == ("张 建 国", "张建国")
    assert enterprise.tech_sme_number == "202637150100123"
    actions = db.session.scalars(
        select(AuditEvent.action).where(AuditEvent.object_type == "enterprise").order_by(AuditEvent.id)
    ).all()
    assert actions == ["verification.submitted", "enterprise.verified"]


def test_tech_smes_need_their_number_and_certificate(desk, make_user):
    user = make_user(Role.ENTERPRISE, verification_state=VerificationState.PENDING)
    with pytest.raises(ValidationFailed) as error:
        verification_services.submit_verification(
            user, verification_services.VerificationData(kind="tech_sme", actual_controller="王某")
        )
    assert {"tech_sme_number", "certificate"} <= set(error.value.fields)


def test_a_legacy_code_passes_only_with_a_recorded_override(desk, make_user):
    user = make_user(Role.ENTERPRISE, verification_state=VerificationState.PENDING)
    user.enterprise.uscc_checksum_ok = False
    db.session.commit()
    request = verification_services.submit_verification(
        user, verification_services.VerificationData(kind="maker_team", actual_controller="李四")
    )
    with pytest.raises(ValidationFailed):
        verification_services.verify_enterprise(desk["reviewer"], request.id)
    with pytest.raises(ValidationFailed):
        verification_services.verify_enterprise(desk["reviewer"], request.id, uscc_override=True)  # no reason
    verification_services.verify_enterprise(
        desk["reviewer"], request.id, uscc_override=True, reason="营业执照为旧版"
    )
    event = db.session.scalar(select(AuditEvent).where(AuditEvent.action == "enterprise.verified"))
    assert event.after["uscc_override"] is True and event.reason == "营业执照为旧版"


def test_registration_accepts_a_legacy_code_only_when_declared(client, app):
    from tests.accounts_helpers import run_deferred
    from tests.factories import valid_uscc
    from tests.test_accounts import registration_form

    code = valid_uscc(5)
    bad = code[:17] + ("1" if code[17] != "1" else "2")
    refused = client.post("/register", data=registration_form(client, uscc=bad))
    assert refused.status_code == 200
    accepted = client.post("/register", data=registration_form(client, uscc=bad, legacy_code="y"))
    assert accepted.status_code == 200
    run_deferred(accepted)
    assert db.session.scalar(select(Enterprise.uscc_checksum_ok).where(Enterprise.uscc == bad)) is False


# --- applications and vouchers --------------------------------------------------------------------


def test_apply_approve_and_the_voucher_is_issued_and_allocated(desk, make_user):
    user = make_user(Role.ENTERPRISE)
    application = application_services.apply_for_voucher(user, 40_000_00, "研发测试计划")
    application_services.approve_application(desk["reviewer"], application.id, amount_fen=30_000_00)
    voucher = db.session.scalar(select(Voucher).where(Voucher.enterprise_id == user.enterprise_id))
    assert (voucher.quota_fen, voucher.balance_fen) == (30_000_00, 30_000_00)
    assert voucher.valid_until == date(2026, 12, 7) + timedelta(days=365)
    assert voucher.code.startswith("LC2026-")
    assert [e.kind for e in voucher.ledger] == [LedgerKind.ISSUED]
    db.session.refresh(desk["scheme"])
    assert desk["scheme"].allocated_fen == 30_000_00
    with pytest.raises(InvalidTransition):
        application_services.apply_for_voucher(user, 10_000_00, "再申请")  # one voucher a year


def test_an_unverified_enterprise_cannot_apply(desk, make_user):
    user = make_user(Role.ENTERPRISE, verification_state=VerificationState.PENDING)
    with pytest.raises(Forbidden):
        application_services.apply_for_voucher(user, 10_000_00, "计划")


def test_four_eyes_for_large_vouchers(desk, make_user):
    user = make_user(Role.ENTERPRISE)
    application = application_services.apply_for_voucher(user, 200_000_00, "大额计划")
    first = application_services.approve_application(desk["reviewer"], application.id)
    assert first.state is ApplicationState.PENDING_SECOND
    assert db.session.scalar(select(func.count()).select_from(Voucher)) == 0
    # The other reviewers are told a second approval waits for them; the first reviewer is not.
    from portal.notifications.models import Notification

    told = db.session.scalars(
        select(Notification).where(Notification.kind == "voucher_application.second_review")
    ).all()
    assert [n.recipient_id for n in told] == [desk["reviewer2"].id]
    assert told[0].link == f"/review/applications/{application.id}"
    with pytest.raises(Forbidden):
        application_services.approve_application(desk["reviewer"], application.id)
    done = application_services.approve_application(desk["reviewer2"], application.id)
    assert done.state is ApplicationState.APPROVED


def test_return_then_resubmit_then_reject(desk, make_user):
    user = make_user(Role.ENTERPRISE)
    application = application_services.apply_for_voucher(user, 20_000_00, "计划")
    with pytest.raises(ValidationFailed):
        application_services.return_application(desk["reviewer"], application.id)  # a comment is required
    application_services.return_application(desk["reviewer"], application.id, comment="请细化测试计划")
    application_services.resubmit_application(user, application.id, 25_000_00, "细化后的计划")
    assert db.session.get(VoucherApplication, application.id).state is ApplicationState.SUBMITTED
    application_services.reject_application(desk["reviewer"], application.id, comment="不符合条件")
    assert db.session.get(VoucherApplication, application.id).state is ApplicationState.REJECTED


def test_quotas_stay_within_the_budget_and_the_group_cap(desk, make_scheme, make_user):
    scheme = desk["scheme"]
    for fund in scheme.funds:
        fund.budget_fen = 40_000_00 if fund.name == "province" else 20_000_00
    db.session.commit()
    a, b = make_user(Role.ENTERPRISE), make_user(Role.ENTERPRISE)
    application_services.approve_application(
        desk["reviewer"],
        application_services.apply_for_voucher(a, 45_000_00, "计划").id,
    )
    with pytest.raises(LimitExceeded) as error:
        application_services.approve_application(
            desk["reviewer"],
            application_services.apply_for_voucher(b, 30_000_00, "计划").id,
        )
    assert error.value.details["limited_by"] == ["scheme_budget"]


def test_expiry_releases_the_unused_balance(desk, make_user, make_voucher):
    from portal.vouchers.tasks import expire_vouchers

    user = make_user(Role.ENTERPRISE)
    voucher = make_voucher(user, desk["scheme"], 80_000_00, valid_until=date(2026, 12, 6))
    voucher.balance_fen = 50_000_00
    db.session.commit()
    assert expire_vouchers.delay().get() == 1
    db.session.refresh(voucher)
    assert (voucher.state.value, voucher.balance_fen, voucher.released_fen) == ("expired", 0, 50_000_00)
    assert voucher.ledger[-1].kind is LedgerKind.RELEASED and voucher.ledger[-1].amount_fen == 50_000_00
    db.session.refresh(desk["scheme"])
    assert desk["scheme"].allocated_fen == 30_000_00
    assert expire_vouchers.delay().get() == 0


# --- claims --------------------------------------------------------------------------------------


@pytest.fixture
def claimant(desk, make_user, make_voucher, make_service):
    user = make_user(Role.ENTERPRISE)
    voucher = make_voucher(user, desk["scheme"], 100_000_00)
    return {"user": user, "voucher": voucher, "record": make_service(user, 10_000_00), **desk}


def test_preview_via_the_api_has_the_documented_shape(client, claimant):
    response = client.post(
        "/api/v1/claims/preview",
        json={"voucher_id": claimant["voucher"].id, "service_record_ids": [claimant["record"].id]},
        headers=bearer(client, claimant["user"]),
    )
    assert response.status_code == 200, response.json
    body = response.json
    assert body["fee_fen"] == 10_000_00
    assert body["funds"] == [
        {"fund": "province", "raw_fen": 6_000_00, "amount_fen": 6_000_00},
        {"fund": "city", "raw_fen": 3_000_00, "amount_fen": 3_000_00},
    ]
    assert body["total_fen"] == 9_000_00 and body["limited_by"] == []
    assert all(c["passed"] for c in body["checks"]), body["checks"]
    assert {c["code"] for c in body["checks"]} >= {
        "service_completed",
        "evidence",
        "service_window",
        "related_party",
        "claimed_twice",
        "excluded_service",
        "hours_within_booking",
        "hours_above_usage",
        "voucher_valid",
    }


def test_a_claim_reports_each_funds_raw_amount_before_the_limits(
    client, desk, make_user, make_voucher, make_service
):
    user = make_user(Role.ENTERPRISE)
    headers = bearer(client, user)
    small = make_voucher(user, desk["scheme"], 7_000_00)  # less than the 9,000-yuan subsidy
    draft = client.post(
        "/api/v1/claims",
        json={"voucher_id": small.id, "service_record_ids": [make_service(user, 10_000_00).id]},
        headers=headers,
    )
    assert [(f["raw_fen"], f["amount_fen"]) for f in draft.json["funds"]] == [
        (6_000_00, 6_000_00),
        (3_000_00, 1_000_00),
    ]
    submitted = client.post(f"/api/v1/claims/{draft.json['id']}/submit", headers=headers)
    # The voucher's balance cuts the city fund first: its raw amount stays what the rate gives.
    assert submitted.json["funds"] == [
        {"fund": "province", "raw_fen": 6_000_00, "amount_fen": 6_000_00},
        {"fund": "city", "raw_fen": 3_000_00, "amount_fen": 1_000_00},
    ]
    assert submitted.json["limited_by"] == ["voucher_balance"]
    shown = client.get(f"/api/v1/claims/{draft.json['id']}", headers=headers)
    assert shown.json["funds"] == submitted.json["funds"]


def test_the_claim_funds_migration_moves_the_amounts_both_ways(
    app, desk, make_user, make_voucher, make_service
):
    user = make_user(Role.ENTERPRISE)
    voucher = make_voucher(user, desk["scheme"], 7_000_00)
    claim = claim_services.create_claim(user, voucher.id, [make_service(user, 10_000_00).id])
    claim_services.submit_claim(user, claim.id)
    claim_id = claim.id
    expected = [
        {"fund": "province", "raw_fen": 6_000_00, "amount_fen": 6_000_00},
        {"fund": "city", "raw_fen": 3_000_00, "amount_fen": 1_000_00},
    ]
    assert db.session.get(Claim, claim_id).funds() == expected
    db.session.remove()
    flask_migrate.downgrade(revision="0017_money")
    old = db.session.execute(
        text("SELECT province_fen, city_fen, raw_amounts FROM claims WHERE id = :id"), {"id": claim_id}
    ).one()
    raw = old[2] if isinstance(old[2], dict) else json.loads(old[2])
    assert (old[0], old[1], raw) == (6_000_00, 1_000_00, {"province": 6_000_00, "city": 3_000_00})
    db.session.remove()
    flask_migrate.upgrade()
    assert db.session.get(Claim, claim_id).funds() == expected


def test_claim_submit_approve_notice_payable(client, claimant):
    user, reviewer = claimant["user"], claimant["reviewer"]
    headers = bearer(client, user)
    draft = client.post(
        "/api/v1/claims",
        json={"voucher_id": claimant["voucher"].id, "service_record_ids": [claimant["record"].id]},
        headers=headers,
    )
    assert draft.status_code == 201 and draft.json["state"] == "draft"
    claim_id = draft.json["id"]
    submitted = client.post(f"/api/v1/claims/{claim_id}/submit", headers=headers)
    assert submitted.json["state"] == "submitted"
    assert db.session.get(ServiceRecord, claimant["record"].id).claim_id == claim_id
    approved = client.post(f"/api/v1/claims/{claim_id}/approve", json={}, headers=bearer(client, reviewer))
    assert approved.json["state"] == "in_notice", approved.json
    assert approved.json["notice_ends_on"] == "2026-12-14"
    voucher = db.session.get(Voucher, claimant["voucher"].id)
    assert voucher.balance_fen == 91_000_00
    assert [(e.kind, e.amount_fen) for e in voucher.ledger][-1] == (LedgerKind.COMMITTED, 9_000_00)
    funds = {f.name: f.committed_fen for f in db.session.scalars(select(Fund))}
    assert funds == {"province": 6_000_00, "city": 3_000_00}
    caps = {(c.scope, c.used_fen) for c in db.session.scalars(select(CapLedger))}
    assert caps == {("enterprise", 6_000_00), ("group", 9_000_00)}
    # The public notice board shows it; after seven days the periodic task makes it payable.
    assert f"#{claim_id}" in client.get("/vouchers/notices").get_data(as_text=True)
    from portal.vouchers.tasks import end_public_notice

    assert end_public_notice.delay().get() == 0
    claimant["clock"].advance(days=7)
    assert end_public_notice.delay().get() == 1
    later = bearer(client, user)  # a week on: the first token lasted a day
    assert client.get(f"/api/v1/claims/{claim_id}", headers=later).json["state"] == "payable"


def test_reject_releases_the_services_and_return_allows_resubmission(claimant):
    user, reviewer = claimant["user"], claimant["reviewer"]
    claim = claim_services.create_claim(user, claimant["voucher"].id, [claimant["record"].id])
    claim_services.submit_claim(user, claim.id)
    voucher_review.return_claim(reviewer, claim.id, "请补充合同")
    claim_services.submit_claim(user, claim.id)
    voucher_review.reject_claim(reviewer, claim.id, "不予支持")
    assert db.session.get(ServiceRecord, claimant["record"].id).claim_id is None
    again = claim_services.create_claim(user, claimant["voucher"].id, [claimant["record"].id])
    assert claim_services.submit_claim(user, again.id).state is ClaimState.SUBMITTED


def test_four_eyes_for_large_claims(desk, make_user, make_voucher, make_service):
    user = make_user(Role.ENTERPRISE)
    voucher = make_voucher(user, desk["scheme"], 300_000_00)
    record = make_service(user, 100_000_00)  # subsidy 90,000 yuan, above the 50,000 threshold
    claim = claim_services.submit_claim(user, claim_services.create_claim(user, voucher.id, [record.id]).id)
    first = voucher_review.approve_claim(desk["reviewer"], claim.id)
    assert first.state is ClaimState.PENDING_SECOND
    assert db.session.get(Voucher, voucher.id).balance_fen == 300_000_00  # nothing reserved yet
    with pytest.raises(Forbidden):
        voucher_review.approve_claim(desk["reviewer"], claim.id)
    assert voucher_review.approve_claim(desk["reviewer2"], claim.id).state is ClaimState.IN_NOTICE
    assert db.session.get(Voucher, voucher.id).balance_fen == 210_000_00


def test_a_claim_is_approved_for_its_submitted_amount_or_not_at_all(
    desk, make_user, make_voucher, make_service
):
    user = make_user(Role.ENTERPRISE)
    voucher = make_voucher(user, desk["scheme"], 15_000_00)
    first = claim_services.submit_claim(
        user, claim_services.create_claim(user, voucher.id, [make_service(user, 10_000_00).id]).id
    )
    second = claim_services.submit_claim(
        user, claim_services.create_claim(user, voucher.id, [make_service(user, 10_000_00).id]).id
    )
    assert (first.total_fen, second.total_fen) == (9_000_00, 9_000_00)  # each fits the balance alone
    voucher_review.approve_claim(desk["reviewer"], first.id)
    with pytest.raises(LimitExceeded) as error:
        voucher_review.approve_claim(desk["reviewer"], second.id)
    assert error.value.details["limited_by"] == ["voucher_balance"]
    assert db.session.get(Voucher, voucher.id).balance_fen == 6_000_00


# --- each automatic check -------------------------------------------------------------------------


def preview_checks(user, voucher, records):
    return checks_by_code(claim_services.preview_claim(user, voucher.id, [r.id for r in records]).checks)


def test_check_service_completed_and_rated(claimant, make_service):
    record = make_service(claimant["user"], 1_000_00, rated=False)
    assert preview_checks(claimant["user"], claimant["voucher"], [record])["service_completed"] is False


def test_check_evidence(claimant, make_service):
    record = make_service(claimant["user"], 1_000_00, evidence=(FileKind.INVOICE,))
    preview = claim_services.preview_claim(claimant["user"], claimant["voucher"].id, [record.id])
    evidence = next(c for c in preview.checks if c.code == "evidence")
    assert evidence.passed is False
    assert "合同" in evidence.message and "付款凭证" in evidence.message


def test_check_service_window(claimant, make_service):
    record = make_service(claimant["user"], 1_000_00, starts_at=datetime(2025, 12, 30, 1, 0, tzinfo=UTC))
    assert preview_checks(claimant["user"], claimant["voucher"], [record])["service_window"] is False


@pytest.mark.parametrize("relation", ["same_uscc", "same_group", "declared"])
def test_check_related_party(claimant, make_institution, make_instrument, make_service, relation):
    user = claimant["user"]
    enterprise = db.session.get(Enterprise, user.enterprise_id)
    host = make_institution(kind="company")
    if relation == "same_uscc":
        host.uscc = enterprise.uscc
    elif relation == "same_group":
        enterprise.controller_group = host.controller_group = "聊城某集团"
    else:
        db.session.add(
            EnterpriseRelation(
                enterprise_id=enterprise.id,
                institution_id=host.id,
                kind=RelationKind.INVESTEE,
                declared_by_id=user.id,
            )
        )
    db.session.commit()
    record = make_service(user, 1_000_00, instrument=make_instrument(institution=host))
    assert preview_checks(user, claimant["voucher"], [record])["related_party"] is False
    assert preview_checks(user, claimant["voucher"], [claimant["record"]])["related_party"] is True


def test_check_claimed_twice(claimant):
    user = claimant["user"]
    first = claim_services.create_claim(user, claimant["voucher"].id, [claimant["record"].id])
    claim_services.submit_claim(user, first.id)
    assert preview_checks(user, claimant["voucher"], [claimant["record"]])["claimed_twice"] is False
    second = claim_services.create_claim(user, claimant["voucher"].id, [claimant["record"].id])
    with pytest.raises(InvalidTransition):
        claim_services.submit_claim(user, second.id)


def test_check_excluded_service_type(claimant, make_service):
    record = make_service(claimant["user"], 1_000_00, service_type="statutory_testing")
    assert preview_checks(claimant["user"], claimant["voucher"], [record])["excluded_service"] is False


def test_check_hours_above_the_booked_time(claimant, make_service):
    from decimal import Decimal

    record = make_service(claimant["user"], 1_000_00, hours=Decimal("3.5"), booked_hours=2)
    assert preview_checks(claimant["user"], claimant["voucher"], [record])["hours_within_booking"] is False


def test_check_voucher_validity(claimant):
    claimant["voucher"].valid_until = date(2026, 12, 1)
    db.session.commit()
    assert (
        preview_checks(claimant["user"], claimant["voucher"], [claimant["record"]])["voucher_valid"] is False
    )


def test_a_failing_check_blocks_approval(claimant, make_service):
    user = claimant["user"]
    record = make_service(user, 1_000_00)
    claim = claim_services.submit_claim(
        user, claim_services.create_claim(user, claimant["voucher"].id, [record.id]).id
    )
    # The reviewer learns of a relation with the provider after the claim was submitted.
    host_id = record.booking.instrument.institution_id
    verification_services.add_relation(
        claimant["reviewer"], user.enterprise_id, host_id, RelationKind.INVESTOR
    )
    with pytest.raises(InvalidTransition) as error:
        voucher_review.approve_claim(claimant["reviewer"], claim.id)
    assert [c["code"] for c in error.value.details["checks"]] == ["related_party"]


def test_the_audit_log_is_searchable_by_reviewers(client, claimant):
    from tests.factories import login

    claim = claim_services.submit_claim(
        claimant["user"],
        claim_services.create_claim(claimant["user"], claimant["voucher"].id, [claimant["record"].id]).id,
    )
    voucher_review.approve_claim(claimant["reviewer"], claim.id)
    login(client, claimant["reviewer"].username)
    page = client.get("/review/audit", query_string={"kind": "claim", "object": f"#{claim.id}"}).get_data(
        as_text=True
    )
    assert "批准，开始公示" in page and "提交科技局" in page  # claim.in_notice, claim.submitted
    assert client.get("/review/audit", query_string={"action": "nothing.like.this"}).status_code == 200


# --- the review desk's queue ---------------------------------------------------------------------


@pytest.fixture
def waiting(desk, make_user, make_voucher, make_service):
    """Two submitted claims (1,800 and 27,000 yuan of subsidy, the larger one in 临清市), an application
    of 40,000 yuan, and a verification request, all submitted at the fake clock's now."""
    near, far = make_user(Role.ENTERPRISE), make_user(Role.ENTERPRISE)
    far.enterprise.county = "临清市"
    db.session.commit()
    claims = []
    for user, fee in ((near, 2_000_00), (far, 30_000_00)):
        voucher = make_voucher(user, desk["scheme"], 50_000_00)
        claim = claim_services.create_claim(user, voucher.id, [make_service(user, fee).id])
        claims.append(claim_services.submit_claim(user, claim.id).id)
        desk["clock"].advance(minutes=1)
    application = application_services.apply_for_voucher(make_user(Role.ENTERPRISE), 40_000_00, "计划")
    pending = make_user(Role.ENTERPRISE, verification_state=VerificationState.PENDING)
    verification_services.submit_verification(
        pending, verification_services.VerificationData(kind="other", actual_controller="王五")
    )
    return {"claims": claims, "application": application.id, **desk}


def ids(**args) -> list[int]:
    return [
        item.id for item in voucher_review.queue(voucher_review.QueueFilters.from_args(MultiDict(args))).items
    ]


def test_the_review_queue_filters_at_their_edges_and_counts_each_kind(waiting):
    near, far = waiting["claims"]
    assert ids() == [near, far]  # claims by default, oldest first
    assert ids(kind="no such kind") == [near, far]
    assert ids(county="临清市") == [far]
    assert ids(amount_min="27000") == [far] and ids(amount_min="27000.01") == []
    assert ids(amount_max="1800") == [near] and ids(amount_max="1799.99") == []
    assert ids(kind="application", amount_min="40000", amount_max="40000") == [waiting["application"]]
    assert ids(kind="application", amount_min="40000.01") == []
    assert len(ids(kind="verification", amount_min="1", amount_max="1")) == 1  # no amount to filter on
    waiting["clock"].advance(days=2, minutes=-2)  # exactly two days after the first claim
    assert ids(older_than="2") == [near]  # the other was submitted a minute later
    assert ids(older_than="3") == []
    result = voucher_review.queue(voucher_review.QueueFilters.from_args(MultiDict({"kind": "application"})))
    assert (result.counts, result.total) == (
        {"verification": 1, "application": 1, "claim": 2, "bank_account": 0},
        1,
    )


def test_a_county_bounds_every_kinds_count_and_a_county_without_enterprises_has_nothing(waiting):
    def counts(county: str) -> dict[str, int]:
        filters = voucher_review.QueueFilters.from_args(MultiDict({"county": county}))
        return voucher_review.queue(filters).counts

    assert counts("临清市") == {"verification": 0, "application": 0, "claim": 1, "bank_account": 0}
    assert counts("东昌府区") == {"verification": 1, "application": 1, "claim": 1, "bank_account": 0}
    assert counts("冠县") == dict.fromkeys(voucher_review.KINDS, 0)
    assert ids(county="冠县", amount_max="100000") == []


def test_the_queue_is_oldest_first_by_submission_not_by_number(waiting, make_user):
    # A returned application submitted again waits behind one first submitted after it
    # (review._filtered's mutant 24 dropped the order; SQLite then answers in id order).
    holder = make_user(Role.ENTERPRISE)
    early = application_services.apply_for_voucher(holder, 10_000_00, "计划").id
    application_services.return_application(waiting["reviewer"], early, comment="预算不明")
    waiting["clock"].advance(minutes=5)
    later = application_services.apply_for_voucher(make_user(Role.ENTERPRISE), 10_000_00, "计划").id
    waiting["clock"].advance(minutes=5)
    application_services.resubmit_application(holder, early, 10_000_00, "新计划")
    assert ids(kind="application") == [waiting["application"], later, early]


def test_the_queue_shows_the_oldest_200_and_counts_them_all(desk, make_user):
    user = make_user(Role.ENTERPRISE, verification_state=VerificationState.PENDING)
    start = desk["clock"]()
    db.session.execute(
        VerificationRequest.__table__.insert(),
        [
            {
                "enterprise_id": user.enterprise_id,
                "kind": "other",
                "actual_controller": "王五",
                "state": "submitted",
                "submitted_by_id": user.id,
                "submitted_at": start + timedelta(seconds=n),
            }
            for n in range(201)
        ],
    )
    db.session.commit()
    result = voucher_review.queue(voucher_review.QueueFilters.from_args(MultiDict({"kind": "verification"})))
    assert (len(result.items), result.total) == (200, 201)
    assert result.items[-1].submitted_at == start + timedelta(seconds=199)


@pytest.mark.parametrize(
    ("args", "errors", "days"),
    [
        ({"older_than": "36500"}, {}, 36500),
        ({"older_than": "36501"}, {"older_than": "36501"}, None),
        ({"older_than": "²"}, {"older_than": "²"}, None),
        ({"older_than": "", "amount_min": ""}, {}, None),
        ({"amount_min": "abc", "amount_max": "1.234"}, {"amount_min": "abc", "amount_max": "1.234"}, None),
    ],
)
def test_a_malformed_queue_filter_is_reported_and_left_out(args, errors, days):
    filters = voucher_review.QueueFilters.from_args(MultiDict(args))
    assert (filters.errors, filters.older_than_days) == (errors, days)
    assert (filters.kind, filters.county, filters.amount_min_fen, filters.amount_max_fen) == (
        "claim",
        None,
        None,
        None,
    )


def test_a_voucher_is_shown_to_its_enterprise_and_the_bureau_only(desk, make_user, make_voucher):
    owner = make_user(Role.ENTERPRISE)
    colleague = make_user(Role.ENTERPRISE, enterprise=owner.enterprise, is_holder=False)
    voucher = make_voucher(owner, desk["scheme"], 10_000_00)
    for user in (owner, colleague, desk["reviewer"], make_user(Role.FINANCE), make_user(Role.ADMIN)):
        assert wallet.get_voucher(user, voucher.id).id == voucher.id
    for user in (make_user(Role.ENTERPRISE), make_user(Role.PROVIDER)):
        with force_locale("en"), pytest.raises(NotFound, match=r"^No such voucher\.$"):
            wallet.get_voucher(user, voucher.id)
    with pytest.raises(NotFound):
        wallet.get_voucher(owner, voucher.id + 1)
    with pytest.raises(NotFound):
        wallet.get_voucher(AnonymousUserMixin(), voucher.id)  # a visitor signed in as no one


def test_the_notice_board_lists_the_claims_in_notice_soonest_ending_first(claimant, make_service):
    user, voucher, scheme = claimant["user"], claimant["voucher"], claimant["scheme"]
    approved = []
    for days in (7, 2, 2):  # the scheme's notice period, changed between approvals
        scheme.public_notice_days = days
        db.session.commit()
        claim = claim_services.create_claim(user, voucher.id, [make_service(user, 1_000_00).id])
        claim_services.submit_claim(user, claim.id)
        approved.append(voucher_review.approve_claim(claimant["reviewer"], claim.id).id)
    claim_services.create_claim(user, voucher.id, [claimant["record"].id])  # a draft is not shown
    first, second, third = approved
    assert [c.id for c in notice.claims_in_notice()] == [second, third, first]


def test_the_voucher_list_is_the_enterprises_own_or_all_for_the_bureau_newest_first(
    desk, make_user, make_voucher
):
    owners = [make_user(Role.ENTERPRISE) for _ in range(3)]
    issued = [make_voucher(user, desk["scheme"], 10_000_00).id for user in owners]
    for user in (desk["reviewer"], make_user(Role.FINANCE), make_user(Role.ADMIN)):
        assert [v.id for v in wallet.vouchers_for(user)] == issued[::-1]
    assert [v.id for v in wallet.vouchers_for(owners[1])] == [issued[1]]
    assert wallet.vouchers_for(make_user(Role.PROVIDER)) == []


def test_the_claim_list_is_the_enterprises_own_or_all_for_the_bureau_newest_first(
    desk, make_user, make_voucher, make_service
):
    owners = [make_user(Role.ENTERPRISE) for _ in range(2)]
    vouchers = {user.id: make_voucher(user, desk["scheme"], 100_000_00).id for user in owners}
    made = [
        claim_services.create_claim(user, vouchers[user.id], [make_service(user, 1_000_00).id]).id
        for user in (owners[0], owners[1], owners[0])
    ]
    for user in (desk["reviewer"], make_user(Role.FINANCE), make_user(Role.ADMIN)):
        assert [c.id for c in claim_services.claims_for(user)] == made[::-1]
    assert [c.id for c in claim_services.claims_for(owners[0])] == [made[2], made[0]]
    assert claim_services.claims_for(make_user(Role.PROVIDER)) == []


def test_a_reviewer_sees_an_objects_history_oldest_first_and_an_enterprises_record(
    claimant, make_service, make_institution, make_booking, make_instrument, make_user
):
    user, voucher = claimant["user"], claimant["voucher"]
    first = claim_services.create_claim(user, voucher.id, [claimant["record"].id])
    claim_services.submit_claim(user, first.id)
    second = claim_services.create_claim(user, voucher.id, [make_service(user, 1_000_00).id])
    make_booking(make_instrument(), user)  # requested, not a completed service
    make_service(make_user(Role.ENTERPRISE), 1_000_00)  # another enterprise's, not counted
    host = make_institution()
    verification_services.add_relation(user, user.enterprise_id, host.id, RelationKind.AFFILIATE)
    history = voucher_review.history("claim", first.id)
    assert [e.action for e in history] == ["claim.created", "claim.submitted"]
    assert all(e.object_type == "claim" and e.object_id == str(first.id) for e in history)
    seen = voucher_review.enterprise_history(user.enterprise_id)
    assert [v.id for v in seen["vouchers"]] == [voucher.id]
    assert [c.id for c in seen["claims"]] == [second.id, first.id]  # newest first
    assert seen["completed_services"] == 2
    assert [(r.institution_id, r.kind) for r in seen["relations"]] == [(host.id, RelationKind.AFFILIATE)]
