"""Two transitions of one object raced on separate PostgreSQL connections: exactly one wins.

Both racers read the object in its old state before either writes (a barrier holds them there), so
only the database's guard can stop the second: the conditional UPDATE (`state == before`) of a
booking or a voucher application, and the row lock a claim's decisions take first. Without it both
would "win" and both audit rows would exist.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from portal.accounts.models import User
from portal.booking import services as booking
from portal.booking import transitions
from portal.booking.models import Booking, BookingState
from portal.core.errors import InvalidTransition
from portal.core.models import AuditEvent
from portal.core.permissions import Role
from portal.extensions import db
from portal.vouchers import applications, claims, review
from portal.vouchers.models import ApplicationState, Claim, ClaimState, Voucher, VoucherApplication
from tests.test_booking_rules import WEEKDAY_HOURS

pytestmark = pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)

WEDNESDAY_9 = datetime(2026, 12, 9, 1, 0, tzinfo=UTC)


def hold_until_both_arrive(monkeypatch: pytest.MonkeyPatch, module, name: str, *, after: bool) -> None:
    """Make each racer's first call of `module.name` wait for the other's (before or after the call)."""
    barrier = threading.Barrier(2, timeout=20)
    seen = threading.local()
    original = getattr(module, name)

    def held(*args, **kwargs):
        first = not getattr(seen, "done", False)
        seen.done = True
        if first and not after:
            barrier.wait()
        result = original(*args, **kwargs)
        if first and after:
            barrier.wait()
        return result

    monkeypatch.setattr(module, name, held)


def race(app, *moves: Callable[[], object]) -> list[object]:
    """Run each move in its own thread, app context and database connection; what each returned or raised."""
    results: list[object] = [None] * len(moves)

    def run(index: int) -> None:
        with app.app_context():
            try:
                results[index] = moves[index]()
            except Exception as error:  # the outcome is what the test looks at
                results[index] = error
            finally:
                db.session.remove()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(moves))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(t.is_alive() for t in threads), "a racer did not finish"
    db.session.rollback()
    return results


def user(user_id: int) -> User:
    return db.session.get(User, user_id)


def audit_actions(object_type: str, object_id: int) -> list[str]:
    return list(
        db.session.scalars(
            select(AuditEvent.action)
            .where(AuditEvent.object_type == object_type, AuditEvent.object_id == str(object_id))
            .order_by(AuditEvent.id)
        )
    )


def one_winner(results: list[object]) -> int:
    losers = [r for r in results if isinstance(r, Exception)]
    assert len(losers) == 1, results
    assert isinstance(losers[0], InvalidTransition), losers[0]
    return next(i for i, r in enumerate(results) if not isinstance(r, Exception))


@pytest.mark.parametrize("repeat", range(3))
def test_confirm_and_cancel_of_one_request_exactly_one_wins(
    app, monkeypatch, fake_clock, make_instrument, make_institution, make_user, make_booking, repeat
):
    host = make_institution()
    instrument = make_instrument(institution=host, opening_hours=WEEKDAY_HOURS)
    provider = make_user(Role.PROVIDER, institution=host).id
    owner = make_user(Role.ENTERPRISE)
    # Ids only: the racers must not touch the test's own session (or its expired rows).
    booking_id = make_booking(instrument, owner, WEDNESDAY_9, WEDNESDAY_9 + timedelta(hours=1)).id
    # Both have read the booking as REQUESTED before either writes.
    hold_until_both_arrive(monkeypatch, booking, "_fresh", after=True)

    results = race(
        app,
        lambda: transitions.confirm_booking(user(provider), booking_id),
        lambda: transitions.cancel_booking(user(provider), booking_id, "设备故障"),
    )

    winner = one_winner(results)
    state = db.session.get(Booking, booking_id, populate_existing=True).state
    assert state is (BookingState.CONFIRMED, BookingState.CANCELLED)[winner]
    assert audit_actions("booking", booking_id) == [f"booking.{state.value}"]


@pytest.fixture
def submitted_claim(app, fake_clock, make_scheme, make_user, make_voucher, make_service):
    scheme = make_scheme()
    owner = make_user(Role.ENTERPRISE)
    voucher = make_voucher(owner, scheme, 100_000_00)
    record = make_service(owner, 10_000_00)
    claim = claims.create_claim(owner, voucher.id, [record.id])
    claims.submit_claim(owner, claim.id)
    return {
        "claim": claim.id,
        "voucher": voucher.id,
        "reviewers": [make_user(Role.REVIEWER).id, make_user(Role.REVIEWER).id],
    }


def test_approve_and_return_of_one_claim_exactly_one_wins(app, monkeypatch, submitted_claim):
    claim_id, (first, second) = submitted_claim["claim"], submitted_claim["reviewers"]
    # Both reach the claim's row lock together; the one that waited must see the new state.
    hold_until_both_arrive(monkeypatch, review, "lock_one", after=False)

    results = race(
        app,
        lambda: review.approve_claim(user(first), claim_id, "好"),
        lambda: review.return_claim(user(second), claim_id, "请补充发票"),
    )

    winner = one_winner(results)
    claim = db.session.get(Claim, claim_id, populate_existing=True)
    assert claim.state is (ClaimState.IN_NOTICE, ClaimState.RETURNED)[winner]
    assert audit_actions("claim", claim_id)[2:] == [f"claim.{claim.state.value}"]  # after created, submitted
    balance = db.session.get(Voucher, submitted_claim["voucher"], populate_existing=True).balance_fen
    assert balance == 100_000_00 - (claim.total_fen if winner == 0 else 0)


def test_two_reviewers_approving_one_claim_commit_its_money_once(app, monkeypatch, submitted_claim):
    claim_id, (first, second) = submitted_claim["claim"], submitted_claim["reviewers"]
    hold_until_both_arrive(monkeypatch, review, "lock_one", after=False)

    results = race(
        app,
        lambda: review.approve_claim(user(first), claim_id, "好"),
        lambda: review.approve_claim(user(second), claim_id, "同意"),
    )

    one_winner(results)
    claim = db.session.get(Claim, claim_id, populate_existing=True)
    assert claim.state is ClaimState.IN_NOTICE
    assert audit_actions("claim", claim_id).count("claim.in_notice") == 1
    voucher = db.session.get(Voucher, submitted_claim["voucher"], populate_existing=True)
    assert voucher.balance_fen == 100_000_00 - claim.total_fen
    assert (
        db.session.scalar(
            select(func.count()).select_from(AuditEvent).where(AuditEvent.action == "claim.in_notice")
        )
        == 1
    )


def test_two_resubmissions_of_one_returned_application_exactly_one_wins(
    app, monkeypatch, fake_clock, make_scheme, make_user
):
    scheme = make_scheme()
    holder = make_user(Role.ENTERPRISE)
    application = VoucherApplication(
        enterprise_id=holder.enterprise_id,
        scheme_id=scheme.id,
        amount_fen=10_000_00,
        plan="检测计划",
        state=ApplicationState.RETURNED,
        submitted_at=fake_clock(),
    )
    db.session.add(application)
    db.session.commit()
    application_id, holder_id = application.id, holder.id
    # Nothing locks the row: both have read it RETURNED, only the conditional UPDATE can stop one.
    hold_until_both_arrive(monkeypatch, applications, "get_application", after=True)

    results = race(
        app,
        lambda: applications.resubmit_application(user(holder_id), application_id, 10_000_00, "第一次修改"),
        lambda: applications.resubmit_application(user(holder_id), application_id, 20_000_00, "第二次修改"),
    )

    winner = one_winner(results)
    row = db.session.get(VoucherApplication, application_id, populate_existing=True)
    assert row.state is ApplicationState.SUBMITTED
    assert row.amount_fen == (10_000_00, 20_000_00)[winner]
    assert audit_actions("voucher_application", application_id) == ["voucher_application.submitted"]
