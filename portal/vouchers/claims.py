"""Claims, the enterprise's side and the payment: draft, submit, correct a returned one, delete a
draft, and PAYABLE -> PAID (finance calls `pay_claim`). The reviewers' decisions are in `review`,
the end of the public notice in `notice`; all go by the one table here."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from flask_babel import gettext as _
from sqlalchemy import select, update
from sqlalchemy.orm import joinedload, selectinload

from portal.accounts.members import users_of_institution
from portal.accounts.models import Enterprise, User
from portal.accounts.services import is_holder, require_holder
from portal.booking.models import Booking, FileKind, ServiceFile, ServiceRecord
from portal.catalog.models import Instrument
from portal.core import audit, clock, uploads
from portal.core.database import changed_rows, serialized_write
from portal.core.errors import Forbidden, InvalidTransition, LimitExceeded, NotFound, ValidationFailed
from portal.core.locks import Rank, lock_existing, lock_one
from portal.core.money import format_yuan
from portal.core.permissions import BUREAU_ROLES, Role
from portal.extensions import db
from portal.notifications.services import notify
from portal.vouchers.checks import (
    Check,
    all_checks,
    claim_record_ids,
    records_of,
    refuse_failed_checks,
    stored_checks,
)
from portal.vouchers.models import (
    Claim,
    ClaimItem,
    ClaimState,
    Fund,
    LedgerEntry,
    LedgerKind,
    RedemptionMode,
    Voucher,
)
from portal.vouchers.rules import Subsidy
from portal.vouchers.services import (
    can_view_enterprise_object,
    is_enterprise_user,
    require_verified_enterprise,
    states_allowing,
    tell_enterprise,
    transition,
)
from portal.vouchers.subsidy import in_province_provider, local_provider, subsidy_for

# The claim's state machine, in one place: (state, action) -> new state.
CLAIM_TRANSITIONS: dict[tuple[ClaimState, str], ClaimState | None] = {
    (ClaimState.DRAFT, "submit"): ClaimState.SUBMITTED,
    (ClaimState.DRAFT, "delete"): None,  # a draft reserves nothing and is simply thrown away
    (ClaimState.RETURNED, "revise"): ClaimState.RETURNED,  # a reply, a replaced file
    (ClaimState.RETURNED, "submit"): ClaimState.SUBMITTED,
    # Above the four-eyes threshold the first approval leads to PENDING_SECOND, the second on.
    (ClaimState.SUBMITTED, "first_approval"): ClaimState.PENDING_SECOND,
    (ClaimState.SUBMITTED, "approve"): ClaimState.IN_NOTICE,
    (ClaimState.PENDING_SECOND, "approve"): ClaimState.IN_NOTICE,
    (ClaimState.SUBMITTED, "reject"): ClaimState.REJECTED,
    (ClaimState.PENDING_SECOND, "reject"): ClaimState.REJECTED,
    (ClaimState.SUBMITTED, "return"): ClaimState.RETURNED,
    (ClaimState.PENDING_SECOND, "return"): ClaimState.RETURNED,
    (ClaimState.IN_NOTICE, "end_notice"): ClaimState.PAYABLE,
    (ClaimState.PAYABLE, "pay"): ClaimState.PAID,
    # At payment (portal.vouchers.redemptions): the provider's reservation, made when the service is
    # recorded, is submitted, withdrawn, or expires unsubmitted (a returned one too); the last two,
    # like a rejection, release what it held.
    (ClaimState.RESERVED, "submit"): ClaimState.SUBMITTED,
    (ClaimState.RESERVED, "withdraw"): ClaimState.WITHDRAWN,
    (ClaimState.RESERVED, "expire"): ClaimState.EXPIRED,
    (ClaimState.RETURNED, "expire"): ClaimState.EXPIRED,
}
# What waits for a reviewer's decision: every state a claim can be rejected from.
WAITING_CLAIM_STATES = states_allowing(CLAIM_TRANSITIONS, "reject")
PAY_ROLES = (Role.FINANCE, Role.ADMIN)


def tell_about_claim(claim: Claim, event: str, *, repeatable: bool = False, **payload: Any) -> None:
    """Notify the claim's enterprise of `event`, and at payment its provider too (the payee, who
    submits it); a repeatable event (a return, say) may recur."""
    key = f"claim:{claim.id}:{event}" + (f":{clock.utcnow().timestamp()}" if repeatable else "")
    payload = {"claim": claim.id, "amount": format_yuan(claim.total_fen), **payload}
    link = f"/vouchers/claims/{claim.id}"
    tell_enterprise(claim.enterprise_id, f"claim.{event}", key, link, **payload)
    if claim.at_payment and claim.institution_id is not None:
        notify(users_of_institution(claim.institution_id), f"claim.{event}", key, payload=payload, link=link)


def audit_claim(claim: Claim, before: ClaimState, reviewer: User | None, comment: str | None) -> None:
    audit.record(
        f"claim.{claim.state.value}",
        "claim",
        claim.id,
        before={"state": before.value},
        after={"state": claim.state.value, "funds": claim.fund_amounts()},
        reason=comment,
        actor_id=reviewer.id if reviewer else None,
    )


def free_services(claim: Claim) -> None:
    """The claim's services may be claimed again (it was rejected, or its reservation released)."""
    db.session.execute(
        update(ServiceRecord)
        .where(ServiceRecord.claim_id == claim.id)
        .values(claim_id=None)
        .execution_options(synchronize_session=False)
    )


