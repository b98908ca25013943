"""What a refused voucher-side action says, word for word (in English; the Chinese come from the
catalogue), and which form field it marks: people act on these texts."""

from __future__ import annotations

import io
from datetime import timedelta

import pytest
from flask_babel import force_locale, gettext
from flask_login import AnonymousUserMixin
from sqlalchemy import func, select, update

from portal.accounts.models import VerificationState
from portal.booking.models import FileKind
from portal.core import uploads
from portal.core.errors import (
    Forbidden,
    InvalidTransition,
    LimitExceeded,
    NotFound,
    ServiceError,
    ValidationFailed,
)
from portal.core.models import AuditEvent
from portal.core.permissions import Role
from portal.extensions import db
from portal.notifications.models import Notification
from portal.vouchers import applications as application_services
from portal.vouchers import claims as claim_services
from portal.vouchers import notice, review, wallet
from portal.vouchers import verification as verification_services
from portal.vouchers.models import (
    ApplicationState,
    CapLedger,
    Claim,
    ClaimState,
    EnterpriseRelation,
    RelationKind,
    VerificationRequest,
    Voucher,
    VoucherApplication,
    VoucherState,
)
from tests.test_booking_files import PDF
from tests.test_voucher_records import world_fixture  # noqa: F401


def refused(action, *args, error: type[ServiceError] = ValidationFailed, **kwargs) -> ServiceError:
    with force_locale("en"), pytest.raises(error) as raised:
        action(*args, **kwargs)
    return raised.value


@pytest.mark.parametrize("action", ["reject", "return"])
@pytest.mark.parametrize("comment", [None, "", "   "])
def test_turning_down_a_claim_or_an_application_needs_a_reason(world, make_user, action, comment):
    claim = claim_services.create_claim(world["holder"], world["voucher"].id, [world["record"].id])
    claim_services.submit_claim(world["holder"], claim.id)
    error = refused(getattr(review, f"{action}_claim"), world["reviewer"], claim.id, comment)
    assert (error.message, error.fields) == ("Please give a reason.", {"comment": "Required."})
    application = application_services.apply_for_voucher(make_user(Role.ENTERPRISE), 10_000_00, "计划")
    turn_down = getattr(application_services, f"{action}_application")
    error = refused(turn_down, world["reviewer"], application.id, comment=comment)
    assert (error.message, error.fields) == ("Please give a reason.", {"comment": "Required."})


# --- making, submitting and deleting a claim -----------------------------------------------------


def test_a_claim_is_refused_without_services_or_with_more_than_50(world):
    holder, voucher = world["holder"], world["voucher"].id
    for ids, text, field in (
        ([], "Choose at least one completed service.", "Required."),
        (list(range(1, 52)), "At most 50 services per claim.", "Too many."),
    ):
        error = refused(claim_services.create_claim, holder, voucher, ids)
        assert (error.message, error.fields) == (text, {"service_record_ids": field})
    # Fifty are allowed (these do not exist), and the same service twice counts once.
    error = refused(claim_services.preview_claim, holder, voucher, list(range(1, 51)), error=NotFound)
    assert error.message == "Some of these services are not your enterprise's."
    record = world["record"].id
    assert claim_services.preview_claim(holder, voucher, [record, record]).fee_fen == 10_000_00


def test_a_claim_takes_only_the_enterprises_own_voucher_and_services_of_one_provider(
    world, make_user, make_voucher, make_service, make_institution, make_instrument
):
    holder, voucher, record = world["holder"], world["voucher"].id, world["record"].id
    other = make_user(Role.ENTERPRISE)
    others_voucher = make_voucher(other, world["scheme"]).id
    error = refused(claim_services.create_claim, holder, others_voucher, [record], error=NotFound)
    assert error.message == "No such voucher."
    error = refused(claim_services.create_claim, holder, voucher, [make_service(other).id], error=NotFound)
    assert error.message == "Some of these services are not your enterprise's."
    elsewhere = make_service(holder, instrument=make_instrument(institution=make_institution()))
    error = refused(claim_services.create_claim, holder, voucher, [record, elsewhere.id])
    text = "One claim covers the services of one provider; make a claim per provider."
    assert (error.message, error.fields) == (text, {"service_record_ids": text})


def test_submitting_or_deleting_a_claim_in_the_wrong_state_says_what_can_be(world, make_user):
    holder = world["holder"]
    claim = claim_services.create_claim(holder, world["voucher"].id, [world["record"].id])
    stranger = make_user(Role.ENTERPRISE)
    assert (
        refused(claim_services.submit_claim, stranger, claim.id, error=NotFound).message == "No such claim."
    )
    assert (
        refused(claim_services.delete_draft, stranger, claim.id, error=NotFound).message == "No such claim."
    )
    claim_services.submit_claim(holder, claim.id)
    error = refused(claim_services.submit_claim, holder, claim.id, error=InvalidTransition)
    assert error.message == "Only a draft or a returned claim can be submitted."
    error = refused(claim_services.delete_draft, holder, claim.id, error=InvalidTransition)
    assert error.message == "Only a draft can be deleted."


def test_a_service_in_a_submitted_claim_cannot_be_submitted_in_another(world):
    holder, voucher, record = world["holder"], world["voucher"].id, world["record"].id
    first = claim_services.create_claim(holder, voucher, [record])
    second = claim_services.create_claim(holder, voucher, [record])
    claim_services.submit_claim(holder, first.id)
    error = refused(claim_services.submit_claim, holder, second.id, error=InvalidTransition)
    assert error.message == "Some of these services are already in another claim."
    assert error.details == {"check": "claimed_twice"}
    assert db.session.get(type(second), second.id).state.value == "draft"


