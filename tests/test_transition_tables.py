"""Every state machine refuses every pair its table leaves out, writing nothing.

The forbidden (state, action) pairs are derived from the tables themselves (every state of the
enum crossed with every action the table knows, minus the allowed pairs), so a transition added to
a table by mistake makes one of these tests fail. Every table is the code's own.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from enum import Enum

import pytest
from sqlalchemy import func, select, update

from portal.accounts.models import EnterpriseKind, Institution, User, VerificationState
from portal.booking import records, transitions
from portal.booking.models import Booking, BookingState
from portal.core.errors import Forbidden, InvalidTransition
from portal.core.models import AuditEvent
from portal.core.permissions import Role
from portal.extensions import db
from portal.finance import batches
from portal.finance.models import BATCH_TRANSITIONS, BatchState, DisbursementBatch
from portal.notifications.models import Notification
from portal.vouchers import applications as application_services
from portal.vouchers import claims as claim_services
from portal.vouchers import notice, redemptions, review, wallet
from portal.vouchers import verification as verification_services
from portal.vouchers.models import (
    ApplicationState,
    Claim,
    ClaimState,
    LedgerEntry,
    RedemptionMode,
    RequestState,
    VerificationRequest,
    Voucher,
    VoucherApplication,
    VoucherState,
)
from portal.vouchers.services import open_states, states_allowing, transition
from tests.test_booking_rules import WEEKDAY_HOURS

WEDNESDAY_9 = datetime(2026, 12, 9, 1, 0, tzinfo=UTC)  # 09:00 Beijing


def forbidden(table: dict, states: type[Enum]) -> list[tuple]:
    """Every (state, action) the table does not allow, for every state and every action it names."""
    actions = sorted({action for _state, action in table})
    return [(state, action) for state in states for action in actions if (state, action) not in table]


def ids(pairs: list[tuple]) -> list[str]:
    return [f"{state.value}-{action}" for state, action in pairs]


def written() -> tuple[int, int]:
    """What a refused transition must not have written: audit rows and notifications."""
    db.session.rollback()
    return (
        db.session.scalar(select(func.count()).select_from(AuditEvent)),
        db.session.scalar(select(func.count()).select_from(Notification)),
    )


# --- bookings ------------------------------------------------------------------------------------

BOOKING_FORBIDDEN = forbidden(transitions.TRANSITIONS, BookingState)


def test_the_booking_table_leaves_35_pairs_forbidden():
    # 7 states x 6 actions, 7 allowed: a pair added to the table changes this count first.
    assert len(BOOKING_FORBIDDEN) == 7 * 6 - 7


@pytest.fixture
def booking_world(app, fake_clock, make_instrument, make_institution, make_user, make_booking):
    host = make_institution()
    instrument = make_instrument(institution=host, opening_hours=WEEKDAY_HOURS, fee_per_hour_fen=100_00)
    provider = make_user(Role.PROVIDER, institution=host)
    owner = make_user(Role.ENTERPRISE)

    def make(state: BookingState) -> Booking:
        return make_booking(instrument, owner, WEDNESDAY_9, WEDNESDAY_9 + timedelta(hours=1), state=state)

    # After the slot: completing and no-shows are not refused for being early, only by the table.
    fake_clock.set(WEDNESDAY_9 + timedelta(hours=2))
    return {"make": make, "provider": provider, "owner": owner}


BOOKING_ACTIONS = {
    "confirm": lambda w, b: transitions.confirm_booking(w["provider"], b.id),
    "reject": lambda w, b: transitions.reject_booking(w["provider"], b.id, "不行"),
    "cancel": lambda w, b: transitions.cancel_booking(w["provider"], b.id, "设备故障"),
    "complete": lambda w, b: records.complete_booking(
        w["provider"], b.id, records.ServiceReport(hours=Decimal(1))
    ),
    "no_show": lambda w, b: transitions.mark_no_show(w["provider"], b.id),
    "expire": lambda _w, b: transitions.transition(b, "expire", None),
}


def test_every_booking_action_has_its_service_here():
    assert set(BOOKING_ACTIONS) == {action for _state, action in transitions.TRANSITIONS}


@pytest.mark.parametrize(("state", "action"), BOOKING_FORBIDDEN, ids=ids(BOOKING_FORBIDDEN))
def test_a_forbidden_booking_transition_is_refused_and_writes_nothing(booking_world, state, action):
    row = booking_world["make"](state)
    before = written()
    with pytest.raises(InvalidTransition) as refused:
        BOOKING_ACTIONS[action](booking_world, row)
    assert refused.value.details == {"state": state.value, "action": action}  # what the API answers
    assert written() == before
    assert db.session.get(Booking, row.id, populate_existing=True).state is state


BOOKING_ALLOWED = sorted(transitions.TRANSITIONS, key=lambda pair: (pair[0].value, pair[1]))
# What each allowed transition records besides the state, and why (the audit reason).
BOOKING_REASONS = {"reject": "不行", "cancel": "设备故障", "expire": None}


@pytest.mark.parametrize(("state", "action"), BOOKING_ALLOWED, ids=ids(BOOKING_ALLOWED))
def test_an_allowed_booking_transition_writes_one_audit_row_naming_who_from_and_to(
    booking_world, state, action
):
    row = booking_world["make"](state)
    BOOKING_ACTIONS[action](booking_world, row)
    db.session.commit()
    target = transitions.TRANSITIONS[(state, action)]
    after = db.session.get(Booking, row.id, populate_existing=True)
    assert after.state is target
    assert after.updated_at == WEDNESDAY_9 + timedelta(hours=2)  # the fake clock's now
    event = db.session.scalars(
        select(AuditEvent).where(AuditEvent.object_type == "booking", AuditEvent.object_id == str(row.id))
    ).one()
    assert (event.action, event.before, event.after) == (
        f"booking.{target.value}",
        {"state": state.value},
        {"state": target.value},
    )
    assert event.actor_id == (None if action == "expire" else booking_world["provider"].id)
    assert event.reason == BOOKING_REASONS.get(action)
    if action in ("confirm", "reject"):
        assert after.decided_at is not None
    if action in ("reject", "cancel"):
        assert after.reason == BOOKING_REASONS[action]


def test_the_expiry_task_leaves_every_state_but_requested_alone(booking_world):
    rows = {
        state: booking_world["make"](state) for state in BookingState if state is not BookingState.REQUESTED
    }
    before = written()
    assert transitions.expire_unanswered(WEDNESDAY_9 + timedelta(days=30)) == 0
    assert written() == before
    assert {s: db.session.get(Booking, b.id, populate_existing=True).state for s, b in rows.items()} == {
        s: s for s in rows
    }


def test_the_enterprise_cannot_cancel_what_the_table_forbids(booking_world):
    # The enterprise's own path through cancel_booking is checked by the same table.
    for state in BookingState:
        if (state, "cancel") in transitions.TRANSITIONS:
            continue
        row = booking_world["make"](state)
        before = written()
        with pytest.raises(InvalidTransition):
            transitions.cancel_booking(booking_world["owner"], row.id, None)
        assert written() == before
        assert db.session.get(Booking, row.id, populate_existing=True).state is state


# --- claims --------------------------------------------------------------------------------------

CLAIM_TRANSITIONS = claim_services.CLAIM_TRANSITIONS
# Approving a claim that waits for its second approval is that second approval, not a first one: that
# pair is refused by the table itself (test_a_first_approval_cannot_follow_a_first_approval).
SECOND = (ClaimState.PENDING_SECOND, "first_approval")
CLAIM_FORBIDDEN = [
    p for p in forbidden(CLAIM_TRANSITIONS, ClaimState) if p[1] != "end_notice" and p != SECOND
]


@pytest.fixture
def claim_world(app, fake_clock, make_scheme, make_user, make_voucher, make_service):
    scheme = make_scheme()
    user = make_user(Role.ENTERPRISE)
    voucher = make_voucher(user, scheme, 100_000_00)
    reviewer = make_user(Role.REVIEWER)

    def make(state: ClaimState) -> Claim:
        record = make_service(user, 10_000_00)
        claim = claim_services.create_claim(user, voucher.id, [record.id])
        claim.state = state
        claim.notice_ends_on = date(2026, 11, 1)  # long over: only the state keeps it from payment
        db.session.commit()
        return claim

    providers: dict[int, User] = {}

    def redeemed(claim: Claim) -> User:
        """The claim made a redemption at payment, and its provider's user: withdrawal and expiry are a
        redemption's transitions (its provider's, and the daily task's)."""
        claim.mode = RedemptionMode.AT_PAYMENT
        db.session.commit()
        if claim.institution_id not in providers:
            host = db.session.get(Institution, claim.institution_id)
            providers[claim.institution_id] = make_user(Role.PROVIDER, institution=host)
        return providers[claim.institution_id]

    return {
        "make": make,
        "redeemed": redeemed,
        "user": user,
        "reviewer": reviewer,
        "finance": make_user(Role.FINANCE),
        "voucher": voucher,
        "funds": {f.name: f for f in scheme.funds},
    }


