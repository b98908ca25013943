"""Vouchers at the point of payment (DESIGN section 13): the enterprise pays only its share of a fee,
and the provider redeems the subsidised part from the bureau.

When the provider records the service of a booking the enterprise wants paid this way, the subsidy is
computed by the same pure function as a claim's (`rules.compute_subsidy`, through `subsidy_for`) and
reserved at once: the funds' `reserved_fen`, the caps and the voucher's balance are taken under the
lock order of approval (portal.core.locks), so a voucher cannot be promised twice. The result is a
claim with mode `at_payment` in state RESERVED. The provider submits it with the evidence and what the
enterprise paid; reviewers decide it as any claim (portal.vouchers.review); approval turns the
reservation into a commitment, and the payment goes to the provider. A withdrawal, an expiry or a
rejection releases exactly what was reserved. Every step goes by CLAIM_TRANSITIONS.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from flask_babel import gettext as _
from sqlalchemy import select, update
from sqlalchemy.orm import joinedload

from portal.accounts.models import Enterprise, User
from portal.booking.models import Booking, ServiceRecord
from portal.catalog.models import Instrument
from portal.catalog.ownership import owns
from portal.core import audit, clock
from portal.core.database import changed_rows, serialized_write
from portal.core.errors import (
    Forbidden,
    InvalidTransition,
    LimitExceeded,
    NotFound,
    ServiceError,
    ValidationFailed,
)
from portal.core.locks import Rank, lock_existing, lock_one, lock_where
from portal.core.money import format_yuan
from portal.core.permissions import Role
from portal.extensions import db
from portal.vouchers.checks import (
    Check,
    all_checks,
    claim_checks,
    claim_record_ids,
    records_of,
    refuse_failed_checks,
    stored_checks,
)
from portal.vouchers.claims import (
    CLAIM_TRANSITIONS,
    audit_claim,
    free_services,
    is_redeeming_provider,
    tell_about_claim,
)
from portal.vouchers.labels import CLAIM_STATE_LABELS
from portal.vouchers.models import (
    CapLedger,
    Claim,
    ClaimItem,
    ClaimState,
    Fund,
    LedgerEntry,
    LedgerKind,
    RedemptionMode,
    Scheme,
    Voucher,
    VoucherState,
)
from portal.vouchers.rules import Subsidy
from portal.vouchers.schemes import current_scheme
from portal.vouchers.services import states_allowing, transition
from portal.vouchers.subsidy import lock_caps, subsidy_for

log = logging.getLogger(__name__)

# The checks a reservation must pass: whether the service may be subsidised at all. The evidence, the
# enterprise's rating and payment and the metered hours come later and are checked at submission.
RESERVATION_CHECKS = frozenset(
    {
        "voucher_valid",
        "service_window",
        "related_party",
        "claimed_twice",
        "excluded_service",
        "hours_within_booking",
        "provider_admitted",
        "out_of_province_justified",
    }
)
# Where a reservation can still end unsubmitted (its expiry).
EXPIRING_STATES = states_allowing(CLAIM_TRANSITIONS, "expire")


@dataclass
class RedemptionPreview:
    """What a reservation would hold now: the subsidy, the enterprise's share and the checks."""

    record: ServiceRecord
    voucher: Voucher
    subsidy: Subsidy
    checks: list[Check]

    @property
    def enterprise_share_fen(self) -> int:
        return self.subsidy.fee_fen - self.subsidy.total_fen

    def as_dict(self) -> dict[str, Any]:
        return {
            "fee_fen": self.subsidy.fee_fen,
            "funds": [
                {"fund": f.fund, "raw_fen": f.raw_fen, "amount_fen": f.amount_fen} for f in self.subsidy.funds
            ],
            "total_fen": self.subsidy.total_fen,
            "limited_by": list(self.subsidy.limited_by),
            "checks": [c.as_dict() for c in self.checks],
            "enterprise_share_fen": self.enterprise_share_fen,
        }


# --- who may do what ------------------------------------------------------------------------------