# --- who may do what: the pages ask these instead of working the rules out again ---------------


def can_submit_claim(user: User, claim: Claim) -> bool:
    """The enterprise's account holder submits a draft or a corrected claim."""
    return (
        is_enterprise_user(user, claim.enterprise_id)
        and is_holder(user)
        and not claim.at_payment  # the provider submits a redemption
        and (claim.state, "submit") in CLAIM_TRANSITIONS
    )


def waits_for_submission(claim: Claim) -> bool:
    """A draft or a returned claim: its checks are run afresh, and only its holder may submit it."""
    return (claim.state, "submit") in CLAIM_TRANSITIONS


def can_revise_claim(user: User, claim: Claim) -> bool:
    """The holder corrects a returned claim (a reply, replaced files) before submitting it again."""
    return (
        is_enterprise_user(user, claim.enterprise_id)
        and is_holder(user)
        and not claim.at_payment
        and (claim.state, "revise") in CLAIM_TRANSITIONS
    )


def can_delete_claim(user: User, claim: Claim) -> bool:
    return is_enterprise_user(user, claim.enterprise_id) and (claim.state, "delete") in CLAIM_TRANSITIONS


def can_pay_claim(user: User, claim: Claim) -> bool:
    return user.is_authenticated and user.role in PAY_ROLES and (claim.state, "pay") in CLAIM_TRANSITIONS


# --- drafts ---------------------------------------------------------------------------------------


@dataclass
class Preview:
    fee_fen: int
    subsidy: Subsidy
    checks: list[Check]
    records: list[ServiceRecord]
    # A provider outside Shandong, and the enterprise's justification (None for one in the province).
    out_of_province: bool = False
    justification: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "fee_fen": self.fee_fen,
            "funds": [
                {"fund": f.fund, "raw_fen": f.raw_fen, "amount_fen": f.amount_fen} for f in self.subsidy.funds
            ],
            "total_fen": self.subsidy.total_fen,
            "limited_by": list(self.subsidy.limited_by),
            "checks": [c.as_dict() for c in self.checks],
            "out_of_province": self.out_of_province,
        }


def _claim_inputs(
    user: User, voucher_id: int, record_ids: list[int]
) -> tuple[Enterprise, Voucher, list[ServiceRecord]]:
    enterprise = require_verified_enterprise(user)
    voucher = db.session.get(Voucher, voucher_id)
    if voucher is None or voucher.enterprise_id != enterprise.id:
        raise NotFound(_("No such voucher."))
    unique_ids = sorted(set(record_ids))
    if not unique_ids:
        raise ValidationFailed(
            _("Choose at least one completed service."), {"service_record_ids": _("Required.")}
        )
    if len(unique_ids) > 50:
        raise ValidationFailed(_("At most 50 services per claim."), {"service_record_ids": _("Too many.")})
    records = records_of(unique_ids)
    if len(records) != len(unique_ids) or any(r.booking.enterprise_id != enterprise.id for r in records):
        raise NotFound(_("Some of these services are not your enterprise's."))
    if len({r.booking.instrument.institution_id for r in records}) > 1:
        message = _("One claim covers the services of one provider; make a claim per provider.")
        raise ValidationFailed(message, {"service_record_ids": message})
    return enterprise, voucher, records


