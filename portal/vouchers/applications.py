"""Voucher applications: a verified enterprise applies for a quota; reviewers approve (issuing the
voucher), reject or return it; the enterprise corrects a returned one and submits it again."""

from __future__ import annotations

import secrets
from datetime import timedelta
from typing import Any

from flask_babel import gettext as _
from sqlalchemy import func, select

from portal.accounts.models import Enterprise, User
from portal.accounts.services import is_holder, require_holder
from portal.core import audit, clock
from portal.core.database import serialized_write
from portal.core.errors import InvalidTransition, LimitExceeded, NotFound, ValidationFailed
from portal.core.locks import Rank, lock_one
from portal.core.money import format_yuan
from portal.extensions import db
from portal.vouchers.models import (
    ApplicationState,
    LedgerEntry,
    LedgerKind,
    Scheme,
    Voucher,
    VoucherApplication,
    VoucherState,
)
from portal.vouchers.schemes import require_scheme
from portal.vouchers.services import (
    approved_once_by,
    can_view_enterprise_object,
    four_eyes,
    is_enterprise_user,
    is_reviewer,
    open_states,
    refuse_own_approval,
    require_reviewer,
    require_verified_enterprise,
    required_reason,
    states_allowing,
    tell_enterprise,
    tell_other_reviewers,
    transition,
)

# The voucher application's state machine: (state, action) -> new state. Above the scheme's
# four-eyes threshold a first approval leads to PENDING_SECOND, and another reviewer's to APPROVED.
APPLICATION_TRANSITIONS: dict[tuple[ApplicationState, str], ApplicationState] = {
    (ApplicationState.SUBMITTED, "approve"): ApplicationState.APPROVED,
    (ApplicationState.SUBMITTED, "first_approval"): ApplicationState.PENDING_SECOND,
    (ApplicationState.PENDING_SECOND, "approve"): ApplicationState.APPROVED,
    (ApplicationState.SUBMITTED, "reject"): ApplicationState.REJECTED,
    (ApplicationState.PENDING_SECOND, "reject"): ApplicationState.REJECTED,
    (ApplicationState.SUBMITTED, "return"): ApplicationState.RETURNED,
    (ApplicationState.PENDING_SECOND, "return"): ApplicationState.RETURNED,
    (ApplicationState.RETURNED, "resubmit"): ApplicationState.SUBMITTED,
}
# What waits for a reviewer's decision, and what is still open (one open application a year).
WAITING_APPLICATION_STATES = states_allowing(APPLICATION_TRANSITIONS, "reject")
OPEN_APPLICATION_STATES = open_states(APPLICATION_TRANSITIONS)


# --- the enterprise's side ----------------------------------------------------------------------


def apply_for_voucher(user: User, amount_fen: int, plan: str) -> VoucherApplication:
    """A verified enterprise applies for this year's quota with a short plan (its account holder only)."""
    enterprise = require_verified_enterprise(user)
    require_holder(user)
    scheme = require_scheme()
    _check_application(scheme, amount_fen, plan)
    with serialized_write():
        if db.session.scalar(
            select(VoucherApplication.id).where(
                VoucherApplication.enterprise_id == enterprise.id,
                VoucherApplication.scheme_id == scheme.id,
                VoucherApplication.state.in_([*OPEN_APPLICATION_STATES, ApplicationState.APPROVED]),
            )
        ):
            raise InvalidTransition(
                _("Your enterprise already has a voucher or an open application this year.")
            )
        application = VoucherApplication(
            enterprise_id=enterprise.id,
            scheme_id=scheme.id,
            amount_fen=amount_fen,
            plan=plan.strip(),
            state=ApplicationState.SUBMITTED,
            submitted_at=clock.utcnow(),
        )
        db.session.add(application)
        db.session.flush()
        audit.record(
            "voucher_application.submitted",
            "voucher_application",
            application.id,
            after={"state": "submitted", "amount_fen": amount_fen},
            actor_id=user.id,
        )
        db.session.commit()
    return application


def _check_application(scheme: Scheme, amount_fen: int, plan: str) -> None:
    fields: dict[str, str] = {}
    if not 0 < amount_fen <= scheme.group_cap_fen:
        fields["amount_fen"] = _("Between 0.01 yuan and the yearly cap.")
    if not plan.strip():
        fields["plan"] = _("Describe what you plan to test and why.")
    elif len(plan) > 4000:
        fields["plan"] = _("At most 4,000 characters.")
    if fields:
        raise ValidationFailed(_("Please correct the marked fields."), fields)


