"""Bad input loses nothing: every form shows again with what was typed and the message at its field.

(The booking page's own forms, the service record among them, are in test_booking_detail_forms.py.)
"""

from __future__ import annotations

import html
import io
import re
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from portal.accounts.models import VerificationState
from portal.booking.models import Booking
from portal.core.permissions import Role
from portal.extensions import db
from portal.vouchers.models import Scheme, VerificationRequest, VoucherApplication
from tests.factories import extract_csrf, login
from tests.pdf_samples import minimal_pdf
from tests.test_booking_rules import WEEKDAY_HOURS

HTML = b"<!doctype html><p>not a certificate</p>"
PDF = minimal_pdf()


def values_in(text: str, *typed: str) -> list[str]:
    """The typed values that are NOT on the page (escaped as the page escapes them)."""
    return [value for value in typed if html.escape(value) not in text]


def invalid_fields(text: str) -> set[str]:
    """The names of the inputs marked invalid."""
    return set(
        re.findall(r'<(?:input|select|textarea)[^>]*class="[^"]*is-invalid[^"]*"[^>]*name="([^"]+)"', text)
    ) | set(re.findall(r'<(?:input|select|textarea)[^>]*name="([^"]+)"[^>]*class="[^"]*is-invalid', text))


# --- booking requests ----------------------------------------------------------------------------


@pytest.fixture
def instrument(make_instrument):
    return make_instrument(opening_hours=WEEKDAY_HOURS, fee_per_sample_fen=80_00)


def test_the_slot_form_keeps_the_purpose_when_the_time_has_gone(
    client, fake_clock, instrument, make_user, make_booking
):
    user = make_user()
    login(client, user.username)
    start = "2026-12-09T01:00:00Z"  # Wednesday 09:00
    page = client.get(f"/instruments/{instrument.code}/book?start={start}").get_data(as_text=True)
    # Someone else takes the time while the form is open.
    wednesday = datetime(2026, 12, 9, 1, 0, tzinfo=UTC)
    make_booking(instrument, make_user(), wednesday, wednesday + timedelta(hours=3))
    response = client.post(
        f"/instruments/{instrument.code}/book",
        data={
            "csrf_token": extract_csrf(page),
            "starts_at": start,
            "ends_at": "2026-12-09T02:00:00Z",
            "purpose": "<样品>形貌观察",
        },
    )
    assert response.status_code == 200
    text = response.get_data(as_text=True)
    assert values_in(text, "<样品>形貌观察") == []
    assert 'id="choose-another"' in text
    assert db.session.scalar(select(Booking).where(Booking.enterprise_id == user.enterprise_id)) is None


def test_the_slot_form_keeps_the_chosen_end_when_the_purpose_is_missing(
    client, fake_clock, instrument, make_user
):
    login(client, make_user().username)
    start = "2026-12-09T01:00:00Z"
    page = client.get(f"/instruments/{instrument.code}/book?start={start}").get_data(as_text=True)
    response = client.post(
        f"/instruments/{instrument.code}/book",
        data={"csrf_token": extract_csrf(page), "starts_at": start, "ends_at": "2026-12-09T02:30:00Z"},
    )
    text = response.get_data(as_text=True)
    assert re.search(
        r'<option selected value="2026-12-09T02:30:00Z"|value="2026-12-09T02:30:00Z" selected', text
    )
    assert "purpose" in invalid_fields(text)


def test_the_sample_form_keeps_everything_when_the_date_is_refused(client, fake_clock, instrument, make_user):
    login(client, make_user().username)
    page = client.get(f"/instruments/{instrument.code}/book-sample").get_data(as_text=True)
    response = client.post(
        f"/instruments/{instrument.code}/book-sample",
        data={
            "csrf_token": extract_csrf(page),
            "sample_count": "7",
            "sample_description": "粉末<7>份",
            "sample_delivery_on": "2026-12-01",  # already past
            "purpose": "成分分析",
        },
    )
    assert response.status_code == 200
    text = response.get_data(as_text=True)
    assert 'value="7"' in text and values_in(text, "粉末<7>份", "2026-12-01", "成分分析") == []
    assert "sample_delivery_on" in invalid_fields(text)


# --- the enterprise's voucher forms ------------------------------------------------------------------


@pytest.fixture
def verify(client, fake_clock, make_user):
    """Post the verification form as a pending enterprise: fields over a tech SME's defaults."""
    login(client, make_user(Role.ENTERPRISE, verification_state=VerificationState.PENDING).username)
    token = extract_csrf(client.get("/vouchers/verification").get_data(as_text=True))

    def post(**fields):
        data = {"csrf_token": token, "kind": "tech_sme", "tech_sme_number": "202637150100999", **fields}
        return client.post("/vouchers/verification", data=data, content_type="multipart/form-data")

    return post


def test_verification_keeps_the_text_and_says_the_certificate_must_be_chosen_again(verify):
    response = verify(actual_controller="张<三>", certificate=(io.BytesIO(HTML), "证明.pdf"))  # a web page
    assert response.status_code == 200
    text = response.get_data(as_text=True)
    assert values_in(text, "张<三>", "202637150100999") == []
    assert "certificate" in invalid_fields(text)
    assert 'id="certificate-again"' in text
    assert db.session.scalar(select(VerificationRequest)) is None


