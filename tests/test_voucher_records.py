"""What each transition of the voucher side records and tells, field by field.

The transition tables' tests check which moves are allowed; these check what an allowed one leaves
behind: the audit row (action, the state it left and reached, what changed, why, and who), the
columns it sets, the ledger line, and the notification (whom, with which link and payload).
"""

from __future__ import annotations

import hashlib
import io
import re
from datetime import date, timedelta

import pytest
from sqlalchemy import select

from portal.accounts.models import Enterprise, EnterpriseKind, VerificationState
from portal.booking.models import FileKind, ServiceFile
from portal.core.models import AuditEvent
from portal.core.permissions import Role
from portal.extensions import db
from portal.notifications.models import Notification
from portal.vouchers import applications as application_services
from portal.vouchers import claims as claim_services
from portal.vouchers import notice, review, wallet
from portal.vouchers import verification as verification_services
from portal.vouchers.models import (
    Claim,
    EnterpriseRelation,
    Fund,
    LedgerKind,
    RelationKind,
    RequestState,
    Scheme,
    VerificationRequest,
    Voucher,
)
from tests.test_booking_files import PDF


def audit_rows(object_type: str, object_id: int) -> list[tuple]:
    """The object's audit rows, oldest first: (action, before, after, reason, actor)."""
    db.session.rollback()
    return [
        (e.action, e.before, e.after, e.reason, e.actor_id)
        for e in db.session.scalars(
            select(AuditEvent)
            .where(AuditEvent.object_type == object_type, AuditEvent.object_id == str(object_id))
            .order_by(AuditEvent.id)
        )
    ]


def told(kind: str) -> list[tuple]:
    """The notifications of one kind: (recipient, link, payload)."""
    return [
        (n.recipient_id, n.link, n.payload)
        for n in db.session.scalars(
            select(Notification).where(Notification.kind == kind).order_by(Notification.id)
        )
    ]


@pytest.fixture(name="world")
def world_fixture(app, fake_clock, make_scheme, make_user, make_voucher, make_service):
    scheme = make_scheme()
    holder = make_user(Role.ENTERPRISE)
    return {
        "scheme": scheme,
        "holder": holder,
        "voucher": make_voucher(holder, scheme, 100_000_00),
        "record": make_service(holder, 10_000_00),
        "reviewer": make_user(Role.REVIEWER),
        "reviewer2": make_user(Role.REVIEWER),
        "clock": fake_clock,
    }


def test_each_step_of_a_claim_writes_its_audit_row_and_tells_the_enterprise(world):
    holder, reviewer = world["holder"], world["reviewer"]
    claim = claim_services.create_claim(holder, world["voucher"].id, [world["record"].id])
    claim_services.submit_claim(holder, claim.id)
    review.approve_claim(reviewer, claim.id, " 材料齐全 ")
    funds = {"province": 6_000_00, "city": 3_000_00}
    assert audit_rows("claim", claim.id) == [
        ("claim.created", None, {"state": "draft", "fee_fen": 10_000_00}, None, holder.id),
        ("claim.submitted", {"state": "draft"}, {"state": "submitted", "funds": funds}, None, holder.id),
        (
            "claim.in_notice",
            {"state": "submitted"},
            {"state": "in_notice", "funds": funds},
            "材料齐全",
            reviewer.id,
        ),
    ]
    row = db.session.get(claim_services.Claim, claim.id)
    assert row.notice_ends_on == date(2026, 12, 7) + timedelta(days=7)
    assert (row.decided_by_id, row.comment, row.approved_month) == (reviewer.id, "材料齐全", "2026-12")
    assert told("claim.approved") == [
        (
            holder.id,
            f"/vouchers/claims/{claim.id}",
            {"claim": claim.id, "amount": "¥9,000.00", "notice_ends_on": "2026-12-14"},
        )
    ]
    voucher = db.session.get(Voucher, world["voucher"].id)
    assert voucher.balance_fen == 100_000_00 - 9_000_00
    assert [(e.kind, e.amount_fen, e.balance_after_fen, e.claim_id) for e in voucher.ledger][-1] == (
        LedgerKind.COMMITTED,
        9_000_00,
        91_000_00,
        claim.id,
    )
    assert notice.end_public_notice(date(2026, 12, 13)) == 0  # the last day of the notice
    assert notice.end_public_notice(date(2026, 12, 14)) == 1
    assert audit_rows("claim", claim.id)[-1] == (
        "claim.payable",
        {"state": "in_notice"},
        {"state": "payable", "funds": funds},
        "public notice ended",
        None,
    )
    assert db.session.get(claim_services.Claim, claim.id).payable_at is not None
    assert told("claim.payable") == [
        (holder.id, f"/vouchers/claims/{claim.id}", {"claim": claim.id, "amount": "¥9,000.00"})
    ]