def test_a_claim_with_nothing_left_to_claim_is_not_submitted(world):
    holder = world["holder"]
    claim = claim_services.create_claim(holder, world["voucher"].id, [world["record"].id])
    world["voucher"].balance_fen = 0  # spent by other claims since the draft was made
    db.session.commit()
    error = refused(claim_services.submit_claim, holder, claim.id, error=LimitExceeded)
    assert error.message == "Nothing is left to claim: the subsidy is bound by voucher_balance."
    assert error.details == {"limited_by": ["voucher_balance"]}
    assert db.session.get(type(claim), claim.id).state.value == "draft"


def test_a_claim_with_one_fen_left_is_submitted_and_every_binding_limit_is_named(world, make_service):
    holder = world["holder"]
    claim = claim_services.create_claim(holder, world["voucher"].id, [world["record"].id])
    world["voucher"].balance_fen = 1
    db.session.commit()
    assert claim_services.submit_claim(holder, claim.id).total_fen == 1
    other = claim_services.create_claim(holder, world["voucher"].id, [make_service(holder, 1_000_00).id])
    for fund in world["scheme"].funds:  # both funds' budgets committed to other enterprises
        fund.committed_fen = fund.budget_fen
    db.session.commit()
    error = refused(claim_services.submit_claim, holder, other.id, error=LimitExceeded)
    assert error.message == "Nothing is left to claim: the subsidy is bound by province_budget, city_budget."


# --- correcting a returned claim --------------------------------------------------------------------


def returned_claim(world) -> Claim:
    claim = claim_services.create_claim(world["holder"], world["voucher"].id, [world["record"].id])
    claim_services.submit_claim(world["holder"], claim.id)
    review.return_claim(world["reviewer"], claim.id, "请补充")
    return claim


def test_a_claim_not_ones_own_is_not_found(world, make_user):
    claim = claim_services.create_claim(world["holder"], world["voucher"].id, [world["record"].id])
    for user, claim_id in ((make_user(Role.ENTERPRISE), claim.id), (world["holder"], claim.id + 1000)):
        assert refused(claim_services.get_claim, user, claim_id, error=NotFound).message == "No such claim."
        error = refused(claim_services.revise_claim, user, claim_id, "好的", error=NotFound)
        assert error.message == "No such claim."


def test_only_a_returned_claim_is_corrected_and_the_refusal_names_its_state(world):
    draft = claim_services.create_claim(world["holder"], world["voucher"].id, [world["record"].id])
    error = refused(claim_services.revise_claim, world["holder"], draft.id, "好的", error=InvalidTransition)
    assert (error.message, error.details) == ("Only a returned claim can be corrected.", {"state": "draft"})


def test_a_correction_needs_a_reply_a_file_or_the_resubmission(world):
    claim = returned_claim(world)
    for reply in (None, "", "   \n "):  # a reply of only spaces is no reply
        error = refused(claim_services.revise_claim, world["holder"], claim.id, reply)
        assert (error.message, error.fields) == (
            "Please correct the marked fields.",
            {"reply": "Write a reply or choose a file to replace."},
        )
    assert db.session.get(Claim, claim.id).reply is None
    assert (
        claim_services.revise_claim(world["holder"], claim.id, "   ", resubmit=True).state.value
        == "submitted"
    )


def test_a_reply_takes_2000_characters_and_refuses_2001(world):
    claim = returned_claim(world)
    error = refused(claim_services.revise_claim, world["holder"], claim.id, "答" * 2001)
    assert (error.message, error.fields) == (
        "Please correct the marked fields.",
        {"reply": "At most 2,000 characters."},
    )
    # Counted after the spaces around it are dropped.
    claim_services.revise_claim(world["holder"], claim.id, " " + "答" * 2000 + " ")
    assert db.session.get(Claim, claim.id).reply == "答" * 2000


def test_a_replacement_file_must_be_for_a_service_of_the_claim(world, make_service):
    claim = returned_claim(world)
    other = make_service(world["holder"], 1_000_00)
    replacement = claim_services.Replacement(other.id, FileKind.RECEIPT, io.BytesIO(PDF), "回单.pdf")
    error = refused(claim_services.revise_claim, world["holder"], claim.id, None, replacement)
    assert (error.message, error.fields) == (
        "Please correct the marked fields.",
        {"record": "Not a service of this claim."},
    )


def test_a_correction_of_a_claim_resubmitted_meanwhile_says_so_and_keeps_no_file(world, monkeypatch):
    claim = returned_claim(world)
    real = claim_services.lock_existing

    def resubmitted_first(rank, cls, row_id):
        # Another tab of the holder's submitted it between the page's check and the lock.
        db.session.execute(update(Claim).where(Claim.id == row_id).values(state=ClaimState.SUBMITTED))
        return real(rank, cls, row_id)

    monkeypatch.setattr(claim_services, "lock_existing", resubmitted_first)
    kept = set(uploads.upload_root().iterdir())
    replacement = claim_services.Replacement(
        world["record"].id, FileKind.RECEIPT, io.BytesIO(PDF), "回单.pdf"
    )
    error = refused(
        claim_services.revise_claim, world["holder"], claim.id, "好的", replacement, error=InvalidTransition
    )
    assert error.message == "Only a returned claim can be corrected."
    assert set(uploads.upload_root().iterdir()) == kept
    assert db.session.scalar(select(func.count()).where(AuditEvent.action == "claim.revised")) == 0


# --- applications --------------------------------------------------------------------------------

FIELDS = "Please correct the marked fields."
AMOUNT = "Between 0.01 yuan and the yearly cap."


@pytest.mark.parametrize(
    ("amount_fen", "plan", "fields"),
    [
        (0, "计划", {"amount_fen": AMOUNT}),
        (650_000_01, "计划", {"amount_fen": AMOUNT}),  # the scheme's group cap is 650,000 yuan
        (1, "  ", {"plan": "Describe what you plan to test and why."}),
        (1, "计" * 4001, {"plan": "At most 4,000 characters."}),
        (-1, "", {"amount_fen": AMOUNT, "plan": "Describe what you plan to test and why."}),
    ],
)
def test_an_application_needs_an_amount_within_the_cap_and_a_plan(world, make_user, amount_fen, plan, fields):
    error = refused(application_services.apply_for_voucher, make_user(Role.ENTERPRISE), amount_fen, plan)
    assert (error.message, error.fields) == (FIELDS, fields)