def pay(world: dict, claim: Claim) -> None:
    claim_services.pay_claim(
        world["finance"], claim, world["voucher"], world["funds"], reference="BANK-1", month="2026-12"
    )


CLAIM_ACTIONS = {
    "submit": lambda w, c: claim_services.submit_claim(w["user"], c.id),
    "delete": lambda w, c: claim_services.delete_draft(w["user"], c.id),
    "revise": lambda w, c: claim_services.revise_claim(w["user"], c.id, "已补充发票"),
    "first_approval": lambda w, c: review.approve_claim(w["reviewer"], c.id, "好"),
    "approve": lambda w, c: review.approve_claim(w["reviewer"], c.id, "好"),
    "reject": lambda w, c: review.reject_claim(w["reviewer"], c.id, "不符合"),
    "return": lambda w, c: review.return_claim(w["reviewer"], c.id, "请补充"),
    "pay": pay,
    "withdraw": lambda w, c: redemptions.withdraw_redemption(w["redeemed"](c), c.id),
    "expire": lambda w, c: w["redeemed"](c) and redemptions.expire_redemption(c.id),
}


def test_the_claim_table_leaves_104_pairs_forbidden():
    # 11 states x 11 actions, 17 allowed (issue 21: reserved, withdrawn, expired; withdraw, expire).
    assert len(forbidden(CLAIM_TRANSITIONS, ClaimState)) == 11 * 11 - 17


