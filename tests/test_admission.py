"""Provider admission (issue 21, item 4): the state machine, the notice's end, eligibility, the API
field, the pages and who may see them."""

from __future__ import annotations

import io
import re
from datetime import date, timedelta

import pytest
from sqlalchemy import func, select

from portal.accounts.models import Institution
from portal.admission import services, tasks
from portal.admission.models import AdmissionState, ProviderAdmission
from portal.core.errors import Forbidden, InvalidTransition, NotFound, ValidationFailed
from portal.core.models import AuditEvent
from portal.core.permissions import Role
from portal.extensions import db
from portal.notifications.models import Notification
from portal.vouchers import claims as claim_services
from tests.factories import extract_csrf, login
from tests.pdf_samples import minimal_pdf
from tests.test_booking_rules import bearer

pytestmark = pytest.mark.both_backends  # the admission flow through serialized writes on both

FEES = "机时 300 元/小时，送样 80 元/样"
PROMISE = "本单位承诺如实收费、如实开具发票。"


@pytest.fixture
def world(app, fake_clock, make_institution, make_instrument, make_user):
    """An institution never admitted, with two instruments and a provider; another institution's
    provider; two reviewers."""
    host = make_institution(admission="none")
    instruments = [make_instrument(institution=host) for _ in range(2)]
    return {
        "host": host,
        "instruments": instruments,
        "provider": make_user(Role.PROVIDER, institution=host),
        "stranger": make_user(Role.PROVIDER),
        "reviewer": make_user(Role.REVIEWER),
        "clock": fake_clock,
    }


def apply(world, **overrides) -> ProviderAdmission:
    data = services.AdmissionData(
        instrument_ids=overrides.pop("instrument_ids", [i.id for i in world["instruments"]]),
        fee_schedule=overrides.pop("fee_schedule", FEES),
        credit_statement=overrides.pop("credit_statement", PROMISE),
    )
    return services.apply_for_admission(world["provider"], world["host"].id, data, **overrides)


def mirrored(world) -> str:
    db.session.expire_all()
    return db.session.get(Institution, world["host"].id).admission


def audit_actions(admission_id: int) -> list[str]:
    return [event.action for event in services.history(admission_id)]


def told(world) -> list[str]:
    return list(
        db.session.scalars(
            select(Notification.kind)
            .where(Notification.recipient_id == world["provider"].id)
            .order_by(Notification.id)
        )
    )


# --- the state machine ---------------------------------------------------------------------------


def test_apply_approve_notice_end_admits_with_an_audit_row_and_a_message_each(world):
    admission = apply(world)
    assert admission.state is AdmissionState.SUBMITTED and mirrored(world) == "submitted"
    assert [i.id for i in admission.instruments] == sorted(i.id for i in world["instruments"])
    services.approve_admission(world["reviewer"], admission.id)
    db.session.expire_all()
    admission = db.session.get(ProviderAdmission, admission.id)
    assert admission.state is AdmissionState.IN_NOTICE and mirrored(world) == "in_notice"
    assert admission.notice_ends_on == date(2026, 12, 14)  # ADMISSION_NOTICE_DAYS = 7 after Monday 7th
    assert services.end_public_notice(date(2026, 12, 13)) == 0  # the notice still runs
    world["clock"].advance(days=7)
    assert tasks.end_public_notice() == 1
    assert tasks.end_public_notice() == 0  # safe to run twice
    db.session.expire_all()
    admission = db.session.get(ProviderAdmission, admission.id)
    assert admission.state is AdmissionState.ADMITTED and admission.admitted_at is not None
    assert mirrored(world) == "admitted"
    assert audit_actions(admission.id) == [
        "provider_admission.submitted",
        "provider_admission.in_notice",
        "provider_admission.admitted",
    ]
    assert told(world) == ["admission.in_notice", "admission.admitted"]


def test_the_notice_days_are_configurable(app, world):
    app.config["ADMISSION_NOTICE_DAYS"] = 3
    admission = services.approve_admission(world["reviewer"], apply(world).id)
    assert admission.notice_ends_on == date(2026, 12, 10)


def test_return_then_resubmit_with_corrections(world):
    admission = apply(world)
    services.return_admission(world["reviewer"], admission.id, "收费标准缺少送样价格")
    assert mirrored(world) == "returned"
    again = apply(world, instrument_ids=[world["instruments"][0].id], fee_schedule="机时 280 元/小时")
    assert again.id == admission.id and again.state is AdmissionState.SUBMITTED
    assert again.fee_schedule == "机时 280 元/小时" and [i.id for i in again.instruments] == [
        world["instruments"][0].id
    ]
    assert mirrored(world) == "submitted"
    assert audit_actions(admission.id)[-2:] == ["provider_admission.returned", "provider_admission.submitted"]
    assert told(world) == ["admission.returned"]


