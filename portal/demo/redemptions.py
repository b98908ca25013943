"""The demo's vouchers at payment (issue 21): the scheme offers both modes, and providers' redemptions
stand in each state, made through the real services (reservation, submission, review, notice,
withdrawal, expiry), so the funds, caps, balances, ledgers and audit trail agree."""

from __future__ import annotations

import io
from collections.abc import Callable
from datetime import date, datetime, time, timedelta
from typing import Any

from flask import current_app
from sqlalchemy import exists, select

from portal.accounts import banking
from portal.accounts.members import users_of_institution
from portal.accounts.models import PAYEE_PROVIDER, Institution, User
from portal.booking.models import Booking, BookingState, FileKind, ServiceFile, ServiceRecord
from portal.catalog.models import Instrument
from portal.core import clock, uploads
from portal.core.errors import ServiceError
from portal.demo.vouchers import DEMO_PDF, EVIDENCE, simulated_clock, voucher_year
from portal.extensions import db
from portal.vouchers import notice as public_notice
from portal.vouchers import redemptions
from portal.vouchers import review as desk
from portal.vouchers.models import (
    Claim,
    ClaimItem,
    ClaimState,
    RedemptionMode,
    Scheme,
    Voucher,
    VoucherState,
)

BOTH = [RedemptionMode.REIMBURSEMENT.value, RedemptionMode.AT_PAYMENT.value]
# The states the demo shows, in the order they are made; each a service of its own.
FATES = ("reserved", "reserved", "submitted", "in_notice", "payable", "rejected", "withdrawn", "expired")


def _reviewers() -> list[User]:
    return list(db.session.scalars(select(User).where(User.username.in_(["reviewer", "reviewer2"]))))


def _candidates(scheme: Scheme) -> list[tuple[ServiceRecord, Voucher, User]]:
    """Rated, unclaimed services of enterprises with an active voucher of the scheme, at providers in
    the province with users (the demo provider's institution, 聊城大学, first), biggest balance first."""
    rows = db.session.execute(
        select(ServiceRecord, Voucher, Institution)
        .join(Booking, Booking.id == ServiceRecord.booking_id)
        .join(Instrument, Instrument.id == Booking.instrument_id)
        .join(Institution, Institution.id == Instrument.institution_id)
        .join(Voucher, Voucher.enterprise_id == Booking.enterprise_id)
        .where(
            Voucher.scheme_id == scheme.id,
            Voucher.state == VoucherState.ACTIVE,
            Booking.state == BookingState.COMPLETED,
            ServiceRecord.rating.is_not(None),
            ServiceRecord.claim_id.is_(None),
            ServiceRecord.recorded_at >= clock.local_datetime_to_utc(scheme.service_window_start, time(0)),
            ServiceRecord.recorded_at <= clock.utcnow(),  # (on the simulated clock of the year too)
            Institution.in_province.is_(True),
            ~exists().where(ClaimItem.service_record_id == ServiceRecord.id),
        )
        .order_by((Institution.name == "聊城大学").desc(), Voucher.balance_fen.desc(), ServiceRecord.id)
    ).all()
    found, seen = [], set()
    for record, voucher, institution in rows:
        providers = users_of_institution(institution.id)
        if providers and record.id not in seen and record.fee_fen > 0:
            seen.add(record.id)
            found.append((record, voucher, providers[0]))
    return found


def _evidence(record: ServiceRecord, uploader: User) -> None:
    kinds = {f.kind for f in record.files if f.replaced_at is None}
    for kind in (*EVIDENCE, FileKind.RESULT):
        if kind not in kinds:
            stored = uploads.store_upload(io.BytesIO(DEMO_PDF), f"{kind.value}-{record.id}.pdf")
            db.session.add(ServiceFile.from_upload(stored, record.id, kind, uploader.id))
    db.session.commit()


def _submitted(provider: User, claim_id: int) -> None:
    claim = db.session.get_one(Claim, claim_id)
    redemptions.submit_redemption(provider, claim_id, claim.enterprise_share_fen)


def _approved(provider: User, claim_id: int) -> None:
    _submitted(provider, claim_id)
    for reviewer in _reviewers():  # four eyes above the threshold: the second reviewer confirms
        if db.session.get_one(Claim, claim_id).state is ClaimState.IN_NOTICE:
            return
        desk.approve_claim(reviewer, claim_id)


def _rejected(provider: User, claim_id: int) -> None:
    _submitted(provider, claim_id)
    desk.reject_claim(_reviewers()[0], claim_id, "付款凭证金额与企业自付部分不符")


