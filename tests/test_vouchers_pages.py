"""Voucher pages: the enterprise's forms, the review desk with its filters, scheme settings, hints."""

from __future__ import annotations

import io
import re
from datetime import UTC, datetime, time

import pytest
from sqlalchemy import select

from portal.accounts.models import VerificationState
from portal.core.permissions import Role
from portal.extensions import db
from portal.vouchers import claims as claim_services
from portal.vouchers import review as desk
from portal.vouchers.models import Claim, ClaimState, Scheme, VerificationRequest, VoucherApplication
from tests.factories import extract_csrf, login
from tests.test_booking_files import PDF


def test_verification_form_reshows_errors_then_submits(client, fake_clock, make_scheme, make_user):
    user = make_user(Role.ENTERPRISE, verification_state=VerificationState.PENDING)
    login(client, user.username)
    page = client.get("/vouchers/verification").get_data(as_text=True)
    bad = client.post(
        "/vouchers/verification",
        data={"csrf_token": extract_csrf(page), "kind": "tech_sme", "actual_controller": "张三"},
    )
    assert bad.status_code == 200
    text = bad.get_data(as_text=True)
    assert "入库编号" in text and 'value="张三"' in text
    ok = client.post(
        "/vouchers/verification",
        data={
            "csrf_token": extract_csrf(page),
            "kind": "tech_sme",
            "actual_controller": "张三",
            "tech_sme_number": "202637150100999",
            "certificate": (io.BytesIO(PDF), "证明.pdf"),
        },
        content_type="multipart/form-data",
    )
    assert ok.status_code == 302
    request = db.session.scalar(select(VerificationRequest))
    assert request.certificate_type == "application/pdf" and request.certificate_name == "证明.pdf"


def test_apply_form_refuses_bad_amounts_and_keeps_the_plan(client, fake_clock, make_scheme, make_user):
    make_scheme()
    user = make_user(Role.ENTERPRISE)
    login(client, user.username)
    token = extract_csrf(client.get("/vouchers/apply").get_data(as_text=True))
    bad = client.post("/vouchers/apply", data={"csrf_token": token, "amount": "12.345", "plan": "我的计划"})
    assert bad.status_code == 200 and "我的计划" in bad.get_data(as_text=True)
    too_big = client.post(
        "/vouchers/apply", data={"csrf_token": token, "amount": "700000", "plan": "我的计划"}
    )
    assert too_big.status_code == 200
    assert db.session.scalar(select(VoucherApplication)) is None
    ok = client.post("/vouchers/apply", data={"csrf_token": token, "amount": "30000.50", "plan": "我的计划"})
    assert ok.status_code == 302
    assert db.session.scalar(select(VoucherApplication.amount_fen)) == 3_000_050


def test_the_enterprise_previews_saves_and_submits_a_claim_in_pages(
    client, fake_clock, make_scheme, make_user, make_voucher, make_service
):
    scheme = make_scheme()
    user = make_user(Role.ENTERPRISE)
    voucher = make_voucher(user, scheme, 50_000_00)
    record = make_service(user, 2_000_00)
    login(client, user.username)
    page = client.get("/vouchers/claims/new").get_data(as_text=True)
    token = extract_csrf(page)
    preview = client.post(
        "/vouchers/claims/new",
        data={"csrf_token": token, "voucher_id": voucher.id, "records": [record.id], "preview": "1"},
    ).get_data(as_text=True)
    assert re.search(r'id="subsidy-total">¥1,800.00<', preview)
    assert 'data-fund="province">¥1,200.00' in preview and 'data-fund="city">¥600.00' in preview
    assert preview.count("check-passed") == 10  # issue 21: out_of_province_justified, provider_admitted
    assert preview.count("check-warning") == 1  # hours_above_usage: the service was not metered
    created = client.post(
        "/vouchers/claims/new",
        data={"csrf_token": token, "voucher_id": voucher.id, "records": [record.id], "create": "1"},
    )
    claim_path = created.headers["Location"]
    claim_page = client.get(claim_path).get_data(as_text=True)
    client.post(claim_path, data={"csrf_token": extract_csrf(claim_page), "claim_action": "submit"})
    assert db.session.scalar(select(Claim.state)) is ClaimState.SUBMITTED


