"""Claims without friction: the new-claim list says which services cannot pass and why (the review's own
checks), a claim that cannot pass is not submitted, a returned claim is corrected (a reply, a replaced
file) and submitted again, and the review desk offers each reviewer only what they may do, asking first."""

from __future__ import annotations

import io
import re
from datetime import UTC, datetime

import pytest
from sqlalchemy import func, select

from portal.booking import files
from portal.booking.models import FileKind, ServiceFile, ServiceRecord
from portal.core.errors import Forbidden, InvalidTransition, ValidationFailed
from portal.core.models import AuditEvent
from portal.core.permissions import Role
from portal.extensions import db
from portal.vouchers import applications as application_services
from portal.vouchers import checks as claim_checks
from portal.vouchers import claims as claim_services
from portal.vouchers import review as voucher_review
from portal.vouchers import verification
from portal.vouchers.models import Claim, ClaimState, EnterpriseRelation, RelationKind
from tests.factories import extract_csrf, login
from tests.test_booking_files import PDF
from tests.test_booking_rules import bearer


@pytest.fixture
def desk(fake_clock, make_scheme, make_user, make_voucher, make_service, make_instrument, make_institution):
    """An enterprise (holder and a colleague) with a voucher, two reviewers, and services of every kind."""
    scheme = make_scheme()
    holder = make_user(Role.ENTERPRISE)
    staff = make_user(Role.ENTERPRISE, enterprise=holder.enterprise, is_holder=False)
    voucher = make_voucher(holder, scheme, 100_000_00)
    return {
        "scheme": scheme,
        "holder": holder,
        "staff": staff,
        "voucher": voucher,
        "reviewer": make_user(Role.REVIEWER),
        "reviewer2": make_user(Role.REVIEWER),
        "service": make_service,
        "instrument": make_instrument,
        "institution": make_institution,
    }


def services_of_every_kind(desk) -> dict[str, ServiceRecord]:
    user, make = desk["holder"], desk["service"]
    related_host = desk["institution"](is_local=True)
    db.session.add(
        EnterpriseRelation(
            enterprise_id=user.enterprise_id,
            institution_id=related_host.id,
            kind=RelationKind.INVESTOR,
            declared_by_id=user.id,
        )
    )
    db.session.commit()
    return {
        "good": make(user, 1_000_00),
        "no_receipt": make(user, 1_000_00, evidence=(FileKind.CONTRACT, FileKind.INVOICE)),
        "unrated": make(user, 1_000_00, rated=False),
        "old": make(user, 1_000_00, starts_at=datetime(2025, 11, 3, 1, 0, tzinfo=UTC)),
        "related": make(user, 1_000_00, instrument=desk["instrument"](institution=related_host)),
        "statutory": make(user, 1_000_00, service_type="statutory_testing"),
    }


# --- the new-claim list -------------------------------------------------------------------------------


def test_the_new_claim_list_marks_what_cannot_pass_with_the_reviews_own_reasons(client, desk):
    records = services_of_every_kind(desk)
    user = desk["holder"]
    marked = {c.record.id: c for c in claim_checks.claimable_services(user, desk["voucher"])}
    expected = {
        "good": set(),
        "no_receipt": {"evidence"},
        "unrated": {"service_completed"},
        "old": {"service_window"},
        "related": {"related_party"},
        "statutory": {"excluded_service"},
    }
    for name, codes in expected.items():
        record = records[name]
        assert {p.code for p in marked[record.id].problems} == codes, name
        # One place: the review's checks on this service alone fail for exactly the same reasons.
        alone = claim_checks.run_checks(user.enterprise, desk["scheme"], [record])
        assert {c.message for c in alone if not c.passed} == {p.message for p in marked[record.id].problems}
    assert marked[records["no_receipt"].id].fixable and not marked[records["old"].id].fixable

    login(client, user.username)
    page = client.get("/vouchers/claims/new").get_data(as_text=True)

    def row(name: str) -> str:
        return re.search(rf'<tr[^>]*data-record="{records[name].id}".*?</tr>', page, re.S).group(0)

    assert "cannot-pass" not in row("good") and "disabled" not in row("good")
    assert 'data-check="evidence"' in row("no_receipt") and "付款凭证" in row("no_receipt")
    assert "disabled" not in row("no_receipt") and f"/bookings/{records['no_receipt'].booking_id}" in row(
        "no_receipt"
    )
    assert 'data-check="service_window"' in row("old") and "disabled" in row("old")
    assert 'data-check="related_party"' in row("related") and 'data-check="excluded_service"' in row(
        "statutory"
    )


