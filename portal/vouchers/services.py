"""Voucher rules: schemes, verification, applications, vouchers, claims, checks and the review decisions.

Money moves only inside `serialized_write` transactions that lock what they spend from through
`portal.core.locks`, in the one order written there for every money path (approval: claim, the
scheme's funds, the enterprise's and the group's cap rows, the voucher; payment, expiry and
allocation take their own subsets of the same order), so concurrent reviewers and finance can never
overspend a voucher, a cap or a fund, approve a claim twice, nor deadlock each other.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

from flask import current_app
from flask_babel import force_locale, get_locale
from flask_babel import gettext as _
from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import joinedload, selectinload

from portal.accounts.models import Enterprise, EnterpriseKind, Institution, User
from portal.accounts.models import VerificationState as EnterpriseState
from portal.accounts.services import is_holder, require_holder
from portal.booking.models import Booking, BookingMode, BookingState, FileKind, ServiceFile, ServiceRecord
from portal.catalog.models import Instrument
from portal.core import audit, clock, held_uploads, uploads
from portal.core.database import insert_ignore, locked, serialized_write
from portal.core.errors import Forbidden, InvalidTransition, LimitExceeded, NotFound, ValidationFailed
from portal.core.locks import Rank, lock_one, lock_where
from portal.core.permissions import BUREAU_ROLES, Role
from portal.core.text import normalize
from portal.extensions import db
from portal.vouchers.models import (
    DEFAULT_RANKING_WEIGHTS,
    ApplicationState,
    CapLedger,
    Claim,
    ClaimItem,
    ClaimState,
    EnterpriseRelation,
    Fund,
    LedgerEntry,
    LedgerKind,
    RelationKind,
    RequestState,
    Scheme,
    VerificationRequest,
    Voucher,
    VoucherApplication,
    VoucherState,
)
from portal.vouchers.rules import FundRule, Subsidy, SubsidyInput, compute_subsidy

REVIEW_ROLES = (Role.REVIEWER, Role.ADMIN)
EVIDENCE = (FileKind.CONTRACT, FileKind.INVOICE, FileKind.RECEIPT)

# The claim's state machine, in one place: (state, action) -> new state.
CLAIM_TRANSITIONS: dict[tuple[ClaimState, str], ClaimState | None] = {
    (ClaimState.DRAFT, "submit"): ClaimState.SUBMITTED,
    (ClaimState.DRAFT, "delete"): None,  # a draft reserves nothing and is simply thrown away
    (ClaimState.RETURNED, "revise"): ClaimState.RETURNED,  # a reply, a replaced file
    (ClaimState.RETURNED, "submit"): ClaimState.SUBMITTED,
    # Above the four-eyes threshold the first approval leads to PENDING_SECOND, the second here.
    (ClaimState.SUBMITTED, "approve"): ClaimState.IN_NOTICE,
    (ClaimState.PENDING_SECOND, "approve"): ClaimState.IN_NOTICE,
    (ClaimState.SUBMITTED, "reject"): ClaimState.REJECTED,
    (ClaimState.PENDING_SECOND, "reject"): ClaimState.REJECTED,
    (ClaimState.SUBMITTED, "return"): ClaimState.RETURNED,
    (ClaimState.PENDING_SECOND, "return"): ClaimState.RETURNED,
    (ClaimState.IN_NOTICE, "end_notice"): ClaimState.PAYABLE,
    (ClaimState.PAYABLE, "pay"): ClaimState.PAID,
}
# The voucher application's, likewise.
APPLICATION_TRANSITIONS: dict[tuple[ApplicationState, str], ApplicationState] = {
    (ApplicationState.SUBMITTED, "approve"): ApplicationState.APPROVED,
    (ApplicationState.PENDING_SECOND, "approve"): ApplicationState.APPROVED,
    (ApplicationState.SUBMITTED, "reject"): ApplicationState.REJECTED,
    (ApplicationState.PENDING_SECOND, "reject"): ApplicationState.REJECTED,
    (ApplicationState.SUBMITTED, "return"): ApplicationState.RETURNED,
    (ApplicationState.PENDING_SECOND, "return"): ApplicationState.RETURNED,
    (ApplicationState.RETURNED, "resubmit"): ApplicationState.SUBMITTED,
}
DECISIONS = ("approve", "reject", "return")


# --- schemes ------------------------------------------------------------------------------------


def current_scheme(today: date | None = None) -> Scheme | None:
    """The scheme of this year (Beijing time), or None before the bureau has set one up."""
    year = (today or clock.local_today()).year
    return db.session.scalar(select(Scheme).where(Scheme.year == year).options(selectinload(Scheme.funds)))


def require_scheme() -> Scheme:
    scheme = current_scheme()
    if scheme is None:
        raise NotFound(_("There is no voucher scheme for this year yet."))
    return scheme


@dataclass(frozen=True)
class FundSettings:
    name: str
    rate: Decimal
    condition: str
    budget_fen: int
    enterprise_capped: bool = False
    label: str = ""


def save_scheme(user: User, values: dict[str, Any], funds: list[FundSettings]) -> Scheme:
    """Create or update the scheme of a year (administrators); budgets never drop below what is committed."""
    if user.role is not Role.ADMIN:
        raise Forbidden(_("Only administrators set up voucher schemes."))
    fields: dict[str, str] = {}
    if values["service_window_start"] > values["service_window_end"]:
        fields["service_window_end"] = _("The window ends before it starts.")
    for fund in funds:
        if not Decimal(0) <= fund.rate <= Decimal(1):
            fields[f"{fund.name}_rate"] = _("A rate between 0 and 1, e.g. 0.60.")
    if values.get("ranking_weights") is not None:
        fields.update(_check_ranking_weights(values["ranking_weights"]))
    if fields:
        raise ValidationFailed(_("Please correct the marked fields."), fields)
    with serialized_write():
        scheme = next(iter(lock_where(Rank.SCHEME, Scheme, Scheme.year == values["year"])), None)
        before = None
        if scheme is None:
            scheme = Scheme(allocated_fen=0, **values)
            db.session.add(scheme)
            db.session.flush()
        else:
            before = _scheme_snapshot(scheme)
            for key, value in values.items():
                setattr(scheme, key, value)
        existing = {f.name: f for f in lock_where(Rank.FUNDS, Fund, Fund.scheme_id == scheme.id)}
        for position, settings in enumerate(funds):
            fund = existing.get(settings.name) or Fund(
                scheme_id=scheme.id, name=settings.name, committed_fen=0, paid_fen=0
            )
            if settings.budget_fen < fund.committed_fen:
                message = _(
                    "The budget cannot be below what is already committed (%(amount)s).",
                    amount=_yuan(fund.committed_fen),
                )
                raise ValidationFailed(message, {f"{settings.name}_budget": message})
            fund.position, fund.rate, fund.condition = position, settings.rate, settings.condition
            fund.budget_fen, fund.enterprise_capped = settings.budget_fen, settings.enterprise_capped
            fund.label = settings.label
            db.session.add(fund)
        db.session.flush()
        db.session.refresh(scheme)
        audit.record(
            "scheme.saved",
            "scheme",
            scheme.year,
            before=before,
            after=_scheme_snapshot(scheme),
            actor_id=user.id,
        )
        db.session.commit()
    return scheme


def _check_ranking_weights(weights: dict[str, str]) -> dict[str, str]:
    """Field errors of a set of ranking weights: each 0..1, and not all zero (nothing to rank by)."""
    fields: dict[str, str] = {}
    values: list[Decimal] = []
    for key in DEFAULT_RANKING_WEIGHTS:
        try:
            value = Decimal(str(weights.get(key, "0")))
        except ArithmeticError:
            value = Decimal(-1)
        if not value.is_finite() or not Decimal(0) <= value <= Decimal(1):
            fields[f"weight_{key}"] = _("A weight between 0 and 1, e.g. 0.25.")
        values.append(value)
    if not fields and not any(value > 0 for value in values):
        # No form field has this name, so the page shows it above the form.
        fields["ranking_weights"] = _("At least one ranking weight must be above 0.")
    return fields


def _scheme_snapshot(scheme: Scheme) -> dict[str, Any]:
    return {
        "enterprise_cap_fen": scheme.enterprise_cap_fen,
        "group_cap_fen": scheme.group_cap_fen,
        "four_eyes_threshold_fen": scheme.four_eyes_threshold_fen,
        "public_notice_days": scheme.public_notice_days,
        "voucher_validity_days": scheme.voucher_validity_days,
        "funds": {f.name: {"rate": str(f.rate), "budget_fen": f.budget_fen} for f in scheme.funds},
        "ranking_weights": scheme.ranking_weights,
    }


def schemes_by_year() -> list[Scheme]:
    """Every yearly scheme with its funds, the latest year first."""
    return list(
        db.session.scalars(select(Scheme).options(selectinload(Scheme.funds)).order_by(Scheme.year.desc()))
    )


def _a_year_later(day: date) -> date:
    try:
        return day.replace(year=day.year + 1)
    except ValueError:  # 29 February
        return day.replace(year=day.year + 1, day=28)


def copy_scheme_to_next_year(user: User, year: int) -> Scheme:
    """Make next year's scheme from this one: same funds, rates, budgets, caps and rules, dates a year on.

    Nothing is committed or paid in the new year yet; a year that already has a scheme is left alone.
    """
    if user.role is not Role.ADMIN:
        raise Forbidden(_("Only administrators set up voucher schemes."))
    source = db.session.scalar(select(Scheme).where(Scheme.year == year).options(selectinload(Scheme.funds)))
    if source is None:
        raise NotFound(_("There is no scheme for %(year)d.", year=year))
    target = year + 1
    exists = _("There is already a scheme for %(year)d; change it in its settings instead.", year=target)
    if not clock.plausible_year(target):
        raise ValidationFailed(_("Enter a date between 2000 and 2099."), {"year": _("Out of range.")})
    if db.session.scalar(select(Scheme.id).where(Scheme.year == target)):
        raise ValidationFailed(exists, {"year": exists})
    scheme = Scheme(
        year=target,
        name=source.name.replace(str(year), str(target))
        if str(year) in source.name
        else f"{source.name} {target}",
        enterprise_cap_fen=source.enterprise_cap_fen,
        group_cap_fen=source.group_cap_fen,
        voucher_validity_days=source.voucher_validity_days,
        service_window_start=_a_year_later(source.service_window_start),
        service_window_end=_a_year_later(source.service_window_end),
        public_notice_days=source.public_notice_days,
        four_eyes_threshold_fen=source.four_eyes_threshold_fen,
        excluded_service_types=list(source.excluded_service_types or []),
        ranking_weights=dict(source.ranking_weights) if source.ranking_weights is not None else None,
        allocated_fen=0,
    )
    scheme.funds = [
        Fund(
            name=fund.name,
            label=fund.label,
            position=fund.position,
            rate=fund.rate,
            condition=fund.condition,
            enterprise_capped=fund.enterprise_capped,
            budget_fen=fund.budget_fen,
            committed_fen=0,
            paid_fen=0,
        )
        for fund in source.funds
    ]
    db.session.add(scheme)
    try:
        db.session.flush()
        audit.record(
            "scheme.copied",
            "scheme",
            target,
            after={"copied_from": year, **_scheme_snapshot(scheme)},
            actor_id=user.id,
        )
        db.session.commit()
    except IntegrityError:  # another administrator made it a moment ago
        db.session.rollback()
        raise ValidationFailed(exists, {"year": exists}) from None
    return scheme


# --- enterprise verification --------------------------------------------------------------------


def controller_key(actual_controller: str | None) -> str | None:
    """The group key of an actual controller (case, width and spacing do not make another group)."""
    key = normalize(actual_controller).replace(" ", "")
    return key or None


@dataclass(frozen=True)
class VerificationData:
    kind: EnterpriseKind
    actual_controller: str
    tech_sme_number: str | None = None
    related_institution_id: int | None = None
    relation_kind: RelationKind | None = None


def submit_verification(
    user: User,
    data: VerificationData,
    certificate=None,
    filename: str | None = None,
    *,
    stored: uploads.StoredFile | None = None,
) -> VerificationRequest:
    """The enterprise asks to be verified, with its type, evidence and actual controller.

    The certificate comes as a stream to check and store, or already checked and stored (`stored`,
    e.g. held from an earlier attempt of the form).
    """
    if user.role is not Role.ENTERPRISE:
        raise Forbidden(_("Only enterprise accounts are verified."))
    kind = EnterpriseKind(data.kind)
    fields: dict[str, str] = {}
    if not data.actual_controller.strip():
        fields["actual_controller"] = _("Name the actual controller (a person or a company).")
    if kind is EnterpriseKind.TECH_SME and not (data.tech_sme_number or "").strip():
        fields["tech_sme_number"] = _("Tech SMEs give their registration number.")
    if kind is EnterpriseKind.TECH_SME and certificate is None and stored is None:
        fields["certificate"] = _("Attach the registration certificate.")
    if fields:
        raise ValidationFailed(_("Please correct the marked fields."), fields)
    enterprise_id = user.enterprise_id
    if db.session.scalar(
        select(VerificationRequest.id).where(
            VerificationRequest.enterprise_id == enterprise_id,
            VerificationRequest.state == RequestState.SUBMITTED,
        )
    ):
        raise InvalidTransition(_("Your enterprise is already waiting for verification."))
    if certificate is not None:
        try:
            stored = uploads.store_upload(certificate, filename)
        except ValidationFailed as error:
            raise ValidationFailed(error.message, {"certificate": error.message}) from None
    try:
        with serialized_write():
            if stored:
                held_uploads.settle(stored.stored_name)  # before the commit: at worst an unused file stays
            request = VerificationRequest(
                enterprise_id=enterprise_id,
                kind=kind,
                tech_sme_number=(data.tech_sme_number or "").strip() or None,
                actual_controller=data.actual_controller.strip()[:120],
                submitted_by_id=user.id,
                submitted_at=clock.utcnow(),
            )
            if stored:
                request.certificate_name, request.certificate_stored = (
                    stored.original_name,
                    stored.stored_name,
                )
                request.certificate_type, request.certificate_size = stored.content_type, stored.size
            db.session.add(request)
            if data.related_institution_id and data.relation_kind:
                insert_ignore(
                    EnterpriseRelation,
                    {
                        "enterprise_id": enterprise_id,
                        "institution_id": data.related_institution_id,
                        "kind": data.relation_kind.value,
                        "declared_by_id": user.id,
                        "created_at": clock.utcnow(),
                    },
                )
            enterprise = db.session.get(Enterprise, enterprise_id)
            if enterprise.verification_state is EnterpriseState.REJECTED:
                enterprise.verification_state = EnterpriseState.PENDING
            db.session.flush()
            audit.record(
                "verification.submitted",
                "enterprise",
                enterprise_id,
                after={
                    "request": request.id,
                    "kind": kind.value,
                    "actual_controller": request.actual_controller,
                },
                actor_id=user.id,
            )
            db.session.commit()
    except BaseException:
        if stored:
            uploads.discard(stored.stored_name)
        raise
    return request


def _tell_enterprise(enterprise_id: int, kind: str, key: str, link: str, **payload: Any) -> None:
    from portal.notifications.services import notify, users_of_enterprise

    notify(users_of_enterprise(enterprise_id), kind, key, payload=payload, link=link)


def tell_about_claim(claim: Claim, event: str, *, repeatable: bool = False, **payload: Any) -> None:
    """Notify the claim's enterprise of `event`; a repeatable event (a return, say) may recur."""
    key = f"claim:{claim.id}:{event}" + (f":{clock.utcnow().timestamp()}" if repeatable else "")
    _tell_enterprise(
        claim.enterprise_id,
        f"claim.{event}",
        key,
        f"/vouchers/claims/{claim.id}",
        claim=claim.id,
        amount=_yuan(claim.total_fen),
        **payload,
    )


