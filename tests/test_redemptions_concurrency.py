"""Vouchers at payment raced on separate connections (issue 21): many reservations at the same moment
never promise a voucher twice, one service is never reserved twice, and a redemption approved by many
clicks at once is committed once and paid once."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from portal.accounts.models import BankAccount, BankAccountState
from portal.booking.models import FileKind, ServiceRecord
from portal.core import clock
from portal.core.errors import InvalidTransition
from portal.core.models import AuditEvent
from portal.core.permissions import Role
from portal.extensions import db
from portal.finance import batches
from portal.finance.services import month_of
from portal.vouchers import notice, redemptions
from portal.vouchers.models import CapLedger, Claim, ClaimState, Fund, LedgerEntry, LedgerKind, Voucher
from tests.conftest import make_app

pytestmark = pytest.mark.both_backends  # the backend's own paths: see tests/conftest.py

RACERS = 32
CLICKS = 16
FEE = 10_000_00
SUBSIDY = 9_000_00  # of a 10,000-yuan service at a local provider: 6,000 provincial + 3,000 city
EVIDENCE = (FileKind.CONTRACT, FileKind.INVOICE, FileKind.RECEIPT, FileKind.RESULT)


def race(app, path: str, tokens: list[str], bodies: list[dict]) -> list[tuple[int, dict]]:
    """Every request at the same moment, each from its own thread, test client and connection."""
    barrier = threading.Barrier(len(bodies))
    results: list = [None] * len(bodies)

    def run(index: int) -> None:
        client = app.test_client()
        barrier.wait()
        response = client.post(
            path.format(**bodies[index]),
            json={k: v for k, v in bodies[index].items() if k != "claim_id"},
            headers={"Authorization": f"Bearer {tokens[index % len(tokens)]}"},
        )
        results[index] = (response.status_code, response.get_json())

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(bodies))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert all(r is not None for r in results), "a racer did not finish"
    return results


@pytest.fixture
def racing(
    database_url,
    many_connections,
    fake_clock,
    make_scheme,
    make_user,
    make_voucher,
    make_institution,
    make_instrument,
    make_service,
):
    """An app of its own with a pool for every racer; a scheme offering both modes, an enterprise,
    a local provider institution with its instrument and four provider users, a token for every
    racer, and four reviewers."""
    from portal.accounts.services import issue_api_token

    app = make_app(database_url, SQLALCHEMY_ENGINE_OPTIONS={"pool_size": RACERS + 4, "max_overflow": 0})

    class World:
        def __init__(self) -> None:
            self.scheme = make_scheme(redemption_modes=["reimbursement", "at_payment"])
            self.enterprise_user = make_user(Role.ENTERPRISE)
            self.instrument = make_instrument(institution=make_institution(is_local=True))
            host = self.instrument.institution
            self.providers = [make_user(Role.PROVIDER, institution=host) for _ in range(4)]
            self.provider_tokens = [issue_api_token(self.providers[n % 4])[0] for n in range(RACERS)]
            self.reviewer_tokens = [issue_api_token(make_user(Role.REVIEWER))[0] for _ in range(4)]

        def voucher(self, quota_fen: int) -> Voucher:
            return make_voucher(self.enterprise_user, self.scheme, quota_fen=quota_fen)

        def services(self, count: int) -> list[int]:
            return [
                make_service(self.enterprise_user, FEE, instrument=self.instrument, evidence=EVIDENCE).id
                for _ in range(count)
            ]

    world = World()
    yield app, world
    with app.app_context():
        db.engine.dispose()


def reserve_all(app, world, voucher: Voucher, record_ids: list[int]) -> list[tuple[int, dict]]:
    bodies = [{"service_record_id": r, "voucher_code": voucher.code} for r in record_ids]
    return race(app, "/api/v1/redemptions", world.provider_tokens, bodies)


def refusals(results) -> list[tuple[int, str]]:
    return sorted((code, body["error"]["code"]) for code, body in results if code != 201)


def holdings(voucher_id: int) -> dict:
    """What the reservations hold, read afresh: funds, caps, balance, and the ledger's kinds."""
    db.session.rollback()  # a fresh transaction sees what the racers committed
    ledger = db.session.execute(
        select(LedgerEntry.kind, func.count(), func.sum(LedgerEntry.amount_fen))
        .where(LedgerEntry.voucher_id == voucher_id)
        .group_by(LedgerEntry.kind)
    ).all()
    return {
        "reserved": {f.name: f.reserved_fen for f in db.session.scalars(select(Fund))},
        "committed": {f.name: f.committed_fen for f in db.session.scalars(select(Fund))},
        "caps": {c.scope: c.used_fen for c in db.session.scalars(select(CapLedger))},
        "balance": db.session.get_one(Voucher, voucher_id).balance_fen,
        "ledger": {kind: (count, total) for kind, count, total in ledger},
    }


