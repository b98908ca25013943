"""Vouchers at the point of payment (issue 21, DESIGN section 13): the provider reserves the subsidy
when it records the service, submits the redemption, the bureau decides it; a rejection, withdrawal
or expiry releases exactly what was reserved."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from sqlalchemy import select

from portal.accounts.services import issue_api_token
from portal.booking import records, requests, transitions
from portal.booking.models import BookingMode, FileKind, ServiceRecord
from portal.core.permissions import Role
from portal.extensions import db
from portal.notifications.models import Notification
from portal.vouchers import redemptions, wallet
from portal.vouchers.models import (
    CapLedger,
    Claim,
    ClaimState,
    Fund,
    LedgerEntry,
    LedgerKind,
    Scheme,
    Voucher,
    VoucherState,
)
from portal.vouchers.subsidy import subsidy_for
from tests.factories import extract_csrf, login

pytestmark = pytest.mark.both_backends  # the backend's own paths: see tests/conftest.py

BOTH = ["reimbursement", "at_payment"]
EVIDENCE = (FileKind.CONTRACT, FileKind.INVOICE, FileKind.RECEIPT, FileKind.RESULT)


def bearer(user) -> dict[str, str]:
    return {"Authorization": f"Bearer {issue_api_token(user)[0]}"}


@pytest.fixture
def world(app, make_scheme, make_user, make_voucher, make_institution, make_instrument, make_service):
    """A scheme offering both modes, a verified enterprise with a voucher, a local provider with its
    user and one instrument, and a reviewer pair."""

    class World:
        scheme = make_scheme(redemption_modes=BOTH)
        enterprise_user = make_user(Role.ENTERPRISE)
        voucher = make_voucher(enterprise_user, scheme, quota_fen=20_000_00)
        host = make_institution(is_local=True)
        instrument = make_instrument(institution=host)
        provider = make_user(Role.PROVIDER, institution=host)
        reviewers = (make_user(Role.REVIEWER), make_user(Role.REVIEWER))

        def service(self, fee_fen=10_000_00, evidence=EVIDENCE, **kwargs) -> ServiceRecord:
            return make_service(
                self.enterprise_user, fee_fen, instrument=self.instrument, evidence=evidence, **kwargs
            )

    return World()


def fresh(model, object_id):
    db.session.rollback()
    return db.session.get(model, object_id)


def reserve(client, world, record, code=None):
    return client.post(
        "/api/v1/redemptions",
        json={"service_record_id": record.id, "voucher_code": code or world.voucher.code},
        headers=bearer(world.provider),
    )


def reserved_state(world) -> dict:
    """What the reservation touches: the funds' reserved and committed, the caps, the voucher."""
    db.session.rollback()
    return {
        "funds": {f.name: (f.reserved_fen, f.committed_fen) for f in db.session.scalars(select(Fund))},
        "caps": {c.scope: c.used_fen for c in db.session.scalars(select(CapLedger))},
        "balance": db.session.get(Voucher, world.voucher.id).balance_fen,
    }


@pytest.mark.parametrize("fees", [[10_000_00], [10_000_00, 15_000_00]])
def test_a_reservation_equals_compute_subsidy_at_that_moment(world, client, fees):
    """Each reservation holds exactly what the rules give from what is left at that moment: the
    second one of 15,000 yuan meets the rest of the 20,000-yuan voucher (9,000 + 11,000)."""
    for fee in fees:
        record = world.service(fee)
        db.session.rollback()
        voucher = db.session.get(Voucher, world.voucher.id)
        expected = subsidy_for(world.enterprise_user.enterprise, voucher.scheme, voucher, fee, True)
        preview = client.post(
            "/api/v1/redemptions/preview",
            json={"service_record_id": record.id, "voucher_code": world.voucher.code},
            headers=bearer(world.provider),
        ).get_json()
        assert preview["total_fen"] == expected.total_fen
        assert preview["enterprise_share_fen"] == fee - expected.total_fen
        response = reserve(client, world, record)
        assert response.status_code == 201, response.get_json()
        body = response.get_json()
        assert body["mode"] == "at_payment" and body["state"] == "reserved"
        assert body["payee_kind"] == "provider"
        assert body["funds"] == [
            {"fund": f.fund, "raw_fen": f.raw_fen, "amount_fen": f.amount_fen} for f in expected.funds
        ]
        assert body["limited_by"] == list(expected.limited_by)
        assert body["enterprise_share_fen"] == fee - expected.total_fen
    if len(fees) == 2:
        assert body["total_fen"] == 11_000_00 and body["limited_by"] == ["voucher_balance"]
    state = reserved_state(world)
    assert state["balance"] == 20_000_00 - (9_000_00 if len(fees) == 1 else 20_000_00)
    held = sum(reserved for reserved, _committed in state["funds"].values())
    assert held == 20_000_00 - state["balance"]
    assert state["caps"]["group"] == held
    kinds = db.session.scalars(
        select(LedgerEntry.kind).where(LedgerEntry.voucher_id == world.voucher.id).order_by(LedgerEntry.id)
    ).all()
    assert kinds == [LedgerKind.ISSUED] + [LedgerKind.RESERVED] * len(fees)


