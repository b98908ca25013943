"""Out-of-province providers (issue 21, DESIGN section 13): the justification, its check, the rate,
never the city's fund; the claim form's evidence; the API's fields; the scheme form's settings."""

from __future__ import annotations

import re
from decimal import Decimal

import pytest
from sqlalchemy import select

from portal.core.errors import InvalidTransition
from portal.core.models import AuditEvent
from portal.core.permissions import Role
from portal.extensions import db
from portal.vouchers import claims as claim_services
from portal.vouchers import review as voucher_review
from portal.vouchers.models import ClaimState, Scheme
from tests.factories import extract_csrf, login
from tests.test_booking_rules import bearer

WHY = "省内入网的质谱仪均为四极杆，检出限达不到 0.01% 的同位素比值精度要求。"


@pytest.fixture
def world(
    app, fake_clock, make_scheme, make_user, make_voucher, make_service, make_institution, make_instrument
):
    scheme = make_scheme(out_of_province_rate=Decimal("0.25"))
    user = make_user(Role.ENTERPRISE)
    shanghai = make_institution(
        name="上海某测试中心", is_local=False, in_province=False, county="上海市嘉定区"
    )
    jinan = make_institution(name="济南某研究院", is_local=False)
    city = make_institution(name="聊城某大学", is_local=True)
    far = make_instrument(institution=shanghai, category_code="0102")
    evidence = {
        "city": make_instrument(institution=city, category_code="0102", name="聊城质谱仪"),
        "province": make_instrument(institution=jinan, category_code="0102", name="济南质谱仪"),
        "other category": make_instrument(institution=city, category_code="0101", name="聊城色谱仪"),
    }
    return {
        "scheme": scheme,
        "user": user,
        "voucher": make_voucher(user, scheme, 100_000_00),
        "record": make_service(user, 10_000_00, instrument=far),
        "local": make_service(user, 10_000_00),
        "evidence": evidence,
        "reviewer": make_user(Role.REVIEWER),
    }


def _submit(world, justification):
    claim = claim_services.create_claim(
        world["user"], world["voucher"].id, [world["record"].id], justification
    )
    return claim_services.submit_claim(world["user"], claim.id)


def test_without_a_justification_the_claim_is_refused_at_submission(world):
    with pytest.raises(InvalidTransition) as refused:
        _submit(world, None)
    assert "请书面说明省内入网仪器为何无法完成此项服务" in refused.value.message
    assert [c["code"] for c in refused.value.details["checks"]] == ["out_of_province_justified"]
    with pytest.raises(InvalidTransition, match="20"):
        _submit(world, "太远了")  # too short to say anything


def test_with_a_justification_it_passes_at_the_schemes_rate_and_never_the_city(world):
    claim = _submit(world, f"  {WHY}  ")
    assert claim.state is ClaimState.SUBMITTED and claim.out_of_province is True
    assert claim.justification == WHY
    assert claim.fund_amounts() == {"province": 2_500_00, "city": 0}  # 25 %, not 60 % + 30 %
    stored = {c["code"]: c for c in claim.checks}
    assert stored["out_of_province_justified"]["passed"] and stored["out_of_province_justified"]["warning"]
    # The reviewer's approval runs the checks again with the stored justification.
    approved = voucher_review.approve_claim(world["reviewer"], claim.id)
    assert approved.state is ClaimState.IN_NOTICE
    funds = {f.name: f for f in world["scheme"].funds}
    db.session.refresh(funds["city"])
    assert funds["city"].committed_fen == 0


def test_a_scheme_without_the_rate_refuses_such_claims(world):
    world["scheme"].out_of_province_rate = None
    db.session.commit()
    preview = claim_services.preview_claim(world["user"], world["voucher"].id, [world["record"].id], WHY)
    assert preview.subsidy.total_fen == 0
    with pytest.raises(InvalidTransition, match="不补贴山东省外"):
        _submit(world, WHY)


def test_an_in_province_claim_keeps_no_justification(world):
    claim = claim_services.create_claim(world["user"], world["voucher"].id, [world["local"].id], WHY)
    assert claim.out_of_province is False and claim.justification is None