def test_an_application_at_the_edges_is_accepted(world, make_user):
    assert application_services.apply_for_voucher(make_user(Role.ENTERPRISE), 1, "计" * 4000).amount_fen == 1
    assert application_services.apply_for_voucher(make_user(Role.ENTERPRISE), 650_000_00, "计划").amount_fen


@pytest.mark.parametrize("state", ["submitted", "pending_second", "returned", "approved"])
def test_one_open_application_or_voucher_a_year(world, make_user, state):
    user = make_user(Role.ENTERPRISE)
    application = application_services.apply_for_voucher(user, 10_000_00, "计划")
    application.state = state
    db.session.commit()
    error = refused(application_services.apply_for_voucher, user, 10_000_00, "计划", error=InvalidTransition)
    assert error.message == "Your enterprise already has a voucher or an open application this year."


def test_after_a_rejection_the_enterprise_may_apply_again(world, make_user):
    user = make_user(Role.ENTERPRISE)
    application = application_services.apply_for_voucher(user, 10_000_00, "计划")
    application_services.reject_application(world["reviewer"], application.id, comment="不符合")
    assert application_services.apply_for_voucher(user, 10_000_00, "新计划").id != application.id


def test_a_decided_or_unknown_application_says_so(world, make_user):
    user, reviewer = make_user(Role.ENTERPRISE), world["reviewer"]
    application = application_services.apply_for_voucher(user, 10_000_00, "计划")
    error = refused(
        application_services.resubmit_application, user, application.id, 1, "计划", error=InvalidTransition
    )
    assert error.message == "Only a returned application can be submitted again."
    application_services.reject_application(reviewer, application.id, comment="不符合")
    for decide in (application_services.approve_application, application_services.reject_application):
        error = refused(decide, reviewer, application.id, error=InvalidTransition)
        assert error.message == "This application has already been decided."
        error = refused(decide, reviewer, application.id + 1, error=NotFound)
        assert error.message == "No such voucher application."
    error = refused(
        application_services.get_application, make_user(Role.ENTERPRISE), application.id, error=NotFound
    )
    assert error.message == "No such voucher application."


@pytest.mark.parametrize("amount_fen", [0, 650_000_01])
def test_an_approval_outside_the_cap_is_refused(world, make_user, amount_fen):
    application = application_services.apply_for_voucher(make_user(Role.ENTERPRISE), 10_000_00, "计划")
    error = refused(
        application_services.approve_application, world["reviewer"], application.id, amount_fen=amount_fen
    )
    assert (error.message, error.fields) == (AMOUNT, {"amount_fen": "Out of range."})


def test_an_approval_takes_at_most_the_budget_not_yet_allocated(world, make_user):
    scheme = world["scheme"]  # 100,000 yuan already allocated to the world's voucher
    for fund in scheme.funds:
        fund.budget_fen = 100_000_00 if fund.name == "province" else 50_000_00
    db.session.commit()
    applications = [
        application_services.apply_for_voucher(make_user(Role.ENTERPRISE), 50_000_01, "计划")
        for _ in range(2)
    ]
    error = refused(
        application_services.approve_application, world["reviewer"], applications[0].id, error=LimitExceeded
    )
    assert error.message == "Only ¥50,000.00 of the scheme's budget is not yet allocated."
    assert error.details == {"limited_by": ["scheme_budget"], "free_fen": 50_000_00}
    application_services.approve_application(world["reviewer"], applications[1].id, amount_fen=50_000_00)
    assert db.session.get(type(scheme), scheme.id).allocated_fen == 150_000_00


def test_an_approval_takes_at_most_what_is_left_of_the_controller_groups_cap(world, make_user, make_voucher):
    scheme, reviewer = world["scheme"], world["reviewer"]
    first, second, outsider = (make_user(Role.ENTERPRISE) for _ in range(3))
    first.enterprise.controller_group = second.enterprise.controller_group = "张三"
    used = make_voucher(first, scheme, 600_000_00)
    used.released_fen = 100_000_00  # released on expiry: no longer counts against the cap
    make_voucher(outsider, scheme, 600_000_00)  # no group: counts for itself only
    db.session.commit()
    application = application_services.apply_for_voucher(second, 150_000_01, "计划")
    error = refused(application_services.approve_application, reviewer, application.id, error=LimitExceeded)
    assert error.message == "The controller group has only ¥150,000.00 of its yearly cap left."
    assert error.details == {"limited_by": ["group_cap"], "free_fen": 150_000_00}
    application_services.approve_application(reviewer, application.id, amount_fen=150_000_00)
    # Allowed (a first approval, above the four-eyes threshold): the outsider's 600,000 are not the group's.
    assert db.session.get(type(application), application.id).first_amount_fen == 150_000_00


def test_a_group_over_its_cap_has_nothing_left_not_less_than_nothing(world, make_user, make_voucher):
    first, second = make_user(Role.ENTERPRISE), make_user(Role.ENTERPRISE)
    first.enterprise.controller_group = second.enterprise.controller_group = "李四"
    make_voucher(first, world["scheme"], 700_000_00)  # above the cap (as a later, lower cap leaves it)
    db.session.commit()
    application = application_services.apply_for_voucher(second, 1, "计划")
    error = refused(
        application_services.approve_application, world["reviewer"], application.id, error=LimitExceeded
    )
    assert error.message == "The controller group has only ¥0.00 of its yearly cap left."
    assert error.details == {"limited_by": ["group_cap"], "free_fen": 0}


# --- enterprise verification ---------------------------------------------------------------------


def verification(kind: str = "other", controller: str = "张建国", number: str | None = None):
    return verification_services.VerificationData(
        kind=kind, actual_controller=controller, tech_sme_number=number
    )