@pytest.mark.parametrize("action", ["reject", "return"])
def test_a_turned_down_claim_records_why_and_only_a_rejection_releases_its_services(world, action):
    holder, reviewer = world["holder"], world["reviewer"]
    claim = claim_services.create_claim(holder, world["voucher"].id, [world["record"].id])
    claim_services.submit_claim(holder, claim.id)
    getattr(review, f"{action}_claim")(reviewer, claim.id, " 发票不清晰 ")
    state = {"reject": "rejected", "return": "returned"}[action]
    assert audit_rows("claim", claim.id)[-1] == (
        f"claim.{state}",
        {"state": "submitted"},
        {"state": state, "funds": {"province": 6_000_00, "city": 3_000_00}},
        "发票不清晰",
        reviewer.id,
    )
    row = db.session.get(claim_services.Claim, claim.id)
    assert (row.state.value, row.decided_by_id, row.comment) == (state, reviewer.id, "发票不清晰")
    assert row.decided_at is not None
    record = db.session.get(type(world["record"]), world["record"].id)
    assert record.claim_id == (None if action == "reject" else claim.id)
    assert told(f"claim.{state}") == [
        (
            holder.id,
            f"/vouchers/claims/{claim.id}",
            {"claim": claim.id, "amount": "¥9,000.00", "reason": "发票不清晰"},
        )
    ]


def test_a_claim_returned_twice_tells_the_enterprise_twice(world):
    holder, reviewer = world["holder"], world["reviewer"]
    claim = claim_services.create_claim(holder, world["voucher"].id, [world["record"].id])
    claim_services.submit_claim(holder, claim.id)
    reasons = ("发票不清晰", "合同缺页")
    for reason in reasons:
        review.return_claim(reviewer, claim.id, reason)
        world["clock"].advance(hours=1)
        claim_services.revise_claim(holder, claim.id, "已补充", resubmit=True)
    assert told("claim.returned") == [
        (
            holder.id,
            f"/vouchers/claims/{claim.id}",
            {"claim": claim.id, "amount": "¥9,000.00", "reason": reason},
        )
        for reason in reasons
    ]


def test_an_approved_application_issues_the_voucher_and_records_it(world, make_user):
    user, reviewer = make_user(Role.ENTERPRISE), world["reviewer"]
    application = application_services.apply_for_voucher(user, 40_000_00, "  研发测试计划  ")
    assert (application.plan, application.submitted_at) == ("研发测试计划", world["clock"]())
    application_services.approve_application(reviewer, application.id, amount_fen=30_000_00, comment=" 同意 ")
    voucher = db.session.scalar(select(Voucher).where(Voucher.application_id == application.id))
    assert (voucher.enterprise_id, voucher.scheme_id, voucher.released_fen) == (
        user.enterprise_id,
        world["scheme"].id,
        0,
    )
    assert voucher.issued_at == world["clock"]() and voucher.state.value == "active"
    assert [(e.kind, e.amount_fen, e.balance_after_fen) for e in voucher.ledger] == [
        (LedgerKind.ISSUED, 30_000_00, 30_000_00)
    ]
    assert audit_rows("voucher_application", application.id) == [
        (
            "voucher_application.submitted",
            None,
            {"state": "submitted", "amount_fen": 40_000_00},
            None,
            user.id,
        ),
        (
            "voucher_application.approved",
            {"state": "submitted"},
            {"state": "approved", "amount_fen": 30_000_00, "voucher": voucher.code},
            "同意",
            reviewer.id,
        ),
    ]
    row = db.session.get(type(application), application.id)
    assert (row.decided_by_id, row.decided_at, row.comment) == (reviewer.id, world["clock"](), "同意")
    assert told("application.approved") == [
        (
            user.id,
            f"/vouchers/voucher/{voucher.id}",
            {"code": voucher.code, "amount": "¥30,000.00", "valid_until": "2027-12-07"},
        )
    ]
    # The code: the scheme's year and eight upper-case hex digits (_voucher_code's mutants 1–3).
    assert re.fullmatch(rf"LC{world['scheme'].year}-[0-9A-F]{{8}}", voucher.code)
    # The message's key is the application's own (_issue_voucher's mutant 75 made it None).
    key = db.session.scalar(select(Notification.dedup_key).where(Notification.kind == "application.approved"))
    assert key == f"application:{application.id}:approved:{user.id}"