def test_the_api_takes_the_justification_and_says_out_of_province(client, world, make_institution):
    headers = bearer(client, world["user"])
    body = {"voucher_id": world["voucher"].id, "service_record_ids": [world["record"].id]}
    preview = client.post("/api/v1/claims/preview", json=body, headers=headers).json
    assert preview["out_of_province"] is True
    assert preview["funds"][1] == {"fund": "city", "raw_fen": 0, "amount_fen": 0}
    assert not next(c for c in preview["checks"] if c["code"] == "out_of_province_justified")["passed"]
    too_long = client.post("/api/v1/claims", json={**body, "justification": "长" * 4001}, headers=headers)
    assert too_long.status_code == 422
    created = client.post("/api/v1/claims", json={**body, "justification": WHY}, headers=headers)
    assert created.status_code == 201, created.json
    assert created.json["out_of_province"] is True and created.json["justification"] == WHY
    submitted = client.post(f"/api/v1/claims/{created.json['id']}/submit", headers=headers)
    assert submitted.status_code == 200 and submitted.json["funds"][0]["amount_fen"] == 2_500_00
    local = client.post(
        "/api/v1/claims",
        json={
            "voucher_id": world["voucher"].id,
            "service_record_ids": [world["local"].id],
            "justification": WHY,
        },
        headers=headers,
    ).json
    assert local["out_of_province"] is False and local["justification"] is None
    scheme = client.get("/api/v1/schemes/current").json
    assert scheme["redemption_modes"] == ["reimbursement"]
    assert scheme["out_of_province_rate"] == "0.25" and scheme["redemption_days"] == 30
    institutions = {i["name"]: i for i in client.get("/api/v1/institutions?per_page=100").json["items"]}
    assert institutions["上海某测试中心"]["in_province"] is False
    assert institutions["济南某研究院"]["in_province"] is True


def test_the_openapi_document_describes_the_fields(client):
    spec = client.get("/api/v1/openapi.json").json
    schemas = spec["components"]["schemas"]
    text = str(schemas)
    assert "out_of_province_rate" in str(schemas["Scheme"]) and "redemption_modes" in str(schemas["Scheme"])
    assert "at least 20 characters" in text
    assert "in_province" in str(schemas["Institution"])


def test_the_form_asks_for_the_justification_shows_the_evidence_and_keeps_input(client, world):
    login(client, world["user"].username)
    page = client.get("/vouchers/claims/new").get_data(as_text=True)
    assert 'id="justification-field"' in page  # one of the services is from outside Shandong
    base = {
        "csrf_token": extract_csrf(page),
        "voucher_id": world["voucher"].id,
        "records": [world["record"].id],
    }
    preview = client.post("/vouchers/claims/new", data={**base, "preview": "1"}).get_data(as_text=True)
    assert 'id="out-of-province"' in preview
    city = preview.split('id="alternatives-city"')[1].split("</table>")[0]
    province = preview.split('id="alternatives-province"')[1].split("</table>")[0]
    assert "聊城质谱仪" in city and "济南质谱仪" not in city and "聊城色谱仪" not in city
    assert "济南质谱仪" in province and "上海" not in province
    assert f'href="/instruments/{world["evidence"]["city"].code}"' in city
    # 聊城质谱仪 and the instrument of the in-province service, both of category 0102.
    assert re.search(r'data-count="alternatives-city">2<', preview)
    assert re.search(r'data-count="alternatives-province">1<', preview)
    refused = client.post("/vouchers/claims/new", data={**base, "create": "1", "justification": "太远了"})
    html = refused.get_data(as_text=True)
    assert refused.status_code == 200 and "至少 20 个字符" in html
    assert (
        "太远了</textarea>" in html
        and f'value="{world["record"].id}" id="record-{world["record"].id}" checked' in html
    )
    saved = client.post("/vouchers/claims/new", data={**base, "create": "1", "justification": WHY})
    assert saved.status_code == 302
    claim_page = client.get(saved.headers["Location"]).get_data(as_text=True)
    assert WHY in claim_page and 'id="out-of-province-badge"' in claim_page and "济南质谱仪" in claim_page


def test_reviewers_see_the_badge_in_the_queue_and_the_evidence(client, world):
    claim = _submit(world, WHY)
    login(client, world["reviewer"].username)
    queue = client.get("/review/?kind=claim").get_data(as_text=True)
    assert re.search(rf'>#{claim.id}</a> <span class="badge text-bg-warning out-of-province">省外<', queue)
    page = client.get(f"/vouchers/claims/{claim.id}").get_data(as_text=True)
    assert 'id="justification"' in page and WHY in page and "聊城质谱仪" in page