def test_every_claim_action_has_its_service_here():
    assert set(CLAIM_ACTIONS) | {"end_notice"} == {a for _s, a in CLAIM_TRANSITIONS}


def test_what_waits_for_a_decision_comes_from_the_table():
    assert review.WAITING_CLAIM_STATES == (ClaimState.SUBMITTED, ClaimState.PENDING_SECOND)
    assert application_services.WAITING_APPLICATION_STATES == (
        ApplicationState.SUBMITTED,
        ApplicationState.PENDING_SECOND,
    )


def test_the_states_an_action_leaves_and_the_open_states_are_read_from_a_table_in_the_enums_order():
    # Called here, not only when the modules are imported, so that a change to them shows.
    assert states_allowing(CLAIM_TRANSITIONS, "submit") == (
        ClaimState.DRAFT,
        ClaimState.RETURNED,
        ClaimState.RESERVED,
    )
    assert states_allowing(CLAIM_TRANSITIONS, "expire") == (ClaimState.RETURNED, ClaimState.RESERVED)
    assert states_allowing(CLAIM_TRANSITIONS, "end_notice") == (ClaimState.IN_NOTICE,)
    assert states_allowing(CLAIM_TRANSITIONS, "no such action") == ()
    assert open_states(application_services.APPLICATION_TRANSITIONS) == (
        ApplicationState.SUBMITTED,
        ApplicationState.PENDING_SECOND,
        ApplicationState.RETURNED,
    )
    assert open_states(wallet.VOUCHER_TRANSITIONS) == (VoucherState.ACTIVE,)


@pytest.mark.parametrize(("state", "action"), CLAIM_FORBIDDEN, ids=ids(CLAIM_FORBIDDEN))
def test_a_forbidden_claim_transition_is_refused_and_writes_nothing(claim_world, state, action):
    claim = claim_world["make"](state)
    before = written()
    with pytest.raises(InvalidTransition):
        CLAIM_ACTIONS[action](claim_world, claim)
    assert written() == before
    assert db.session.get(Claim, claim.id, populate_existing=True).state is state