def submit(client, world, claim_id, paid_fen):
    return client.post(
        f"/api/v1/claims/{claim_id}/submit",
        json={"enterprise_paid_fen": paid_fen},
        headers=bearer(world.provider),
    )


def test_the_provider_submits_and_approval_commits_what_was_reserved(world, client):
    record = world.service(10_000_00)
    claim_id = reserve(client, world, record).get_json()["id"]
    wrong = submit(client, world, claim_id, 5_000_00)
    assert wrong.status_code == 409
    failed = {c["code"] for c in wrong.get_json()["error"]["details"]["checks"]}
    assert failed == {"share_paid"}
    # The enterprise cannot submit the provider's redemption.
    by_enterprise = client.post(
        f"/api/v1/claims/{claim_id}/submit", json={}, headers=bearer(world.enterprise_user)
    )
    assert by_enterprise.status_code == 409
    ok = submit(client, world, claim_id, 1_000_00)
    assert ok.status_code == 200, ok.get_json()
    assert ok.get_json()["state"] == "submitted" and ok.get_json()["enterprise_paid_fen"] == 1_000_00
    before = reserved_state(world)
    approved = client.post(f"/api/v1/claims/{claim_id}/approve", json={}, headers=bearer(world.reviewers[0]))
    assert approved.status_code == 200, approved.get_json()
    assert approved.get_json()["state"] == "in_notice"
    after = reserved_state(world)
    assert after["funds"] == {"province": (0, 6_000_00), "city": (0, 3_000_00)}
    assert before["funds"] == {"province": (6_000_00, 0), "city": (3_000_00, 0)}
    assert after["caps"] == before["caps"] and after["balance"] == before["balance"] == 11_000_00
    committed = db.session.scalars(
        select(LedgerEntry).where(LedgerEntry.claim_id == claim_id, LedgerEntry.kind == LedgerKind.COMMITTED)
    ).all()
    assert [(e.amount_fen, e.balance_after_fen) for e in committed] == [(9_000_00, 11_000_00)]


def test_a_redemption_without_its_result_is_not_submitted(world, client):
    record = world.service(10_000_00, evidence=EVIDENCE[:3])
    claim_id = reserve(client, world, record).get_json()["id"]
    response = submit(client, world, claim_id, 1_000_00)
    assert response.status_code == 409
    assert {c["code"] for c in response.get_json()["error"]["details"]["checks"]} == {"result_attached"}