def can_resubmit_application(user: User, application: VoucherApplication) -> bool:
    """The enterprise's account holder corrects a returned application and submits it again."""
    return (
        is_enterprise_user(user, application.enterprise_id)
        and is_holder(user)
        and (application.state, "resubmit") in APPLICATION_TRANSITIONS
    )


def resubmit_application(user: User, application_id: int, amount_fen: int, plan: str) -> VoucherApplication:
    """After a return, the enterprise's account holder corrects and submits again."""
    require_holder(user)
    with serialized_write():
        application = get_application(user, application_id)
        refusal = _("Only a returned application can be submitted again.")
        if (application.state, "resubmit") not in APPLICATION_TRANSITIONS:
            raise InvalidTransition(refusal)
        _check_application(application.scheme, amount_fen, plan)
        before = transition(
            application,
            APPLICATION_TRANSITIONS,
            "resubmit",
            refusal,
            {},
            amount_fen=amount_fen,
            plan=plan.strip(),
            first_reviewer_id=None,
            submitted_at=clock.utcnow(),
        )
        audit.record(
            "voucher_application.submitted",
            "voucher_application",
            application.id,
            before={"state": before.value},
            after={"state": "submitted", "amount_fen": amount_fen},
            actor_id=user.id,
        )
        db.session.commit()
    return application


def get_application(user: User, application_id: int) -> VoucherApplication:
    application = db.session.get(VoucherApplication, application_id)
    if application is None or not can_view_enterprise_object(user, application.enterprise_id):
        raise NotFound(_("No such voucher application."))
    return application


# --- the reviewers' decisions -------------------------------------------------------------------


def can_decide_application(user: User, application: VoucherApplication) -> bool:
    """A reviewer may reject or return an application that waits for a decision."""
    return is_reviewer(user) and application.state in WAITING_APPLICATION_STATES


def can_reject_application(user: User, application: VoucherApplication) -> bool:
    return is_reviewer(user) and (application.state, "reject") in APPLICATION_TRANSITIONS


def can_return_application(user: User, application: VoucherApplication) -> bool:
    return is_reviewer(user) and (application.state, "return") in APPLICATION_TRANSITIONS


def can_approve_application(user: User, application: VoucherApplication) -> bool:
    """...and approve it, unless they gave its first approval: the second must be someone else's."""
    return (
        is_reviewer(user)
        and (application.state, "approve") in APPLICATION_TRANSITIONS
        and not approved_once_by(user, application)
    )


def _waiting(application_id: int) -> VoucherApplication:
    """The application, locked, if it still waits for a decision."""
    application = lock_one(Rank.APPLICATION, VoucherApplication, application_id)
    if application is None:
        raise NotFound(_("No such voucher application."))
    if application.state not in WAITING_APPLICATION_STATES:
        raise InvalidTransition(_("This application has already been decided."))
    return application


def approve_application(
    reviewer: User, application_id: int, *, amount_fen: int | None = None, comment: str | None = None
) -> VoucherApplication:
    """Approve an amount within the caps and the free budget: the voucher is issued, or, above the
    four-eyes threshold, the application waits for a second reviewer's approval of the same amount."""
    require_reviewer(reviewer)
    comment = (comment or "").strip() or None
    with serialized_write():
        application = _waiting(application_id)
        scheme = lock_one(Rank.SCHEME, Scheme, application.scheme_id)
        if application.state is ApplicationState.PENDING_SECOND:
            refuse_own_approval(reviewer, application)
            amount = application.first_amount_fen
        else:
            amount = amount_fen if amount_fen is not None else application.amount_fen
        _check_allocation(scheme, application, amount)
        first = (application.state, "first_approval") in APPLICATION_TRANSITIONS
        if first and four_eyes(scheme.four_eyes_threshold_fen, amount):
            _approve_once(reviewer, application, amount, comment)
        else:
            _issue_voucher(reviewer, application, scheme, amount, comment)
        db.session.commit()
    return application


def _approve_once(reviewer: User, application: VoucherApplication, amount: int, comment: str | None) -> None:
    before = transition(
        application,
        APPLICATION_TRANSITIONS,
        "first_approval",
        _("This application has already been decided."),
        {},
        first_reviewer_id=reviewer.id,
        first_amount_fen=amount,
    )
    _audit_application(application, before, reviewer, comment, amount_fen=amount)
    # As for claims: the other reviewers learn that a second approval is waiting for them.
    tell_other_reviewers(
        reviewer,
        "voucher_application.second_review",
        f"voucher_application:{application.id}:second_review",
        f"/review/applications/{application.id}",
        application=application.id,
        amount=format_yuan(amount),
    )


