"""Who is told about each transition: the exact set of recipients, not just "someone".

The world has people who must hear (the booking's enterprise, the instrument's providers, the other
reviewers) next to people who must not (a colleague institution's provider, another enterprise,
finance, the reviewer who acted), so a message sent to the wrong side or to everyone fails here.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import func, select

from portal.booking import records, requests, transitions
from portal.booking import services as booking
from portal.booking.models import BookingMode, BookingState
from portal.core.permissions import Role
from portal.extensions import db
from portal.notifications.models import Notification
from portal.vouchers import applications as application_services
from portal.vouchers import claims as claim_services
from portal.vouchers import notice, review, wallet
from portal.vouchers import verification as verification_services
from portal.vouchers.models import ApplicationState, ClaimState, VoucherApplication
from tests.test_booking_rules import WEEKDAY_HOURS

WEDNESDAY_9 = datetime(2026, 12, 9, 1, 0, tzinfo=UTC)


class Inbox:
    """The notifications written since the last look, as {kind: {recipient ids}}."""

    def __init__(self) -> None:
        self.seen = 0
        self.read()

    def read(self) -> dict[str, set[int]]:
        db.session.rollback()
        rows = db.session.execute(
            select(Notification.kind, Notification.recipient_id)
            .where(Notification.id > self.seen)
            .order_by(Notification.id)
        ).all()
        self.seen = db.session.scalar(select(func.coalesce(func.max(Notification.id), 0)))
        told: dict[str, set[int]] = {}
        for kind, recipient in rows:
            told.setdefault(kind, set()).add(recipient)
        return told


@pytest.fixture
def people(app, fake_clock, make_institution, make_instrument, make_user):
    host = make_institution()
    holder = make_user(Role.ENTERPRISE)
    p = {
        "host": host,
        "instrument": make_instrument(institution=host, opening_hours=WEEKDAY_HOURS, fee_per_hour_fen=100_00),
        "holder": holder,
        "colleague": make_user(Role.ENTERPRISE, enterprise=holder.enterprise, is_holder=False),
        "other_enterprise": make_user(Role.ENTERPRISE),
        "provider": make_user(Role.PROVIDER, institution=host),
        "provider2": make_user(Role.PROVIDER, institution=host),
        "other_provider": make_user(Role.PROVIDER),
        "reviewer": make_user(Role.REVIEWER),
        "reviewer2": make_user(Role.REVIEWER),
        "reviewer3": make_user(Role.REVIEWER),
        "admin": make_user(Role.ADMIN),
        "finance": make_user(Role.FINANCE),
        "clock": fake_clock,
    }
    p["enterprise"] = {p["holder"].id, p["colleague"].id}
    p["providers"] = {p["provider"].id, p["provider2"].id}
    return p


# --- bookings ------------------------------------------------------------------------------------


@pytest.fixture
def requested(people, make_booking):
    inbox = Inbox()
    row = requests.request_booking(
        people["holder"],
        people["instrument"].code,
        requests.BookingRequest(
            mode=BookingMode.SLOT,
            purpose="测试",
            starts_at=WEDNESDAY_9,
            ends_at=WEDNESDAY_9 + timedelta(hours=1),
        ),
    )
    return {"booking": row, "inbox": inbox, "on_request": inbox.read()}


def test_a_request_is_told_to_the_instruments_providers_only(people, requested):
    assert requested["on_request"] == {"booking.requested": people["providers"]}


@pytest.mark.parametrize("audience", ["providers", "", None])
def test_a_booking_message_to_an_unknown_audience_is_refused_not_sent_to_the_providers(
    people, requested, audience
):
    # requests.request_booking's mutant 22 (its audience → None) reached the providers all the same.
    with pytest.raises(ValueError, match="'enterprise' or 'provider'"):
        booking.tell(requested["booking"], "booking.requested", audience)


def test_a_confirmation_is_told_to_the_enterprise(people, requested):
    transitions.confirm_booking(people["provider"], requested["booking"].id)
    assert requested["inbox"].read() == {"booking.confirmed": people["enterprise"]}


def test_a_booking_notification_carries_what_its_message_shows(people, requested):
    row = requested["booking"]
    transitions.reject_booking(people["provider"], row.id, "设备维护")
    notification = db.session.scalars(
        select(Notification).where(Notification.kind == "booking.rejected")
    ).first()
    instrument, holder = people["instrument"], people["holder"]
    assert notification.link == f"/bookings/{row.id}"
    assert notification.payload == {
        "instrument": instrument.name,
        "institution": people["host"].name,
        "enterprise": holder.enterprise.name,
        "when": "2026-12-09 09:00–10:00",
        "place": instrument.address or instrument.county,
        "booking": row.id,
        "operator": booking.operator_contact(instrument),
        "requester": ", ".join(p for p in (holder.full_name, holder.phone) if p),
        "reason": "设备维护",
    }


def test_a_rejection_is_told_to_the_enterprise(people, requested):
    transitions.reject_booking(people["provider"], requested["booking"].id, "设备维护")
    assert requested["inbox"].read() == {"booking.rejected": people["enterprise"]}


def test_a_cancellation_by_the_provider_is_told_to_the_enterprise(people, requested):
    transitions.cancel_booking(people["provider"], requested["booking"].id, "设备故障")
    assert requested["inbox"].read() == {"booking.cancelled": people["enterprise"]}


def test_a_cancellation_by_the_enterprise_is_told_to_the_providers(people, requested):
    transitions.cancel_booking(people["colleague"], requested["booking"].id, None)
    assert requested["inbox"].read() == {"booking.cancelled": people["providers"]}


def test_an_expiry_is_told_to_the_enterprise(people, requested):
    assert transitions.expire_unanswered(WEDNESDAY_9 + timedelta(minutes=1)) == 1
    assert requested["inbox"].read() == {"booking.expired": people["enterprise"]}


def test_a_reminder_is_told_to_the_enterprise(people, requested):
    transitions.confirm_booking(people["provider"], requested["booking"].id)
    requested["inbox"].read()
    assert transitions.send_reminders(WEDNESDAY_9 - timedelta(hours=2)) == 1
    assert requested["inbox"].read() == {"booking.reminder": people["enterprise"]}


def test_a_recorded_service_is_told_to_the_enterprise_and_a_no_show_to_nobody(
    people, requested, make_booking
):
    transitions.confirm_booking(people["provider"], requested["booking"].id)
    other = make_booking(
        people["instrument"],
        people["holder"],
        WEDNESDAY_9 + timedelta(hours=2),
        WEDNESDAY_9 + timedelta(hours=3),
        state=BookingState.CONFIRMED,
    )
    requested["inbox"].read()
    people["clock"].set(WEDNESDAY_9 + timedelta(hours=4))
    records.complete_booking(
        people["provider"], requested["booking"].id, records.ServiceReport(hours=Decimal(1))
    )
    assert requested["inbox"].read() == {"service.recorded": people["enterprise"]}
    transitions.mark_no_show(people["provider"], other.id)
    assert requested["inbox"].read() == {}


# --- claims --------------------------------------------------------------------------------------


@pytest.fixture
def claim(people, make_scheme, make_voucher, make_service):
    scheme = make_scheme(four_eyes_threshold_fen=50_000_00)
    voucher = make_voucher(people["holder"], scheme, 100_000_00)

    def make(fee_fen: int = 10_000_00):
        record = make_service(people["holder"], fee_fen)
        row = claim_services.create_claim(people["holder"], voucher.id, [record.id])
        inbox = Inbox()
        claim_services.submit_claim(people["holder"], row.id)
        assert inbox.read() == {}  # a submission waits in the reviewers' queue: nobody is told
        return row, inbox

    return make


@pytest.mark.parametrize("action", ["reject", "return"])
def test_a_rejected_or_returned_claim_is_told_to_the_enterprise(people, claim, action):
    row, inbox = claim()
    {"reject": review.reject_claim, "return": review.return_claim}[action](
        people["reviewer"], row.id, "发票不清晰"
    )
    state = ClaimState.REJECTED if action == "reject" else ClaimState.RETURNED
    assert inbox.read() == {f"claim.{state.value}": people["enterprise"]}


def test_an_approved_claim_and_its_end_of_notice_are_told_to_the_enterprise(people, claim):
    row, inbox = claim()
    review.approve_claim(people["reviewer"], row.id, None)
    assert inbox.read() == {"claim.approved": people["enterprise"]}
    assert notice.end_public_notice(date(2027, 1, 31)) == 1
    assert inbox.read() == {"claim.payable": people["enterprise"]}


def test_a_first_approval_above_the_threshold_is_told_to_the_other_reviewers(people, claim):
    row, inbox = claim(80_000_00)  # 72,000 yuan of subsidy: above the four-eyes threshold
    review.approve_claim(people["reviewer"], row.id, None)
    assert inbox.read() == {"claim.second_review": {people["reviewer2"].id, people["reviewer3"].id}}
    review.approve_claim(people["reviewer2"], row.id, None)
    assert inbox.read() == {"claim.approved": people["enterprise"]}


# --- applications and verification ---------------------------------------------------------------


@pytest.fixture
def application(people, make_scheme):
    scheme = make_scheme(four_eyes_threshold_fen=50_000_00)

    def make(amount_fen: int = 10_000_00) -> VoucherApplication:
        row = VoucherApplication(
            enterprise_id=people["holder"].enterprise_id,
            scheme_id=scheme.id,
            amount_fen=amount_fen,
            plan="检测计划",
            state=ApplicationState.SUBMITTED,
            submitted_at=people["clock"](),
        )
        db.session.add(row)
        db.session.commit()
        return row

    return make


@pytest.mark.parametrize("action", ["approve", "reject", "return"])
def test_an_application_decision_is_told_to_the_enterprise(people, application, action):
    row = application()
    inbox = Inbox()
    decide = {
        "approve": application_services.approve_application,
        "reject": application_services.reject_application,
        "return": application_services.return_application,
    }[action]
    decide(people["reviewer"], row.id, comment="说明")
    state = {"approve": "approved", "reject": "rejected", "return": "returned"}[action]
    assert inbox.read() == {f"application.{state}": people["enterprise"]}


def test_a_first_application_approval_above_the_threshold_is_told_to_the_other_reviewers(people, application):
    row = application(60_000_00)
    inbox = Inbox()
    application_services.approve_application(people["reviewer"], row.id)
    assert inbox.read() == {
        "voucher_application.second_review": {people["reviewer2"].id, people["reviewer3"].id}
    }


@pytest.mark.parametrize("verify", [True, False])
def test_a_verification_decision_is_told_to_the_enterprise(people, verify):
    request = verification_services.submit_verification(
        people["holder"], verification_services.VerificationData(kind="other", actual_controller="张建国")
    )
    inbox = Inbox()
    decide = verification_services.verify_enterprise if verify else verification_services.reject_verification
    decide(people["reviewer"], request.id, reason="核对营业执照")
    kind = "verification.verified" if verify else "verification.rejected"
    assert inbox.read() == {kind: people["enterprise"]}


def test_an_expiring_voucher_is_told_to_nobody(people, make_scheme, make_voucher):
    make_voucher(people["holder"], make_scheme(), 10_000_00, valid_until=date(2026, 6, 30))
    inbox = Inbox()
    assert wallet.expire_vouchers(date(2026, 12, 6)) == 1
    assert inbox.read() == {}