def can_submit_redemption(user: User, claim: Claim) -> bool:
    return is_redeeming_provider(user, claim) and (claim.state, "submit") in CLAIM_TRANSITIONS


def can_withdraw_redemption(user: User, claim: Claim) -> bool:
    return is_redeeming_provider(user, claim) and (claim.state, "withdraw") in CLAIM_TRANSITIONS


# --- the service and its voucher ------------------------------------------------------------------


def owned_record(user: User, record_id: int) -> ServiceRecord:
    """A service record of the user's own institution (any other is not found, like a missing one)."""
    if not user.is_authenticated or user.role is not Role.PROVIDER:
        raise Forbidden(_("Only provider accounts redeem vouchers at payment."))
    record = db.session.get(
        ServiceRecord,
        record_id,
        options=[
            joinedload(ServiceRecord.booking)
            .joinedload(Booking.instrument)
            .joinedload(Instrument.institution)
        ],
    )
    if record is None or not owns(user, record.booking.instrument):
        raise NotFound(_("No such service record."))
    return record


def voucher_of(enterprise_id: int, scheme: Scheme | None) -> Voucher | None:
    """The enterprise's voucher of the scheme, if it has one."""
    if scheme is None:
        return None
    return db.session.scalar(
        select(Voucher).where(Voucher.enterprise_id == enterprise_id, Voucher.scheme_id == scheme.id)
    )


def _voucher(record: ServiceRecord, code: str | None) -> Voucher:
    """The voucher the enterprise gave the provider: its code must be the service's enterprise's."""
    code = (code or "").strip().upper()
    voucher = db.session.scalar(select(Voucher).where(Voucher.code == code)) if code else None
    if voucher is None or voucher.enterprise_id != record.booking.enterprise_id:
        message = _("This is not a voucher of the enterprise that received the service.")
        raise ValidationFailed(message, {"voucher_code": message})
    return voucher


def refuse_unredeemable(record: ServiceRecord, scheme: Scheme) -> None:
    """A service the scheme does not let the provider redeem at payment is refused, saying why."""
    if not scheme.offers(RedemptionMode.AT_PAYMENT):
        raise InvalidTransition(_("This year's scheme does not offer vouchers at payment."))
    booking = record.booking
    if booking.voucher_mode == RedemptionMode.REIMBURSEMENT.value:
        raise InvalidTransition(
            _("The enterprise chose to pay this booking in full and claim the subsidy itself.")
        )
    if not booking.instrument.institution.in_province:
        raise InvalidTransition(_("A service from outside the province is claimed by the enterprise itself."))


def _subsidy(record: ServiceRecord, voucher: Voucher) -> Subsidy:
    """What the rules give this service from what the voucher, caps and funds hold now."""
    enterprise = db.session.get_one(Enterprise, voucher.enterprise_id)
    return subsidy_for(
        enterprise, voucher.scheme, voucher, record.fee_fen, record.booking.instrument.institution.is_local
    )


def _reservation_checks(record: ServiceRecord, voucher: Voucher) -> list[Check]:
    """The checks of RESERVATION_CHECKS, run on this service and voucher."""
    enterprise = db.session.get_one(Enterprise, voucher.enterprise_id)
    return [c for c in all_checks(enterprise, voucher, [record]) if c.code in RESERVATION_CHECKS]


def preview_redemption(user: User, record_id: int, voucher_code: str | None) -> RedemptionPreview:
    """What redeeming this service with this voucher would reserve now (nothing is written)."""
    record = owned_record(user, record_id)
    voucher = _voucher(record, voucher_code)
    refuse_unredeemable(record, voucher.scheme)
    return RedemptionPreview(record, voucher, _subsidy(record, voucher), _reservation_checks(record, voucher))


def create_redemption(user: User, record_id: int, voucher_code: str | None) -> Claim:
    """Reserve the subsidy of this service on this voucher at once: a claim at payment, RESERVED."""
    record = owned_record(user, record_id)
    voucher = _voucher(record, voucher_code)
    refuse_unredeemable(record, voucher.scheme)
    return _reserve(user, record.id, voucher.id)


