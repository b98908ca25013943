"""Approval and payment on the same voucher, at the same moment on separate PostgreSQL connections,
never deadlock and leave every balance exact (issue 15: one lock order for every money path)."""

from __future__ import annotations

import threading
import time

import pytest
from sqlalchemy import func, select

from portal.accounts.models import User
from portal.core.database import serialized_write
from portal.core.locks import LockOrderError, Rank, lock_one, lock_where
from portal.core.permissions import Role
from portal.extensions import db
from portal.finance import batches
from portal.finance import services as finance
from portal.finance.models import BatchState, DisbursementBatch
from portal.vouchers import claims as claim_services
from portal.vouchers import notice as public_notice
from portal.vouchers import review
from portal.vouchers.models import Claim, ClaimState, Fund, LedgerEntry, LedgerKind, Voucher
from tests.conftest import make_app

pytestmark = pytest.mark.both_backends  # the backend's own paths: see tests/conftest.py

ROUNDS = 30
FEE = 1_000_00  # a 1,000-yuan service at a local provider: 600 provincial + 300 city
PROVINCE, CITY = 600_00, 300_00
# A round that waits longer than this is stuck (PostgreSQL reports a deadlock after one second).
ROUND_SECONDS = 30


@pytest.fixture
def money(database_url, fake_clock, make_scheme, make_user, make_voucher, make_bank_account):
    if database_url.startswith("sqlite"):
        pytest.skip("SQLite serialises every writer (BEGIN IMMEDIATE): no two transactions hold row locks")
    app = make_app(database_url, SQLALCHEMY_ENGINE_OPTIONS={"pool_size": 4, "max_overflow": 0})
    scheme = make_scheme(public_notice_days=0)  # approved today, payable today
    user = make_user(Role.ENTERPRISE)
    make_bank_account(user)
    voucher = make_voucher(user, scheme, quota_fen=(2 * ROUNDS + 1) * (PROVINCE + CITY))
    yield app, user, voucher, make_user(Role.REVIEWER), make_user(Role.FINANCE)
    with app.app_context():
        db.engine.dispose()


def race(app, *jobs) -> list[BaseException]:
    """Run each job in its own thread, app context and connection, released together; their errors."""
    barrier, errors = threading.Barrier(len(jobs)), []

    def run(job) -> None:
        with app.app_context():
            try:
                barrier.wait()
                job()
            except BaseException as error:
                errors.append(error)
            finally:
                db.session.remove()

    threads = [threading.Thread(target=run, args=(job,)) for job in jobs]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=ROUND_SECONDS)
    assert not any(t.is_alive() for t in threads), "a racer is stuck"
    assert time.monotonic() - started < ROUND_SECONDS
    return errors


def test_approving_one_claim_while_paying_another_on_the_same_voucher_never_deadlocks(
    money, make_service, fake_clock
):
    app, user, voucher, reviewer, clerk = money
    month = finance.month_of(fake_clock())
    reviewer_id, clerk_id = reviewer.id, clerk.id  # the racers load their own copies
    for round_number in range(ROUNDS):
        # Claims of the voucher are payable in an exported batch (a new one, and the one approved in
        # the round before: the notice lasts no day), another waits for approval.
        paying = claim_services.create_claim(user, voucher.id, [make_service(user, FEE).id])
        claim_services.submit_claim(user, paying.id)
        review.approve_claim(reviewer, paying.id)
        public_notice.end_public_notice()
        batch = batches.build_batch(clerk, month)
        assert batch.claims == (1 if round_number == 0 else 2)
        batches.export_batch(clerk, batch.id)
        approving = claim_services.create_claim(user, voucher.id, [make_service(user, FEE).id])
        claim_services.submit_claim(user, approving.id)
        batch_id, approving_id = batch.id, approving.id

        def approve(claim_id: int = approving_id) -> None:
            review.approve_claim(db.session.get(User, reviewer_id), claim_id)

        def pay(batch_id: int = batch_id, reference: str = f"BANK-{round_number}") -> None:
            batches.mark_batch_paid(db.session.get(User, clerk_id), batch_id, reference)

        errors = race(app, approve, pay)
        assert errors == [], f"round {round_number}: {errors!r}"
        db.session.rollback()  # a fresh transaction sees what the racers committed
        assert db.session.get(DisbursementBatch, batch_id).state is BatchState.PAID
        assert db.session.get(Claim, approving_id).state is ClaimState.IN_NOTICE

    # Every claim approved once and all but the last paid: the funds, the voucher and its ledger agree.
    claims = db.session.scalars(select(Claim).where(Claim.voucher_id == voucher.id)).all()
    assert sorted(c.state.value for c in claims) == ["in_notice"] + ["paid"] * (2 * ROUNDS - 1)
    funds = {f.name: (f.committed_fen, f.paid_fen) for f in db.session.scalars(select(Fund))}
    assert funds == {
        "province": (2 * ROUNDS * PROVINCE, (2 * ROUNDS - 1) * PROVINCE),
        "city": (2 * ROUNDS * CITY, (2 * ROUNDS - 1) * CITY),
    }
    assert db.session.get(Voucher, voucher.id).balance_fen == PROVINCE + CITY
    ledger = dict(
        db.session.execute(
            select(LedgerEntry.kind, func.count())
            .where(LedgerEntry.voucher_id == voucher.id)
            .group_by(LedgerEntry.kind)
        ).all()
    )
    assert ledger == {LedgerKind.ISSUED: 1, LedgerKind.COMMITTED: 2 * ROUNDS, LedgerKind.PAID: 2 * ROUNDS - 1}


def test_a_lock_taken_against_the_order_is_refused_and_each_transaction_starts_afresh(
    make_scheme, make_user, make_voucher
):
    scheme = make_scheme()
    voucher = make_voucher(make_user(Role.ENTERPRISE), scheme)
    with serialized_write():
        assert lock_one(Rank.VOUCHERS, Voucher, voucher.id) is not None
        with pytest.raises(LockOrderError, match="FUNDS after VOUCHERS"):
            lock_where(Rank.FUNDS, Fund, Fund.scheme_id == scheme.id)
    with serialized_write():  # a new transaction: the funds come first again
        assert len(lock_where(Rank.FUNDS, Fund, Fund.scheme_id == scheme.id)) == 2
        with pytest.raises(LockOrderError, match="FUNDS after FUNDS"):
            lock_where(Rank.FUNDS, Fund, Fund.scheme_id == scheme.id)  # a rank is taken in one step
        db.session.rollback()