def test_reject_then_apply_anew(world):
    admission = apply(world)
    services.reject_admission(world["reviewer"], admission.id, "信用承诺不符合要求")
    assert mirrored(world) == "rejected"
    assert apply(world).id != admission.id and mirrored(world) == "submitted"


def test_an_objection_upheld_during_the_notice_rejects_it(world):
    admission = services.approve_admission(world["reviewer"], apply(world).id)
    services.reject_admission(world["reviewer"], admission.id, "公示期间收到属实的异议")
    assert mirrored(world) == "rejected"
    world["clock"].advance(days=8)
    assert tasks.end_public_notice() == 0
    assert told(world) == ["admission.in_notice", "admission.rejected"]


def test_suspend_and_reinstate_with_reasons(world):
    admission = services.approve_admission(world["reviewer"], apply(world).id)
    services.end_notice(admission.id)
    services.suspend_provider(world["reviewer"], world["host"].id, "虚开发票")
    db.session.expire_all()
    admission = db.session.get(ProviderAdmission, admission.id)
    assert admission.state is AdmissionState.SUSPENDED and admission.suspension_reason == "虚开发票"
    assert mirrored(world) == "suspended"
    services.reinstate_provider(world["reviewer"], world["host"].id, "整改完成")
    db.session.expire_all()
    admission = db.session.get(ProviderAdmission, admission.id)
    assert admission.state is AdmissionState.ADMITTED and admission.suspension_reason is None
    assert mirrored(world) == "admitted"
    events = services.history(admission.id)
    assert [(e.action, e.reason) for e in events[-2:]] == [
        ("provider_admission.suspended", "虚开发票"),
        ("provider_admission.reinstated", "整改完成"),
    ]
    assert told(world)[-2:] == ["admission.suspended", "admission.reinstated"]


def test_a_provider_admitted_before_the_scheme_can_be_suspended(world, make_institution):
    old = make_institution()  # admitted, with no application (as the migration leaves existing ones)
    admission = services.suspend_provider(world["reviewer"], old.id, "多次违规")
    assert admission.grandfathered and admission.state is AdmissionState.SUSPENDED
    db.session.expire_all()
    assert db.session.get(Institution, old.id).admission == "suspended"


def test_the_table_holds_exactly_the_issues_transitions():
    assert {(s.value, a): t.value for (s, a), t in services.ADMISSION_TRANSITIONS.items()} == {
        ("submitted", "approve"): "in_notice",
        ("submitted", "return"): "returned",
        ("submitted", "reject"): "rejected",
        ("returned", "resubmit"): "submitted",
        ("in_notice", "end_notice"): "admitted",
        ("in_notice", "reject"): "rejected",
        ("admitted", "suspend"): "suspended",
        ("suspended", "reinstate"): "admitted",
    }


REVIEWER_ACTIONS = {
    "approve": lambda r, a: services.approve_admission(r, a.id),
    "return": lambda r, a: services.return_admission(r, a.id, "理由"),
    "reject": lambda r, a: services.reject_admission(r, a.id, "理由"),
    "suspend": lambda r, a: services.suspend_provider(r, a.institution_id, "理由"),
    "reinstate": lambda r, a: services.reinstate_provider(r, a.institution_id, "理由"),
}
REFUSED = [
    (state, action)
    for state in AdmissionState
    for action in REVIEWER_ACTIONS
    if (state, action) not in services.ADMISSION_TRANSITIONS
]


@pytest.mark.parametrize(("state", "action"), REFUSED, ids=[f"{s.value}-{a}" for s, a in REFUSED])
def test_every_refused_transition_says_why_and_writes_nothing(world, state, action):
    admission = apply(world)
    put(world, admission, state)
    audit_rows = db.session.scalar(select(func.count()).select_from(AuditEvent))
    with pytest.raises(InvalidTransition) as refused:
        REVIEWER_ACTIONS[action](world["reviewer"], db.session.get(ProviderAdmission, admission.id))
    assert refused.value.message.startswith("只有")  # says which state allows it
    assert refused.value.details == {"state": state.value, "action": action}
    db.session.rollback()
    assert db.session.get(ProviderAdmission, admission.id).state is state
    assert db.session.scalar(select(func.count()).select_from(AuditEvent)) == audit_rows