FATE_STEPS: dict[str, Callable[[User, int], object]] = {
    "submitted": _submitted,
    "in_notice": _approved,
    "payable": _approved,
    "rejected": _rejected,
    "withdrawn": lambda provider, claim_id: redemptions.withdraw_redemption(
        provider, claim_id, "企业改为自行申领"
    ),
}


def _office_moment(day: date, index: int) -> datetime:
    """Office hours of the last working day on or before `day`, a minute of its own per redemption
    (the demo's claims are never submitted on a weekend, nor two in one minute)."""
    while day.weekday() >= 5:
        day -= timedelta(days=1)
    return clock.local_datetime_to_utc(day, time(10, 3 + 7 * index))


def _made(fate: str, index: int, record: ServiceRecord, voucher: Voucher, provider: User) -> bool:
    """One redemption brought to `fate`, dated so that its notice or its reservation has ended when
    the fate needs it; False when the rules refuse it (the next service is tried)."""
    today = clock.local_today()
    back = {"payable": 20, "expired": 45}.get(fate, 2)
    with simulated_clock(_office_moment(today - timedelta(days=back), index)):
        try:
            claim = redemptions.create_redemption(provider, record.id, voucher.code)
            step = FATE_STEPS.get(fate)
            if step is not None:
                step(provider, claim.id)
        except ServiceError as error:
            db.session.rollback()
            current_app.logger.info("demo redemption refused: %s", error)
            return False
    if fate == "payable":
        public_notice.end_public_notice(today)
    if fate == "expired":
        redemptions.expire_redemptions(today)
    return True


def schedule_paid_redemption(year: Any) -> None:
    """Into the voucher year's queue of events (`portal.demo.vouchers._Year`): a redemption some six
    weeks back, early enough that its notice ends and one of the year's batches pays its provider."""
    moment = _office_moment(year.today - timedelta(days=42), 8)
    while moment in year.minutes:  # no two submissions in one minute
        moment += timedelta(minutes=1)
    year.minutes.add(moment)
    year.push(moment, _redeem_for_payment, year)


def _redeem_for_payment(year: Any) -> None:
    scheme = db.session.scalar(select(Scheme).where(Scheme.year == year.first_day.year))
    if scheme is None:
        return
    if not scheme.offers(RedemptionMode.AT_PAYMENT):
        scheme.redemption_modes = BOTH
        db.session.commit()
    for record, voucher, provider in _candidates(scheme):
        _evidence(record, provider)
        try:
            claim = redemptions.create_redemption(provider, record.id, voucher.code)
            _submitted(provider, claim.id)
        except ServiceError as error:
            db.session.rollback()
            current_app.logger.info("demo redemption refused: %s", error)
            continue
        _provider_accounts()  # the batch pays only into a verified account
        year.approve_claim(claim.id)  # with the end of its notice queued
        return


def load_redemptions() -> dict[str, int]:
    """Redemptions at payment in each state of `FATES`, on the voucher year's scheme (both modes)."""
    scheme = db.session.scalar(select(Scheme).where(Scheme.year == voucher_year(clock.local_today())))
    if scheme is None:
        return {}
    if not scheme.offers(RedemptionMode.AT_PAYMENT):
        scheme.redemption_modes = BOTH
        db.session.commit()
    made: dict[str, int] = {}
    candidates = iter(_candidates(scheme))
    for index, fate in enumerate(FATES):
        for record, voucher, provider in candidates:
            _evidence(record, provider)
            if _made(fate, index, record, voucher, provider):
                made[fate] = made.get(fate, 0) + 1
                break
    current_app.logger.info("demo redemptions: %s", made)
    _provider_accounts()
    return made


def _provider_accounts() -> None:
    """A verified bank account for each provider institution with redemptions at payment, entered by
    one of its provider users and verified by a reviewer (the services' own path), so the next batch
    pays the providers as well. Numbers from the institution's id: the demo's generator is left alone."""
    institutions = db.session.scalars(
        select(Institution)
        .where(
            Institution.id.in_(select(Claim.institution_id).where(Claim.mode == RedemptionMode.AT_PAYMENT))
        )
        .order_by(Institution.id)
    ).all()
    for institution in institutions:
        providers = users_of_institution(institution.id)
        if not providers or banking.verified_accounts([institution.id], PAYEE_PROVIDER):
            continue
        number = f"1609 0037 {institution.id:08d}"
        account = banking.record_bank_account(
            providers[0], banking.BankAccountData(institution.name, "中国建设银行聊城分行", number)
        )
        banking.decide_bank_account(_reviewers()[0], account.id, "verify")