MAX_JUSTIFICATION = 4000


def preview_claim(
    user: User, voucher_id: int, record_ids: list[int], justification: str | None = None
) -> Preview:
    """What a claim for these services would bring, every limit that binds, and the checks
    (`justification`: the enterprise's, kept only for a provider outside Shandong)."""
    enterprise, voucher, records = _claim_inputs(user, voucher_id, record_ids)
    justification = (justification or "").strip() or None
    if justification and len(justification) > MAX_JUSTIFICATION:
        message = _("At most %(count)d characters.", count=MAX_JUSTIFICATION)
        raise ValidationFailed(message, {"justification": message})
    in_province = in_province_provider(records)
    justification = None if in_province else justification
    fee = sum(r.fee_fen for r in records)
    subsidy = subsidy_for(enterprise, voucher.scheme, voucher, fee, local_provider(records), in_province)
    checks = all_checks(enterprise, voucher, records, justification=justification)
    return Preview(fee, subsidy, checks, records, not in_province, justification)


def create_claim(
    user: User, voucher_id: int, record_ids: list[int], justification: str | None = None
) -> Claim:
    """A draft claim (nothing reserved yet; submitting it does that)."""
    preview = preview_claim(user, voucher_id, record_ids, justification)
    with serialized_write():
        claim = Claim(
            voucher_id=voucher_id,
            enterprise_id=user.enterprise_id,
            institution_id=preview.records[0].booking.instrument.institution_id,
            state=ClaimState.DRAFT,
            fee_fen=preview.fee_fen,
            limited_by=list(preview.subsidy.limited_by),
            checks=[c.as_dict() for c in preview.checks],
            created_by_id=user.id,
            created_at=clock.utcnow(),
            out_of_province=preview.out_of_province,
            justification=preview.justification,
        )
        claim.items = [ClaimItem(service_record_id=r.id, fee_fen=r.fee_fen) for r in preview.records]
        claim.set_amounts((f.fund, f.raw_fen, f.amount_fen) for f in preview.subsidy.funds)
        db.session.add(claim)
        db.session.flush()
        audit.record(
            "claim.created",
            "claim",
            claim.id,
            after={"state": "draft", "fee_fen": claim.fee_fen},
            actor_id=user.id,
        )
        db.session.commit()
    return claim


def get_claim(user: User, claim_id: int) -> Claim:
    claim = db.session.get(
        Claim,
        claim_id,
        options=[
            selectinload(Claim.items)
            .joinedload(ClaimItem.service_record)
            .joinedload(ServiceRecord.booking)
            .joinedload(Booking.instrument)
            .joinedload(Instrument.institution),
            joinedload(Claim.voucher),
            joinedload(Claim.enterprise),
        ],
    )
    if claim is None or not can_view_claim(user, claim):
        raise NotFound(_("No such claim."))
    return claim


def is_redeeming_provider(user: User, claim: Claim) -> bool:
    """A provider user of the institution that redeems this claim at payment."""
    return (
        claim.at_payment
        and user.is_authenticated
        and user.role is Role.PROVIDER
        and user.institution_id is not None
        and user.institution_id == claim.institution_id
    )


def can_view_claim(user: User, claim: Claim) -> bool:
    """The enterprise and the bureau; at payment also the provider that redeems it (and no other
    claim of that enterprise)."""
    return can_view_enterprise_object(user, claim.enterprise_id) or is_redeeming_provider(user, claim)


def claims_for(user: User) -> list[Claim]:
    stmt = (
        select(Claim)
        .options(joinedload(Claim.voucher), joinedload(Claim.enterprise))
        .order_by(Claim.id.desc())
    )
    if user.role is Role.ENTERPRISE:
        stmt = stmt.where(Claim.enterprise_id == user.enterprise_id)
    elif user.role is Role.PROVIDER:
        stmt = stmt.where(
            Claim.mode == RedemptionMode.AT_PAYMENT, Claim.institution_id == user.institution_id
        )
    elif user.role not in BUREAU_ROLES:
        return []
    return list(db.session.scalars(stmt))


# --- submitting, correcting, deleting -------------------------------------------------------------