def test_thirty_two_services_reserving_against_a_voucher_covering_ten_reserve_exactly_ten(racing):
    app, world = racing
    voucher = world.voucher(10 * SUBSIDY)
    results = reserve_all(app, world, voucher, world.services(RACERS))
    made = [body for code, body in results if code == 201]
    assert len(made) == 10, refusals(results)
    assert all(c["state"] == "reserved" and c["total_fen"] == SUBSIDY for c in made)
    # The others are refused as conflicts with a stable code, never a server error.
    assert refusals(results) == [(409, "limit_exceeded")] * (RACERS - 10)
    state = holdings(voucher.id)
    assert state["balance"] == 0
    assert state["reserved"] == {"province": 10 * 6_000_00, "city": 10 * 3_000_00}
    assert state["committed"] == {"province": 0, "city": 0}
    # The enterprise's cap counts the provincial part (the capped fund), the group's the whole.
    assert state["caps"] == {"enterprise": 10 * 6_000_00, "group": 10 * SUBSIDY}
    assert state["ledger"] == {
        LedgerKind.ISSUED: (1, 10 * SUBSIDY),
        LedgerKind.RESERVED: (10, 10 * SUBSIDY),
    }
    claims = db.session.scalars(select(Claim).where(Claim.voucher_id == voucher.id)).all()
    assert sorted(c.id for c in claims) == sorted(c["id"] for c in made)
    # Each reserved claim holds exactly one service, and only those services are taken.
    taken = db.session.scalars(
        select(ServiceRecord.claim_id).where(ServiceRecord.claim_id.is_not(None))
    ).all()
    assert sorted(taken) == sorted(c.id for c in claims)


def test_a_voucher_covering_ten_and_a_half_gives_the_eleventh_exactly_the_rest(racing):
    """Each reservation is computed from what is left after its wait: one of the racers gets exactly the
    half left over (bound by the voucher's balance), and the balance ends at 0 to the fen."""
    app, world = racing
    voucher = world.voucher(10 * SUBSIDY + 4_500_00)
    results = reserve_all(app, world, voucher, world.services(RACERS))
    made = sorted((body["total_fen"], tuple(body["limited_by"])) for code, body in results if code == 201)
    assert made == [(4_500_00, ("voucher_balance",))] + [(SUBSIDY, ())] * 10, refusals(results)
    assert refusals(results) == [(409, "limit_exceeded")] * (RACERS - 11)
    state = holdings(voucher.id)
    assert state["balance"] == 0
    assert sum(state["reserved"].values()) == state["caps"]["group"] == 10 * SUBSIDY + 4_500_00
    assert state["ledger"][LedgerKind.RESERVED] == (11, 10 * SUBSIDY + 4_500_00)