# --- reserving ------------------------------------------------------------------------------------


def _reserve(user: User | None, record_id: int, voucher_id: int) -> Claim:
    """The reservation itself, in one transaction under the lock order of approval: the funds, the
    enterprise's and the group's caps, then the voucher; the subsidy is computed from what they hold
    after the wait, so of many reservations at once each sees what the others took."""
    scheme_id = db.session.execute(select(Voucher.scheme_id).where(Voucher.id == voucher_id)).scalar_one()
    with serialized_write():
        funds = {f.name: f for f in lock_where(Rank.FUNDS, Fund, Fund.scheme_id == scheme_id)}
        record = records_of([record_id])[0]
        enterprise = db.session.get_one(Enterprise, record.booking.enterprise_id)
        scheme = db.session.get_one(Scheme, scheme_id)
        enterprise_cap, group_cap = lock_caps(scheme, enterprise)
        voucher = lock_existing(Rank.VOUCHERS, Voucher, voucher_id)
        checks = _reservation_checks(record, voucher)
        refuse_failed_checks(checks, _("The voucher cannot be applied to this service: %(failed)s"))
        subsidy = _subsidy(record, voucher)  # from what the locked rows hold, after the wait
        if subsidy.total_fen <= 0:
            raise LimitExceeded(
                _(
                    "Nothing is left to reserve: the subsidy is bound by %(limits)s.",
                    limits=", ".join(subsidy.limited_by),
                ),
                {"limited_by": list(subsidy.limited_by)},
            )
        claim = _new_claim(user, record, voucher, subsidy, scheme, checks)
        for fund in subsidy.funds:
            if fund.amount_fen:
                funds[fund.fund].reserved_fen += fund.amount_fen
        enterprise_cap.used_fen += claim.capped_fen(funds)
        group_cap.used_fen += claim.total_fen
        voucher.balance_fen -= claim.total_fen
        _ledger(voucher, LedgerKind.RESERVED, claim)
        audit.record(
            "claim.reserved",
            "claim",
            claim.id,
            after={
                "state": claim.state.value,
                "mode": claim.mode.value,
                "funds": claim.fund_amounts(),
                "enterprise_share_fen": claim.enterprise_share_fen,
                "record": record.id,
            },
            actor_id=user.id if user else None,
        )
        tell_about_claim(
            claim, "reserved", share=format_yuan(claim.enterprise_share_fen), fee=format_yuan(claim.fee_fen)
        )
        db.session.commit()
    return claim


def _new_claim(
    user: User | None,
    record: ServiceRecord,
    voucher: Voucher,
    subsidy: Subsidy,
    scheme: Scheme,
    checks: list[Check],
) -> Claim:
    """The RESERVED claim with its amounts and its one service, which it takes at once: a service is
    never in two claims (the conditional UPDATE loses to any other claim that took it first)."""
    claim = Claim(
        voucher_id=voucher.id,
        enterprise_id=voucher.enterprise_id,
        institution_id=record.booking.instrument.institution_id,
        mode=RedemptionMode.AT_PAYMENT,
        state=ClaimState.RESERVED,
        fee_fen=record.fee_fen,
        limited_by=list(subsidy.limited_by),
        checks=[c.as_dict() for c in checks],
        created_by_id=user.id if user else record.recorded_by_id,
        created_at=clock.utcnow(),
        reservation_expires_on=clock.local_today() + timedelta(days=scheme.redemption_days),
    )
    claim.items = [ClaimItem(service_record_id=record.id, fee_fen=record.fee_fen)]
    claim.set_amounts((f.fund, f.raw_fen, f.amount_fen) for f in subsidy.funds)
    db.session.add(claim)
    db.session.flush()
    taken = changed_rows(
        update(ServiceRecord)
        .where(ServiceRecord.id == record.id, ServiceRecord.claim_id.is_(None))
        .values(claim_id=claim.id)
        .execution_options(synchronize_session=False)
    )
    if taken != 1:
        raise InvalidTransition(_("This service is already in another claim."), {"check": "claimed_twice"})
    return claim