def test_a_verification_request_names_each_missing_field(world, make_user):
    user = make_user(Role.ENTERPRISE, verification_state=VerificationState.PENDING)
    error = refused(verification_services.submit_verification, user, verification("tech_sme", "  ", " "))
    assert (error.message, error.fields) == (
        FIELDS,
        {
            "actual_controller": "Name the actual controller (a person or a company).",
            "tech_sme_number": "Tech SMEs give their registration number.",
            "certificate": "Attach the registration certificate.",
        },
    )
    error = refused(verification_services.submit_verification, user, verification(controller=""))
    assert error.fields == {"actual_controller": "Name the actual controller (a person or a company)."}
    error = refused(
        verification_services.submit_verification, world["reviewer"], verification(), error=Forbidden
    )
    assert error.message == "Only enterprise accounts are verified."


def test_a_verification_request_waits_alone_and_is_decided_once(world, make_user):
    user, reviewer = (
        make_user(Role.ENTERPRISE, verification_state=VerificationState.PENDING),
        world["reviewer"],
    )
    request = verification_services.submit_verification(user, verification())
    error = refused(verification_services.submit_verification, user, verification(), error=InvalidTransition)
    assert error.message == "Your enterprise is already waiting for verification."
    error = refused(verification_services.reject_verification, reviewer, request.id, "  ")
    assert (error.message, error.fields) == ("Please give a reason.", {"reason": "Required."})
    error = refused(verification_services.get_request, user, request.id, error=Forbidden)
    assert error.message == "Only bureau reviewers can decide this."
    assert verification_services.get_request(reviewer, request.id).id == request.id
    verification_services.verify_enterprise(reviewer, request.id)
    error = refused(
        verification_services.reject_verification, reviewer, request.id, "迟了", error=InvalidTransition
    )
    assert error.message == "This request has already been decided."
    error = refused(verification_services.verify_enterprise, reviewer, request.id + 1, error=NotFound)
    assert error.message == "No such verification request."
    again = verification_services.submit_verification(user, verification(controller="李四"))
    assert verification_services.latest_request(user).id == again.id  # the newest, not the first


def test_a_legacy_credit_code_is_verified_only_with_a_reasoned_override(world, make_user):
    user = make_user(Role.ENTERPRISE, verification_state=VerificationState.PENDING)
    user.enterprise.uscc_checksum_ok = False
    db.session.commit()
    request = verification_services.submit_verification(user, verification())
    text = "The credit code fails its checksum: verify only with an override and a recorded reason."
    for override, reason in ((False, "旧版执照"), (True, "  ")):
        error = refused(
            verification_services.verify_enterprise,
            world["reviewer"],
            request.id,
            reason=reason,
            uscc_override=override,
        )
        assert (error.message, error.fields) == (text, {"uscc_override": text})
    verification_services.verify_enterprise(
        world["reviewer"], request.id, reason="旧版执照", uscc_override=True
    )
    assert db.session.get(VerificationRequest, request.id).uscc_override is True


def test_relations_are_declared_by_the_enterprise_itself_or_a_reviewer(world, make_user, make_institution):
    user, host, other_host = make_user(Role.ENTERPRISE), make_institution(), make_institution()
    for stranger in (make_user(Role.ENTERPRISE), make_user(Role.PROVIDER), make_user(Role.FINANCE)):
        error = refused(
            verification_services.add_relation,
            stranger,
            user.enterprise_id,
            host.id,
            RelationKind.AFFILIATE,
            error=Forbidden,
        )
        assert error.message == "You may not declare relations for this enterprise."
    error = refused(
        verification_services.add_relation, user, user.enterprise_id, 999_999, RelationKind.AFFILIATE
    )
    assert (error.message, error.fields) == (
        "Unknown host institution.",
        {"institution": "Unknown host institution."},
    )
    verification_services.add_relation(user, user.enterprise_id, host.id, RelationKind.AFFILIATE)
    verification_services.add_relation(
        world["reviewer"], user.enterprise_id, other_host.id, RelationKind.CO_BUILT
    )
    verification_services.add_relation(
        user, user.enterprise_id, host.id, RelationKind.AFFILIATE
    )  # again: one row
    rows = db.session.scalars(select(EnterpriseRelation).order_by(EnterpriseRelation.id)).all()
    assert [(r.enterprise_id, r.institution_id, r.kind, r.declared_by_id) for r in rows] == [
        (user.enterprise_id, host.id, RelationKind.AFFILIATE, user.id),
        (user.enterprise_id, other_host.id, RelationKind.CO_BUILT, world["reviewer"].id),
    ]
    audit = db.session.scalars(
        select(AuditEvent).where(AuditEvent.action == "enterprise.relation_declared")
    ).all()
    assert [(a.object_id, a.after, a.actor_id) for a in audit][:2] == [
        (str(user.enterprise_id), {"institution": host.id, "kind": "affiliate"}, user.id),
        (str(user.enterprise_id), {"institution": other_host.id, "kind": "co_built"}, world["reviewer"].id),
    ]


# --- approving a claim ---------------------------------------------------------------------------

# Where the room for a 9,000-yuan claim (6,000 from the province, 3,000 from the city) is set.
ROOM = {
    "voucher_balance": lambda w, fen: setattr(w["voucher"], "balance_fen", fen),
    "group_cap": lambda w, fen: setattr(w["scheme"], "group_cap_fen", fen),
    "enterprise_cap": lambda w, fen: setattr(w["scheme"], "enterprise_cap_fen", fen - 3_000_00),
    "province_budget": lambda w, fen: setattr(w["scheme"].funds[0], "budget_fen", fen - 3_000_00),
    "city_budget": lambda w, fen: setattr(w["scheme"].funds[1], "budget_fen", fen - 6_000_00),
}