def submit_claim(user: User, claim_id: int) -> Claim:
    """Submit (or resubmit after a return; the account holder only): the services are reserved for this
    claim and the amounts set."""
    enterprise = require_verified_enterprise(user)
    require_holder(user)
    with serialized_write():
        claim = lock_one(Rank.CLAIMS, Claim, claim_id)
        if claim is None or claim.enterprise_id != enterprise.id:
            raise NotFound(_("No such claim."))
        if claim.at_payment:
            raise InvalidTransition(_("The provider submits a redemption at payment, not the enterprise."))
        refusal = _("Only a draft or a returned claim can be submitted.")
        if (claim.state, "submit") not in CLAIM_TRANSITIONS:
            raise InvalidTransition(refusal)
        ids = claim_record_ids(claim)
        if claim.state is ClaimState.DRAFT:
            _reserve_services(claim, ids)
        records = records_of(ids)
        voucher = db.session.get_one(Voucher, claim.voucher_id)
        checks = all_checks(enterprise, voucher, records, claim.id)
        refuse_failed_checks(checks, _("This claim cannot be submitted until every check passes: %(failed)s"))
        local, in_province = local_provider(records), in_province_provider(records)
        _set_amounts(
            claim, subsidy_for(enterprise, voucher.scheme, voucher, claim.fee_fen, local, in_province)
        )
        claim.checks = stored_checks(checks, lambda: all_checks(enterprise, voucher, records, claim.id))
        before = transition(
            claim,
            CLAIM_TRANSITIONS,
            "submit",
            refusal,
            {},
            submitted_at=clock.utcnow(),
            first_reviewer_id=None,
        )
        audit.record(
            "claim.submitted",
            "claim",
            claim.id,
            before={"state": before.value},
            after={"state": "submitted", "funds": claim.fund_amounts()},
            actor_id=user.id,
        )
        db.session.commit()
    return claim


def _reserve_services(claim: Claim, ids: list[int]) -> None:
    """Reserve every service for this claim at once, or none: a service is never in two claims."""
    taken = changed_rows(
        update(ServiceRecord)
        .where(ServiceRecord.id.in_(ids), ServiceRecord.claim_id.is_(None))
        .values(claim_id=claim.id)
        .execution_options(synchronize_session=False)
    )
    if taken != len(ids):
        db.session.rollback()
        raise InvalidTransition(
            _("Some of these services are already in another claim."), {"check": "claimed_twice"}
        )


def _set_amounts(claim: Claim, subsidy: Subsidy) -> None:
    """The amounts the claim asks for, as the subsidy rules give them now (nothing left: refused)."""
    if subsidy.total_fen <= 0:
        db.session.rollback()
        raise LimitExceeded(
            _(
                "Nothing is left to claim: the subsidy is bound by %(limits)s.",
                limits=", ".join(subsidy.limited_by),
            ),
            {"limited_by": list(subsidy.limited_by)},
        )
    claim.set_amounts((f.fund, f.raw_fen, f.amount_fen) for f in subsidy.funds)
    claim.limited_by = list(subsidy.limited_by)


def delete_draft(user: User, claim_id: int) -> None:
    """Throw away a draft (nothing was reserved)."""
    with serialized_write():
        claim = lock_one(Rank.CLAIMS, Claim, claim_id)
        if claim is None or not is_enterprise_user(user, claim.enterprise_id):
            raise NotFound(_("No such claim."))
        if (claim.state, "delete") not in CLAIM_TRANSITIONS:
            raise InvalidTransition(_("Only a draft can be deleted."))
        # The row lock keeps the state as read until the row is gone: nothing can submit it meanwhile.
        audit.record(
            "claim.deleted", "claim", claim.id, before={"state": claim.state.value}, actor_id=user.id
        )
        db.session.delete(claim)
        db.session.commit()


@dataclass(frozen=True)
class Replacement:
    """A new evidence file for one of a claim's services, replacing the current file of its kind."""

    record_id: int
    kind: FileKind
    stream: Any
    filename: str | None


