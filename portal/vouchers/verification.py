"""Enterprise verification: the enterprise asks, a reviewer verifies or rejects; declared relations."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from flask_babel import gettext as _
from sqlalchemy import select

from portal.accounts.models import Enterprise, EnterpriseKind, Institution, User
from portal.accounts.models import VerificationState as EnterpriseState
from portal.core import audit, clock, held_uploads, uploads
from portal.core.database import insert_ignore, locked, serialized_write
from portal.core.errors import Forbidden, InvalidTransition, NotFound, ValidationFailed
from portal.core.permissions import Role
from portal.core.text import normalize
from portal.extensions import db
from portal.vouchers.models import EnterpriseRelation, RelationKind, RequestState, VerificationRequest
from portal.vouchers.services import (
    REVIEW_ROLES,
    is_reviewer,
    require_reviewer,
    states_allowing,
    tell_enterprise,
    transition,
)

# The verification request's state machine: (state, action) -> new state. Submitting makes a new
# request; the enterprise's own verification state follows the decision.
VERIFICATION_TRANSITIONS: dict[tuple[RequestState, str], RequestState] = {
    (RequestState.SUBMITTED, "verify"): RequestState.VERIFIED,
    (RequestState.SUBMITTED, "reject"): RequestState.REJECTED,
}
WAITING_VERIFICATION_STATES = states_allowing(VERIFICATION_TRANSITIONS, "verify")


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


def _check_request(data: VerificationData, has_certificate: bool) -> EnterpriseKind:
    kind = EnterpriseKind(data.kind)
    fields: dict[str, str] = {}
    if not data.actual_controller.strip():
        fields["actual_controller"] = _("Name the actual controller (a person or a company).")
    if kind is EnterpriseKind.TECH_SME and not (data.tech_sme_number or "").strip():
        fields["tech_sme_number"] = _("Tech SMEs give their registration number.")
    if kind is EnterpriseKind.TECH_SME and not has_certificate:
        fields["certificate"] = _("Attach the registration certificate.")
    if fields:
        raise ValidationFailed(_("Please correct the marked fields."), fields)
    return kind


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
    kind = _check_request(data, certificate is not None or stored is not None)
    if db.session.scalar(
        select(VerificationRequest.id).where(
            VerificationRequest.enterprise_id == user.enterprise_id,
            VerificationRequest.state.in_(WAITING_VERIFICATION_STATES),
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
            request = _new_request(user, data, kind, stored)
            db.session.commit()
    except BaseException:
        if stored:
            uploads.discard(stored.stored_name)
        raise
    return request


def _new_request(
    user: User, data: VerificationData, kind: EnterpriseKind, stored: uploads.StoredFile | None
) -> VerificationRequest:
    enterprise_id = user.enterprise_id
    request = VerificationRequest(
        enterprise_id=enterprise_id,
        kind=kind,
        tech_sme_number=(data.tech_sme_number or "").strip() or None,
        actual_controller=data.actual_controller.strip()[:120],
        submitted_by_id=user.id,
        submitted_at=clock.utcnow(),
    )
    if stored:
        request.certificate_name, request.certificate_stored = stored.original_name, stored.stored_name
        request.certificate_type, request.certificate_size = stored.content_type, stored.size
    db.session.add(request)
    if data.related_institution_id and data.relation_kind:
        _declare(user, enterprise_id, data.related_institution_id, data.relation_kind)
    enterprise = db.session.get(Enterprise, enterprise_id)
    if enterprise.verification_state is EnterpriseState.REJECTED:
        enterprise.verification_state = EnterpriseState.PENDING
    db.session.flush()
    audit.record(
        "verification.submitted",
        "enterprise",
        enterprise_id,
        after={"request": request.id, "kind": kind.value, "actual_controller": request.actual_controller},
        actor_id=user.id,
    )
    return request


def can_decide_verification(user: User, request: VerificationRequest) -> bool:
    """A reviewer verifies or rejects a request that waits for a decision."""
    return is_reviewer(user) and request.state in WAITING_VERIFICATION_STATES


def can_verify_enterprise(user: User, request: VerificationRequest) -> bool:
    return can_decide_verification(user, request)


def can_reject_verification(user: User, request: VerificationRequest) -> bool:
    return is_reviewer(user) and (request.state, "reject") in VERIFICATION_TRANSITIONS


def verify_enterprise(
    reviewer: User, request_id: int, *, reason: str | None = None, uscc_override: bool = False
) -> VerificationRequest:
    """The reviewer verifies; a legacy credit code needs an explicit, reasoned override."""
    require_reviewer(reviewer)
    reason = (reason or "").strip() or None
    with serialized_write():
        request, enterprise = _waiting_request(request_id, "verify")
        if not enterprise.uscc_checksum_ok and not (uscc_override and reason):
            message = _(
                "The credit code fails its checksum: verify only with an override and a recorded reason."
            )
            raise ValidationFailed(message, {"uscc_override": message})
        before = enterprise.verification_state
        _decide(reviewer, request, "verify", reason, uscc_override=bool(uscc_override))
        enterprise.verification_state = EnterpriseState.VERIFIED
        enterprise.kind = request.kind
        enterprise.tech_sme_number = request.tech_sme_number
        enterprise.actual_controller = request.actual_controller
        enterprise.controller_group = controller_key(request.actual_controller)
        enterprise.verified_at = clock.utcnow()
        _record_decision(reviewer, request, enterprise, before, reason)
        db.session.commit()
    return request


def reject_verification(reviewer: User, request_id: int, reason: str | None = None) -> VerificationRequest:
    """The reviewer rejects, saying why; the enterprise may ask again."""
    require_reviewer(reviewer)
    reason = (reason or "").strip() or None
    with serialized_write():
        request, enterprise = _waiting_request(request_id, "reject")
        if not reason:
            raise ValidationFailed(_("Please give a reason."), {"reason": _("Required.")})
        before = enterprise.verification_state
        _decide(reviewer, request, "reject", reason, uscc_override=False)
        enterprise.verification_state = EnterpriseState.REJECTED
        _record_decision(reviewer, request, enterprise, before, reason)
        db.session.commit()
    return request


def _waiting_request(request_id: int, action: str) -> tuple[VerificationRequest, Enterprise]:
    """The request, locked, if `action` may still be taken on it; and its enterprise."""
    request = locked(VerificationRequest, request_id)
    if request is None:
        raise NotFound(_("No such verification request."))
    if (request.state, action) not in VERIFICATION_TRANSITIONS:
        raise InvalidTransition(_("This request has already been decided."))
    return request, db.session.get(Enterprise, request.enterprise_id)


def _decide(
    reviewer: User, request: VerificationRequest, action: str, reason: str | None, **values: Any
) -> None:
    transition(
        request,
        VERIFICATION_TRANSITIONS,
        action,
        _("This request has already been decided."),
        {},
        decided_by_id=reviewer.id,
        decided_at=clock.utcnow(),
        reason=reason,
        **values,
    )


def _record_decision(
    reviewer: User,
    request: VerificationRequest,
    enterprise: Enterprise,
    before: EnterpriseState,
    reason: str | None,
) -> None:
    verified = request.state is RequestState.VERIFIED
    tell_enterprise(
        enterprise.id,
        "verification.verified" if verified else "verification.rejected",
        f"verification:{request.id}",
        "/vouchers/",
        enterprise=enterprise.name,
        reason=reason or "",
    )
    audit.record(
        "enterprise.verified" if verified else "enterprise.rejected",
        "enterprise",
        enterprise.id,
        before={"state": before.value},
        after={"state": enterprise.verification_state.value, "uscc_override": request.uscc_override},
        reason=reason,
        actor_id=reviewer.id,
    )


def _declare(user: User, enterprise_id: int, institution_id: int, kind: RelationKind) -> None:
    values: dict[str, Any] = {
        "enterprise_id": enterprise_id,
        "institution_id": institution_id,
        "kind": kind.value,
        "declared_by_id": user.id,
        "created_at": clock.utcnow(),
    }
    insert_ignore(EnterpriseRelation, values)


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
        _declare(user, enterprise_id, institution_id, kind)
        audit.record(
            "enterprise.relation_declared",
            "enterprise",
            enterprise_id,
            after={"institution": institution_id, "kind": kind.value},
            actor_id=user.id,
        )
        db.session.commit()