# --- a claim that cannot pass is not submitted -----------------------------------------------------------


def test_a_claim_whose_checks_fail_cannot_be_submitted(desk):
    user = desk["holder"]
    record = desk["service"](user, 1_000_00, evidence=(FileKind.CONTRACT,))
    claim = claim_services.create_claim(user, desk["voucher"].id, [record.id])
    with pytest.raises(InvalidTransition) as error:
        claim_services.submit_claim(user, claim.id)
    assert [c["code"] for c in error.value.details["checks"]] == ["evidence"]
    db.session.rollback()
    assert db.session.get(Claim, claim.id).state is ClaimState.DRAFT
    assert db.session.get(ServiceRecord, record.id).claim_id is None  # nothing stays reserved
    assert db.session.scalar(select(func.count()).where(AuditEvent.action == "claim.submitted")) == 0

    # Once the missing documents are there, the same draft goes through.
    for kind in (FileKind.INVOICE, FileKind.RECEIPT):
        files.attach_file(user, record.id, kind, io.BytesIO(PDF), f"{kind.value}.pdf")
    assert claim_services.submit_claim(user, claim.id).state is ClaimState.SUBMITTED


def test_the_claim_page_explains_and_the_api_refuses(client, desk):
    user = desk["holder"]
    record = desk["service"](user, 1_000_00, rated=False)
    claim = claim_services.create_claim(user, desk["voucher"].id, [record.id])
    login(client, user.username)
    page = client.get(f"/vouchers/claims/{claim.id}").get_data(as_text=True)
    assert 'id="cannot-submit"' in page and 'id="submit-claim"' not in page
    assert 'data-check="service_completed"' in page and "check-failed" in page
    forced = client.post(
        f"/vouchers/claims/{claim.id}", data={"csrf_token": extract_csrf(page), "claim_action": "submit"}
    )
    assert forced.status_code == 302
    assert db.session.get(Claim, claim.id).state is ClaimState.DRAFT
    answer = client.post(f"/api/v1/claims/{claim.id}/submit", headers=bearer(client, user))
    body = answer.get_json()["error"]
    assert answer.status_code == 409 and body["code"] == "invalid_transition"
    assert [c["code"] for c in body["details"]["checks"]] == ["service_completed"]


# --- a returned claim is corrected and submitted again --------------------------------------------------


@pytest.fixture
def returned(desk):
    user = desk["holder"]
    record = desk["service"](user, 2_000_00)
    claim = claim_services.submit_claim(
        user, claim_services.create_claim(user, desk["voucher"].id, [record.id]).id
    )
    voucher_review.return_claim(desk["reviewer"], claim.id, "付款凭证不清晰，请重新上传")
    return {"claim": claim, "record": record}