def _ledger(voucher: Voucher, kind: LedgerKind, claim: Claim) -> None:
    db.session.add(
        LedgerEntry(
            voucher_id=voucher.id,
            kind=kind,
            amount_fen=claim.total_fen,
            balance_after_fen=voucher.balance_fen,
            claim_id=claim.id,
        )
    )


def reserve_on_record(record: ServiceRecord, actor: User | None) -> Claim | None:
    """When a service is recorded for a booking the enterprise wants paid at payment, reserve on its
    voucher of the current scheme at once (None when there is nothing to reserve on, or the booking
    is not to be paid this way). A refusal is left for the provider to see on the booking's page."""
    booking = record.booking
    scheme = current_scheme()
    if scheme is None or not scheme.offers(RedemptionMode.AT_PAYMENT) or record.claim_id is not None:
        return None
    only_mode = scheme.redemption_modes == [RedemptionMode.AT_PAYMENT.value]
    if booking.voucher_mode != RedemptionMode.AT_PAYMENT.value and not only_mode:
        return None
    voucher = voucher_of(booking.enterprise_id, scheme)
    if voucher is None or voucher.state is not VoucherState.ACTIVE:
        return None
    refuse_unredeemable(record, scheme)
    return _reserve(actor, record.id, voucher.id)


def reserve_when_recorded(record: ServiceRecord, actor: User | None = None) -> None:
    """The reservation at once when a service is recorded (connected to booking.signals.service_recorded).
    A refusal leaves the record as it is: the provider sees why on the booking's page and can retry."""
    try:
        reserve_on_record(db.session.get_one(ServiceRecord, record.id), actor)
    except ServiceError as error:
        db.session.rollback()
        log.info("no reservation at payment for service record %s: %s", record.id, error.message)


def claim_of(record: ServiceRecord) -> Claim | None:
    """The claim (of either mode) a service is in, if any."""
    return db.session.get(Claim, record.claim_id) if record.claim_id else None


# --- the provider submits or withdraws ------------------------------------------------------------


def _own_redemption(user: User, claim_id: int) -> Claim:
    """The claim locked (the first step of the lock order), if it is a redemption of the user's own."""
    claim = lock_one(Rank.CLAIMS, Claim, claim_id)
    if claim is None or not is_redeeming_provider(user, claim):
        raise NotFound(_("No such claim."))
    return claim


def submit_redemption(user: User, claim_id: int, enterprise_paid_fen: int | None) -> Claim:
    """RESERVED (or RETURNED) -> SUBMITTED by the provider, saying what the enterprise paid of its
    share; every check must pass, these of a redemption too. The amounts stay as reserved."""
    if enterprise_paid_fen is None or enterprise_paid_fen < 0:
        message = _("Give what the enterprise paid of its share.")
        raise ValidationFailed(message, {"enterprise_paid_fen": message})
    with serialized_write():
        claim = _own_redemption(user, claim_id)
        refusal = _("Only a reserved or a returned redemption can be submitted.")
        if (claim.state, "submit") not in CLAIM_TRANSITIONS:
            raise InvalidTransition(refusal, {"state": claim.state.value})
        claim.enterprise_paid_fen = enterprise_paid_fen
        voucher = db.session.get_one(Voucher, claim.voucher_id)
        enterprise = db.session.get_one(Enterprise, claim.enterprise_id)
        records = records_of(claim_record_ids(claim))
        checks = claim_checks(claim, enterprise, voucher, records)
        refuse_failed_checks(
            checks, _("This redemption cannot be submitted until every check passes: %(failed)s")
        )
        claim.checks = stored_checks(checks, lambda: claim_checks(claim, enterprise, voucher, records))
        before = transition(
            claim, CLAIM_TRANSITIONS, "submit", refusal, submitted_at=clock.utcnow(), first_reviewer_id=None
        )
        audit.record(
            "claim.submitted",
            "claim",
            claim.id,
            before={"state": before.value},
            after={
                "state": claim.state.value,
                "funds": claim.fund_amounts(),
                "enterprise_paid_fen": enterprise_paid_fen,
            },
            actor_id=user.id,
        )
        db.session.commit()
    return claim