def put(world, admission: ProviderAdmission, state: AdmissionState) -> None:
    """The admission and its institution's mirror in `state`, written directly."""
    db.session.execute(
        ProviderAdmission.__table__.update().where(ProviderAdmission.id == admission.id).values(state=state)
    )
    db.session.get(Institution, world["host"].id).admission = state.value
    db.session.commit()
    db.session.expire_all()


CURRENT = [s for s in AdmissionState if s not in (AdmissionState.REJECTED, AdmissionState.RETURNED)]


@pytest.mark.parametrize("state", CURRENT, ids=[s.value for s in CURRENT])
def test_an_institution_with_a_current_admission_cannot_apply_again(world, state):
    put(world, apply(world), state)
    with pytest.raises(InvalidTransition, match="准入状态已是"):
        apply(world)
    assert db.session.scalar(select(func.count()).select_from(ProviderAdmission)) == 1


def test_a_provider_admitted_before_the_scheme_does_not_apply(
    world, make_user, make_institution, make_instrument
):
    old = make_institution()
    provider = make_user(Role.PROVIDER, institution=old)
    instrument = make_instrument(institution=old)
    assert not services.can_apply(provider, old)
    with pytest.raises(InvalidTransition, match="准入状态已是"):
        services.apply_for_admission(provider, old.id, services.AdmissionData([instrument.id], FEES, PROMISE))


def test_only_reviewers_decide_and_only_the_institutions_providers_apply(world):
    admission = apply(world)
    with pytest.raises(Forbidden):
        services.approve_admission(world["provider"], admission.id)
    with pytest.raises(NotFound):
        services.apply_for_admission(
            world["stranger"], world["host"].id, services.AdmissionData([1], FEES, PROMISE)
        )


def test_the_application_names_its_own_instruments_fees_and_credit_statement(world, make_instrument):
    foreign = make_instrument()  # another institution's
    with pytest.raises(ValidationFailed) as refused:
        apply(world, instrument_ids=[foreign.id], fee_schedule=" ", credit_statement="")
    assert set(refused.value.fields) == {"instruments", "fee_schedule", "credit_statement"}
    with pytest.raises(ValidationFailed) as refused:
        apply(world, instrument_ids=[])
    assert set(refused.value.fields) == {"instruments"}
    assert db.session.scalar(select(func.count()).select_from(ProviderAdmission)) == 0


# --- eligibility ---------------------------------------------------------------------------------


def test_suspension_fails_provider_admitted_in_a_claim_preview_and_reinstatement_passes_it(
    world, make_scheme, make_user, make_voucher, make_service, make_institution, make_instrument
):
    scheme = make_scheme()
    host = make_institution()  # admitted
    record_user = make_user(Role.ENTERPRISE)
    voucher = make_voucher(record_user, scheme, 100_000_00)
    record = make_service(record_user, 10_000_00, instrument=make_instrument(institution=host))

    def provider_admitted() -> tuple[bool, str]:
        preview = claim_services.preview_claim(record_user, voucher.id, [record.id])
        check = next(c for c in preview.checks if c.code == "provider_admitted")
        return check.passed, check.message

    assert provider_admitted()[0] is True
    services.suspend_provider(world["reviewer"], host.id, "虚开发票")
    passed, message = provider_admitted()
    assert passed is False and f"第 {record.id} 项服务" in message
    services.reinstate_provider(world["reviewer"], host.id, "整改完成")
    assert provider_admitted()[0] is True


def test_a_provider_in_notice_or_never_admitted_is_not_eligible(
    world, make_scheme, make_user, make_voucher, make_service
):
    scheme = make_scheme()
    user = make_user(Role.ENTERPRISE)
    voucher = make_voucher(user, scheme, 100_000_00)
    record = make_service(user, 10_000_00, instrument=world["instruments"][0])  # host: "none"
    checks = {c.code: c.passed for c in claim_services.preview_claim(user, voucher.id, [record.id]).checks}
    assert checks["provider_admitted"] is False
    services.approve_admission(world["reviewer"], apply(world).id)
    checks = {c.code: c.passed for c in claim_services.preview_claim(user, voucher.id, [record.id]).checks}
    assert checks["provider_admitted"] is False  # in notice: not yet


# --- the API -------------------------------------------------------------------------------------