def _require_reviewer(user: User) -> None:
    if not user.is_authenticated or user.role not in REVIEW_ROLES:
        raise Forbidden(_("Only bureau reviewers can decide this."))


def decide_verification(
    reviewer: User, request_id: int, *, verify: bool, reason: str | None = None, uscc_override: bool = False
) -> VerificationRequest:
    """The reviewer verifies or rejects; a legacy credit code needs an explicit, reasoned override."""
    _require_reviewer(reviewer)
    reason = (reason or "").strip() or None
    with serialized_write():
        request = locked(VerificationRequest, request_id)
        if request is None:
            raise NotFound(_("No such verification request."))
        if request.state is not RequestState.SUBMITTED:
            raise InvalidTransition(_("This request has already been decided."))
        enterprise = db.session.get(Enterprise, request.enterprise_id)
        if not verify and not reason:
            raise ValidationFailed(_("Please give a reason."), {"reason": _("Required.")})
        if verify and not enterprise.uscc_checksum_ok and not (uscc_override and reason):
            message = _(
                "The credit code fails its checksum: verify only with an override and a recorded reason."
            )
            raise ValidationFailed(message, {"uscc_override": message})
        before = enterprise.verification_state.value
        request.state = RequestState.VERIFIED if verify else RequestState.REJECTED
        request.decided_by_id, request.decided_at = reviewer.id, clock.utcnow()
        request.reason, request.uscc_override = reason, bool(verify and uscc_override)
        if verify:
            enterprise.verification_state = EnterpriseState.VERIFIED
            enterprise.kind = request.kind
            enterprise.tech_sme_number = request.tech_sme_number
            enterprise.actual_controller = request.actual_controller
            enterprise.controller_group = controller_key(request.actual_controller)
            enterprise.verified_at = clock.utcnow()
        else:
            enterprise.verification_state = EnterpriseState.REJECTED
        _tell_enterprise(
            enterprise.id,
            "verification.verified" if verify else "verification.rejected",
            f"verification:{request.id}",
            "/vouchers/",
            enterprise=enterprise.name,
            reason=reason or "",
        )
        audit.record(
            "enterprise.verified" if verify else "enterprise.rejected",
            "enterprise",
            enterprise.id,
            before={"state": before},
            after={"state": enterprise.verification_state.value, "uscc_override": request.uscc_override},
            reason=reason,
            actor_id=reviewer.id,
        )
        db.session.commit()
    return request