def test_a_first_approval_cannot_follow_a_first_approval(claim_world):
    claim = claim_world["make"](ClaimState.PENDING_SECOND)
    before = written()
    with pytest.raises(InvalidTransition) as refused:
        transition(claim, CLAIM_TRANSITIONS, "first_approval", "refused")
    # The refusal says what the caller gave, with the state the row is in unless told otherwise.
    assert (refused.value.message, refused.value.details) == ("refused", {"state": "pending_second"})
    with pytest.raises(InvalidTransition) as refused:
        transition(claim, CLAIM_TRANSITIONS, "first_approval", "refused", {"why": "told"})
    assert refused.value.details == {"why": "told"}
    assert written() == before


def test_the_end_of_notice_moves_only_claims_in_notice(claim_world):
    claims = {
        state: claim_world["make"](state)
        for state, action in forbidden(CLAIM_TRANSITIONS, ClaimState)
        if action == "end_notice"
    }
    assert ClaimState.IN_NOTICE not in claims and len(claims) == len(ClaimState) - 1
    before = written()
    assert notice.end_public_notice(date(2026, 12, 31)) == 0
    assert not any(notice.end_notice(c.id) for c in claims.values())
    assert written() == before
    assert {s: db.session.get(Claim, c.id, populate_existing=True).state for s, c in claims.items()} == {
        s: s for s in claims
    }


def test_a_transition_refuses_a_row_changed_since_it_was_read(claim_world):
    # The conditional UPDATE (WHERE state is still the one read) is the only guard where nothing locks
    # the row: here another writer returned the claim behind this session's back.
    claim = claim_world["make"](ClaimState.SUBMITTED)
    db.session.execute(
        update(Claim)
        .where(Claim.id == claim.id)
        .values(state=ClaimState.RETURNED)
        .execution_options(synchronize_session=False)
    )
    assert claim.state is ClaimState.SUBMITTED  # what this session still believes
    with pytest.raises(InvalidTransition) as refused:
        transition(claim, CLAIM_TRANSITIONS, "reject", "refused")
    assert (refused.value.message, refused.value.details) == ("refused", {"state": "submitted"})
    with pytest.raises(InvalidTransition) as refused:
        transition(claim, CLAIM_TRANSITIONS, "reject", "refused", lost="reload")  # the loser's own message
    assert (refused.value.message, refused.value.details) == ("reload", {})
    assert db.session.get(Claim, claim.id, populate_existing=True).state is ClaimState.RETURNED


# --- voucher applications ------------------------------------------------------------------------

APPLICATION_TRANSITIONS = application_services.APPLICATION_TRANSITIONS
APPLICATION_FORBIDDEN = [
    p
    for p in forbidden(APPLICATION_TRANSITIONS, ApplicationState)
    if p != (ApplicationState.PENDING_SECOND, "first_approval")  # that is the second approval
]


@pytest.fixture
def application_world(app, fake_clock, make_scheme, make_user):
    scheme = make_scheme()
    user = make_user(Role.ENTERPRISE)
    reviewer = make_user(Role.REVIEWER)
    first = make_user(Role.REVIEWER)

    def make(state: ApplicationState) -> VoucherApplication:
        application = VoucherApplication(
            enterprise_id=user.enterprise_id,
            scheme_id=scheme.id,
            amount_fen=10_000_00,
            plan="检测计划",
            state=state,
            submitted_at=fake_clock(),
            first_reviewer_id=first.id if state is ApplicationState.PENDING_SECOND else None,
            first_amount_fen=10_000_00 if state is ApplicationState.PENDING_SECOND else None,
        )
        db.session.add(application)
        db.session.commit()
        return application

    return {"make": make, "user": user, "reviewer": reviewer}


APPLICATION_ACTIONS = {
    "first_approval": lambda w, a: application_services.approve_application(
        w["reviewer"], a.id, comment="好"
    ),
    "approve": lambda w, a: application_services.approve_application(w["reviewer"], a.id, comment="好"),
    "reject": lambda w, a: application_services.reject_application(w["reviewer"], a.id, comment="不符合"),
    "return": lambda w, a: application_services.return_application(w["reviewer"], a.id, comment="请补充"),
    "resubmit": lambda w, a: application_services.resubmit_application(
        w["user"], a.id, 10_000_00, "修改后的计划"
    ),
}