def test_the_institutions_api_gives_the_admission_and_the_notice_end(client, world, make_user):
    services.approve_admission(world["reviewer"], apply(world).id)
    response = client.get(
        "/api/v1/institutions?per_page=100", headers=bearer(client, make_user(Role.ENTERPRISE))
    )
    assert response.status_code == 200
    items = {item["id"]: item for item in response.json["items"]}
    assert items[world["host"].id]["admission"] == "in_notice"
    assert items[world["host"].id]["admission_notice_ends_on"] == "2026-12-14"
    other = items[world["stranger"].institution_id]
    assert other["admission"] == "admitted" and other["admission_notice_ends_on"] is None
    spec = client.get("/api/v1/openapi.json").json
    fields = spec["components"]["schemas"]["Institution"]["properties"]
    assert {"admission", "admission_notice_ends_on"} <= set(fields)


# --- the pages -----------------------------------------------------------------------------------


def page_form(client, url: str, **fields):
    token = extract_csrf(client.get(url).get_data(as_text=True))
    return client.post(url, data={"csrf_token": token, **fields}, content_type="multipart/form-data")


def test_a_provider_applies_a_reviewer_approves_and_the_public_page_lists_it(app, world):
    provider, reviewer = app.test_client(), app.test_client()
    login(provider, world["provider"].username)
    url = f"/admission/institutions/{world['host'].id}"
    response = page_form(
        provider,
        url,
        instruments=[str(i.id) for i in world["instruments"]],
        fee_schedule=FEES,
        credit_statement=PROMISE,
        fee_file=(io.BytesIO(minimal_pdf()), "收费标准.pdf"),
    )
    assert response.status_code == 302, response.get_data(as_text=True)
    admission = db.session.scalar(select(ProviderAdmission))
    assert (
        admission.fee_file_stored
        and provider.get(f"/admission/{admission.id}/fee-schedule").status_code == 200
    )
    login(reviewer, world["reviewer"].username)
    assert f"/admission/{admission.id}" in reviewer.get("/admission/").get_data(as_text=True)
    response = page_form(reviewer, f"/admission/{admission.id}", approve="1")
    assert response.status_code == 302
    public = app.test_client().get("/admission/notices").get_data(as_text=True)
    assert world["host"].name in public and "2026-12-14" in public


def test_the_application_form_keeps_its_input_on_error(app, world):
    provider = app.test_client()
    login(provider, world["provider"].username)
    response = page_form(
        provider,
        f"/admission/institutions/{world['host'].id}",
        instruments=[str(world["instruments"][1].id)],
        fee_schedule="机时 300 元/小时 <b>",
        credit_statement="",
    )
    text = response.get_data(as_text=True)
    assert response.status_code == 200
    assert "机时 300 元/小时 &lt;b&gt;" in text
    assert re.search(rf'value="{world["instruments"][1].id}"[^>]*checked', text)
    assert re.search(r'name="credit_statement"[^>]*is-invalid|is-invalid[^>]*name="credit_statement"', text)
    assert db.session.scalar(select(func.count()).select_from(ProviderAdmission)) == 0


def test_a_provider_of_another_institution_gets_404(app, world):
    admission = apply(world)
    stranger = app.test_client()
    login(stranger, world["stranger"].username)
    assert stranger.get(f"/admission/institutions/{world['host'].id}").status_code == 404
    assert stranger.get(f"/admission/institutions/{world['stranger'].institution_id}").status_code == 200
    assert stranger.get(f"/admission/{admission.id}/fee-schedule").status_code == 404
    assert stranger.get(f"/admission/{admission.id}").status_code == 403  # the reviewers' page


def test_a_reviewer_suspends_from_the_institutions_page_with_a_reason(app, world, make_institution):
    host = make_institution()
    reviewer = app.test_client()
    login(reviewer, world["reviewer"].username)
    url = f"/admission/institutions/{host.id}"
    token = extract_csrf(reviewer.get(url).get_data(as_text=True))
    response = reviewer.post(f"{url}/standing", data={"csrf_token": token, "suspend": "1", "reason": ""})
    assert response.status_code == 302 and db.session.get(Institution, host.id).admission == "admitted"
    reviewer.post(f"{url}/standing", data={"csrf_token": token, "suspend": "1", "reason": "虚开发票"})
    db.session.expire_all()
    assert db.session.get(Institution, host.id).admission == "suspended"
    assert "虚开发票" in reviewer.get(url).get_data(as_text=True)


def test_the_notice_ends_on_its_last_day(world):
    admission = services.approve_admission(world["reviewer"], apply(world).id)
    assert services.end_public_notice(admission.notice_ends_on - timedelta(days=1)) == 0
    assert services.end_public_notice(admission.notice_ends_on) == 1