@pytest.mark.parametrize("limit", ROOM)
@pytest.mark.parametrize("short", [0, 1])
def test_a_claim_is_approved_if_it_fits_exactly_and_refused_a_fen_short(world, limit, short):
    claim = claim_services.create_claim(world["holder"], world["voucher"].id, [world["record"].id])
    claim_services.submit_claim(world["holder"], claim.id)
    ROOM[limit](world, 9_000_00 - short)
    db.session.commit()
    if not short:
        assert review.approve_claim(world["reviewer"], claim.id).state.value == "in_notice"
        return
    error = refused(review.approve_claim, world["reviewer"], claim.id, error=LimitExceeded)
    assert (error.message, error.details) == (
        f"There is no longer room for this claim: {limit}.",
        {"limited_by": [limit]},
    )


def test_a_claim_decided_or_unknown_says_so(world):
    claim = claim_services.create_claim(world["holder"], world["voucher"].id, [world["record"].id])
    for decide in (review.approve_claim, review.reject_claim):
        error = refused(decide, world["reviewer"], claim.id, error=InvalidTransition)
        assert (error.message, error.details) == (
            "This claim is not waiting for a decision.",
            {"state": "draft"},
        )
        assert refused(decide, world["reviewer"], claim.id + 1, error=NotFound).message == "No such claim."
    error = refused(review.approve_claim, world["holder"], claim.id, error=Forbidden)
    assert error.message == "Only bureau reviewers can decide this."


def test_the_first_approver_is_told_a_second_reviewer_must_confirm(
    world, make_user, make_voucher, make_service
):
    holder = make_user(Role.ENTERPRISE)
    voucher = make_voucher(holder, world["scheme"], 300_000_00)
    claim = claim_services.create_claim(holder, voucher.id, [make_service(holder, 100_000_00).id])
    claim_services.submit_claim(holder, claim.id)
    application = application_services.apply_for_voucher(make_user(Role.ENTERPRISE), 200_000_00, "计划")
    text = "A second reviewer must confirm this: you cannot approve your own approval."
    for approve, row in (
        (review.approve_claim, claim),
        (application_services.approve_application, application),
    ):
        approve(world["reviewer"], row.id)  # above the four-eyes threshold: the first approval
        assert refused(approve, world["reviewer"], row.id, error=Forbidden).message == text


def test_only_a_verified_enterprise_applies_or_claims(world, make_user):
    reviewer = world["reviewer"]
    pending = make_user(Role.ENTERPRISE, verification_state=VerificationState.PENDING)
    for user, text in (
        (reviewer, "Only enterprise accounts can do this."),
        (AnonymousUserMixin(), "Only enterprise accounts can do this."),
        (pending, "Your enterprise must be verified by the bureau first."),
    ):
        assert (
            refused(application_services.apply_for_voucher, user, 1, "计划", error=Forbidden).message == text
        )
        error = refused(
            claim_services.preview_claim, user, world["voucher"].id, [world["record"].id], error=Forbidden
        )
        assert error.message == text


# --- the daily tasks, should another writer get there between the lock and the change ------------


def changed_underneath(monkeypatch, module, model, *, lock: str = "lock_existing", **values) -> None:
    """Let `module`'s lock (`lock_existing`, `lock_one`, `locked`: each takes the model and the row's
    id last) return the row as read, then change it behind the session's back (as a writer that the
    lock did not keep out would), so the conditional UPDATE finds nothing to move."""
    real = getattr(module, lock)

    def lock_then_change(*args):
        row = real(*args)
        cls, row_id = args[-2:]
        if cls is model:
            db.session.execute(
                update(model)
                .where(model.id == row_id)
                .values(**values)
                .execution_options(synchronize_session=False)
            )
        return row

    monkeypatch.setattr(module, lock, lock_then_change)


def test_the_end_of_a_notice_that_another_writer_ended_says_so(world, monkeypatch):
    claim = claim_services.create_claim(world["holder"], world["voucher"].id, [world["record"].id])
    claim_services.submit_claim(world["holder"], claim.id)
    review.approve_claim(world["reviewer"], claim.id)
    changed_underneath(monkeypatch, notice, Claim, state=ClaimState.PAYABLE)
    error = refused(notice.end_notice, claim.id, error=InvalidTransition)
    assert (error.message, error.details) == (
        "This claim is not in its public notice.",
        {"state": "in_notice"},
    )


def test_the_expiry_of_a_voucher_that_another_writer_expired_says_so(world, monkeypatch):
    changed_underneath(monkeypatch, wallet, Voucher, state=VoucherState.EXPIRED)
    error = refused(wallet.expire_voucher, world["voucher"].id, error=InvalidTransition)
    assert (error.message, error.details) == ("This voucher has already expired.", {"state": "active"})


# --- enterprise verification: what the mutation run of verification.py showed untested ------------


def test_a_verification_decided_by_another_writer_after_the_lock_says_so(world, make_user, monkeypatch):
    # _decide's refusal (text and details) is given only when the conditional UPDATE finds the
    # request moved on after the lock: another writer is simulated changing it in between.
    user = make_user(Role.ENTERPRISE, verification_state=VerificationState.PENDING)
    request = verification_services.submit_verification(user, verification())
    changed_underneath(
        monkeypatch, verification_services, VerificationRequest, lock="locked", state="verified"
    )
    for action in (verification_services.verify_enterprise, verification_services.reject_verification):
        kwargs = {"reason": "迟了"} if action is verification_services.reject_verification else {}
        error = refused(action, world["reviewer"], request.id, error=InvalidTransition, **kwargs)
        assert (error.message, error.details) == ("This request has already been decided.", {})


def test_a_verification_request_keeps_no_number_and_no_half_declared_relation(
    world, make_user, make_institution
):
    user = make_user(Role.ENTERPRISE, verification_state=VerificationState.PENDING)
    host = make_institution()
    data = verification_services.VerificationData(
        kind="other", actual_controller="王五", tech_sme_number=None, related_institution_id=host.id
    )
    request = verification_services.submit_verification(user, data)
    assert db.session.get(VerificationRequest, request.id).tech_sme_number is None
    assert db.session.scalar(select(func.count()).select_from(EnterpriseRelation)) == 0