def test_the_application_table_leaves_17_pairs_forbidden():
    # 5 states x 5 actions, 8 allowed.
    assert len(forbidden(APPLICATION_TRANSITIONS, ApplicationState)) == 5 * 5 - 8


def test_every_application_action_has_its_service_here():
    assert set(APPLICATION_ACTIONS) == {a for _s, a in APPLICATION_TRANSITIONS}


@pytest.mark.parametrize(("state", "action"), APPLICATION_FORBIDDEN, ids=ids(APPLICATION_FORBIDDEN))
def test_a_forbidden_application_transition_is_refused_and_writes_nothing(application_world, state, action):
    application = application_world["make"](state)
    before = written()
    with pytest.raises(InvalidTransition):
        APPLICATION_ACTIONS[action](application_world, application)
    assert written() == before
    assert db.session.get(VoucherApplication, application.id, populate_existing=True).state is state
    assert db.session.scalar(select(func.count()).select_from(Voucher)) == 0


def test_a_first_application_approval_cannot_follow_a_first_approval(application_world):
    application = application_world["make"](ApplicationState.PENDING_SECOND)
    with pytest.raises(InvalidTransition):
        transition(application, APPLICATION_TRANSITIONS, "first_approval", "refused")


# --- enterprise verification ---------------------------------------------------------------------

VERIFICATION_TRANSITIONS = verification_services.VERIFICATION_TRANSITIONS
VERIFICATION_FORBIDDEN = forbidden(VERIFICATION_TRANSITIONS, RequestState)
VERIFICATION_ACTIONS = {
    "verify": verification_services.verify_enterprise,
    "reject": verification_services.reject_verification,
}


def test_the_verification_table_leaves_4_pairs_forbidden():
    # 3 states x 2 actions, 2 allowed.
    assert len(VERIFICATION_FORBIDDEN) == 3 * 2 - 2
    assert set(VERIFICATION_ACTIONS) == {a for _s, a in VERIFICATION_TRANSITIONS}


@pytest.mark.parametrize(("state", "action"), VERIFICATION_FORBIDDEN, ids=ids(VERIFICATION_FORBIDDEN))
def test_a_decided_verification_request_cannot_be_decided_again(app, make_user, state, action):
    user = make_user(Role.ENTERPRISE, verification_state=VerificationState.PENDING)
    reviewer = make_user(Role.REVIEWER)
    request = VerificationRequest(
        enterprise_id=user.enterprise_id,
        kind=EnterpriseKind.TECH_SME,
        actual_controller="张建国",
        submitted_by_id=user.id,
        state=state,
    )
    db.session.add(request)
    db.session.commit()
    before = written()
    with pytest.raises(InvalidTransition):
        VERIFICATION_ACTIONS[action](reviewer, request.id, reason="理由")
    assert written() == before
    assert db.session.get(VerificationRequest, request.id, populate_existing=True).state is state
    assert user.enterprise.verification_state is VerificationState.PENDING


# --- vouchers ------------------------------------------------------------------------------------

VOUCHER_FORBIDDEN = forbidden(wallet.VOUCHER_TRANSITIONS, VoucherState)


def test_the_voucher_table_leaves_1_pair_forbidden():
    assert VOUCHER_FORBIDDEN == [(VoucherState.EXPIRED, "expire")]


@pytest.mark.parametrize(("state", "action"), VOUCHER_FORBIDDEN, ids=ids(VOUCHER_FORBIDDEN))
def test_a_forbidden_voucher_transition_changes_nothing(
    app, fake_clock, make_scheme, make_user, make_voucher, state, action
):
    scheme = make_scheme()
    voucher = make_voucher(make_user(Role.ENTERPRISE), scheme, 10_000_00, valid_until=date(2026, 6, 30))
    voucher.state = state
    db.session.commit()
    ledger = db.session.scalar(select(func.count()).select_from(LedgerEntry))
    allocated = scheme.allocated_fen
    before = written()
    assert wallet.expire_voucher(voucher.id) is False  # a daily task: a forbidden pair is skipped
    assert wallet.expire_vouchers(date(2026, 12, 7)) == 0
    assert written() == before
    assert db.session.scalar(select(func.count()).select_from(LedgerEntry)) == ledger
    db.session.refresh(scheme)
    assert scheme.allocated_fen == allocated
    assert db.session.get(Voucher, voucher.id, populate_existing=True).state is state