@pytest.mark.parametrize("ending", ["reject", "withdraw", "expire", "expire_after_voucher"])
def test_a_release_returns_exactly_what_was_reserved(world, client, ending):
    earlier = world.service(4_000_00)
    other = reserve(client, world, earlier).get_json()["id"]  # another reservation, which stays
    assert submit(client, world, other, 400_00).status_code == 200  # (submitted: it does not expire)
    start = reserved_state(world)
    record = world.service(10_000_00)
    claim_id = reserve(client, world, record).get_json()["id"]
    assert reserved_state(world) != start
    if ending == "reject":
        assert submit(client, world, claim_id, 1_000_00).status_code == 200
        response = client.post(
            f"/api/v1/claims/{claim_id}/reject",
            json={"comment": "发票不符"},
            headers=bearer(world.reviewers[0]),
        )
        assert response.status_code == 200, response.get_json()
        assert response.get_json()["state"] == "rejected"
    elif ending == "withdraw":
        redemptions.withdraw_redemption(world.provider, claim_id, "错刷")
    else:
        claim = fresh(Claim, claim_id)
        if ending == "expire_after_voucher":
            voucher = db.session.get(Voucher, world.voucher.id)
            voucher.valid_until = date(2026, 1, 1)
            db.session.commit()
            assert wallet.expire_vouchers(claim.reservation_expires_on) == 1
        assert redemptions.expire_redemptions(claim.reservation_expires_on) == 0  # not yet
        assert redemptions.expire_redemptions(claim.reservation_expires_on + timedelta(days=1)) == 1
        assert redemptions.expire_redemptions(claim.reservation_expires_on + timedelta(days=1)) == 0
    end = reserved_state(world)
    if ending == "expire_after_voucher":
        # The voucher expired meanwhile: its balance and the released reservation went to the budget.
        voucher = db.session.get(Voucher, world.voucher.id)
        assert voucher.state is VoucherState.EXPIRED and end["balance"] == 0
        assert voucher.released_fen == start["balance"]
        allocated = db.session.scalar(select(Scheme.allocated_fen))
        assert allocated == 20_000_00 - start["balance"]  # what stays held by the other reservation
        assert end["funds"] == start["funds"] and end["caps"] == start["caps"]
    else:
        assert end == start
    claim = db.session.get(Claim, claim_id)
    assert claim.state in (ClaimState.REJECTED, ClaimState.WITHDRAWN, ClaimState.EXPIRED)
    assert db.session.get(ServiceRecord, record.id).claim_id is None  # the service is free again
    # Both are told that the voucher is not applied and the enterprise owes the whole fee.
    told = db.session.scalars(
        select(Notification.recipient_id).where(
            Notification.kind == "claim.released", Notification.payload["claim"].as_integer() == claim_id
        )
    ).all()
    assert sorted(told) == sorted([world.enterprise_user.id, world.provider.id])
    released = db.session.scalars(
        select(LedgerEntry).where(LedgerEntry.claim_id == claim_id, LedgerEntry.kind == LedgerKind.UNRESERVED)
    ).all()
    assert [e.amount_fen for e in released] == [claim.total_fen] == [9_000_00]


@pytest.mark.parametrize("chosen", ["at_payment", "reimbursement", None])
def test_recording_the_service_reserves_at_once_when_the_enterprise_chose_it(
    world, client, fake_clock, make_instrument, chosen
):
    """The enterprise chose at booking; the provider records the service; the subsidy is reserved in
    the same step and both see the enterprise's share on the booking's page."""
    instrument = make_instrument(institution=world.host, fee_per_sample_fen=80_00)
    booking = requests.request_booking(
        world.enterprise_user,
        instrument.code,
        requests.BookingRequest(
            mode=BookingMode.SAMPLE,
            purpose="成分分析",
            sample_count=2,
            sample_description="粉末样品",
            sample_delivery_on=fake_clock().date(),
            voucher_mode=chosen,
        ),
    )
    transitions.confirm_booking(world.provider, booking.id)
    record = records.complete_booking(
        world.provider, booking.id, records.ServiceReport(samples=2, result_summary="合格")
    )
    claim = redemptions.claim_of(fresh(ServiceRecord, record.id))
    if chosen != "at_payment":
        assert claim is None
        return
    assert claim.state is ClaimState.RESERVED and claim.fee_fen == 160_00
    assert (claim.total_fen, claim.enterprise_share_fen) == (144_00, 16_00)  # 60 % + 30 % of 160 yuan
    for user in (world.enterprise_user, world.provider):
        login(client, user.username)
        page = client.get(f"/bookings/{booking.id}").get_data(as_text=True)
        assert 'id="enterprise-share"' in page and "16.00" in page
        client.post("/logout", data={"csrf_token": extract_csrf(page)})


def test_the_reserve_page_says_what_is_wrong_and_keeps_what_was_typed(world, client):
    record = world.service(10_000_00)
    login(client, world.provider.username)
    page = client.get(f"/vouchers/redemptions/records/{record.id}").get_data(as_text=True)
    empty = client.post(
        f"/vouchers/redemptions/records/{record.id}",
        data={"csrf_token": extract_csrf(page), "voucher_code": "", "preview": "1"},
    ).get_data(as_text=True)
    assert 'aria-invalid="true"' in empty  # the code is required, and the page says so at the field
    wrong = client.post(
        f"/vouchers/redemptions/records/{record.id}",
        data={"csrf_token": extract_csrf(page), "voucher_code": "LC2026-99999999", "preview": "1"},
    ).get_data(as_text=True)
    assert "LC2026-99999999" in wrong and "这不是接受服务的企业的创新券" in wrong
    db.session.rollback()
    assert db.session.scalar(select(Claim.id)) is None  # nothing reserved