def test_a_first_application_approval_records_the_amount_and_who(world, make_user):
    user, reviewer = make_user(Role.ENTERPRISE), world["reviewer"]
    application = application_services.apply_for_voucher(user, 200_000_00, "大额计划")
    application_services.approve_application(reviewer, application.id, amount_fen=150_000_00)
    row = db.session.get(type(application), application.id)
    assert (row.first_reviewer_id, row.first_amount_fen) == (reviewer.id, 150_000_00)
    assert audit_rows("voucher_application", application.id)[-1] == (
        "voucher_application.pending_second",
        {"state": "submitted"},
        {"state": "pending_second", "amount_fen": 150_000_00},
        None,
        reviewer.id,
    )
    assert told("voucher_application.second_review") == [
        (
            world["reviewer2"].id,
            f"/review/applications/{application.id}",
            {"application": application.id, "amount": "¥150,000.00"},
        )
    ]
    application_services.approve_application(world["reviewer2"], application.id, amount_fen=1)
    voucher = db.session.scalar(select(Voucher).where(Voucher.application_id == application.id))
    assert voucher.quota_fen == 150_000_00  # the second approval is of the first's amount


@pytest.mark.parametrize("action", ["reject", "return"])
def test_a_turned_down_application_records_why_and_where_to_go(world, make_user, action):
    user, reviewer = make_user(Role.ENTERPRISE), world["reviewer"]
    application = application_services.apply_for_voucher(user, 40_000_00, "计划")
    getattr(application_services, f"{action}_application")(reviewer, application.id, comment=" 请细化 ")
    state = {"reject": "rejected", "return": "returned"}[action]
    assert audit_rows("voucher_application", application.id)[-1] == (
        f"voucher_application.{state}",
        {"state": "submitted"},
        {"state": state},
        "请细化",
        reviewer.id,
    )
    row = db.session.get(type(application), application.id)
    assert (row.decided_by_id, row.decided_at, row.comment) == (reviewer.id, world["clock"](), "请细化")
    link = "/vouchers/" if action == "reject" else f"/vouchers/applications/{application.id}/resubmit"
    assert told(f"application.{state}") == [(user.id, link, {"reason": "请细化"})]


def test_a_resubmitted_application_records_the_new_amount_and_clears_the_first_approval(world, make_user):
    user, reviewer = make_user(Role.ENTERPRISE), world["reviewer"]
    application = application_services.apply_for_voucher(user, 200_000_00, "计划")
    application_services.approve_application(reviewer, application.id)
    application_services.return_application(world["reviewer2"], application.id, comment="请细化")
    world["clock"].advance(hours=1)
    application_services.resubmit_application(user, application.id, 25_000_00, "  细化后的计划 ")
    row = db.session.get(type(application), application.id)
    assert (row.amount_fen, row.plan, row.first_reviewer_id, row.submitted_at) == (
        25_000_00,
        "细化后的计划",
        None,
        world["clock"](),
    )
    assert audit_rows("voucher_application", application.id)[-1] == (
        "voucher_application.submitted",
        {"state": "returned"},
        {"state": "submitted", "amount_fen": 25_000_00},
        None,
        user.id,
    )


# --- enterprise verification ---------------------------------------------------------------------


