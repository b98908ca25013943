"""Concurrent reviewers on separate connections never overspend a voucher, a fund, a group cap, or twice."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import func, select

from portal.core.models import AuditEvent
from portal.core.permissions import Role
from portal.extensions import db
from portal.vouchers import claims as claim_services
from portal.vouchers.models import CapLedger, Claim, ClaimState, Fund, LedgerEntry, Voucher
from tests.conftest import make_app

pytestmark = pytest.mark.both_backends  # the backend's own paths: see tests/conftest.py

CLAIMS = 32
SUBSIDY = 9_000_00  # a 10,000-yuan service: 6,000 provincial + 3,000 city


def approve_all(app, tokens: list[str], claim_ids: list[int]) -> list[tuple[int, dict]]:
    """Every approval at the same moment, each from its own thread and connection."""
    barrier = threading.Barrier(len(claim_ids))
    results: list = [None] * len(claim_ids)

    def run(index: int, claim_id: int) -> None:
        client = app.test_client()
        barrier.wait()
        response = client.post(
            f"/api/v1/claims/{claim_id}/approve",
            json={},
            headers={"Authorization": f"Bearer {tokens[index % len(tokens)]}"},
        )
        results[index] = (response.status_code, response.get_json())

    threads = [threading.Thread(target=run, args=(i, c)) for i, c in enumerate(claim_ids)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert all(r is not None for r in results)
    return results


@pytest.fixture
def racing(database_url, many_connections, fake_clock, make_scheme, make_user):
    from portal.accounts.services import issue_api_token

    app = make_app(database_url, SQLALCHEMY_ENGINE_OPTIONS={"pool_size": CLAIMS + 4, "max_overflow": 0})
    reviewers = [make_user(Role.REVIEWER) for _ in range(4)]
    tokens = [issue_api_token(r)[0] for r in reviewers]
    yield app, tokens
    with app.app_context():
        db.engine.dispose()


def submitted_claims(users, vouchers, make_service, count: int) -> list[int]:
    ids = []
    for n in range(count):
        user, voucher = users[n % len(users)], vouchers[n % len(vouchers)]
        record = make_service(user, 10_000_00)
        claim = claim_services.create_claim(user, voucher.id, [record.id])
        ids.append(claim_services.submit_claim(user, claim.id).id)
    return ids


def outcome(results) -> tuple[int, list[str]]:
    approved = sum(1 for code, body in results if code == 200 and body["state"] == "in_notice")
    refused = [body["error"]["code"] for code, body in results if code != 200]
    return approved, refused


def test_a_voucher_covering_ten_claims_approves_exactly_ten(
    racing, make_scheme, make_user, make_voucher, make_service
):
    app, tokens = racing
    scheme = make_scheme()
    user = make_user(Role.ENTERPRISE)
    voucher = make_voucher(user, scheme, quota_fen=10 * SUBSIDY + 4_500_00)
    ids = submitted_claims([user], [voucher], make_service, CLAIMS)
    approved, refused = outcome(approve_all(app, tokens, ids))
    assert approved == 10
    assert refused == ["limit_exceeded"] * (CLAIMS - 10)
    db.session.rollback()  # a fresh transaction sees what the racers committed
    voucher = db.session.get(Voucher, voucher.id)
    assert voucher.balance_fen == 4_500_00
    assert (
        db.session.scalar(
            select(func.count()).select_from(LedgerEntry).where(LedgerEntry.voucher_id == voucher.id)
        )
        == 11
    )
    funds = {f.name: f.committed_fen for f in db.session.scalars(select(Fund))}
    assert funds == {"province": 10 * 6_000_00, "city": 10 * 3_000_00}


def test_a_fund_budget_covering_ten_claims_approves_exactly_ten(
    racing, make_scheme, make_user, make_voucher, make_service
):
    app, tokens = racing
    scheme = make_scheme(province_budget=10 * 6_000_00 + 3_000_00)
    user = make_user(Role.ENTERPRISE)
    voucher = make_voucher(user, scheme, quota_fen=CLAIMS * SUBSIDY)
    ids = submitted_claims([user], [voucher], make_service, CLAIMS)
    approved, refused = outcome(approve_all(app, tokens, ids))
    assert approved == 10 and refused == ["limit_exceeded"] * (CLAIMS - 10)
    db.session.rollback()  # a fresh transaction sees what the racers committed
    province = db.session.scalar(select(Fund).where(Fund.name == "province"))
    assert (province.committed_fen, province.free_fen) == (60_000_00, 3_000_00)


def test_a_group_cap_covering_ten_claims_approves_exactly_ten(
    racing, make_scheme, make_user, make_voucher, make_service
):
    app, tokens = racing
    scheme = make_scheme(group_cap_fen=10 * SUBSIDY + 4_000_00)
    users = [make_user(Role.ENTERPRISE) for _ in range(4)]
    for user in users:  # four enterprises, one actual controller
        user.enterprise.controller_group = "同一实际控制人"
    db.session.commit()
    vouchers = [make_voucher(u, scheme, quota_fen=80_000_00) for u in users]
    ids = submitted_claims(users, vouchers, make_service, CLAIMS)
    approved, refused = outcome(approve_all(app, tokens, ids))
    assert approved == 10 and refused == ["limit_exceeded"] * (CLAIMS - 10)
    db.session.rollback()  # a fresh transaction sees what the racers committed
    group = db.session.scalar(select(CapLedger).where(CapLedger.scope == "group"))
    assert group.used_fen == 10 * SUBSIDY
    assert sum(v.quota_fen - v.balance_fen for v in db.session.scalars(select(Voucher))) == 10 * SUBSIDY


def test_sixteen_clicks_approve_one_claim_once(racing, make_scheme, make_user, make_voucher, make_service):
    app, tokens = racing
    scheme = make_scheme()
    user = make_user(Role.ENTERPRISE)
    voucher = make_voucher(user, scheme, quota_fen=50_000_00)
    (claim_id,) = submitted_claims([user], [voucher], make_service, 1)
    results = approve_all(app, tokens, [claim_id] * 16)
    assert sum(1 for code, _ in results if code == 200) == 1
    assert (
        sorted(body["error"]["code"] for code, body in results if code != 200) == ["invalid_transition"] * 15
    )
    db.session.rollback()  # a fresh transaction sees what the racers committed
    assert db.session.get(Claim, claim_id).state is ClaimState.IN_NOTICE
    assert db.session.get(Voucher, voucher.id).balance_fen == 50_000_00 - SUBSIDY
    rows = db.session.scalars(
        select(AuditEvent).where(AuditEvent.object_type == "claim", AuditEvent.action == "claim.in_notice")
    ).all()
    assert len(rows) == 1
    assert (
        db.session.scalar(
            select(func.count()).select_from(LedgerEntry).where(LedgerEntry.claim_id == claim_id)
        )
        == 1
    )