def test_an_expired_voucher_does_not_expire_again(app, fake_clock, make_scheme, make_user, make_voucher):
    scheme = make_scheme()
    voucher = make_voucher(make_user(Role.ENTERPRISE), scheme, 10_000_00, valid_until=date(2026, 6, 30))
    assert wallet.expire_vouchers(date(2026, 12, 6)) == 1
    ledger = db.session.scalar(select(func.count()).select_from(LedgerEntry))
    allocated = scheme.allocated_fen
    before = written()
    wallet.expire_vouchers(date(2026, 12, 7))
    assert written() == before
    assert db.session.scalar(select(func.count()).select_from(LedgerEntry)) == ledger
    db.session.refresh(scheme)
    assert scheme.allocated_fen == allocated
    assert db.session.get(Voucher, voucher.id).state is VoucherState.EXPIRED


# --- disbursement batches: DRAFT -> EXPORTED -> PAID (finance.models.BATCH_TRANSITIONS) -----------

BATCH_FORBIDDEN = forbidden(BATCH_TRANSITIONS, BatchState)
BATCH_ACTIONS = {
    "export": lambda officer, batch: batches.export_batch(officer, batch.id),
    "pay": lambda officer, batch: batches.mark_batch_paid(officer, batch.id, "BANK-1"),
}
BATCH_CAN = {"export": batches.can_export_batch, "pay": batches.can_mark_batch_paid}


def test_the_batch_table_leaves_3_pairs_forbidden():
    # 3 states x 2 actions, 3 allowed: a pair added to the table changes this count first.
    assert len(BATCH_FORBIDDEN) == 3 * 2 - 3


def test_every_batch_action_has_its_service_and_its_question_here():
    assert set(BATCH_ACTIONS) == set(BATCH_CAN) == {action for _state, action in BATCH_TRANSITIONS}


@pytest.mark.parametrize(("state", "action"), BATCH_FORBIDDEN, ids=ids(BATCH_FORBIDDEN))
def test_a_forbidden_batch_transition_is_refused_and_writes_nothing(
    app, fake_clock, make_user, state, action
):
    officer = make_user(Role.FINANCE)
    batch = DisbursementBatch(month="2026-11", state=state, created_by_id=officer.id)
    db.session.add(batch)
    db.session.commit()
    assert not BATCH_CAN[action](officer, batch)
    before = written()
    with pytest.raises(InvalidTransition) as refused:
        BATCH_ACTIONS[action](officer, batch)
    assert refused.value.details == {"state": state.value, "action": action}  # what the API answers
    assert written() == before
    assert db.session.get(DisbursementBatch, batch.id, populate_existing=True).state is state


@pytest.mark.parametrize("role", [Role.REVIEWER, Role.ENTERPRISE, Role.PROVIDER])
def test_only_finance_may_move_a_batch(app, fake_clock, make_user, role):
    user = make_user(role)
    batch = DisbursementBatch(
        month="2026-11", state=BatchState.EXPORTED, created_by_id=make_user(Role.FINANCE).id
    )
    db.session.add(batch)
    db.session.commit()
    assert not batches.can_build_batch(user)
    for action, move in BATCH_ACTIONS.items():
        assert not BATCH_CAN[action](user, batch)
        with pytest.raises(Forbidden):
            move(user, batch)


# --- can_<action>: what the pages offer, for every state and every kind of user -------------------

CAN_ACTORS = (
    "holder",
    "colleague",
    "other_enterprise",
    "reviewer",
    "first_reviewer",
    "finance",
    "admin",
    "provider",
)
REVIEWERS = {"reviewer", "first_reviewer", "admin"}
WAITING = {"submitted", "pending_second"}


def may_approve(actor: str, state: str) -> bool:
    # The second approval must be someone else's than the first.
    return (
        actor in REVIEWERS
        and state in WAITING
        and not (actor == "first_reviewer" and state == "pending_second")
    )