SCHEME_FORM = {
    "year": "2027",
    "name": "2027年度创新券",
    "funds-0-name": "province",
    "funds-0-rate": "0.60",
    "funds-0-budget": "3000000",
    "funds-0-condition": "always",
    "funds-0-enterprise_capped": "y",
    "enterprise_cap": "500000",
    "group_cap": "650000",
    "four_eyes_threshold": "50000",
    "voucher_validity_days": "365",
    "service_window_start": "2027-01-01",
    "service_window_end": "2027-12-31",
    "public_notice_days": "7",
    "redemption_modes": ["reimbursement", "at_payment"],
    "out_of_province_rate": "0.35",
    "redemption_days": "45",
}


@pytest.mark.parametrize(
    ("changes", "field", "message"),
    [
        ({"redemption_modes": []}, "redemption-modes", "请至少选择一种方式"),
        ({"redemption_modes": ["cash"]}, "redemption-modes", ""),
        ({"out_of_province_rate": "1.5"}, "out_of_province_rate", ""),
        ({"redemption_days": "0"}, "redemption_days", ""),
        ({"redemption_days": "366"}, "redemption_days", ""),
    ],
    ids=["no mode", "unknown mode", "rate above 1", "no days", "more than a year"],
)
def test_the_scheme_form_validates_the_settings_and_keeps_input(
    client, app, make_user, changes, field, message
):
    login(client, make_user(Role.ADMIN).username)
    page = client.get("/review/scheme?year=2027").get_data(as_text=True)
    assert 'name="redemption_modes"' in page and 'id="out_of_province_rate"' in page
    response = client.post(
        "/review/scheme", data={"csrf_token": extract_csrf(page), **SCHEME_FORM, **changes}
    )
    html = response.get_data(as_text=True)
    assert response.status_code == 200
    assert message in html and "invalid-feedback" in html.split(f'id="{field}')[1][:3000]
    assert 'value="2027年度创新券"' in html  # what was typed stays
    assert db.session.scalar(select(Scheme).where(Scheme.year == 2027)) is None


def test_the_scheme_form_saves_the_settings_and_audits_them(client, app, make_user):
    login(client, make_user(Role.ADMIN).username)
    page = client.get("/review/scheme?year=2027").get_data(as_text=True)
    response = client.post("/review/scheme", data={"csrf_token": extract_csrf(page), **SCHEME_FORM})
    assert response.status_code == 302
    scheme = db.session.scalar(select(Scheme).where(Scheme.year == 2027))
    assert scheme.redemption_modes == ["reimbursement", "at_payment"]
    assert scheme.out_of_province_rate == Decimal("0.35") and scheme.redemption_days == 45
    event = db.session.scalar(select(AuditEvent).where(AuditEvent.action == "scheme.saved"))
    assert event.after["out_of_province_rate"] == "0.3500" and event.after["redemption_days"] == 45
    again = client.get("/review/scheme?year=2027").get_data(as_text=True)
    assert 'value="0.3500"' in again or 'value="0.35"' in again
    blank = client.post(
        "/review/scheme", data={"csrf_token": extract_csrf(again), **SCHEME_FORM, "out_of_province_rate": ""}
    )
    assert blank.status_code == 302
    db.session.refresh(scheme)
    assert scheme.out_of_province_rate is None  # blank: no out-of-province service is subsidised


def test_an_out_of_province_provider_needs_no_admission_but_one_in_the_province_does(world):
    """Admission is the scheme's for providers in Shandong; one outside is the reviewer's call, case by
    case, through the justification."""
    shanghai = world["record"].booking.instrument.institution
    local = world["local"].booking.instrument.institution
    shanghai.admission = local.admission = "none"
    db.session.commit()
    checks = {
        key: {
            c.code: c.passed
            for c in claim_services.preview_claim(
                world["user"], world["voucher"].id, [world[key].id], WHY
            ).checks
        }
        for key in ("record", "local")
    }
    assert checks["record"]["provider_admitted"] is True
    assert checks["local"]["provider_admitted"] is False