def test_a_verification_request_records_what_the_enterprise_declared(world, make_user, make_institution):
    user = make_user(Role.ENTERPRISE, verification_state=VerificationState.REJECTED)
    host = make_institution()
    request = verification_services.submit_verification(
        user,
        verification_services.VerificationData(
            kind="tech_sme",
            actual_controller="  " + "张" * 130,
            tech_sme_number=" 202637150100123 ",
            related_institution_id=host.id,
            relation_kind=RelationKind.INVESTOR,
        ),
        io.BytesIO(PDF),
        "入库证明.pdf",
    )
    row = db.session.get(VerificationRequest, request.id)
    assert (row.kind, row.tech_sme_number, row.actual_controller) == (
        EnterpriseKind.TECH_SME,
        "202637150100123",
        "张" * 120,
    )
    assert (row.state, row.submitted_by_id, row.submitted_at) == (
        RequestState.SUBMITTED,
        user.id,
        world["clock"](),
    )
    assert (row.certificate_name, row.certificate_type, row.certificate_size) == (
        "入库证明.pdf",
        "application/pdf",
        len(PDF),
    )
    assert row.certificate_stored
    relation = db.session.scalars(select(EnterpriseRelation)).one()
    assert (relation.enterprise_id, relation.institution_id, relation.kind, relation.declared_by_id) == (
        user.enterprise_id,
        host.id,
        RelationKind.INVESTOR,
        user.id,
    )
    assert db.session.get(Enterprise, user.enterprise_id).verification_state is VerificationState.PENDING
    assert audit_rows("enterprise", user.enterprise_id) == [
        (
            "verification.submitted",
            None,
            {"request": request.id, "kind": "tech_sme", "actual_controller": "张" * 120},
            None,
            user.id,
        )
    ]


@pytest.mark.parametrize("verify", [True, False])
def test_a_verification_decision_records_who_why_and_the_enterprises_new_state(world, make_user, verify):
    user = make_user(Role.ENTERPRISE, verification_state=VerificationState.PENDING)
    request = verification_services.submit_verification(
        user, verification_services.VerificationData(kind="maker_team", actual_controller="李 四")
    )
    world["clock"].advance(hours=2)
    reviewer = world["reviewer"]
    if verify:
        verification_services.verify_enterprise(reviewer, request.id, reason="  ")
    else:
        verification_services.reject_verification(reviewer, request.id, reason=" 执照过期 ")
    state, reason = ("verified", None) if verify else ("rejected", "执照过期")
    row = db.session.get(VerificationRequest, request.id)
    assert (row.state.value, row.decided_by_id, row.decided_at, row.reason, row.uscc_override) == (
        state,
        reviewer.id,
        world["clock"](),
        reason,
        False,
    )
    enterprise = db.session.get(Enterprise, user.enterprise_id)
    assert enterprise.verification_state.value == state
    if verify:
        assert (enterprise.kind, enterprise.verified_at) == (EnterpriseKind.MAKER_TEAM, world["clock"]())
    assert audit_rows("enterprise", user.enterprise_id)[-1] == (
        f"enterprise.{state}",
        {"state": "pending"},
        {"state": state, "uscc_override": False},
        reason,
        reviewer.id,
    )
    assert told(f"verification.{state}") == [
        (user.id, "/vouchers/", {"enterprise": enterprise.name, "reason": reason or ""})
    ]


# --- vouchers ------------------------------------------------------------------------------------


def test_an_expiring_voucher_releases_its_balance_on_the_day_after_its_last(world, make_user, make_voucher):
    user = make_user(Role.ENTERPRISE)
    voucher = make_voucher(user, world["scheme"], 80_000_00, valid_until=date(2026, 12, 6))
    voucher.balance_fen = 50_000_00
    other = make_voucher(
        make_user(Role.ENTERPRISE), world["scheme"], 1_000_00, valid_until=date(2026, 12, 31)
    )
    db.session.commit()
    allocated = world["scheme"].allocated_fen - 1_000_00  # the other's returns to the budget too
    assert wallet.expire_vouchers(date(2026, 12, 6)) == 0  # still valid on its last day
    assert wallet.expire_vouchers(date(2026, 12, 7)) == 1
    assert wallet.expire_voucher(other.id) is True  # what the task runs for each (it answers if now)
    voucher = db.session.get(Voucher, voucher.id)
    assert (voucher.state.value, voucher.balance_fen, voucher.released_fen) == ("expired", 0, 50_000_00)
    assert [(e.kind, e.amount_fen, e.balance_after_fen) for e in voucher.ledger][-1] == (
        LedgerKind.RELEASED,
        50_000_00,
        0,
    )
    assert db.session.get(Scheme, world["scheme"].id).allocated_fen == allocated - 50_000_00
    assert audit_rows("voucher", voucher.id) == [
        (
            "voucher.expired",
            {"state": "active", "balance_fen": 50_000_00},
            {"state": "expired", "released_fen": 50_000_00},
            None,
            None,
        )
    ]


