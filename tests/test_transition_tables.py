"""Every state machine refuses every pair its table leaves out, writing nothing.

The forbidden (state, action) pairs are derived from the tables themselves (every state of the
enum crossed with every action the table knows, minus the allowed pairs), so a transition added to
a table by mistake makes one of these tests fail. Machines without a table in the code (enterprise
verification, vouchers, disbursement batches) get theirs here, written from the code's states.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from enum import Enum

import pytest
from sqlalchemy import func, select

from portal.accounts.models import EnterpriseKind, VerificationState
from portal.booking import records, transitions
from portal.booking.models import Booking, BookingState
from portal.core.errors import InvalidTransition
from portal.core.models import AuditEvent
from portal.core.permissions import Role
from portal.extensions import db
from portal.finance import services as finance
from portal.finance.models import BatchState, DisbursementBatch
from portal.notifications.models import Notification
from portal.vouchers import services as vouchers
from portal.vouchers.models import (
    ApplicationState,
    Claim,
    ClaimState,
    LedgerEntry,
    RequestState,
    VerificationRequest,
    Voucher,
    VoucherApplication,
    VoucherState,
)
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

# "pay" (PAYABLE -> PAID) happens in finance.mark_batch_paid for a whole batch; it is being moved into
# the claim's own module (issue 15, item 1), where its forbidden pairs belong.
CLAIM_FORBIDDEN = [p for p in forbidden(vouchers.CLAIM_TRANSITIONS, ClaimState) if p[1] != "pay"]


@pytest.fixture
def claim_world(app, fake_clock, make_scheme, make_user, make_voucher, make_service):
    scheme = make_scheme()
    user = make_user(Role.ENTERPRISE)
    voucher = make_voucher(user, scheme, 100_000_00)
    reviewer = make_user(Role.REVIEWER)

    def make(state: ClaimState) -> Claim:
        record = make_service(user, 10_000_00)
        claim = vouchers.create_claim(user, voucher.id, [record.id])
        claim.state = state
        claim.notice_ends_on = date(2026, 11, 1)  # long over: only the state keeps it from payment
        db.session.commit()
        return claim

    return {"make": make, "user": user, "reviewer": reviewer}


CLAIM_ACTIONS = {
    "submit": lambda w, c: vouchers.submit_claim(w["user"], c.id),
    "delete": lambda w, c: vouchers.delete_draft(w["user"], c.id),
    "revise": lambda w, c: vouchers.revise_claim(w["user"], c.id, "已补充发票"),
    "approve": lambda w, c: vouchers.decide_claim(w["reviewer"], c.id, "approve", "好"),
    "reject": lambda w, c: vouchers.decide_claim(w["reviewer"], c.id, "reject", "不符合"),
    "return": lambda w, c: vouchers.decide_claim(w["reviewer"], c.id, "return", "请补充"),
}


def test_the_claim_table_leaves_52_pairs_forbidden():
    # 8 states x 8 actions, 12 allowed.
    assert len(forbidden(vouchers.CLAIM_TRANSITIONS, ClaimState)) == 8 * 8 - 12


def test_every_claim_action_has_its_service_here():
    assert set(CLAIM_ACTIONS) | {"end_notice", "pay"} == {a for _s, a in vouchers.CLAIM_TRANSITIONS}


@pytest.mark.parametrize(
    ("state", "action"),
    [p for p in CLAIM_FORBIDDEN if p[1] != "end_notice"],
    ids=ids([p for p in CLAIM_FORBIDDEN if p[1] != "end_notice"]),
)
def test_a_forbidden_claim_transition_is_refused_and_writes_nothing(claim_world, state, action):
    claim = claim_world["make"](state)
    before = written()
    with pytest.raises(InvalidTransition):
        CLAIM_ACTIONS[action](claim_world, claim)
    assert written() == before
    assert db.session.get(Claim, claim.id, populate_existing=True).state is state


def test_the_end_of_notice_moves_only_claims_in_notice(claim_world):
    claims = {
        state: claim_world["make"](state) for state, action in CLAIM_FORBIDDEN if action == "end_notice"
    }
    assert ClaimState.IN_NOTICE not in claims and len(claims) == len(ClaimState) - 1
    before = written()
    assert vouchers.end_public_notice(date(2026, 12, 31)) == 0
    assert written() == before
    assert {s: db.session.get(Claim, c.id, populate_existing=True).state for s, c in claims.items()} == {
        s: s for s in claims
    }


# --- voucher applications ------------------------------------------------------------------------

APPLICATION_FORBIDDEN = forbidden(vouchers.APPLICATION_TRANSITIONS, ApplicationState)


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
    "approve": lambda w, a: vouchers.decide_application(w["reviewer"], a.id, "approve", comment="好"),
    "reject": lambda w, a: vouchers.decide_application(w["reviewer"], a.id, "reject", comment="不符合"),
    "return": lambda w, a: vouchers.decide_application(w["reviewer"], a.id, "return", comment="请补充"),
    "resubmit": lambda w, a: vouchers.resubmit_application(w["user"], a.id, 10_000_00, "修改后的计划"),
}


def test_the_application_table_leaves_13_pairs_forbidden():
    # 5 states x 4 actions, 7 allowed.
    assert len(APPLICATION_FORBIDDEN) == 5 * 4 - 7


def test_every_application_action_has_its_service_here():
    assert set(APPLICATION_ACTIONS) == {a for _s, a in vouchers.APPLICATION_TRANSITIONS}


@pytest.mark.parametrize(("state", "action"), APPLICATION_FORBIDDEN, ids=ids(APPLICATION_FORBIDDEN))
def test_a_forbidden_application_transition_is_refused_and_writes_nothing(application_world, state, action):
    application = application_world["make"](state)
    before = written()
    with pytest.raises(InvalidTransition):
        APPLICATION_ACTIONS[action](application_world, application)
    assert written() == before
    assert db.session.get(VoucherApplication, application.id, populate_existing=True).state is state
    assert db.session.scalar(select(func.count()).select_from(Voucher)) == 0


# --- enterprise verification (no table in the code: this is it) ----------------------------------

VERIFICATION_TRANSITIONS = {
    (RequestState.SUBMITTED, "verify"): RequestState.VERIFIED,
    (RequestState.SUBMITTED, "reject"): RequestState.REJECTED,
}
VERIFICATION_FORBIDDEN = forbidden(VERIFICATION_TRANSITIONS, RequestState)


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
        vouchers.decide_verification(reviewer, request.id, verify=action == "verify", reason="理由")
    assert written() == before
    assert db.session.get(VerificationRequest, request.id, populate_existing=True).state is state
    assert user.enterprise.verification_state is VerificationState.PENDING


# --- vouchers: ACTIVE -> EXPIRED only -------------------------------------------------------------


def test_an_expired_voucher_does_not_expire_again(app, fake_clock, make_scheme, make_user, make_voucher):
    scheme = make_scheme()
    voucher = make_voucher(make_user(Role.ENTERPRISE), scheme, 10_000_00, valid_until=date(2026, 6, 30))
    assert vouchers.expire_vouchers(date(2026, 12, 6)) == 1
    ledger = db.session.scalar(select(func.count()).select_from(LedgerEntry))
    allocated = scheme.allocated_fen
    before = written()
    vouchers.expire_vouchers(date(2026, 12, 7))
    assert written() == before
    assert db.session.scalar(select(func.count()).select_from(LedgerEntry)) == ledger
    db.session.refresh(scheme)
    assert scheme.allocated_fen == allocated
    assert db.session.get(Voucher, voucher.id).state is VoucherState.EXPIRED


# --- disbursement batches: DRAFT -> EXPORTED -> PAID (no table in the code: this is it) -----------

BATCH_TRANSITIONS = {
    (BatchState.DRAFT, "export"): BatchState.EXPORTED,
    (BatchState.EXPORTED, "export"): BatchState.EXPORTED,  # the bank file may be fetched again
    (BatchState.EXPORTED, "pay"): BatchState.PAID,
}
BATCH_FORBIDDEN = forbidden(BATCH_TRANSITIONS, BatchState)


@pytest.mark.parametrize(("state", "action"), BATCH_FORBIDDEN, ids=ids(BATCH_FORBIDDEN))
def test_a_forbidden_batch_transition_is_refused_and_writes_nothing(
    app, fake_clock, make_user, state, action
):
    officer = make_user(Role.FINANCE)
    batch = DisbursementBatch(month="2026-11", state=state, created_by_id=officer.id)
    db.session.add(batch)
    db.session.commit()
    before = written()
    with pytest.raises(InvalidTransition):
        if action == "export":
            finance.export_batch(officer, batch.id)
        else:
            finance.mark_batch_paid(officer, batch.id, "BANK-1")
    assert written() == before
    assert db.session.get(DisbursementBatch, batch.id, populate_existing=True).state is state