def test_two_enterprises_wait_for_verification_side_by_side(world, make_user):
    first, second = (
        make_user(Role.ENTERPRISE, verification_state=VerificationState.PENDING) for _ in range(2)
    )
    verification_services.submit_verification(first, verification())
    assert (
        verification_services.submit_verification(second, verification()).enterprise_id
        == second.enterprise_id
    )


def test_a_rejection_without_any_reason_is_refused(world, make_user):
    user = make_user(Role.ENTERPRISE, verification_state=VerificationState.PENDING)
    request = verification_services.submit_verification(user, verification())
    error = refused(verification_services.reject_verification, world["reviewer"], request.id, None)
    assert (error.message, error.fields) == ("Please give a reason.", {"reason": "Required."})


def test_a_certificate_that_is_no_document_is_refused_on_its_field(world, make_user):
    user = make_user(Role.ENTERPRISE, verification_state=VerificationState.PENDING)
    error = refused(
        verification_services.submit_verification,
        user,
        verification(),
        io.BytesIO(b"MZ\x90\x00" * 64),
        "x.pdf",
    )
    assert error.message and error.fields == {"certificate": error.message}


def test_a_certificate_stored_for_a_request_that_fails_is_removed(world, make_user, monkeypatch):
    user = make_user(Role.ENTERPRISE, verification_state=VerificationState.PENDING)
    folder = uploads.stored_path("x").parent
    before = set(folder.iterdir()) if folder.exists() else set()

    def broken(*_args):
        raise RuntimeError("the database went away")

    monkeypatch.setattr(verification_services, "_new_request", broken)
    with pytest.raises(RuntimeError):
        verification_services.submit_verification(user, verification(), io.BytesIO(PDF), "入库证明.pdf")
    assert (set(folder.iterdir()) if folder.exists() else set()) == before


def test_a_verification_keeps_the_reason_given_for_it(world, make_user):
    user = make_user(Role.ENTERPRISE, verification_state=VerificationState.PENDING)
    user.enterprise.uscc_checksum_ok = False
    db.session.commit()
    request = verification_services.submit_verification(user, verification())
    verification_services.verify_enterprise(
        world["reviewer"], request.id, reason=" 旧版执照 ", uscc_override=True
    )
    row = db.session.get(VerificationRequest, request.id)
    assert (row.reason, row.uscc_override) == ("旧版执照", True)
    # The enterprise hears of it under the request's own key (one message per decision).
    keys = db.session.scalars(
        select(Notification.dedup_key).where(Notification.kind == "verification.verified")
    ).all()
    assert keys == [f"verification:{request.id}:{user.id}"]


def test_a_relation_declared_alone_is_audited_on_the_enterprise(world, make_user, make_institution):
    user = make_user(Role.ENTERPRISE)
    host = make_institution()
    verification_services.add_relation(user, user.enterprise_id, host.id, RelationKind.INVESTOR)
    rows = db.session.scalars(
        select(AuditEvent).where(AuditEvent.action == "enterprise.relation_declared")
    ).all()
    assert [(r.object_type, r.object_id, r.after) for r in rows] == [
        ("enterprise", str(user.enterprise_id), {"institution": host.id, "kind": "investor"})
    ]


# --- voucher applications: what the mutation run of applications.py showed untested --------------


@pytest.mark.parametrize("decide", ["approve", "approve_first", "reject", "return"])
def test_an_application_decided_by_another_writer_after_the_lock_says_so(
    world, make_user, monkeypatch, decide
):
    # Below the four-eyes threshold an approval issues the voucher at once (_issue_voucher); above
    # it, it is the first of two (_approve_once).
    amount = 60_000_00 if decide == "approve_first" else 100_00
    application = application_services.apply_for_voucher(make_user(Role.ENTERPRISE), amount, "计划")
    changed_underneath(
        monkeypatch,
        application_services,
        VoucherApplication,
        lock="lock_one",
        state=ApplicationState.REJECTED,
    )
    action = getattr(application_services, f"{decide.removesuffix('_first')}_application")
    kwargs = {} if decide.startswith("approve") else {"comment": "迟了"}
    error = refused(action, world["reviewer"], application.id, error=InvalidTransition, **kwargs)
    assert (error.message, error.details) == ("This application has already been decided.", {})


def test_a_resubmission_another_writer_got_in_first_says_so(world, make_user, monkeypatch):
    user = make_user(Role.ENTERPRISE)
    application = application_services.apply_for_voucher(user, 10_000_00, "计划")
    application_services.return_application(world["reviewer"], application.id, comment="预算不明")
    real = application_services.get_application

    def read_then_change(who, application_id):
        row = real(who, application_id)
        db.session.execute(
            update(VoucherApplication)
            .where(VoucherApplication.id == application_id)
            .values(state=ApplicationState.SUBMITTED)
            .execution_options(synchronize_session=False)
        )
        return row

    monkeypatch.setattr(application_services, "get_application", read_then_change)
    error = refused(
        application_services.resubmit_application,
        user,
        application.id,
        10_000_00,
        "新计划",
        error=InvalidTransition,
    )
    assert (error.message, error.details) == ("Only a returned application can be submitted again.", {})


def test_an_application_returned_twice_tells_the_enterprise_twice(world, make_user):
    user = make_user(Role.ENTERPRISE)
    application = application_services.apply_for_voucher(user, 10_000_00, "计划")
    reasons = ["预算不明", "计划太简"]
    for reason in reasons:
        application_services.return_application(world["reviewer"], application.id, comment=reason)
        world["clock"].advance(hours=1)
        application_services.resubmit_application(user, application.id, 10_000_00, "计划")
    told = db.session.scalars(
        select(Notification).where(Notification.kind == "application.returned").order_by(Notification.id)
    ).all()
    assert [(n.recipient_id, n.payload["reason"]) for n in told] == [(user.id, reason) for reason in reasons]