# --- the rest of a claim's life --------------------------------------------------------------------


def test_a_draft_records_its_services_fees_and_checks_and_its_deletion(world):
    holder = world["holder"]
    claim = claim_services.create_claim(holder, world["voucher"].id, [world["record"].id])
    row = db.session.get(Claim, claim.id)
    assert (row.enterprise_id, row.fee_fen, row.created_by_id, row.created_at) == (
        holder.enterprise_id,
        10_000_00,
        holder.id,
        world["clock"](),
    )
    assert row.institution_id == world["record"].booking.instrument.institution_id
    assert [(i.service_record_id, i.fee_fen) for i in row.items] == [(world["record"].id, 10_000_00)]
    assert (row.fund_amounts(), row.limited_by) == ({"province": 6_000_00, "city": 3_000_00}, [])
    assert {c["code"] for c in row.checks} >= {"evidence", "voucher_valid"} and all(
        c["passed"] for c in row.checks
    )
    claim_services.delete_draft(holder, claim.id)
    assert db.session.get(Claim, claim.id) is None
    assert audit_rows("claim", claim.id)[-1] == ("claim.deleted", {"state": "draft"}, None, None, holder.id)


def test_a_resubmitted_claim_forgets_its_first_approval(world, make_voucher, make_service, make_user):
    holder = make_user(Role.ENTERPRISE)
    voucher = make_voucher(holder, world["scheme"], 300_000_00)
    claim = claim_services.create_claim(holder, voucher.id, [make_service(holder, 100_000_00).id])
    claim_services.submit_claim(holder, claim.id)
    review.approve_claim(world["reviewer"], claim.id, " 金额较大 ")  # 90,000 yuan: the first of two approvals
    assert audit_rows("claim", claim.id)[-1] == (
        "claim.pending_second",
        {"state": "submitted"},
        {"state": "pending_second", "funds": {"province": 60_000_00, "city": 30_000_00}},
        "金额较大",
        world["reviewer"].id,
    )
    assert told("claim.second_review") == [
        (
            world["reviewer2"].id,
            f"/vouchers/claims/{claim.id}",
            {"claim": claim.id, "amount": "¥90,000.00"},
        )
    ]
    review.return_claim(world["reviewer2"], claim.id, "请补充")
    world["clock"].advance(hours=1)
    claim_services.submit_claim(holder, claim.id)
    row = db.session.get(Claim, claim.id)
    assert (row.state.value, row.first_reviewer_id, row.submitted_at) == ("submitted", None, world["clock"]())
    review.approve_claim(world["reviewer"], claim.id)  # a first approval again, not a second
    assert db.session.get(Claim, claim.id).state.value == "pending_second"
    # Another claim's first approval is told too (each claim's message is its own).
    other = claim_services.create_claim(holder, voucher.id, [make_service(holder, 60_000_00).id])
    claim_services.submit_claim(holder, other.id)
    review.approve_claim(world["reviewer"], other.id)
    assert [link for _who, link, _payload in told("claim.second_review")] == [
        f"/vouchers/claims/{claim.id}",
        f"/vouchers/claims/{other.id}",
    ]


def test_a_paid_claim_records_the_payment_in_its_funds_ledger_and_audit(world, make_user):
    holder, finance = world["holder"], make_user(Role.FINANCE)
    claim = claim_services.create_claim(holder, world["voucher"].id, [world["record"].id])
    claim_services.submit_claim(holder, claim.id)
    review.approve_claim(world["reviewer"], claim.id)
    assert notice.end_notice(claim.id) is True  # (the daily task ignores what it answers)
    claim = db.session.get(Claim, claim.id)
    funds = {f.name: f for f in world["scheme"].funds}
    voucher = db.session.get(Voucher, world["voucher"].id)
    claim_services.pay_claim(finance, claim, voucher, funds, reference="BANK-7", month="2027-01")
    db.session.commit()
    row = db.session.get(Claim, claim.id)
    assert (row.state.value, row.paid_at, row.paid_month) == ("paid", world["clock"](), "2027-01")
    assert {f.name: f.paid_fen for f in db.session.scalars(select(Fund))} == {
        "province": 6_000_00,
        "city": 3_000_00,
    }
    assert [(e.kind, e.amount_fen, e.balance_after_fen, e.claim_id) for e in voucher.ledger][-1] == (
        LedgerKind.PAID,
        9_000_00,
        91_000_00,
        claim.id,
    )
    assert audit_rows("claim", claim.id)[-1] == (
        "claim.paid",
        {"state": "payable"},
        {"state": "paid"},
        "BANK-7",
        finance.id,
    )
    assert told("claim.paid") == [
        (
            holder.id,
            f"/vouchers/claims/{claim.id}",
            {"claim": claim.id, "amount": "¥9,000.00", "reference": "BANK-7"},
        )
    ]