def revise_claim(
    user: User,
    claim_id: int,
    reply: str | None,
    replacement: Replacement | None = None,
    *,
    resubmit: bool = False,
) -> Claim:
    """The holder corrects a returned claim: a reply to the reviewer's comment and/or a replaced
    evidence file (the old one is kept, marked replaced); then, if asked, submits it again."""
    claim = get_claim(user, claim_id)
    if is_enterprise_user(user, claim.enterprise_id):
        require_holder(user)  # a colleague is told who the holder is
    if not can_revise_claim(user, claim):
        raise InvalidTransition(_("Only a returned claim can be corrected."), {"state": claim.state.value})
    reply = (reply or "").strip() or None
    fields: dict[str, str] = {}
    if reply and len(reply) > 2000:
        fields["reply"] = _("At most 2,000 characters.")
    if replacement and replacement.record_id not in claim_record_ids(claim):
        fields["record"] = _("Not a service of this claim.")
    if not (reply or replacement or resubmit):
        fields["reply"] = _("Write a reply or choose a file to replace.")
    if fields:
        raise ValidationFailed(_("Please correct the marked fields."), fields)
    stored = uploads.store_upload(replacement.stream, replacement.filename) if replacement else None
    try:
        with serialized_write():
            claim = lock_existing(Rank.CLAIMS, Claim, claim_id)
            if (claim.state, "revise") not in CLAIM_TRANSITIONS:
                raise InvalidTransition(_("Only a returned claim can be corrected."))
            changes: dict[str, Any] = {}
            if reply and reply != claim.reply:
                claim.reply = changes["reply"] = reply
            if stored and replacement:  # (a file is stored only for a replacement)
                changes["file"] = _replace_file(user, replacement, stored)
            if changes:
                audit.record(
                    "claim.revised",
                    "claim",
                    claim.id,
                    before={"state": claim.state.value},
                    after={"state": claim.state.value, **changes},
                    reason=changes.get("reply"),
                    actor_id=user.id,
                )
            db.session.commit()
    except BaseException:
        if stored:
            uploads.discard(stored.stored_name)
        raise
    return submit_claim(user, claim_id) if resubmit else claim


def _replace_file(user: User, replacement: Replacement, stored: uploads.StoredFile) -> dict[str, Any]:
    """The new evidence row; the current files of its kind are marked replaced, never deleted."""
    now = clock.utcnow()
    old = db.session.scalars(
        select(ServiceFile).where(
            ServiceFile.record_id == replacement.record_id,
            ServiceFile.kind == replacement.kind,
            ServiceFile.replaced_at.is_(None),
        )
    ).all()
    for row in old:
        row.replaced_at = now
    row = ServiceFile.from_upload(stored, replacement.record_id, replacement.kind, user.id)
    db.session.add(row)
    db.session.flush()
    summary = {
        "file": row.id,
        "kind": replacement.kind.value,
        "sha256": stored.sha256,
        "size": stored.size,
        "replaces": [f.id for f in old],
    }
    audit.record(
        "service.file_added", "service_record", replacement.record_id, after=summary, actor_id=user.id
    )
    return {"record": replacement.record_id, **summary}


# --- payment --------------------------------------------------------------------------------------


def pay_claim(
    user: User, claim: Claim, voucher: Voucher, funds: dict[str, Fund], *, reference: str, month: str
) -> None:
    """PAYABLE -> PAID, when the bank has paid the claim (bureau finance, as part of a batch).

    The caller holds the locks of `portal.core.locks` (claim, then the scheme's funds by name, then
    the voucher) and commits. The state changes only if it is still the one read here.
    """
    if not user.is_authenticated or user.role not in PAY_ROLES:
        raise Forbidden(_("Only bureau finance can do this."))
    before = transition(
        claim,
        CLAIM_TRANSITIONS,
        "pay",
        _("Only a payable claim can be paid."),
        paid_at=clock.utcnow(),
        paid_month=month,
    )
    for name, amount in claim.fund_amounts().items():
        if amount:  # a scheme may lack a fund the claim takes nothing from
            funds[name].paid_fen += amount
    db.session.add(
        LedgerEntry(
            voucher_id=voucher.id,
            kind=LedgerKind.PAID,
            amount_fen=claim.total_fen,
            balance_after_fen=voucher.balance_fen,
            claim_id=claim.id,
        )
    )
    audit.record(
        "claim.paid",
        "claim",
        claim.id,
        before={"state": before.value},
        after={"state": claim.state.value},
        reason=reference,
        actor_id=user.id,
    )
    tell_about_claim(claim, "paid", reference=reference)