def test_the_new_claim_page_lists_what_can_pass_first_and_the_rest_behind_their_counts(
    client, fake_clock, make_scheme, make_user, make_voucher, make_service
):
    """Services that would pass review come first; those lacking documents or a rating, and those the
    scheme cannot subsidise, wait folded with their counts (the demo enterprise has 336 of the
    first kind and 6 ready: the ready ones were lost among them)."""
    user = make_user(Role.ENTERPRISE)
    voucher = make_voucher(user, make_scheme(), 50_000_00)
    ready = make_service(user, 1_000_00)
    unrated = make_service(user, 2_000_00, rated=False, starts_at=datetime(2026, 11, 3, 1, tzinfo=UTC))
    last_year = make_service(user, 3_000_00, starts_at=datetime(2025, 11, 3, 1, tzinfo=UTC))
    login(client, user.username)

    def groups(html: str) -> dict[str, tuple[str, list[int]]]:
        found = {}
        for group, opening, body in re.findall(
            r'<(?:h2|details)[^>]*id="(ready-heading|fixable-services|blocked-services)"([^>]*)>(.*?)</(?:table|details)>',
            html,
            re.S,
        ):
            found[group] = (opening, [int(n) for n in re.findall(r'name="records" value="(\d+)"', body)])
        return found

    page = client.get("/vouchers/claims/new").get_data(as_text=True)
    shown = groups(page)
    assert shown["ready-heading"][1] == [ready.id]
    assert shown["fixable-services"] == ("", [unrated.id])  # folded
    assert shown["blocked-services"] == ("", [last_year.id])
    assert ">需先补齐材料或评价 (1)</summary>" in page and ">不能补贴 (1)</summary>" in page
    previewed = client.post(
        "/vouchers/claims/new",
        data={
            "csrf_token": extract_csrf(page),
            "voucher_id": voucher.id,
            "records": [ready.id, unrated.id],
            "preview": "1",
        },
    ).get_data(as_text=True)
    assert groups(previewed)["fixable-services"][0] == " open"  # a chosen service is not hidden
    assert f'value="{unrated.id}" id="record-{unrated.id}" checked' in previewed


def test_the_review_desk_filters_and_counts(
    client, fake_clock, make_scheme, make_user, make_voucher, make_service
):
    scheme = make_scheme()
    near, far = make_user(Role.ENTERPRISE), make_user(Role.ENTERPRISE)
    far.enterprise.county = "临清市"
    db.session.commit()
    for user, fee in ((near, 2_000_00), (far, 30_000_00)):
        voucher = make_voucher(user, scheme, 50_000_00)
        claim_services.submit_claim(
            user, claim_services.create_claim(user, voucher.id, [make_service(user, fee).id]).id
        )
    reviewer = make_user(Role.REVIEWER)
    login(client, reviewer.username)

    def rows(**args) -> list[str]:
        html = client.get("/review/", query_string=args).get_data(as_text=True)
        return re.findall(r'<a href="/vouchers/claims/(\d+)"[^>]*>', html)

    assert len(rows()) == 2
    assert len(rows(county="临清市")) == 1
    assert len(rows(amount_min="10000")) == 1  # 27,000 yuan subsidy, not 1,800
    assert len(rows(amount_max="10000")) == 1
    assert len(rows(older_than="1")) == 0
    fake_clock.advance(days=3)
    assert len(rows(older_than="2")) == 2
    html = client.get("/review/", query_string={"amount_min": "abc"}).get_data(as_text=True)
    assert "is-invalid" in html
    counts = dict(re.findall(r'data-kind="(\w+)">(\d+)<', client.get("/review/").get_data(as_text=True)))
    assert counts == {"claim": "2", "application": "0", "verification": "0", "bank_account": "0"}