def test_a_corrected_claim_records_the_reply_and_the_replaced_file_and_keeps_the_old_one(world, make_service):
    holder, record, clock = world["holder"], world["record"], world["clock"]
    elsewhere = make_service(holder, 1_000_00)  # another service's receipt is not this one's to replace
    claim = claim_services.create_claim(holder, world["voucher"].id, [record.id])
    claim_services.submit_claim(holder, claim.id)
    review.return_claim(world["reviewer"], claim.id, "回单不清晰")

    def receipts(record_id: int) -> list[tuple]:
        db.session.rollback()
        return [
            (f.id, f.original_name, f.replaced_at)
            for f in db.session.scalars(
                select(ServiceFile)
                .where(ServiceFile.record_id == record_id, ServiceFile.kind == FileKind.RECEIPT)
                .order_by(ServiceFile.id)
            )
        ]

    [(first, _name, _when)] = receipts(record.id)
    other_receipts = receipts(elsewhere.id)
    # A reply alone: saved, the claim stays returned (submitting again is asked for separately).
    claim_services.revise_claim(holder, claim.id, "  已重新扫描  ")
    row = db.session.get(Claim, claim.id)
    assert (row.state.value, row.reply) == ("returned", "已重新扫描")
    assert audit_rows("claim", claim.id)[-1] == (
        "claim.revised",
        {"state": "returned"},
        {"state": "returned", "reply": "已重新扫描"},
        "已重新扫描",
        holder.id,
    )
    # A file alone, an hour later: the old receipt is kept, marked replaced then; the reply stays.
    clock.advance(hours=1)
    replaced_at = clock()
    claim_services.revise_claim(
        holder,
        claim.id,
        None,
        claim_services.Replacement(record.id, FileKind.RECEIPT, io.BytesIO(PDF), "回单-清晰.pdf"),
    )
    [(_first, _name, first_replaced), (second, second_name, current)] = receipts(record.id)
    assert (first_replaced, second_name, current) == (replaced_at, "回单-清晰.pdf", None)
    assert receipts(elsewhere.id) == other_receipts
    added = {
        "file": second,
        "kind": "receipt",
        "sha256": hashlib.sha256(PDF).hexdigest(),
        "size": len(PDF),
        "replaces": [first],
    }
    assert audit_rows("service_record", record.id)[-1] == ("service.file_added", None, added, None, holder.id)
    assert audit_rows("claim", claim.id)[-1] == (
        "claim.revised",
        {"state": "returned"},
        {"state": "returned", "file": {"record": record.id, **added}},
        None,
        holder.id,
    )
    row = db.session.get(Claim, claim.id)
    assert (row.state.value, row.reply) == ("returned", "已重新扫描")
    # Replaced again later: only the current file is replaced; the first keeps the moment it was.
    clock.advance(hours=1)
    claim_services.revise_claim(
        holder,
        claim.id,
        "已重新扫描",  # the same reply again is not a change
        claim_services.Replacement(record.id, FileKind.RECEIPT, io.BytesIO(PDF), "回单-3.pdf"),
    )
    [(_first, _n1, first_again), (_second, _n2, second_replaced), (third, _n3, _now)] = receipts(record.id)
    assert (first_again, second_replaced) == (replaced_at, clock())
    assert audit_rows("claim", claim.id)[-1][2] == {
        "state": "returned",
        "file": {"record": record.id, **added, "file": third, "replaces": [second]},
    }
    # Then submitted again, with nothing more to say.
    claim_services.revise_claim(holder, claim.id, None, resubmit=True)
    assert db.session.get(Claim, claim.id).state.value == "submitted"
    assert [row[0] for row in audit_rows("claim", claim.id)][-4:] == [
        "claim.revised",
        "claim.revised",
        "claim.revised",
        "claim.submitted",
    ]
