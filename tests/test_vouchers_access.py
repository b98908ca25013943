"""Who may see and do what with vouchers: every id of another enterprise is simply not there."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from portal.booking.models import ServiceFile
from portal.core.permissions import Role
from portal.extensions import db
from portal.vouchers import claims as claim_services
from portal.vouchers import review as desk
from portal.vouchers.models import Claim, Voucher, VoucherApplication
from tests.factories import login
from tests.test_booking_rules import bearer


@pytest.fixture
def two_enterprises(app, fake_clock, make_scheme, make_user, make_voucher, make_service):
    scheme = make_scheme()
    reviewer = make_user(Role.REVIEWER)
    people = {}
    for name in ("a", "b"):
        user = make_user(Role.ENTERPRISE)
        voucher = make_voucher(user, scheme, 50_000_00)
        record = make_service(user, 5_000_00)
        claim = claim_services.submit_claim(
            user, claim_services.create_claim(user, voucher.id, [record.id]).id
        )
        people[name] = {"user": user, "voucher": voucher, "record": record, "claim": claim}
    desk.approve_claim(reviewer, people["b"]["claim"].id)
    return people, reviewer


def test_an_enterprise_sees_none_of_another_enterprises_objects_under_any_id(client, two_enterprises):
    people, _reviewer = two_enterprises
    a = people["a"]
    headers = bearer(client, a["user"])
    foreign_vouchers = db.session.scalars(
        select(Voucher.id).where(Voucher.enterprise_id != a["user"].enterprise_id)
    ).all()
    foreign_claims = db.session.scalars(
        select(Claim.id).where(Claim.enterprise_id != a["user"].enterprise_id)
    ).all()
    foreign_applications = db.session.scalars(
        select(VoucherApplication.id).where(VoucherApplication.enterprise_id != a["user"].enterprise_id)
    ).all()
    foreign_files = db.session.execute(
        select(ServiceFile.record_id, ServiceFile.id).where(ServiceFile.record_id != a["record"].id)
    ).all()
    assert foreign_vouchers and foreign_claims and foreign_applications and foreign_files
    for voucher_id in foreign_vouchers:
        assert client.get(f"/api/v1/vouchers/{voucher_id}", headers=headers).status_code == 404
    for claim_id in foreign_claims:
        assert client.get(f"/api/v1/claims/{claim_id}", headers=headers).status_code == 404
        # A valid body (reject and return need a comment), so only the object decides the answer.
        for action in ("submit", "approve", "reject", "return"):
            body = {"comment": "不予通过"} if action in ("reject", "return") else {}
            assert (
                client.post(f"/api/v1/claims/{claim_id}/{action}", json=body, headers=headers).status_code
                == 404
            )
    for application_id in foreign_applications:
        assert (
            client.get(f"/api/v1/voucher-applications/{application_id}", headers=headers).status_code == 404
        )
    for record_id, file_id in foreign_files:
        assert client.get(f"/api/v1/service-records/{record_id}", headers=headers).status_code == 404
        assert (
            client.get(f"/api/v1/service-records/{record_id}/files/{file_id}", headers=headers).status_code
            == 404
        )
    # Claiming another enterprise's service, or with another enterprise's voucher, is refused too.
    b = people["b"]
    assert (
        client.post(
            "/api/v1/claims/preview",
            json={"voucher_id": b["voucher"].id, "service_record_ids": [a["record"].id]},
            headers=headers,
        ).status_code
        == 404
    )
    assert (
        client.post(
            "/api/v1/claims/preview",
            json={"voucher_id": a["voucher"].id, "service_record_ids": [b["record"].id]},
            headers=headers,
        ).status_code
        == 404
    )
    listed = client.get("/api/v1/vouchers", headers=headers).json
    assert [v["id"] for v in listed["items"]] == [a["voucher"].id]
    assert [c["id"] for c in client.get("/api/v1/claims", headers=headers).json["items"]] == [a["claim"].id]
    login(client, a["user"].username)
    for claim_id in foreign_claims:
        assert client.get(f"/vouchers/claims/{claim_id}").status_code == 404
    for voucher_id in foreign_vouchers:
        assert client.get(f"/vouchers/voucher/{voucher_id}").status_code == 404


def test_a_provider_cannot_review(client, two_enterprises, make_user):
    people, _reviewer = two_enterprises
    provider = make_user(Role.PROVIDER)
    headers = bearer(client, provider)
    claim_id = people["a"]["claim"].id
    assert client.post(f"/api/v1/claims/{claim_id}/approve", json={}, headers=headers).status_code in (
        403,
        404,
    )
    assert db.session.get(Claim, claim_id).state.value == "submitted"
    login(client, provider.username)
    assert client.get("/review/").status_code == 403
    assert client.get(f"/review/applications/{people['a']['voucher'].application_id}").status_code == 403


def test_an_enterprise_cannot_approve_its_own_claim(client, two_enterprises):
    people, _reviewer = two_enterprises
    a = people["a"]
    response = client.post(
        f"/api/v1/claims/{a['claim'].id}/approve", json={}, headers=bearer(client, a["user"])
    )
    assert response.status_code == 403


def test_a_reviewer_cannot_be_the_second_approver_of_their_own_approval(
    client, app, fake_clock, make_scheme, make_user, make_voucher, make_service
):
    scheme = make_scheme()
    user = make_user(Role.ENTERPRISE)
    voucher = make_voucher(user, scheme, 300_000_00)
    claim = claim_services.submit_claim(
        user, claim_services.create_claim(user, voucher.id, [make_service(user, 100_000_00).id]).id
    )
    reviewer, other = make_user(Role.REVIEWER), make_user(Role.REVIEWER)
    first = client.post(f"/api/v1/claims/{claim.id}/approve", json={}, headers=bearer(client, reviewer))
    assert first.json["state"] == "pending_second"
    again = client.post(f"/api/v1/claims/{claim.id}/approve", json={}, headers=bearer(client, reviewer))
    assert again.status_code == 403 and again.json["error"]["code"] == "forbidden"
    second = client.post(f"/api/v1/claims/{claim.id}/approve", json={}, headers=bearer(client, other))
    assert second.json["state"] == "in_notice"


def test_finance_sees_the_desk_but_cannot_decide(client, two_enterprises, make_user):
    people, _reviewer = two_enterprises
    finance = make_user(Role.FINANCE)
    login(client, finance.username)
    assert client.get("/review/").status_code == 200
    response = client.post(
        f"/api/v1/claims/{people['a']['claim'].id}/approve", json={}, headers=bearer(client, finance)
    )
    assert response.status_code == 403