def test_a_reviewer_decides_in_the_page(
    client, fake_clock, make_scheme, make_user, make_voucher, make_service
):
    scheme = make_scheme()
    user = make_user(Role.ENTERPRISE)
    voucher = make_voucher(user, scheme, 50_000_00)
    claim = claim_services.submit_claim(
        user, claim_services.create_claim(user, voucher.id, [make_service(user, 2_000_00).id]).id
    )
    reviewer = make_user(Role.REVIEWER)
    login(client, reviewer.username)
    page = client.get(f"/vouchers/claims/{claim.id}").get_data(as_text=True)
    assert "approve-claim" in page and "自动核查" in page
    client.post(f"/vouchers/claims/{claim.id}", data={"csrf_token": extract_csrf(page), "return": "1"})
    assert db.session.get(Claim, claim.id).state is ClaimState.SUBMITTED  # returning needs a comment
    client.post(f"/vouchers/claims/{claim.id}", data={"csrf_token": extract_csrf(page), "approve": "1"})
    assert db.session.get(Claim, claim.id).state is ClaimState.IN_NOTICE
    history = client.get(f"/vouchers/claims/{claim.id}").get_data(as_text=True)
    assert "批准，开始公示" in history


def test_scheme_settings_are_for_administrators(client, fake_clock, make_user):
    reviewer = make_user(Role.REVIEWER)
    login(client, reviewer.username)
    assert client.get("/review/scheme").status_code == 403
    admin = make_user(Role.ADMIN)
    client.post("/logout", data={"csrf_token": extract_csrf(client.get("/account").get_data(as_text=True))})
    login(client, admin.username)
    page = client.get("/review/scheme?year=2027").get_data(as_text=True)
    data = {
        "csrf_token": extract_csrf(page),
        "year": "2027",
        "name": "2027年度创新券",
        "funds-0-name": "province",
        "funds-0-rate": "0.40",
        "funds-0-budget": "3000000",
        "funds-0-condition": "always",
        "funds-0-enterprise_capped": "y",
        "funds-1-name": "city",
        "funds-1-rate": "0.30",
        "funds-1-budget": "1000000",
        "funds-1-condition": "local_provider",
        "enterprise_cap": "500000",
        "group_cap": "650000",
        "four_eyes_threshold": "50000",
        "voucher_validity_days": "365",
        "service_window_start": "2027-01-01",
        "service_window_end": "2027-12-31",
        "public_notice_days": "7",
        "excluded_service_types": ["statutory_testing"],
        "redemption_modes": ["reimbursement"],
        "redemption_days": "30",
    }
    assert client.post("/review/scheme", data=data).status_code == 302
    scheme = db.session.scalar(select(Scheme).where(Scheme.year == 2027))
    assert [(f.name, str(f.rate), f.budget_fen) for f in scheme.funds] == [
        ("province", "0.4000", 300_000_000),
        ("city", "0.3000", 100_000_000),
    ]
    assert scheme.excluded_service_types == ["statutory_testing"]
    backwards = client.post(
        "/review/scheme",
        data={**data, "service_window_start": "2027-12-31", "service_window_end": "2027-01-01"},
    )
    assert backwards.status_code == 200


@pytest.mark.parametrize(
    ("quota", "expected"), [(None, "没有有效的创新券"), (50_000_00, "可补贴"), (100_00, "受限于")]
)
def test_the_booking_form_shows_what_the_voucher_covers(
    client, fake_clock, make_scheme, make_user, make_voucher, make_instrument, quota, expected
):
    scheme = make_scheme()
    instrument = make_instrument(
        opening_hours=[(d, time(8, 30), time(17, 30)) for d in range(5)], fee_per_hour_fen=300_00
    )
    user = make_user(Role.ENTERPRISE)
    if quota:
        make_voucher(user, scheme, quota)
    login(client, user.username)
    page = client.get(f"/instruments/{instrument.code}/book?start=2026-12-09T01:00:00Z").get_data(
        as_text=True
    )
    assert expected in page
    if quota == 50_000_00:
        assert "创新券可补贴 ¥270.00" in page  # the 60-minute option: 300 yuan, 90 percent


def test_the_public_notice_board_is_public(
    client, fake_clock, make_scheme, make_user, make_voucher, make_service
):
    scheme = make_scheme()
    user = make_user(Role.ENTERPRISE)
    voucher = make_voucher(user, scheme, 50_000_00)
    claim = claim_services.submit_claim(
        user, claim_services.create_claim(user, voucher.id, [make_service(user, 2_000_00).id]).id
    )
    desk.approve_claim(
        make_user(Role.REVIEWER),
        claim.id,
    )
    page = client.get("/vouchers/notices").get_data(as_text=True)
    assert user.enterprise.name in page and "¥1,800.00" in page and "2026-12-14" in page