def test_the_holder_replies_replaces_a_file_and_submits_again(client, desk, returned):
    user, claim, record = desk["holder"], returned["claim"], returned["record"]
    old_receipt = db.session.scalar(
        select(ServiceFile).where(ServiceFile.record_id == record.id, ServiceFile.kind == FileKind.RECEIPT)
    )
    login(client, user.username)
    claim_page = client.get(f"/vouchers/claims/{claim.id}").get_data(as_text=True)
    assert 'id="revise-claim"' in claim_page and "付款凭证不清晰" in claim_page
    form = client.get(f"/vouchers/claims/{claim.id}/revise").get_data(as_text=True)
    token = extract_csrf(form)
    data = {
        "csrf_token": token,
        "reply": "已重新扫描银行回单，300dpi",
        "record": str(record.id),
        "kind": "receipt",
    }
    # A program renamed .pdf is refused; the reply typed is kept and the page says to choose the file again.
    bad = client.post(
        f"/vouchers/claims/{claim.id}/revise",
        data={**data, "file": (io.BytesIO(b"<html><script>x</script>"), "回单.pdf"), "save": "1"},
        content_type="multipart/form-data",
    )
    html = bad.get_data(as_text=True)
    assert bad.status_code == 200 and "已重新扫描银行回单，300dpi" in html and "is-invalid" in html
    # A file without the document it replaces is asked about, not guessed.
    unsaid = client.post(
        f"/vouchers/claims/{claim.id}/revise",
        data={**data, "kind": "", "file": (io.BytesIO(PDF), "回单.pdf"), "save": "1"},
        content_type="multipart/form-data",
    )
    assert unsaid.status_code == 200 and "is-invalid" in unsaid.get_data(as_text=True)
    assert db.session.scalar(select(func.count()).select_from(ServiceFile)) == 3
    saved = client.post(
        f"/vouchers/claims/{claim.id}/revise",
        data={**data, "file": (io.BytesIO(PDF), "回单-清晰.pdf"), "save": "1"},
        content_type="multipart/form-data",
    )
    assert saved.status_code == 302
    db.session.rollback()
    assert db.session.get(ServiceFile, old_receipt.id).replaced_at is not None  # kept, marked replaced
    current = db.session.scalars(
        select(ServiceFile).where(ServiceFile.record_id == record.id, ServiceFile.replaced_at.is_(None))
    ).all()
    assert sorted(f.kind.value for f in current) == ["contract", "invoice", "receipt"]
    assert db.session.get(Claim, claim.id).state is ClaimState.RETURNED  # corrected, not yet sent
    revised = db.session.scalar(select(AuditEvent).where(AuditEvent.action == "claim.revised"))
    assert revised.reason == "已重新扫描银行回单，300dpi" and revised.after["file"]["replaces"] == [
        old_receipt.id
    ]

    again = client.post(
        f"/vouchers/claims/{claim.id}/revise",
        data={
            "csrf_token": token,
            "reply": "已重新扫描银行回单，300dpi",
            "record": str(record.id),
            "kind": "receipt",
            "resubmit": "1",
        },
    )
    assert again.status_code == 302
    assert db.session.get(Claim, claim.id).state is ClaimState.SUBMITTED

    reviewer = client.application.test_client()
    login(reviewer, desk["reviewer2"].username)
    seen = reviewer.get(f"/vouchers/claims/{claim.id}").get_data(as_text=True)
    assert 'id="enterprise-reply"' in seen and "已重新扫描银行回单，300dpi" in seen
    assert "file-replaced" in seen  # the old receipt is shown, struck through
    history = re.search(r'id="claim-history".*?</ul>', seen, re.S).group(0)
    assert "已重新扫描银行回单，300dpi" in history
    api = reviewer.get(f"/api/v1/claims/{claim.id}", headers=bearer(reviewer, desk["reviewer2"]))
    assert api.get_json()["reply"] == "已重新扫描银行回单，300dpi"