def test_a_first_approval_another_writer_got_in_before_says_so(
    world, make_user, make_voucher, make_service, monkeypatch
):
    # Above the four-eyes threshold (review._approve_once): the claim moves on between the lock
    # and the conditional UPDATE.
    holder = make_user(Role.ENTERPRISE)
    voucher = make_voucher(holder, world["scheme"], 300_000_00)
    claim = claim_services.create_claim(holder, voucher.id, [make_service(holder, 100_000_00).id])
    claim_services.submit_claim(holder, claim.id)
    changed_underneath(monkeypatch, review, Claim, lock="lock_one", state=ClaimState.REJECTED)
    error = refused(review.approve_claim, world["reviewer"], claim.id, error=InvalidTransition)
    assert (error.message, error.details) == (
        "This claim is not waiting for a decision.",
        {"state": "submitted"},
    )


def test_the_latest_application_is_the_newest_of_the_enterprise_under_that_scheme(
    world, make_user, make_scheme
):
    # No test in mutmut's selection called latest_application (the voucher page shows it).
    user, other = make_user(Role.ENTERPRISE), make_user(Role.ENTERPRISE)
    assert application_services.latest_application(user, world["scheme"]) is None
    first = application_services.apply_for_voucher(user, 10_000_00, "计划")
    application_services.reject_application(world["reviewer"], first.id, comment="不符合")
    second = application_services.apply_for_voucher(user, 10_000_00, "新计划")
    application_services.apply_for_voucher(other, 10_000_00, "计划")  # another enterprise's, newer
    assert application_services.latest_application(user, world["scheme"]).id == second.id
    assert application_services.latest_application(user, make_scheme(year=2025)) is None


def test_a_first_application_approval_keeps_its_comment_and_its_own_message_key(world, make_user):
    # Above the four-eyes threshold (applications._approve_once).
    other_reviewer = make_user(Role.REVIEWER)
    application = application_services.apply_for_voucher(make_user(Role.ENTERPRISE), 60_000_00, "计划")
    application_services.approve_application(world["reviewer"], application.id, comment=" 金额较大 ")
    row = db.session.scalars(
        select(AuditEvent)
        .where(AuditEvent.object_type == "voucher_application", AuditEvent.object_id == str(application.id))
        .order_by(AuditEvent.id.desc())
    ).first()
    assert (row.after["state"], row.reason, row.actor_id) == (
        "pending_second",
        "金额较大",
        world["reviewer"].id,
    )
    keys = db.session.scalars(
        select(Notification.dedup_key).where(Notification.kind == "voucher_application.second_review")
    ).all()
    assert f"voucher_application:{application.id}:second_review:{other_reviewer.id}" in keys


def test_an_approval_of_exactly_the_group_cap_is_taken(world, make_user):
    # _check_allocation's mutant 4 (`<=` → `<`) refused the cap itself.
    application = application_services.apply_for_voucher(make_user(Role.ENTERPRISE), 650_000_00, "计划")
    application_services.approve_application(world["reviewer"], application.id)
    assert db.session.get(VoucherApplication, application.id).state is ApplicationState.PENDING_SECOND


def test_an_enterprise_outside_any_group_is_capped_on_its_own_vouchers_only(world, make_user, make_voucher):
    # _same_group's mutant 2 counted every other enterprise's vouchers instead of its own.
    other, ours = make_user(Role.ENTERPRISE), make_user(Role.ENTERPRISE)
    for user in (other, ours):
        user.enterprise.controller_group = None
    db.session.commit()
    make_voucher(other, world["scheme"], 600_000_00)
    application = application_services.apply_for_voucher(ours, 40_000_00, "计划")
    application_services.approve_application(world["reviewer"], application.id)
    assert db.session.get(VoucherApplication, application.id).state is ApplicationState.APPROVED


def test_last_years_vouchers_and_applications_do_not_count_against_this_year(
    world, make_user, make_scheme, make_voucher
):
    # _check_allocation's mutant 49 summed the group's vouchers of every scheme; apply_for_voucher's
    # mutant 16 let an open application of any scheme block a new one.
    last_year = make_scheme(year=2025)
    user = make_user(Role.ENTERPRISE)
    make_voucher(user, last_year, 620_000_00)  # with this year's 40,000: above the 650,000 group cap
    db.session.add(
        VoucherApplication(
            enterprise_id=user.enterprise_id, scheme_id=last_year.id, amount_fen=10_000_00, plan="去年的计划"
        )
    )
    db.session.commit()
    application = application_services.apply_for_voucher(user, 40_000_00, "计划")
    application_services.approve_application(world["reviewer"], application.id)
    assert db.session.get(VoucherApplication, application.id).state is ApplicationState.APPROVED


@pytest.mark.parametrize("action", ["approve", "reject", "return"])
def test_a_claim_decided_after_another_writer_moved_it_says_so(world, monkeypatch, action):
    # review._approve 110, 127, 128 (approval below the four-eyes threshold, one step), _turn_down.
    claim = claim_services.create_claim(world["holder"], world["voucher"].id, [world["record"].id])
    claim_services.submit_claim(world["holder"], claim.id)
    changed_underneath(monkeypatch, review, Claim, lock="lock_one", state=ClaimState.REJECTED)
    turn_down = getattr(review, f"{action}_claim")
    error = refused(turn_down, world["reviewer"], claim.id, "迟了", error=InvalidTransition)
    assert (error.message, error.details) == (
        "This claim is not waiting for a decision.",
        {"state": "submitted"},
    )


def test_a_claim_is_approved_against_its_own_schemes_funds(world, make_scheme):
    # review._approve's mutant 17 locked every scheme's funds by name: a later scheme's spent
    # province and city funds stood in for this scheme's.
    make_scheme(year=2027, province_budget=0, city_budget=0)
    claim = claim_services.create_claim(world["holder"], world["voucher"].id, [world["record"].id])
    claim_services.submit_claim(world["holder"], claim.id)
    review.approve_claim(world["reviewer"], claim.id)
    assert db.session.get(Claim, claim.id).state is ClaimState.IN_NOTICE