CLAIM_CAN = {
    claim_services.can_submit_claim: lambda a, s: a == "holder" and s in {"draft", "returned"},
    claim_services.can_revise_claim: lambda a, s: a == "holder" and s == "returned",
    claim_services.can_delete_claim: lambda a, s: a in {"holder", "colleague"} and s == "draft",
    claim_services.can_pay_claim: lambda a, s: a in {"finance", "admin"} and s == "payable",
    review.can_decide_claim: lambda a, s: a in REVIEWERS and s in WAITING,
    review.can_reject_claim: lambda a, s: a in REVIEWERS and s in WAITING,
    review.can_return_claim: lambda a, s: a in REVIEWERS and s in WAITING,
    review.can_approve_claim: may_approve,
    # At payment (issue 21): the provider of the claim's institution submits and withdraws.
    redemptions.can_submit_redemption: lambda a, s: a == "provider" and s == "reserved",
    redemptions.can_withdraw_redemption: lambda a, s: a == "provider" and s == "reserved",
}
# The states only a redemption at payment is ever in.
REDEMPTION_STATES = {"reserved", "withdrawn", "expired"}
APPLICATION_CAN = {
    application_services.can_resubmit_application: lambda a, s: a == "holder" and s == "returned",
    application_services.can_decide_application: lambda a, s: a in REVIEWERS and s in WAITING,
    application_services.can_reject_application: lambda a, s: a in REVIEWERS and s in WAITING,
    application_services.can_return_application: lambda a, s: a in REVIEWERS and s in WAITING,
    application_services.can_approve_application: may_approve,
}
VERIFICATION_CAN = {
    verification_services.can_decide_verification: lambda a, s: a in REVIEWERS and s == "submitted",
    verification_services.can_verify_enterprise: lambda a, s: a in REVIEWERS and s == "submitted",
    verification_services.can_reject_verification: lambda a, s: a in REVIEWERS and s == "submitted",
}


@pytest.fixture
def actors(app, make_user):
    holder = make_user(Role.ENTERPRISE)
    return {
        "holder": holder,
        "colleague": make_user(Role.ENTERPRISE, enterprise=holder.enterprise, is_holder=False),
        "other_enterprise": make_user(Role.ENTERPRISE),
        "reviewer": make_user(Role.REVIEWER),
        "first_reviewer": make_user(Role.REVIEWER),
        "finance": make_user(Role.FINANCE),
        "admin": make_user(Role.ADMIN),
        "provider": make_user(Role.PROVIDER),
    }


ROWS = {
    # A row in a given state, of the holder's enterprise; the first reviewer gave any first approval.
    "claim": (Claim, ClaimState, CLAIM_CAN),
    "application": (VoucherApplication, ApplicationState, APPLICATION_CAN),
    "verification": (VerificationRequest, RequestState, VERIFICATION_CAN),
}


@pytest.mark.parametrize("kind", ROWS)
def test_each_can_action_answers_as_its_rule_says(actors, kind):
    model, states, table = ROWS[kind]
    extra = {} if model is VerificationRequest else {"first_reviewer_id": actors["first_reviewer"].id}
    got, expected = set(), set()
    for state in states:
        row = model(enterprise_id=actors["holder"].enterprise_id, state=state, **extra)
        if model is Claim:  # of the provider's institution; at payment in the states only it has
            row.institution_id = actors["provider"].institution_id
            at_payment = state.value in REDEMPTION_STATES
            row.mode = RedemptionMode.AT_PAYMENT if at_payment else RedemptionMode.REIMBURSEMENT
        for can, rule in table.items():
            for name in CAN_ACTORS:
                key = (can.__name__, name, state.value)
                if can(actors[name], row):
                    got.add(key)
                if rule(name, state.value):
                    expected.add(key)
    assert got == expected


def test_each_batch_can_action_answers_as_its_rule_says(actors):
    finance = {"finance", "admin"}
    for name in CAN_ACTORS:
        assert batches.can_build_batch(actors[name]) is (name in finance)
        for state in BatchState:
            batch = DisbursementBatch(month="2026-11", state=state)
            assert batches.can_export_batch(actors[name], batch) is (
                name in finance and state.value != "paid"
            )
            assert batches.can_mark_batch_paid(actors[name], batch) is (
                name in finance and state.value == "exported"
            )