def withdraw_redemption(user: User, claim_id: int, reason: str | None = None) -> Claim:
    """RESERVED -> WITHDRAWN by the provider before submitting: what was reserved is released."""
    with serialized_write():
        claim = _own_redemption(user, claim_id)
        release(claim, "withdraw", user, (reason or "").strip() or None)
        db.session.commit()
    return claim


def expire_redemptions(today: date | None = None) -> int:
    """Reservations not submitted (or returned ones not resubmitted) by their day expire and are
    released (the daily task); how many expired now."""
    today = today or clock.local_today()
    due = db.session.scalars(
        select(Claim.id).where(
            Claim.mode == RedemptionMode.AT_PAYMENT,
            Claim.state.in_(EXPIRING_STATES),
            Claim.reservation_expires_on < today,
        )
    ).all()
    expired = 0
    for claim_id in due:
        try:
            expire_redemption(claim_id)
        except InvalidTransition:  # submitted or withdrawn since it was read: no longer due
            continue
        expired += 1
    return expired


def expire_redemption(claim_id: int) -> Claim:
    """RESERVED or RETURNED -> EXPIRED (the daily task, no one's decision): what it held is released."""
    with serialized_write():
        claim = lock_one(Rank.CLAIMS, Claim, claim_id)
        if claim is None or not claim.at_payment:
            raise NotFound(_("No such claim."))
        release(claim, "expire", None, None)
        db.session.commit()
    return claim


# --- releasing ------------------------------------------------------------------------------------


def release(claim: Claim, action: str, actor: User | None, reason: str | None) -> None:
    """Move a locked redemption by `action` (withdraw, expire or reject) and give back exactly what its
    reservation took: the funds' reserved amounts, the caps and the voucher's balance (an expired
    voucher's goes back to the scheme's budget, as its unused balance did). The service is free
    again; the provider and the enterprise are told that the enterprise owes the rest of the fee."""
    voucher_row = db.session.get_one(Voucher, claim.voucher_id)
    scheme = lock_existing(Rank.SCHEME, Scheme, voucher_row.scheme_id)
    funds = {f.name: f for f in lock_where(Rank.FUNDS, Fund, Fund.scheme_id == scheme.id)}
    enterprise = db.session.get_one(Enterprise, claim.enterprise_id)
    enterprise_cap, group_cap = lock_caps(scheme, enterprise)
    voucher = lock_existing(Rank.VOUCHERS, Voucher, claim.voucher_id)
    before = transition(
        claim,
        CLAIM_TRANSITIONS,
        action,
        _("This redemption can no longer be changed this way."),
        decided_by_id=actor.id if actor else None,
        decided_at=clock.utcnow(),
        comment=reason,
    )
    _give_back(claim, scheme, funds, (enterprise_cap, group_cap), voucher)
    free_services(claim)
    audit_claim(claim, before, actor, reason)  # its funds: what was released
    tell_about_claim(
        claim,
        "released",
        share=format_yuan(claim.enterprise_share_fen),
        fee=format_yuan(claim.fee_fen),
        reason=str(CLAIM_STATE_LABELS[claim.state]) + (f": {reason}" if reason else ""),
    )


def _give_back(
    claim: Claim, scheme: Scheme, funds: dict[str, Fund], caps: tuple[CapLedger, CapLedger], voucher: Voucher
) -> None:
    for name, amount in claim.fund_amounts().items():
        if amount:
            funds[name].reserved_fen -= amount
    enterprise_cap, group_cap = caps
    enterprise_cap.used_fen -= claim.capped_fen(funds)
    group_cap.used_fen -= claim.total_fen
    if voucher.state is VoucherState.ACTIVE:
        voucher.balance_fen += claim.total_fen
    else:  # the voucher expired meanwhile: what it held goes back to the budget with its balance
        voucher.released_fen += claim.total_fen
        scheme.allocated_fen -= claim.total_fen
    _ledger(voucher, LedgerKind.UNRESERVED, claim)