def _issue_voucher(
    reviewer: User, application: VoucherApplication, scheme: Scheme, amount: int, comment: str | None
) -> None:
    before = transition(
        application,
        APPLICATION_TRANSITIONS,
        "approve",
        _("This application has already been decided."),
        {},
        decided_by_id=reviewer.id,
        decided_at=clock.utcnow(),
        comment=comment,
    )
    voucher = Voucher(
        code=_voucher_code(scheme),
        enterprise_id=application.enterprise_id,
        scheme_id=scheme.id,
        application_id=application.id,
        quota_fen=amount,
        balance_fen=amount,
        released_fen=0,
        issued_at=clock.utcnow(),
        valid_until=clock.local_today() + timedelta(days=scheme.voucher_validity_days),
        state=VoucherState.ACTIVE,
    )
    db.session.add(voucher)
    scheme.allocated_fen += amount
    db.session.flush()
    db.session.add(
        LedgerEntry(
            voucher_id=voucher.id, kind=LedgerKind.ISSUED, amount_fen=amount, balance_after_fen=amount
        )
    )
    _audit_application(application, before, reviewer, comment, amount_fen=amount, voucher=voucher.code)
    tell_enterprise(
        application.enterprise_id,
        "application.approved",
        f"application:{application.id}:approved",
        f"/vouchers/voucher/{voucher.id}",
        code=voucher.code,
        amount=format_yuan(amount),
        valid_until=str(voucher.valid_until),
    )


def reject_application(reviewer: User, application_id: int, comment: str | None = None) -> VoucherApplication:
    """Reject, saying why: the enterprise may apply again."""
    return _turn_down(reviewer, application_id, "reject", comment, "/vouchers/")


def return_application(reviewer: User, application_id: int, comment: str | None = None) -> VoucherApplication:
    """Return for correction, saying what to correct: the enterprise submits it again."""
    link = f"/vouchers/applications/{application_id}/resubmit"
    return _turn_down(reviewer, application_id, "return", comment, link)


def _turn_down(
    reviewer: User, application_id: int, action: str, comment: str | None, link: str
) -> VoucherApplication:
    require_reviewer(reviewer)
    with serialized_write():
        application = _waiting(application_id)
        comment = required_reason(comment, "comment")
        now = clock.utcnow()
        before = transition(
            application,
            APPLICATION_TRANSITIONS,
            action,
            _("This application has already been decided."),
            {},
            decided_by_id=reviewer.id,
            decided_at=now,
            comment=comment,
        )
        _audit_application(application, before, reviewer, comment)
        state = application.state.value
        tell_enterprise(
            application.enterprise_id,
            f"application.{state}",
            f"application:{application.id}:{state}:{now.timestamp()}",
            link,
            reason=comment,
        )
        db.session.commit()
    return application


def _voucher_code(scheme: Scheme) -> str:
    return f"LC{scheme.year}-{secrets.token_hex(4).upper()}"


def _check_allocation(scheme: Scheme, application: VoucherApplication, amount: int) -> None:
    if not 0 < amount <= scheme.group_cap_fen:
        raise ValidationFailed(_("Between 0.01 yuan and the yearly cap."), {"amount_fen": _("Out of range.")})
    free = scheme.budget_fen - scheme.allocated_fen
    if amount > free:
        raise LimitExceeded(
            _("Only %(free)s of the scheme's budget is not yet allocated.", free=format_yuan(free)),
            {"limited_by": ["scheme_budget"], "free_fen": free},
        )
    enterprise = db.session.get(Enterprise, application.enterprise_id)
    group_allocated = db.session.scalar(
        select(func.coalesce(func.sum(Voucher.quota_fen - Voucher.released_fen), 0))
        .join(Enterprise, Enterprise.id == Voucher.enterprise_id)
        .where(Voucher.scheme_id == scheme.id, _same_group(enterprise))
    )
    if group_allocated + amount > scheme.group_cap_fen:
        left = scheme.group_cap_fen - group_allocated
        raise LimitExceeded(
            _(
                "The controller group has only %(left)s of its yearly cap left.",
                left=format_yuan(max(0, left)),
            ),
            {"limited_by": ["group_cap"], "free_fen": max(0, left)},
        )


def _same_group(enterprise: Enterprise):
    if enterprise.controller_group:
        return Enterprise.controller_group == enterprise.controller_group
    return Enterprise.id == enterprise.id


def _audit_application(
    application: VoucherApplication,
    before_state: ApplicationState,
    reviewer: User,
    comment: str | None,
    **extra: Any,
) -> None:
    audit.record(
        f"voucher_application.{application.state.value}",
        "voucher_application",
        application.id,
        before={"state": before_state.value},
        after={"state": application.state.value, **extra},
        reason=comment,
        actor_id=reviewer.id,
    )
