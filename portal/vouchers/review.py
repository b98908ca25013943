"""The review desk: the queue with its filters and counts, histories, and the decisions on claims
(approve, reject, return; the applications' and verifications' are beside their own tables)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from enum import StrEnum
from typing import Any

from flask_babel import gettext as _
from sqlalchemy import Select, SQLColumnExpression, func, or_, select
from sqlalchemy.orm import InstrumentedAttribute, joinedload
from werkzeug.datastructures import MultiDict

from portal.accounts.models import BankAccount, BankAccountState, Enterprise, Institution, User
from portal.booking.models import Booking, BookingState
from portal.core import clock
from portal.core.database import serialized_write
from portal.core.errors import InvalidTransition, LimitExceeded, NotFound
from portal.core.locks import Rank, lock_existing, lock_one, lock_where
from portal.core.models import AuditEvent
from portal.core.money import format_yuan, yuan_to_fen
from portal.extensions import db
from portal.vouchers import signals
from portal.vouchers.applications import WAITING_APPLICATION_STATES
from portal.vouchers.checks import (
    claim_checks,
    claim_record_ids,
    records_of,
    refuse_failed_checks,
    stored_checks,
)
from portal.vouchers.claims import (
    CLAIM_TRANSITIONS,
    WAITING_CLAIM_STATES,
    audit_claim,
    free_services,
    tell_about_claim,
)
from portal.vouchers.models import (
    CapLedger,
    Claim,
    ClaimFund,
    ClaimState,
    EnterpriseRelation,
    Fund,
    LedgerEntry,
    LedgerKind,
    Scheme,
    VerificationRequest,
    Voucher,
    VoucherApplication,
)
from portal.vouchers.redemptions import release
from portal.vouchers.services import (
    approved_once_by,
    four_eyes,
    is_reviewer,
    refuse_own_approval,
    require_reviewer,
    required_reason,
    tell_other_reviewers,
    transition,
)
from portal.vouchers.subsidy import lock_caps
from portal.vouchers.verification import WAITING_VERIFICATION_STATES

KINDS = ("verification", "application", "claim", "bank_account")
# Any: the four models have the same shape (enterprise, state, a submission time) but no common type.
QUEUE_MODELS: dict[str, Any] = {
    "verification": VerificationRequest,
    "application": VoucherApplication,
    "claim": Claim,
    "bank_account": BankAccount,
}


@dataclass
class QueueFilters:
    kind: str = "claim"
    county: str | None = None
    amount_min_fen: int | None = None
    amount_max_fen: int | None = None
    older_than_days: int | None = None
    errors: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_args(cls, args: MultiDict) -> QueueFilters:
        """Read the filters from a query string; a malformed value is reported and left out."""
        kind = args.get("kind", "")
        filters = cls(kind=kind if kind in KINDS else "claim")
        filters.county = args.get("county") or None
        for name, target in (("amount_min", "amount_min_fen"), ("amount_max", "amount_max_fen")):
            if args.get(name):
                try:
                    setattr(filters, target, yuan_to_fen(args[name]))
                except ValueError:
                    filters.errors[name] = args[name]
        if args.get("older_than"):
            # isdecimal, not isdigit: int() refuses "²"; and no more days than a date can go back.
            if args["older_than"].isdecimal() and int(args["older_than"]) <= 36_500:
                filters.older_than_days = int(args["older_than"])
            else:
                filters.errors["older_than"] = args["older_than"]
        return filters


@dataclass
class Queue:
    items: list[Any]
    counts: dict[str, int]
    total: int


def _filtered(filters: QueueFilters, kind: str, enterprise_ids: list[int] | None = None) -> Select:
    """What waits of one kind, oldest first: bounded by its waiting states and the county's enterprises
    (`enterprise_ids`, given with a county filter) before the amount is looked at.

    The county comes as its enterprises' ids, not as a join to enterprises, so that both bounds are
    conditions on the claims themselves, looked up in `ix_claims_state_enterprise`: a claim's amount is
    a sum over its fund rows, which PostgreSQL computes for every row its scan of claims yields. Joined,
    the county was met only after that scan, and the amounts of all the province's waiting claims were
    summed (50,000 at province scale) to show the few thousand of one county."""
    model: Any  # see QUEUE_MODELS
    submitted: InstrumentedAttribute[Any]
    waiting: Sequence[StrEnum]
    amount: SQLColumnExpression[int] | None
    if kind == "verification":
        model, submitted, waiting, amount = (
            VerificationRequest,
            VerificationRequest.submitted_at,
            WAITING_VERIFICATION_STATES,
            None,
        )
    elif kind == "application":
        model, submitted, waiting, amount = (
            VoucherApplication,
            VoucherApplication.submitted_at,
            WAITING_APPLICATION_STATES,
            VoucherApplication.amount_fen,
        )
    elif kind == "bank_account":
        model, submitted, waiting, amount = (
            BankAccount,
            BankAccount.entered_at,
            [BankAccountState.PENDING],
            None,
        )
    else:
        model, submitted, waiting, amount = (
            Claim,
            Claim.submitted_at,
            WAITING_CLAIM_STATES,
            select(func.coalesce(func.sum(ClaimFund.amount_fen), 0))
            .where(ClaimFund.claim_id == Claim.id)
            .scalar_subquery(),
        )
    stmt = select(model).where(model.state.in_(waiting)).order_by(submitted)
    if enterprise_ids is not None:
        stmt = stmt.where(_in_county(model, enterprise_ids, filters.county))
    if amount is not None and filters.amount_min_fen is not None:
        stmt = stmt.where(amount >= filters.amount_min_fen)
    if amount is not None and filters.amount_max_fen is not None:
        stmt = stmt.where(amount <= filters.amount_max_fen)
    if filters.older_than_days is not None:
        stmt = stmt.where(submitted <= clock.utcnow() - timedelta(days=filters.older_than_days))
    return stmt


def _in_county(model: Any, enterprise_ids: list[int], county: str | None) -> Any:
    """The county filter: the county's enterprises, and for bank accounts also its provider
    institutions (an institution's account, paid for redemptions at payment, has no enterprise)."""
    if model is not BankAccount:
        return model.enterprise_id.in_(enterprise_ids)
    institutions = select(Institution.id).where(Institution.county == county)
    return or_(BankAccount.enterprise_id.in_(enterprise_ids), BankAccount.institution_id.in_(institutions))


def queue(filters: QueueFilters) -> Queue:
    """What waits for a decision, oldest first, with how many of each kind match the filters."""
    enterprise_ids = None
    if filters.county:
        enterprise_ids = list(
            db.session.scalars(select(Enterprise.id).where(Enterprise.county == filters.county))
        )
    counts = {
        kind: db.session.execute(
            # Unordered: PostgreSQL sorted the rows it was only to count.
            select(func.count()).select_from(
                _filtered(filters, kind, enterprise_ids).order_by(None).subquery()
            )
        ).scalar_one()
        for kind in KINDS
    }
    # Only the enterprise (or a bank account's institution) is shown with each item: a wildcard eager load
    # here pulled in every related row (vouchers with their ledgers, claim items, users ...), some
    # 100,000 objects for a few dozen claims.
    model = QUEUE_MODELS[filters.kind]
    shown = [joinedload(model.enterprise)]
    if model is BankAccount:
        shown.append(joinedload(BankAccount.institution))
    items = list(
        db.session.scalars(_filtered(filters, filters.kind, enterprise_ids).options(*shown).limit(200))
    )
    return Queue(items=items, counts=counts, total=counts[filters.kind])


def history(object_type: str, object_id: Any) -> list[AuditEvent]:
    """The audit rows of one object, oldest first."""
    return list(
        db.session.scalars(
            select(AuditEvent)
            .where(AuditEvent.object_type == object_type, AuditEvent.object_id == str(object_id))
            .order_by(AuditEvent.id)
        )
    )


def enterprise_history(enterprise_id: int) -> dict[str, Any]:
    """What a reviewer wants to know about an enterprise before deciding."""
    return {
        "vouchers": list(db.session.scalars(select(Voucher).where(Voucher.enterprise_id == enterprise_id))),
        "claims": list(
            db.session.scalars(
                select(Claim).where(Claim.enterprise_id == enterprise_id).order_by(Claim.id.desc())
            )
        ),
        "completed_services": db.session.scalar(
            select(func.count())
            .select_from(Booking)
            .where(Booking.enterprise_id == enterprise_id, Booking.state == BookingState.COMPLETED)
        ),
        "relations": list(
            db.session.scalars(
                select(EnterpriseRelation)
                .where(EnterpriseRelation.enterprise_id == enterprise_id)
                .options(joinedload(EnterpriseRelation.institution))
            )
        ),
    }


@dataclass
class BookingHint:
    """What the enterprise's voucher would cover of a booking's fee, shown before it books."""


# --- decisions on claims -------------------------------------------------------------------------


def can_decide_claim(user: User, claim: Claim) -> bool:
    """A reviewer may reject or return a claim that waits for a decision."""
    return is_reviewer(user) and claim.state in WAITING_CLAIM_STATES


def can_reject_claim(user: User, claim: Claim) -> bool:
    return is_reviewer(user) and (claim.state, "reject") in CLAIM_TRANSITIONS


def can_return_claim(user: User, claim: Claim) -> bool:
    return is_reviewer(user) and (claim.state, "return") in CLAIM_TRANSITIONS


def can_approve_claim(user: User, claim: Claim) -> bool:
    """...and approve it, unless they gave its first approval: the second must be someone else's."""
    return (
        is_reviewer(user)
        and (claim.state, "approve") in CLAIM_TRANSITIONS
        and not approved_once_by(user, claim)
    )


def _waiting_claim(claim_id: int) -> Claim:
    """The claim, locked (the first step of the lock order), if it still waits for a decision."""
    claim = lock_one(Rank.CLAIMS, Claim, claim_id)
    if claim is None:
        raise NotFound(_("No such claim."))
    if claim.state not in WAITING_CLAIM_STATES:
        raise InvalidTransition(_("This claim is not waiting for a decision."), {"state": claim.state.value})
    return claim


def approve_claim(reviewer: User, claim_id: int, comment: str | None = None) -> Claim:
    """Approve exactly the amounts submitted, reserving the money atomically (or, above the four-eyes
    threshold, record the first of two approvals)."""
    require_reviewer(reviewer)
    comment = (comment or "").strip() or None
    with serialized_write():
        claim = _waiting_claim(claim_id)
        refuse_own_approval(reviewer, claim)
        month = clock.format_local(clock.utcnow(), "%Y-%m")  # the accounting month (Beijing time)
        signals.send(signals.claim_approving, claim, month=month)  # finance refuses a closed month
        _approve(claim, reviewer, comment, month)
        if claim.state is ClaimState.IN_NOTICE:  # not when it waits for a second approval
            signals.send(signals.claim_approved, claim, month=month)
        db.session.commit()
    return claim


def _approve(claim: Claim, reviewer: User, comment: str | None, month: str) -> None:
    # The lock order of portal.core.locks: claim (done), funds, enterprise and group caps, voucher.
    voucher_row = db.session.get_one(Voucher, claim.voucher_id)
    scheme = db.session.get_one(Scheme, voucher_row.scheme_id)
    funds = {f.name: f for f in lock_where(Rank.FUNDS, Fund, Fund.scheme_id == scheme.id)}
    enterprise = db.session.get_one(Enterprise, claim.enterprise_id)
    enterprise_cap, group_cap = lock_caps(scheme, enterprise)
    voucher = lock_existing(Rank.VOUCHERS, Voucher, claim.voucher_id)

    records = records_of(claim_record_ids(claim))
    checks = claim_checks(claim, enterprise, voucher, records)
    claim.checks = stored_checks(checks, lambda: claim_checks(claim, enterprise, voucher, records))
    refuse_failed_checks(checks, _("Not every check passes: %(failed)s"))
    if not claim.at_payment:  # a redemption's room was taken when it was reserved
        _refuse_without_room(claim, scheme, funds, voucher, enterprise_cap, group_cap)
    first = (claim.state, "first_approval") in CLAIM_TRANSITIONS
    if first and four_eyes(scheme.four_eyes_threshold_fen, claim.total_fen):
        _approve_once(claim, reviewer, comment)
        return
    _commit_amounts(claim, funds, enterprise_cap, group_cap, voucher)
    before = transition(
        claim,
        CLAIM_TRANSITIONS,
        "approve",
        _("This claim is not waiting for a decision."),
        decided_by_id=reviewer.id,
        decided_at=clock.utcnow(),
        comment=comment,
        notice_ends_on=clock.local_today() + timedelta(days=scheme.public_notice_days),
        approved_month=month,
    )
    db.session.add(
        LedgerEntry(
            voucher_id=voucher.id,
            kind=LedgerKind.COMMITTED,
            amount_fen=claim.total_fen,
            balance_after_fen=voucher.balance_fen,
            claim_id=claim.id,
        )
    )
    audit_claim(claim, before, reviewer, comment)
    tell_about_claim(claim, "approved", notice_ends_on=str(claim.notice_ends_on))


def _commit_amounts(
    claim: Claim, funds: dict[str, Fund], enterprise_cap: CapLedger, group_cap: CapLedger, voucher: Voucher
) -> None:
    """The claim's amounts become commitments. A redemption at payment had them reserved (the caps
    and the voucher's balance already count them): only the funds move them from reserved."""
    for name, amount in claim.fund_amounts().items():
        if not amount:  # a scheme may lack a fund the claim takes nothing from
            continue
        funds[name].committed_fen += amount
        if claim.at_payment:
            funds[name].reserved_fen -= amount
    if not claim.at_payment:
        enterprise_cap.used_fen += claim.capped_fen(funds)
        group_cap.used_fen += claim.total_fen
        voucher.balance_fen -= claim.total_fen


def _refuse_without_room(
    claim: Claim,
    scheme: Scheme,
    funds: dict[str, Fund],
    voucher: Voucher,
    enterprise_cap: CapLedger,
    group_cap: CapLedger,
) -> None:
    """The reviewer approves exactly the amounts the enterprise submitted, or nothing: if others have
    spent the room since, this claim is refused (and can be returned to be recomputed)."""
    limits = {
        "voucher_balance": voucher.balance_fen - claim.total_fen,
        "group_cap": scheme.group_cap_fen - group_cap.used_fen - claim.total_fen,
        "enterprise_cap": scheme.enterprise_cap_fen - enterprise_cap.used_fen - claim.capped_fen(funds),
    }
    for name, amount in claim.fund_amounts().items():
        if amount:
            limits[f"{name}_budget"] = funds[name].free_fen - amount
    short = [name for name, room in limits.items() if room < 0]
    if short:
        raise LimitExceeded(
            _("There is no longer room for this claim: %(limits)s.", limits=", ".join(short)),
            {"limited_by": short},
        )


def _approve_once(claim: Claim, reviewer: User, comment: str | None) -> None:
    before = transition(
        claim,
        CLAIM_TRANSITIONS,
        "first_approval",
        _("This claim is not waiting for a decision."),
        first_reviewer_id=reviewer.id,
    )
    audit_claim(claim, before, reviewer, comment)
    tell_other_reviewers(
        reviewer,
        "claim.second_review",
        f"claim:{claim.id}:second_review",
        f"/vouchers/claims/{claim.id}",
        claim=claim.id,
        amount=format_yuan(claim.total_fen),
    )


def reject_claim(reviewer: User, claim_id: int, comment: str | None = None) -> Claim:
    """Reject, saying why: the claim's services are released (they may be claimed again)."""
    return _turn_down(reviewer, claim_id, "reject", comment)


def return_claim(reviewer: User, claim_id: int, comment: str | None = None) -> Claim:
    """Return for correction, saying what to correct: the enterprise submits it again."""
    return _turn_down(reviewer, claim_id, "return", comment)


def _turn_down(reviewer: User, claim_id: int, action: str, comment: str | None) -> Claim:
    require_reviewer(reviewer)
    with serialized_write():
        claim = _waiting_claim(claim_id)
        comment = required_reason(comment, "comment")
        if action == "reject" and claim.at_payment:
            release(claim, action, reviewer, comment)  # with its own audit row and notices
            db.session.commit()
            return claim
        before = transition(
            claim,
            CLAIM_TRANSITIONS,
            action,
            _("This claim is not waiting for a decision."),
            decided_by_id=reviewer.id,
            decided_at=clock.utcnow(),
            comment=comment,
        )
        if action == "reject":
            free_services(claim)
        audit_claim(claim, before, reviewer, comment)
        tell_about_claim(claim, claim.state.value, repeatable=True, reason=comment)
        db.session.commit()
    return claim