def test_one_service_reserved_by_sixteen_clicks_is_reserved_once(racing):
    app, world = racing
    voucher = world.voucher(50_000_00)
    (record_id,) = world.services(1)
    results = reserve_all(app, world, voucher, [record_id] * CLICKS)
    assert sum(1 for code, _body in results if code == 201) == 1, refusals(results)
    assert refusals(results) == [(409, "invalid_transition")] * (CLICKS - 1)
    state = holdings(voucher.id)
    assert state["balance"] == 50_000_00 - SUBSIDY
    assert sum(state["reserved"].values()) == state["caps"]["group"] == SUBSIDY
    assert state["ledger"][LedgerKind.RESERVED] == (1, SUBSIDY)
    assert db.session.scalar(select(func.count()).select_from(Claim)) == 1


def pay_in_a_batch(claim: Claim, finance) -> str:
    """Pay the payable redemption as finance does: a batch built, its bank file exported, marked paid.
    The provider's verified account receives it; returns the bank file."""
    db.session.add(
        BankAccount(
            institution_id=claim.institution_id,
            version=1,
            account_name="聊城测试大学",
            bank_name="中国建设银行聊城分行",
            account_number="0371502000123456789",
            state=BankAccountState.VERIFIED,
            entered_by_id=finance.id,
            decided_by_id=finance.id,
            decided_at=clock.utcnow(),
        )
    )
    db.session.commit()
    batch = batches.build_batch(finance, month_of(clock.utcnow()))
    body = batches.export_batch(finance, batch.id)
    batches.mark_batch_paid(finance, batch.id, "ICBC-20261207-001")
    with pytest.raises(InvalidTransition):
        batches.mark_batch_paid(finance, batch.id, "ICBC-20261207-001")
    return body


def test_a_redemption_approved_by_sixteen_clicks_is_approved_once_and_paid_once(racing, make_user):
    app, world = racing
    voucher = world.voucher(50_000_00)
    (record_id,) = world.services(1)
    claim = redemptions.create_redemption(world.providers[0], record_id, voucher.code)
    redemptions.submit_redemption(world.providers[0], claim.id, FEE - SUBSIDY)
    results = race(
        app, "/api/v1/claims/{claim_id}/approve", world.reviewer_tokens, [{"claim_id": claim.id}] * CLICKS
    )
    approved = [body for code, body in results if code == 200]
    assert len(approved) == 1 and approved[0]["state"] == "in_notice", results
    assert sorted(body["error"]["code"] for code, body in results if code != 200) == [
        "invalid_transition"
    ] * (CLICKS - 1)
    state = holdings(voucher.id)
    assert state["reserved"] == {"province": 0, "city": 0}
    assert state["committed"] == {"province": 6_000_00, "city": 3_000_00}
    assert state["balance"] == 50_000_00 - SUBSIDY  # taken once, at the reservation
    assert state["ledger"][LedgerKind.COMMITTED] == (1, SUBSIDY)
    in_notice = db.session.scalars(
        select(AuditEvent).where(
            AuditEvent.object_type == "claim",
            AuditEvent.object_id == str(claim.id),
            AuditEvent.action == "claim.in_notice",
        )
    ).all()
    assert len(in_notice) == 1
    # The notice ends; finance pays the provider once, and a second payment is refused.
    assert notice.end_public_notice(clock.local_today() + timedelta(days=30)) == 1
    finance = make_user(Role.FINANCE)
    bank_file = pay_in_a_batch(db.session.get_one(Claim, claim.id), finance)
    assert "0371502000123456789" in bank_file  # into the provider's verified account
    db.session.rollback()
    paid = db.session.get_one(Claim, claim.id)
    assert paid.state is ClaimState.PAID and paid.payee_kind == "provider"
    state = holdings(voucher.id)
    assert state["ledger"][LedgerKind.PAID] == (1, SUBSIDY)
    assert {f.name: f.paid_fen for f in db.session.scalars(select(Fund))} == {
        "province": 6_000_00,
        "city": 3_000_00,
    }
    assert sum(f.paid_fen for f in db.session.scalars(select(Fund))) == paid.total_fen