def test_only_the_holder_corrects_and_only_a_returned_claim(client, desk, returned):
    claim = returned["claim"]
    login(client, desk["staff"].username)
    seen = client.get(f"/vouchers/claims/{claim.id}").get_data(as_text=True)
    assert 'id="holder-only"' in seen and 'id="revise-claim"' not in seen and 'id="submit-claim"' not in seen
    assert 'id="not-revisable"' in client.get(f"/vouchers/claims/{claim.id}/revise").get_data(as_text=True)
    with pytest.raises(Forbidden) as error:
        claim_services.revise_claim(desk["staff"], claim.id, "我来改")
    assert desk["holder"].full_name in error.value.message
    draft = claim_services.create_claim(
        desk["holder"], desk["voucher"].id, [desk["service"](desk["holder"]).id]
    )
    with pytest.raises(InvalidTransition):
        claim_services.revise_claim(desk["holder"], draft.id, "草稿不用答复")
    with pytest.raises(ValidationFailed) as error:
        claim_services.revise_claim(
            desk["holder"],
            claim.id,
            None,
            claim_services.Replacement(999_999, FileKind.RECEIPT, io.BytesIO(PDF), "x.pdf"),
        )
    assert "record" in error.value.fields
    assert db.session.scalar(select(func.count()).where(AuditEvent.action == "claim.revised")) == 0


# --- the review desk shows each reviewer what they may do, and asks first ----------------------------------


def test_the_first_approver_is_not_offered_approve_again(client, desk):
    user = desk["holder"]
    # Above the four-eyes threshold (50,000 yuan of subsidy): 90 % of 60,000 yuan.
    record = desk["service"](user, 60_000_00)
    claim = claim_services.submit_claim(
        user, claim_services.create_claim(user, desk["voucher"].id, [record.id]).id
    )
    voucher_review.approve_claim(desk["reviewer"], claim.id)
    assert db.session.get(Claim, claim.id).state is ClaimState.PENDING_SECOND
    first, second = desk["reviewer"], desk["reviewer2"]
    assert not voucher_review.can_approve_claim(first, db.session.get(Claim, claim.id))
    assert voucher_review.can_decide_claim(first, db.session.get(Claim, claim.id))

    login(client, first.username)
    mine = client.get(f"/vouchers/claims/{claim.id}").get_data(as_text=True)
    assert 'id="approve-claim"' not in mine and 'id="own-approval"' in mine
    assert 'name="return"' in mine and 'name="reject"' in mine
    other = client.application.test_client()
    login(other, second.username)
    theirs = other.get(f"/vouchers/claims/{claim.id}").get_data(as_text=True)
    button = re.search(r'<button[^>]*id="approve-claim"[^>]*>', theirs).group(0)
    assert "data-confirm=" in button
    for name in ("return", "reject"):
        assert "data-confirm=" in re.search(rf'<button[^>]*name="{name}"[^>]*>', theirs).group(0)


def test_the_first_approver_of_an_application_is_not_offered_approve_again(client, desk, make_user):
    applicant = make_user(Role.ENTERPRISE)
    application = application_services.apply_for_voucher(applicant, 80_000_00, "扩产检测")
    application_services.approve_application(desk["reviewer"], application.id)
    login(client, desk["reviewer"].username)
    mine = client.get(f"/review/applications/{application.id}").get_data(as_text=True)
    assert 'id="approve-application"' not in mine and 'id="own-approval"' in mine
    other = client.application.test_client()
    login(other, desk["reviewer2"].username)
    theirs = other.get(f"/review/applications/{application.id}").get_data(as_text=True)
    assert "data-confirm=" in re.search(r'<button[^>]*id="approve-application"[^>]*>', theirs).group(0)
    finance = other.application.test_client()
    login(finance, make_user(Role.FINANCE).username)
    assert "approve-application" not in finance.get(f"/review/applications/{application.id}").get_data(
        as_text=True
    )


def test_enterprise_verification_asks_before_deciding(client, desk, make_user):
    from portal.accounts.models import VerificationState

    waiting = make_user(Role.ENTERPRISE, verification_state=VerificationState.PENDING)
    request = verification.submit_verification(
        waiting, verification.VerificationData(kind="maker_team", actual_controller="李四")
    )
    login(client, desk["reviewer"].username)
    page = client.get(f"/review/verifications/{request.id}").get_data(as_text=True)
    for name in ("verify", "reject"):
        assert "data-confirm=" in re.search(rf'<button[^>]*name="{name}"[^>]*>', page).group(0)