def test_a_valid_certificate_is_kept_for_the_next_attempt(verify):
    first = verify(actual_controller="", certificate=(io.BytesIO(PDF), "证明.pdf"))  # no controller
    text = first.get_data(as_text=True)
    assert first.status_code == 200 and "证明.pdf" in text.split('id="certificate-again"')[1][:300]
    token = re.search(r'name="held-certificate" value="([^"]+)"', text).group(1)
    assert verify(actual_controller="张三", **{"held-certificate": token}).status_code == 302
    request = db.session.scalar(select(VerificationRequest))
    assert request.certificate_name == "证明.pdf" and request.certificate_type == "application/pdf"


def test_the_voucher_application_keeps_amount_and_plan(client, fake_clock, make_scheme, make_user):
    make_scheme()
    login(client, make_user(Role.ENTERPRISE).username)
    token = extract_csrf(client.get("/vouchers/apply").get_data(as_text=True))
    response = client.post(
        "/vouchers/apply", data={"csrf_token": token, "amount": "700000", "plan": "计划<一>"}
    )
    assert response.status_code == 200
    text = response.get_data(as_text=True)
    assert values_in(text, "计划<一>") == []
    assert 'value="700000"' in text and "amount" in invalid_fields(text)
    assert db.session.scalar(select(VoucherApplication)) is None


# --- the bureau's forms ----------------------------------------------------------------------------


SCHEME = {
    "year": "2027",
    "name": "2027年度<创新券>",
    "funds-0-name": "province",
    "funds-0-rate": "0.45",
    "funds-0-budget": "3000000.5",
    "funds-0-condition": "always",
    "funds-0-enterprise_capped": "y",
    "funds-1-name": "city",
    "funds-1-rate": "0.25",
    "funds-1-budget": "1000000",
    "funds-1-condition": "always",
    "enterprise_cap": "500000",
    "group_cap": "650000",
    "four_eyes_threshold": "50000",
    "voucher_validity_days": "365",
    "service_window_start": "2027-12-31",  # after its end: refused by the service
    "service_window_end": "2027-01-01",
    "public_notice_days": "7",
    "excluded_service_types": ["statutory_testing"],
    "redemption_modes": ["reimbursement"],
    "redemption_days": "30",
    "weight_hours": "0.3",
    "weight_samples": "0.1",
    "weight_fees": "0.2",
    "weight_enterprises": "0.2",
    "weight_rating": "0.2",
}


def test_the_scheme_form_keeps_every_value(client, fake_clock, make_user):
    login(client, make_user(Role.ADMIN).username)
    page = client.get("/review/scheme?year=2027").get_data(as_text=True)
    response = client.post("/review/scheme", data={"csrf_token": extract_csrf(page), **SCHEME})
    assert response.status_code == 200
    text = response.get_data(as_text=True)
    typed = [f'value="{v}"' for k, v in SCHEME.items() if isinstance(v, str) and k != "name"]
    assert [t for t in typed if t not in text] == []
    assert html.escape(SCHEME["name"]) in text
    assert re.search(r'<option selected value="statutory_testing"|value="statutory_testing" selected', text)
    city_condition = text.split('name="funds-1-condition"')[1].split("</select>")[0]
    assert re.search(r'<option selected value="always"|value="always" selected', city_condition)
    assert "service_window_end" in invalid_fields(text)
    assert db.session.scalar(select(Scheme)) is None


def test_a_budget_below_what_is_committed_is_explained_in_yuan(client, fake_clock, make_user, make_scheme):
    scheme = make_scheme()
    scheme.funds[0].committed_fen = 1_234_567_89
    db.session.commit()
    login(client, make_user(Role.ADMIN).username)
    page = client.get("/review/scheme?year=2026").get_data(as_text=True)
    data = {
        **SCHEME,
        "year": "2026",
        "service_window_start": "2026-01-01",
        "service_window_end": "2026-12-31",
    }
    data["funds-0-budget"] = "1000000"
    response = client.post("/review/scheme", data={"csrf_token": extract_csrf(page), **data})
    text = response.get_data(as_text=True)
    assert response.status_code == 200 and "funds-0-budget" in invalid_fields(text)
    feedback = text.split('name="funds-0-budget"')[1].split("</div>")[0]
    assert "¥1,234,567.89" in feedback and "分" not in feedback


def test_the_finance_forms_keep_the_typed_month(client, fake_clock, make_user):
    login(client, make_user(Role.FINANCE).username)
    page = client.get("/finance/batches").get_data(as_text=True)
    token = extract_csrf(page)
    response = client.post(
        "/finance/batches", data={"csrf_token": token, "close-month": "2026-13", "close-submit": "1"}
    )
    assert response.status_code == 200
    text = response.get_data(as_text=True)
    assert 'value="2026-13"' in text and "close-month" in invalid_fields(text)
    assert 'name="batch-month"' in text and re.search(r'name="batch-month"[^>]*value="2026-\d\d"', text)
    nothing = client.post(
        "/finance/batches", data={"csrf_token": token, "batch-month": "2026-11", "batch-submit": "1"}
    )
    text = nothing.get_data(as_text=True)
    assert nothing.status_code == 200 and 'value="2026-11"' in text  # nothing payable: said at the field
    assert "batch-month" in invalid_fields(text)