def add_relation(user: User, enterprise_id: int, institution_id: int, kind: RelationKind) -> None:
    """Record a relation between an enterprise and a provider (reviewers, or the enterprise itself)."""
    if not (
        user.role in REVIEW_ROLES or (user.role is Role.ENTERPRISE and user.enterprise_id == enterprise_id)
    ):
        raise Forbidden(_("You may not declare relations for this enterprise."))
    if db.session.get(Institution, institution_id) is None:
        raise ValidationFailed(
            _("Unknown host institution."), {"institution": _("Unknown host institution.")}
        )
    with serialized_write():
        insert_ignore(
            EnterpriseRelation,
            {
                "enterprise_id": enterprise_id,
                "institution_id": institution_id,
                "kind": kind.value,
                "declared_by_id": user.id,
                "created_at": clock.utcnow(),
            },
        )
        audit.record(
            "enterprise.relation_declared",
            "enterprise",
            enterprise_id,
            after={"institution": institution_id, "kind": kind.value},
            actor_id=user.id,
        )
        db.session.commit()


# --- voucher applications and vouchers ----------------------------------------------------------


def _require_verified_enterprise(user: User) -> Enterprise:
    if not user.is_authenticated or user.role is not Role.ENTERPRISE:
        raise Forbidden(_("Only enterprise accounts can do this."))
    enterprise = db.session.get(Enterprise, user.enterprise_id)
    if enterprise.verification_state is not EnterpriseState.VERIFIED:
        raise Forbidden(_("Your enterprise must be verified by the bureau first."))
    return enterprise