@pytest.mark.parametrize("short", [0, 1])
def test_an_approval_counts_what_the_caps_have_used_and_names_every_limit_short(world, make_service, short):
    # review._refuse_without_room mutants 8 and 12 added a cap's used amount to its room instead of
    # taking it off (the other tests start from unused caps); 31 joined the names without ", ".
    holder, scheme = world["holder"], world["scheme"]
    earlier = claim_services.create_claim(holder, world["voucher"].id, [make_service(holder, 1_000_00).id])
    claim_services.submit_claim(holder, earlier.id)
    review.approve_claim(world["reviewer"], earlier.id)
    claim = claim_services.create_claim(holder, world["voucher"].id, [world["record"].id])
    claim_services.submit_claim(holder, claim.id)
    used = {row.scope: row.used_fen for row in db.session.scalars(select(CapLedger))}
    assert used == {"enterprise": 600_00, "group": 900_00}  # the earlier claim's province part, and all of it
    scheme.group_cap_fen = used["group"] + 9_000_00 - short
    scheme.enterprise_cap_fen = used["enterprise"] + 6_000_00 - short  # the province fund is capped
    db.session.commit()
    if not short:
        approved = review.approve_claim(world["reviewer"], claim.id)
        assert (approved.state, approved.decided_at) == (ClaimState.IN_NOTICE, world["clock"]())
        assert approved.comment is None  # review.approve_claim 5: no comment is no comment, not "XXXX"
        # review._approve 99 and 102 set a cap's use to this claim's amount instead of adding it.
        caps = {row.scope: row.used_fen for row in db.session.scalars(select(CapLedger))}
        assert caps == {"enterprise": 6_600_00, "group": 9_900_00}
        return
    error = refused(review.approve_claim, world["reviewer"], claim.id, error=LimitExceeded)
    assert (error.message, error.details) == (
        "There is no longer room for this claim: group_cap, enterprise_cap.",
        {"limited_by": ["group_cap", "enterprise_cap"]},
    )


def test_an_approval_refused_for_a_check_failing_since_submission_names_it(world):
    # review._approve mutants 67 and 68: the refusal's text.
    claim = claim_services.create_claim(world["holder"], world["voucher"].id, [world["record"].id])
    claim_services.submit_claim(world["holder"], claim.id)
    world["voucher"].valid_until = world["clock"]().date() - timedelta(days=1)
    db.session.commit()
    error = refused(review.approve_claim, world["reviewer"], claim.id, error=InvalidTransition)
    expired = f"The voucher expired on {world['voucher'].valid_until}."
    assert error.message == f"Not every check passes: {expired}"
    assert [c["code"] for c in error.details["checks"]] == ["voucher_valid"]
    assert db.session.get(Claim, claim.id, populate_existing=True).state is ClaimState.SUBMITTED


def test_an_approved_claim_keeps_its_checks_messages_as_they_read_for_that_claim(world):
    # review._approve mutants 57 and 61 ran the checks' second pass (their messages in each language)
    # without the claim's id: its own services then read as "already in claim #…".
    claim = claim_services.create_claim(world["holder"], world["voucher"].id, [world["record"].id])
    claim_services.submit_claim(world["holder"], claim.id)
    review.approve_claim(world["reviewer"], claim.id)
    chinese = assert_claimed_twice_reads_as_passed(claim.id)
    assert chinese != "No service has been claimed before."


def assert_claimed_twice_reads_as_passed(claim_id: int) -> str:
    """The claim's stored "claimed twice" check passed and reads so in each language; returns the Chinese."""
    stored = {c["code"]: c for c in db.session.get(Claim, claim_id, populate_existing=True).checks}
    assert stored["claimed_twice"]["passed"] is True
    with force_locale("zh"):
        chinese = gettext("No service has been claimed before.")
    assert stored["claimed_twice"]["messages"] == {"en": "No service has been claimed before.", "zh": chinese}
    return chinese


def test_a_submission_refused_for_a_failing_check_names_it(world):
    # claims.submit_claim mutants 56 and 57: the refusal's text.
    claim = claim_services.create_claim(world["holder"], world["voucher"].id, [world["record"].id])
    world["voucher"].valid_until = world["clock"]().date() - timedelta(days=1)
    db.session.commit()
    error = refused(claim_services.submit_claim, world["holder"], claim.id, error=InvalidTransition)
    expired = f"The voucher expired on {world['voucher'].valid_until}."
    assert error.message == f"This claim cannot be submitted until every check passes: {expired}"
    assert db.session.get(Claim, claim.id, populate_existing=True).state is ClaimState.DRAFT


def test_a_submitted_claim_keeps_its_checks_messages_as_they_read_for_that_claim(world):
    # claims.submit_claim mutants 83 and 87 ran the checks' second pass (their messages in each
    # language) without the claim's id: its own services, just reserved, read as "already in claim #…".
    claim = claim_services.create_claim(world["holder"], world["voucher"].id, [world["record"].id])
    claim_services.submit_claim(world["holder"], claim.id)
    assert_claimed_twice_reads_as_passed(claim.id)


def test_a_submission_after_another_writer_moved_the_claim_says_so(world, monkeypatch):
    # claims.submit_claim mutants 92, 93, 98 and 99: the refusal's text and details when the conditional
    # UPDATE finds the claim moved.
    claim = claim_services.create_claim(world["holder"], world["voucher"].id, [world["record"].id])
    changed_underneath(monkeypatch, claim_services, Claim, lock="lock_one", state=ClaimState.SUBMITTED)
    error = refused(claim_services.submit_claim, world["holder"], claim.id, error=InvalidTransition)
    assert (error.message, error.details) == (
        "Only a draft or a returned claim can be submitted.",
        {},
    )