def apply_for_voucher(user: User, amount_fen: int, plan: str) -> VoucherApplication:
    """A verified enterprise applies for this year's quota with a short plan (its account holder only)."""
    enterprise = _require_verified_enterprise(user)
    require_holder(user)
    scheme = require_scheme()
    _check_application(scheme, amount_fen, plan)
    with serialized_write():
        open_states = (ApplicationState.SUBMITTED, ApplicationState.PENDING_SECOND, ApplicationState.RETURNED)
        if db.session.scalar(
            select(VoucherApplication.id).where(
                VoucherApplication.enterprise_id == enterprise.id,
                VoucherApplication.scheme_id == scheme.id,
                VoucherApplication.state.in_([*open_states, ApplicationState.APPROVED]),
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


def resubmit_application(user: User, application_id: int, amount_fen: int, plan: str) -> VoucherApplication:
    """After a return, the enterprise's account holder corrects and submits again."""
    require_holder(user)
    with serialized_write():
        application = _own_application(user, application_id)
        if application.state is not ApplicationState.RETURNED:
            raise InvalidTransition(_("Only a returned application can be submitted again."))
        _check_application(application.scheme, amount_fen, plan)
        application.amount_fen, application.plan = amount_fen, plan.strip()
        application.state, application.first_reviewer_id, application.submitted_at = (
            ApplicationState.SUBMITTED,
            None,
            clock.utcnow(),
        )
        audit.record(
            "voucher_application.submitted",
            "voucher_application",
            application.id,
            before={"state": "returned"},
            after={"state": "submitted", "amount_fen": amount_fen},
            actor_id=user.id,
        )
        db.session.commit()
    return application


def _own_application(user: User, application_id: int) -> VoucherApplication:
    application = db.session.get(VoucherApplication, application_id)
    if application is None or not can_view_enterprise_object(user, application.enterprise_id):
        raise NotFound(_("No such voucher application."))
    return application


def can_view_enterprise_object(user: User, enterprise_id: int) -> bool:
    """Vouchers, applications and claims are the enterprise's own business and the bureau's."""
    if not user.is_authenticated:
        return False
    if user.role is Role.ENTERPRISE:
        return user.enterprise_id == enterprise_id
    return user.role in BUREAU_ROLES


def get_application(user: User, application_id: int) -> VoucherApplication:
    return _own_application(user, application_id)


# --- who may do what: the pages ask these instead of working the rules out again ---------------


def _is_reviewer(user: User) -> bool:
    return user.is_authenticated and user.role in REVIEW_ROLES


def _approved_once_by(user: User, item: Claim | VoucherApplication) -> bool:
    """Whether the user gave the first of the two approvals this item waits for (four eyes)."""
    return item.state.value == "pending_second" and item.first_reviewer_id == user.id


def _enterprise_of(user: User, claim: Claim) -> bool:
    return (
        user.is_authenticated and user.role is Role.ENTERPRISE and user.enterprise_id == claim.enterprise_id
    )


def can_decide_claim(user: User, claim: Claim) -> bool:
    """A reviewer may reject or return a claim that waits for a decision."""
    return _is_reviewer(user) and (claim.state, "reject") in CLAIM_TRANSITIONS


def can_approve_claim(user: User, claim: Claim) -> bool:
    """...and approve it, unless they gave its first approval: the second must be someone else's."""
    return can_decide_claim(user, claim) and not _approved_once_by(user, claim)


def can_submit_claim(user: User, claim: Claim) -> bool:
    """The enterprise's account holder submits a draft or a corrected claim."""
    return _enterprise_of(user, claim) and is_holder(user) and (claim.state, "submit") in CLAIM_TRANSITIONS


def can_revise_claim(user: User, claim: Claim) -> bool:
    """The holder corrects a returned claim (a reply, replaced files) before submitting it again."""
    return _enterprise_of(user, claim) and is_holder(user) and (claim.state, "revise") in CLAIM_TRANSITIONS


def can_delete_claim(user: User, claim: Claim) -> bool:
    return _enterprise_of(user, claim) and (claim.state, "delete") in CLAIM_TRANSITIONS


def can_decide_application(user: User, application: VoucherApplication) -> bool:
    return _is_reviewer(user) and (application.state, "reject") in APPLICATION_TRANSITIONS


def can_approve_application(user: User, application: VoucherApplication) -> bool:
    return can_decide_application(user, application) and not _approved_once_by(user, application)


def can_decide_verification(user: User, request: VerificationRequest) -> bool:
    return _is_reviewer(user) and request.state is RequestState.SUBMITTED


def _four_eyes(scheme: Scheme, amount_fen: int) -> bool:
    return amount_fen > scheme.four_eyes_threshold_fen


def _voucher_code(scheme: Scheme) -> str:
    return f"LC{scheme.year}-{secrets.token_hex(4).upper()}"


def decide_application(
    reviewer: User,
    application_id: int,
    action: str,
    *,
    amount_fen: int | None = None,
    comment: str | None = None,
) -> VoucherApplication:
    """Approve (an amount within caps and the free budget), reject, or return for correction."""
    _require_reviewer(reviewer)
    comment = (comment or "").strip() or None
    with serialized_write():
        application = lock_one(Rank.APPLICATION, VoucherApplication, application_id)
        if application is None:
            raise NotFound(_("No such voucher application."))
        state = application.state
        if (state, "reject") not in APPLICATION_TRANSITIONS:
            raise InvalidTransition(_("This application has already been decided."))
        if action in ("reject", "return"):
            if not comment:
                raise ValidationFailed(_("Please give a reason."), {"comment": _("Required.")})
            application.state = ApplicationState.REJECTED if action == "reject" else ApplicationState.RETURNED
            application.decided_by_id, application.decided_at, application.comment = (
                reviewer.id,
                clock.utcnow(),
                comment,
            )
            _audit_application(application, state, reviewer, comment)
            _tell_enterprise(
                application.enterprise_id,
                f"application.{application.state.value}",
                f"application:{application.id}:{application.state.value}:{clock.utcnow().timestamp()}",
                "/vouchers/" if action == "reject" else f"/vouchers/applications/{application.id}/resubmit",
                reason=comment,
            )
            db.session.commit()
            return application
        if action != "approve":
            raise ValidationFailed(_("Unknown decision."), {"action": _("Unknown decision.")})
        scheme = lock_one(Rank.SCHEME, Scheme, application.scheme_id)
        if state is ApplicationState.PENDING_SECOND:
            if reviewer.id == application.first_reviewer_id:
                raise Forbidden(
                    _("A second reviewer must confirm this: you cannot approve your own approval.")
                )
            amount = application.first_amount_fen
        else:
            amount = amount_fen if amount_fen is not None else application.amount_fen
        _check_allocation(scheme, application, amount)
        if state is ApplicationState.SUBMITTED and _four_eyes(scheme, amount):
            application.state, application.first_reviewer_id, application.first_amount_fen = (
                ApplicationState.PENDING_SECOND,
                reviewer.id,
                amount,
            )
            _audit_application(application, state, reviewer, comment, amount_fen=amount)
            from portal.notifications.services import notify, users_with_role

            # As for claims: the other reviewers learn that a second approval is waiting for them.
            notify(
                [u for u in users_with_role(Role.REVIEWER) if u.id != reviewer.id],
                "voucher_application.second_review",
                f"voucher_application:{application.id}:second_review",
                payload={"application": application.id, "amount": _yuan(amount)},
                link=f"/review/applications/{application.id}",
            )
            db.session.commit()
            return application
        today = clock.local_today()
        voucher = Voucher(
            code=_voucher_code(scheme),
            enterprise_id=application.enterprise_id,
            scheme_id=scheme.id,
            application_id=application.id,
            quota_fen=amount,
            balance_fen=amount,
            released_fen=0,
            issued_at=clock.utcnow(),
            valid_until=today + timedelta(days=scheme.voucher_validity_days),
            state=VoucherState.ACTIVE,
        )
        db.session.add(voucher)
        scheme.allocated_fen += amount
        application.state, application.decided_by_id, application.decided_at = (
            ApplicationState.APPROVED,
            reviewer.id,
            clock.utcnow(),
        )
        application.comment = comment
        db.session.flush()
        db.session.add(
            LedgerEntry(
                voucher_id=voucher.id, kind=LedgerKind.ISSUED, amount_fen=amount, balance_after_fen=amount
            )
        )
        _audit_application(application, state, reviewer, comment, amount_fen=amount, voucher=voucher.code)
        _tell_enterprise(
            application.enterprise_id,
            "application.approved",
            f"application:{application.id}:approved",
            f"/vouchers/voucher/{voucher.id}",
            code=voucher.code,
            amount=_yuan(amount),
            valid_until=str(voucher.valid_until),
        )
        db.session.commit()
    return application


def _check_allocation(scheme: Scheme, application: VoucherApplication, amount: int) -> None:
    if not 0 < amount <= scheme.group_cap_fen:
        raise ValidationFailed(_("Between 0.01 yuan and the yearly cap."), {"amount_fen": _("Out of range.")})
    free = scheme.budget_fen - scheme.allocated_fen
    if amount > free:
        raise LimitExceeded(
            _("Only %(free)s of the scheme's budget is not yet allocated.", free=_yuan(free)),
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
            _("The controller group has only %(left)s of its yearly cap left.", left=_yuan(max(0, left))),
            {"limited_by": ["group_cap"], "free_fen": max(0, left)},
        )


def _same_group(enterprise: Enterprise):
    if enterprise.controller_group:
        return Enterprise.controller_group == enterprise.controller_group
    return Enterprise.id == enterprise.id


def _audit_application(application, before_state, reviewer, comment, **extra) -> None:
    audit.record(
        f"voucher_application.{application.state.value}",
        "voucher_application",
        application.id,
        before={"state": before_state.value},
        after={"state": application.state.value, **extra},
        reason=comment,
        actor_id=reviewer.id,
    )


def _yuan(fen: int) -> str:
    from portal.core.money import format_yuan

    return format_yuan(fen)


def vouchers_for(user: User) -> list[Voucher]:
    stmt = (
        select(Voucher)
        .options(joinedload(Voucher.scheme), selectinload(Voucher.ledger))
        .order_by(Voucher.id.desc())
    )
    if user.role is Role.ENTERPRISE:
        stmt = stmt.where(Voucher.enterprise_id == user.enterprise_id)
    elif user.role not in BUREAU_ROLES:
        return []
    return list(db.session.scalars(stmt))


def get_voucher(user: User, voucher_id: int) -> Voucher:
    voucher = db.session.get(
        Voucher, voucher_id, options=[selectinload(Voucher.ledger), joinedload(Voucher.scheme)]
    )
    if voucher is None or not can_view_enterprise_object(user, voucher.enterprise_id):
        raise NotFound(_("No such voucher."))
    return voucher


def expire_vouchers(today: date | None = None) -> int:
    """Vouchers past their validity expire; their unused balance returns to the scheme's budget."""
    today = today or clock.local_today()
    due = db.session.scalars(
        select(Voucher.id).where(Voucher.state == VoucherState.ACTIVE, Voucher.valid_until < today)
    ).all()
    for voucher_id in due:
        # A voucher never changes scheme: read it unlocked, so the scheme is locked before the voucher.
        scheme_id = db.session.scalar(select(Voucher.scheme_id).where(Voucher.id == voucher_id))
        with serialized_write():
            scheme = lock_one(Rank.SCHEME, Scheme, scheme_id)
            voucher = lock_one(Rank.VOUCHERS, Voucher, voucher_id)
            if voucher.state is not VoucherState.ACTIVE:
                continue
            unused = voucher.balance_fen
            voucher.state, voucher.balance_fen, voucher.released_fen = VoucherState.EXPIRED, 0, unused
            scheme.allocated_fen -= unused
            db.session.add(
                LedgerEntry(
                    voucher_id=voucher.id, kind=LedgerKind.RELEASED, amount_fen=unused, balance_after_fen=0
                )
            )
            audit.record(
                "voucher.expired",
                "voucher",
                voucher.id,
                before={"state": "active", "balance_fen": unused},
                after={"state": "expired", "released_fen": unused},
            )
            db.session.commit()
    return len(due)


# --- claims: checks and subsidy -----------------------------------------------------------------


@dataclass
class Check:
    code: str
    passed: bool
    message: str

    def as_dict(self) -> dict[str, Any]:
        return {"code": self.code, "passed": self.passed, "message": self.message}


def _records(record_ids: list[int]) -> list[ServiceRecord]:
    return list(
        db.session.scalars(
            select(ServiceRecord)
            .where(ServiceRecord.id.in_(record_ids))
            .options(
                joinedload(ServiceRecord.booking)
                .joinedload(Booking.instrument)
                .joinedload(Instrument.institution),
                selectinload(ServiceRecord.files),
            )
            .order_by(ServiceRecord.id)
            .execution_options(populate_existing=True)
        )
    )


def _service_day(record: ServiceRecord) -> date:
    booking = record.booking
    if booking.mode is BookingMode.SLOT and booking.starts_at:
        return clock.to_local(booking.starts_at).date()
    return clock.to_local(record.recorded_at).date()


# Per check: (code, the message when every service passes, [(service record id, why it fails)]).
CheckFailures = list[tuple[str, str, list[tuple[int, str]]]]
# What the enterprise itself can still put right on a service before claiming it.
FIXABLE_CHECKS = frozenset({"service_completed", "evidence"})


def _check_records(
    enterprise: Enterprise, scheme: Scheme, records: list[ServiceRecord], claim_id: int | None = None
) -> CheckFailures:
    """Every automatic check over these services, with the services that fail each and why."""
    results: CheckFailures = []

    def add(code: str, failures: list[tuple[int, str]], ok: str) -> None:
        results.append((code, ok, failures))

    add(
        "service_completed",
        [
            (r.id, _("Service #%(id)d is not completed and rated.", id=r.id))
            for r in records
            if r.booking.state is not BookingState.COMPLETED or r.rating is None
        ],
        _("Every service is completed and rated by the enterprise."),
    )
    missing = []
    for r in records:
        kinds = {f.kind for f in r.files if f.replaced_at is None}
        lacking = [k for k in EVIDENCE if k not in kinds]
        if lacking:
            names = ", ".join(str(_file_label(k)) for k in lacking)
            missing.append((r.id, _("Service #%(id)d lacks: %(kinds)s.", id=r.id, kinds=names)))
    add("evidence", missing, _("Contract, invoice and payment receipt are attached to every service."))
    add(
        "service_window",
        [
            (
                r.id,
                _(
                    "Service #%(id)d took place on %(day)s, outside the scheme's window.",
                    id=r.id,
                    day=_service_day(r),
                ),
            )
            for r in records
            if not scheme.service_window_start <= _service_day(r) <= scheme.service_window_end
        ],
        _(
            "Every service lies inside %(start)s to %(end)s.",
            start=scheme.service_window_start,
            end=scheme.service_window_end,
        ),
    )
    relations = {
        institution_id: kind
        for institution_id, kind in db.session.execute(
            select(EnterpriseRelation.institution_id, EnterpriseRelation.kind).where(
                EnterpriseRelation.enterprise_id == enterprise.id
            )
        )
    }
    related = []
    for r in records:
        host = r.booking.instrument.institution
        if host.uscc and host.uscc == enterprise.uscc:
            related.append((r.id, _("%(host)s has the enterprise's own credit code.", host=host.name)))
        elif enterprise.controller_group and host.controller_group == enterprise.controller_group:
            related.append(
                (r.id, _("%(host)s has the same actual controller as the enterprise.", host=host.name))
            )
        elif host.id in relations:
            related.append((r.id, _("The enterprise declared a relation with %(host)s.", host=host.name)))
    add("related_party", related, _("No provider is related to the enterprise."))
    twice = [
        (r.id, _("Service #%(id)d is already in claim #%(claim)d.", id=r.id, claim=r.claim_id))
        for r in records
        if r.claim_id is not None and r.claim_id != claim_id
    ]
    add("claimed_twice", twice, _("No service has been claimed before."))
    excluded = set(scheme.excluded_service_types or [])
    add(
        "excluded_service",
        [
            (r.id, _("Service #%(id)d is of an excluded type.", id=r.id))
            for r in records
            if r.service_type in excluded
        ],
        _("No service is of an excluded type (statutory testing, mandatory certification)."),
    )
    over = []
    for r in records:
        booking = r.booking
        if booking.mode is BookingMode.SLOT and r.hours is not None and booking.starts_at:
            booked = Decimal((booking.ends_at - booking.starts_at).total_seconds()) / 3600
            if r.hours > booked:
                over.append(
                    (
                        r.id,
                        _(
                            "Service #%(id)d bills %(billed)s hours for %(booked)s booked.",
                            id=r.id,
                            billed=r.hours,
                            booked=booked.normalize(),
                        ),
                    )
                )
    add("hours_within_booking", over, _("No service bills more hours than were booked."))
    return results


def run_checks(
    enterprise: Enterprise, scheme: Scheme, records: list[ServiceRecord], claim_id: int | None = None
) -> list[Check]:
    """The automatic checks a reviewer sees, each with its reason (all must pass before approval)."""
    checks = []
    for code, ok, failures in _check_records(enterprise, scheme, records, claim_id):
        # Several services of one provider fail the related-party check for the same reason: say it once.
        reasons = list(dict.fromkeys(message for _record, message in failures))
        checks.append(Check(code, not reasons, "; ".join(reasons) if reasons else ok))
    return checks


def checks_per_service(
    enterprise: Enterprise, scheme: Scheme, records: list[ServiceRecord]
) -> dict[int, list[Check]]:
    """The same checks service by service: what stops each one from passing (nothing: it can pass)."""
    failed: dict[int, list[Check]] = {r.id: [] for r in records}
    for code, _ok, failures in _check_records(enterprise, scheme, records):
        for record_id, message in failures:
            failed[record_id].append(Check(code, False, message))
    return failed


def _file_label(kind: FileKind) -> str:
    from portal.booking.models import FILE_KIND_LABELS

    return FILE_KIND_LABELS[kind]


def _cap_used(scheme: Scheme, scope: str, key: str) -> int:
    used = db.session.scalar(
        select(CapLedger.used_fen).where(
            CapLedger.scheme_id == scheme.id, CapLedger.scope == scope, CapLedger.key == key
        )
    )
    return used or 0


def _lock_caps(scheme: Scheme, enterprise: Enterprise) -> tuple[CapLedger, CapLedger]:
    """The enterprise's and its controller group's cap rows (made at first use), locked in one step."""
    keys = {"enterprise": str(enterprise.id), "group": enterprise.group_key}
    for scope, key in keys.items():
        insert_ignore(CapLedger, {"scheme_id": scheme.id, "scope": scope, "key": key, "used_fen": 0})
    rows = lock_where(
        Rank.CAPS,
        CapLedger,
        CapLedger.scheme_id == scheme.id,
        or_(*(and_(CapLedger.scope == scope, CapLedger.key == key) for scope, key in keys.items())),
        order_by=CapLedger.scope,  # "enterprise" before "group", as the lock order says
    )
    caps = {row.scope: row for row in rows}
    return caps["enterprise"], caps["group"]


def subsidy_for(
    enterprise: Enterprise, scheme: Scheme, voucher: Voucher, fee_fen: int, provider_is_local: bool
) -> Subsidy:
    """The subsidy these services would get now, from the current remaining budgets, caps and balance."""
    funds = sorted(scheme.funds, key=lambda f: f.position)
    return compute_subsidy(
        SubsidyInput(
            fee_fen=fee_fen,
            provider_is_local=provider_is_local,
            funds=tuple(
                FundRule(f.name, f.rate, f.free_fen, f.condition.value, f.enterprise_capped) for f in funds
            ),
            enterprise_remaining_fen=scheme.enterprise_cap_fen
            - _cap_used(scheme, "enterprise", str(enterprise.id)),
            group_remaining_fen=scheme.group_cap_fen - _cap_used(scheme, "group", enterprise.group_key),
            voucher_balance_fen=voucher.balance_fen if voucher.state is VoucherState.ACTIVE else 0,
        )
    )


@dataclass
class Preview:
    fee_fen: int
    subsidy: Subsidy
    checks: list[Check]
    records: list[ServiceRecord]

    def as_dict(self) -> dict[str, Any]:
        return {
            "fee_fen": self.fee_fen,
            "funds": [
                {"fund": f.fund, "raw_fen": f.raw_fen, "amount_fen": f.amount_fen} for f in self.subsidy.funds
            ],
            "total_fen": self.subsidy.total_fen,
            "limited_by": list(self.subsidy.limited_by),
            "checks": [c.as_dict() for c in self.checks],
        }


def _claim_inputs(
    user: User, voucher_id: int, record_ids: list[int]
) -> tuple[Enterprise, Voucher, list[ServiceRecord]]:
    enterprise = _require_verified_enterprise(user)
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
    records = _records(unique_ids)
    if len(records) != len(unique_ids) or any(r.booking.enterprise_id != enterprise.id for r in records):
        raise NotFound(_("Some of these services are not your enterprise's."))
    if len({r.booking.instrument.institution_id for r in records}) > 1:
        message = _("One claim covers the services of one provider; make a claim per provider.")
        raise ValidationFailed(message, {"service_record_ids": message})
    return enterprise, voucher, records


def _provider_is_local(records: list[ServiceRecord]) -> bool:
    return all(r.booking.instrument.institution.is_local for r in records)


def preview_claim(user: User, voucher_id: int, record_ids: list[int]) -> Preview:
    """What a claim for these services would bring, every limit that binds, and the checks."""
    enterprise, voucher, records = _claim_inputs(user, voucher_id, record_ids)
    fee = sum(r.fee_fen for r in records)
    subsidy = subsidy_for(enterprise, voucher.scheme, voucher, fee, _provider_is_local(records))
    checks = [*_voucher_checks(voucher), *run_checks(enterprise, voucher.scheme, records)]
    return Preview(fee, subsidy, checks, records)


def _all_checks(
    enterprise: Enterprise, voucher: Voucher, records: list[ServiceRecord], claim_id: int
) -> list[Check]:
    return [*_voucher_checks(voucher), *run_checks(enterprise, voucher.scheme, records, claim_id)]


def stored_checks(checks: list[Check], again: Callable[[], list[Check]]) -> list[dict[str, Any]]:
    """The checks as a claim keeps them, with their messages in every interface language: a claim
    submitted in Chinese is reviewed in English too. `again` runs the same checks once more."""
    stored = [c.as_dict() | {"messages": {}} for c in checks]
    for language in current_app.config["LANGUAGES"]:
        with force_locale(language):
            for row, check in zip(stored, again(), strict=True):
                row["messages"][language] = check.message
    return stored


def check_message(check: Check | dict[str, Any]) -> str:
    """A check's message in the interface language (a stored one in the language it was stored in
    when it predates the translated copies)."""
    if isinstance(check, Check):
        return check.message
    return (check.get("messages") or {}).get(str(get_locale())) or check["message"]


def _voucher_checks(voucher: Voucher) -> list[Check]:
    ok = voucher.state is VoucherState.ACTIVE and voucher.valid_until >= clock.local_today()
    return [
        Check(
            "voucher_valid",
            ok,
            _("The voucher is valid until %(day)s.", day=voucher.valid_until)
            if ok
            else _("The voucher expired on %(day)s.", day=voucher.valid_until),
        )
    ]


def _refuse_failed_checks(checks: list[Check], refusal: str) -> None:
    """Refuse with every failing check's reason (`refusal` has a %(failed)s placeholder)."""
    failed = [c for c in checks if not c.passed]
    if failed:
        raise InvalidTransition(
            refusal % {"failed": "; ".join(c.message for c in failed)},
            {"checks": [c.as_dict() for c in failed]},
        )


def current_checks(claim: Claim) -> list[Check]:
    """The checks as they stand now: a draft's or a returned claim's stored ones may be stale (a file
    added since), and submitting runs exactly these."""
    voucher = db.session.get(Voucher, claim.voucher_id)
    enterprise = db.session.get(Enterprise, claim.enterprise_id)
    records = _records(_record_ids(claim))
    return [*_voucher_checks(voucher), *run_checks(enterprise, voucher.scheme, records, claim.id)]


@dataclass
class ClaimableService:
    """A completed service not yet claimed, and what would stop a claim for it from passing review."""

    record: ServiceRecord
    problems: list[Check]

    @property
    def fixable(self) -> bool:
        """Whether the enterprise can still put it right (rate the service, add the documents)."""
        return all(p.code in FIXABLE_CHECKS for p in self.problems)


def claimable_services(user: User, voucher: Voucher | None) -> list[ClaimableService]:
    """The enterprise's unclaimed completed services, each with the review's own checks against it."""
    records = claimable_records(user)
    if voucher is None or not records:
        return [ClaimableService(r, []) for r in records]
    enterprise = db.session.get(Enterprise, user.enterprise_id)
    problems = checks_per_service(enterprise, voucher.scheme, records)
    return [ClaimableService(r, problems[r.id]) for r in records]


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
    if _enterprise_of(user, claim):
        require_holder(user)  # a colleague is told who the holder is
    if not can_revise_claim(user, claim):
        raise InvalidTransition(_("Only a returned claim can be corrected."), {"state": claim.state.value})
    reply = (reply or "").strip() or None
    fields: dict[str, str] = {}
    if reply and len(reply) > 2000:
        fields["reply"] = _("At most 2,000 characters.")
    if replacement and replacement.record_id not in _record_ids(claim):
        fields["record"] = _("Not a service of this claim.")
    if not (reply or replacement or resubmit):
        fields["reply"] = _("Write a reply or choose a file to replace.")
    if fields:
        raise ValidationFailed(_("Please correct the marked fields."), fields)
    stored = uploads.store_upload(replacement.stream, replacement.filename) if replacement else None
    try:
        with serialized_write():
            claim = lock_one(Rank.CLAIMS, Claim, claim_id)
            if (claim.state, "revise") not in CLAIM_TRANSITIONS:
                raise InvalidTransition(_("Only a returned claim can be corrected."))
            changes: dict[str, Any] = {}
            if reply and reply != claim.reply:
                claim.reply = changes["reply"] = reply
            if stored:
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


def create_claim(user: User, voucher_id: int, record_ids: list[int]) -> Claim:
    """A draft claim (nothing reserved yet; submitting it does that)."""
    preview = preview_claim(user, voucher_id, record_ids)
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
    if claim is None or not can_view_enterprise_object(user, claim.enterprise_id):
        raise NotFound(_("No such claim."))
    return claim


def _record_ids(claim: Claim) -> list[int]:
    return [item.service_record_id for item in claim.items]


def submit_claim(user: User, claim_id: int) -> Claim:
    """Submit (or resubmit after a return; the account holder only): the services are reserved for this
    claim and the amounts set."""
    enterprise = _require_verified_enterprise(user)
    require_holder(user)
    with serialized_write():
        claim = lock_one(Rank.CLAIMS, Claim, claim_id)
        if claim is None or claim.enterprise_id != enterprise.id:
            raise NotFound(_("No such claim."))
        before = claim.state
        if (before, "submit") not in CLAIM_TRANSITIONS:
            raise InvalidTransition(_("Only a draft or a returned claim can be submitted."))
        ids = _record_ids(claim)
        if before is ClaimState.DRAFT:
            # Reserve every service for this claim at once, or none: a service is never in two claims.
            taken = db.session.execute(
                update(ServiceRecord)
                .where(ServiceRecord.id.in_(ids), ServiceRecord.claim_id.is_(None))
                .values(claim_id=claim.id)
                .execution_options(synchronize_session=False)
            ).rowcount
            if taken != len(ids):
                db.session.rollback()
                raise InvalidTransition(
                    _("Some of these services are already in another claim."), {"check": "claimed_twice"}
                )
        records = _records(ids)
        voucher = db.session.get(Voucher, claim.voucher_id)
        checks = _all_checks(enterprise, voucher, records, claim.id)
        _refuse_failed_checks(
            checks, _("This claim cannot be submitted until every check passes: %(failed)s")
        )
        subsidy = subsidy_for(enterprise, voucher.scheme, voucher, claim.fee_fen, _provider_is_local(records))
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
        claim.checks = stored_checks(checks, lambda: _all_checks(enterprise, voucher, records, claim.id))
        claim.state, claim.submitted_at, claim.first_reviewer_id = ClaimState.SUBMITTED, clock.utcnow(), None
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


def delete_draft(user: User, claim_id: int) -> None:
    """Throw away a draft (nothing was reserved)."""
    with serialized_write():
        claim = db.session.get(Claim, claim_id)
        if claim is None or user.role is not Role.ENTERPRISE or claim.enterprise_id != user.enterprise_id:
            raise NotFound(_("No such claim."))
        if (claim.state, "delete") not in CLAIM_TRANSITIONS:
            raise InvalidTransition(_("Only a draft can be deleted."))
        audit.record("claim.deleted", "claim", claim.id, before={"state": "draft"}, actor_id=user.id)
        db.session.delete(claim)
        db.session.commit()


def decide_claim(reviewer: User, claim_id: int, action: str, comment: str | None = None) -> Claim:
    """Approve (reserving the money atomically), reject (releasing the services) or return a claim."""
    _require_reviewer(reviewer)
    comment = (comment or "").strip() or None
    with serialized_write():
        claim = lock_one(Rank.CLAIMS, Claim, claim_id)
        if claim is None:
            raise NotFound(_("No such claim."))
        before = claim.state
        if (before, "reject") not in CLAIM_TRANSITIONS:
            raise InvalidTransition(_("This claim is not waiting for a decision."), {"state": before.value})
        if action in ("reject", "return"):
            if not comment:
                raise ValidationFailed(_("Please give a reason."), {"comment": _("Required.")})
            claim.state = ClaimState.REJECTED if action == "reject" else ClaimState.RETURNED
            if action == "reject":
                db.session.execute(
                    update(ServiceRecord)
                    .where(ServiceRecord.claim_id == claim.id)
                    .values(claim_id=None)
                    .execution_options(synchronize_session=False)
                )
            claim.decided_by_id, claim.decided_at, claim.comment = reviewer.id, clock.utcnow(), comment
            _audit_claim(claim, before, reviewer, comment)
            tell_about_claim(claim, claim.state.value, repeatable=True, reason=comment)
            db.session.commit()
            return claim
        if action != "approve":
            raise ValidationFailed(_("Unknown decision."), {"action": _("Unknown decision.")})
        if before is ClaimState.PENDING_SECOND and reviewer.id == claim.first_reviewer_id:
            raise Forbidden(_("A second reviewer must confirm this: you cannot approve your own approval."))
        from portal.finance.services import is_closed, month_of, queue_tally

        month = month_of(clock.utcnow())
        if is_closed(month):
            raise InvalidTransition(_("%(month)s is closed: its numbers can no longer change.", month=month))
        _approve(claim, before, reviewer, comment)
        if claim.state is ClaimState.IN_NOTICE:
            claim.approved_month = month
            queue_tally(month)
        db.session.commit()
    return claim


def _approve(claim: Claim, before: ClaimState, reviewer: User, comment: str | None) -> None:
    # The lock order of portal.core.locks: claim (done), funds, enterprise and group caps, voucher.
    voucher_row = db.session.get(Voucher, claim.voucher_id)
    scheme = db.session.get(Scheme, voucher_row.scheme_id)
    funds = {f.name: f for f in lock_where(Rank.FUNDS, Fund, Fund.scheme_id == scheme.id)}
    enterprise = db.session.get(Enterprise, claim.enterprise_id)
    enterprise_cap, group_cap = _lock_caps(scheme, enterprise)
    voucher = lock_one(Rank.VOUCHERS, Voucher, claim.voucher_id)

    records = _records(_record_ids(claim))
    checks = _all_checks(enterprise, voucher, records, claim.id)
    claim.checks = stored_checks(checks, lambda: _all_checks(enterprise, voucher, records, claim.id))
    _refuse_failed_checks(checks, _("Not every check passes: %(failed)s"))
    # The reviewer approves exactly the amounts the enterprise submitted, or nothing: if others have
    # spent the room since, this claim is refused (and can be returned to be recomputed).
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
    if before is ClaimState.SUBMITTED and _four_eyes(scheme, claim.total_fen):
        claim.state, claim.first_reviewer_id = ClaimState.PENDING_SECOND, reviewer.id
        _audit_claim(claim, before, reviewer, comment)
        from portal.notifications.services import notify, users_with_role

        notify(
            [u for u in users_with_role(Role.REVIEWER) if u.id != reviewer.id],
            "claim.second_review",
            f"claim:{claim.id}:second_review",
            payload={"claim": claim.id, "amount": _yuan(claim.total_fen)},
            link=f"/vouchers/claims/{claim.id}",
        )
        return
    for name, amount in claim.fund_amounts().items():
        if amount:  # a scheme may lack a fund the claim takes nothing from
            funds[name].committed_fen += amount
    enterprise_cap.used_fen += claim.capped_fen(funds)
    group_cap.used_fen += claim.total_fen
    voucher.balance_fen -= claim.total_fen
    today = clock.local_today()
    claim.state = ClaimState.IN_NOTICE
    claim.decided_by_id, claim.decided_at, claim.comment = reviewer.id, clock.utcnow(), comment
    claim.notice_ends_on = today + timedelta(days=scheme.public_notice_days)
    db.session.add(
        LedgerEntry(
            voucher_id=voucher.id,
            kind=LedgerKind.COMMITTED,
            amount_fen=claim.total_fen,
            balance_after_fen=voucher.balance_fen,
            claim_id=claim.id,
        )
    )
    _audit_claim(claim, before, reviewer, comment)
    tell_about_claim(claim, "approved", notice_ends_on=str(claim.notice_ends_on))


def _audit_claim(claim: Claim, before: ClaimState, reviewer: User | None, comment: str | None) -> None:
    audit.record(
        f"claim.{claim.state.value}",
        "claim",
        claim.id,
        before={"state": before.value},
        after={"state": claim.state.value, "funds": claim.fund_amounts()},
        reason=comment,
        actor_id=reviewer.id if reviewer else None,
    )


def end_public_notice(today: date | None = None) -> int:
    """Approved claims whose public notice has ended become payable; returns how many."""
    today = today or clock.local_today()
    due = db.session.scalars(
        select(Claim.id).where(Claim.state == ClaimState.IN_NOTICE, Claim.notice_ends_on <= today)
    ).all()
    for claim_id in due:
        with serialized_write():
            claim = lock_one(Rank.CLAIMS, Claim, claim_id)
            if claim.state is not ClaimState.IN_NOTICE:
                continue
            claim.state, claim.payable_at = ClaimState.PAYABLE, clock.utcnow()
            _audit_claim(claim, ClaimState.IN_NOTICE, None, "public notice ended")
            tell_about_claim(claim, "payable")
            db.session.commit()
    return len(due)


PAY_ROLES = (Role.FINANCE, Role.ADMIN)


def can_pay_claim(user: User, claim: Claim) -> bool:
    return user.is_authenticated and user.role in PAY_ROLES and (claim.state, "pay") in CLAIM_TRANSITIONS


def pay_claim(
    user: User, claim: Claim, voucher: Voucher, funds: dict[str, Fund], *, reference: str, month: str
) -> None:
    """PAYABLE → PAID, when the bank has paid the claim (bureau finance, as part of a batch).

    The caller holds the locks of `portal.core.locks` (claim, then the scheme's funds by name, then
    the voucher) and commits. The state changes only if it is still the one read here.
    """
    if not can_pay_claim(user, claim):
        if user.role not in PAY_ROLES:
            raise Forbidden(_("Only bureau finance can do this."))
        raise InvalidTransition(_("Only a payable claim can be paid."), {"state": claim.state.value})
    before, now = claim.state, clock.utcnow()
    changed = db.session.execute(
        update(Claim)
        .where(Claim.id == claim.id, Claim.state == before)
        .values(state=ClaimState.PAID, paid_at=now, paid_month=month)
        .execution_options(synchronize_session="fetch")
    ).rowcount
    if changed != 1:
        raise InvalidTransition(_("Only a payable claim can be paid."), {"state": claim.state.value})
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
        after={"state": ClaimState.PAID.value},
        reason=reference,
        actor_id=user.id,
    )
    tell_about_claim(claim, "paid", reference=reference)


def claims_in_notice() -> list[Claim]:
    """The public notice board (公示): approved claims whose notice period runs now."""
    return list(
        db.session.scalars(
            select(Claim)
            .where(Claim.state == ClaimState.IN_NOTICE)
            .options(
                joinedload(Claim.enterprise), selectinload(Claim.items).joinedload(ClaimItem.service_record)
            )
            .order_by(Claim.notice_ends_on, Claim.id)
        )
    )


def claimable_records(user: User) -> list[ServiceRecord]:
    """The enterprise's completed services not yet in a claim, newest first."""
    return list(
        db.session.scalars(
            select(ServiceRecord)
            .join(Booking, Booking.id == ServiceRecord.booking_id)
            .where(
                Booking.enterprise_id == user.enterprise_id,
                Booking.state == BookingState.COMPLETED,
                ServiceRecord.claim_id.is_(None),
            )
            .options(
                joinedload(ServiceRecord.booking)
                .joinedload(Booking.instrument)
                .joinedload(Instrument.institution),
                selectinload(ServiceRecord.files),
            )
            .order_by(ServiceRecord.recorded_at.desc())
        )
    )


def claims_for(user: User) -> list[Claim]:
    stmt = select(Claim).options(joinedload(Claim.voucher)).order_by(Claim.id.desc())
    if user.role is Role.ENTERPRISE:
        stmt = stmt.where(Claim.enterprise_id == user.enterprise_id)
    elif user.role not in BUREAU_ROLES:
        return []
    return list(db.session.scalars(stmt))


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

    subsidy: Subsidy | None
    warning: str | None


def booking_hint(user: User, instrument: Instrument, fee_fen: int) -> BookingHint:
    """The subsidy this fee would get from the enterprise's voucher now, and a warning if it falls short."""
    if not user.is_authenticated or user.role is not Role.ENTERPRISE:
        return BookingHint(None, None)
    scheme = current_scheme()
    voucher = None
    if scheme is not None:
        voucher = db.session.scalar(
            select(Voucher).where(
                Voucher.enterprise_id == user.enterprise_id,
                Voucher.scheme_id == scheme.id,
                Voucher.state == VoucherState.ACTIVE,
            )
        )
    if voucher is None or voucher.valid_until < clock.local_today():
        return BookingHint(None, _("You have no valid innovation voucher: the whole fee is yours to pay."))
    enterprise = db.session.get(Enterprise, user.enterprise_id)
    subsidy = subsidy_for(enterprise, scheme, voucher, fee_fen, instrument.institution.is_local)
    warning = None
    short = [
        name for name in ("voucher_balance", "group_cap", "enterprise_cap") if name in subsidy.limited_by
    ]
    if short:
        from portal.vouchers.models import LIMIT_LABELS

        warning = _(
            "Your voucher cannot cover the full subsidy: it is limited by %(limits)s.",
            limits=", ".join(str(LIMIT_LABELS[name]) for name in short),
        )
    return BookingHint(subsidy, warning)
