"""Provider admission (DESIGN §13): an institution applies to join the voucher scheme as a service
provider, with the instruments it offers, its fee schedule and its credit statement (信用承诺);
reviewers approve (a public notice follows, then admission), return or reject it; an objection upheld
during the notice rejects it; an admitted provider can be suspended for cause and reinstated.

The state machine is ADMISSION_TRANSITIONS, one function per transition below it; every change writes
an audit row, tells the institution's provider users, and mirrors the new state in
`Institution.admission`, which the voucher checks read (`provider_admitted`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import IO, Any

from flask import current_app
from flask_babel import gettext as _
from sqlalchemy import select, update
from sqlalchemy.orm import joinedload, selectinload

from portal.accounts.members import users_of_institution
from portal.accounts.models import Institution, User
from portal.admission.models import ADMISSION_LABELS, NO_ADMISSION, AdmissionState, ProviderAdmission
from portal.catalog.models import Instrument
from portal.core import audit, clock, uploads
from portal.core.database import changed_rows, serialized_write
from portal.core.errors import Forbidden, InvalidTransition, NotFound, ValidationFailed
from portal.core.models import AuditEvent
from portal.core.permissions import Role
from portal.extensions import db
from portal.notifications.services import notify

# The admission's state machine: (state, action) -> new state.
ADMISSION_TRANSITIONS: dict[tuple[AdmissionState, str], AdmissionState] = {
    (AdmissionState.SUBMITTED, "approve"): AdmissionState.IN_NOTICE,
    (AdmissionState.SUBMITTED, "return"): AdmissionState.RETURNED,
    (AdmissionState.SUBMITTED, "reject"): AdmissionState.REJECTED,
    (AdmissionState.RETURNED, "resubmit"): AdmissionState.SUBMITTED,
    (AdmissionState.IN_NOTICE, "end_notice"): AdmissionState.ADMITTED,
    (AdmissionState.IN_NOTICE, "reject"): AdmissionState.REJECTED,  # an objection upheld in the notice
    (AdmissionState.ADMITTED, "suspend"): AdmissionState.SUSPENDED,
    (AdmissionState.SUSPENDED, "reinstate"): AdmissionState.ADMITTED,
}
# The audit action each transition writes ("provider_admission.<name>").
AUDIT_NAMES = {
    "approve": "in_notice",
    "return": "returned",
    "reject": "rejected",
    "resubmit": "submitted",
    "end_notice": "admitted",
    "suspend": "suspended",
    "reinstate": "reinstated",
}
WAITING_STATES = (AdmissionState.SUBMITTED,)
LISTED_STATES = (AdmissionState.IN_NOTICE, AdmissionState.ADMITTED)
MAX_TEXT = 4000


@dataclass
class AdmissionData:
    """What the provider enters: the instruments it offers, its fee schedule, its credit statement."""

    instrument_ids: list[int] = field(default_factory=list)
    fee_schedule: str = ""
    credit_statement: str = ""


# --- who may do what ----------------------------------------------------------------------------


def is_reviewer(user: User) -> bool:
    return user.is_authenticated and user.role in (Role.REVIEWER, Role.ADMIN)


def _require_reviewer(user: User) -> None:
    if not is_reviewer(user):
        raise Forbidden(_("Only bureau reviewers can decide this."))


def is_provider_of(user: User, institution_id: int) -> bool:
    return user.is_authenticated and user.role is Role.PROVIDER and user.institution_id == institution_id


def can_view_institution(user: User, institution_id: int) -> bool:
    """An institution's admission is its own providers' business and the reviewers'."""
    return is_provider_of(user, institution_id) or is_reviewer(user)


def get_institution(user: User, institution_id: int) -> Institution:
    institution = db.session.get(Institution, institution_id)
    if institution is None or not can_view_institution(user, institution_id):
        raise NotFound(_("No such institution."))
    return institution


def get_admission(user: User, admission_id: int) -> ProviderAdmission:
    admission = db.session.get(ProviderAdmission, admission_id)
    if admission is None or not can_view_institution(user, admission.institution_id):
        raise NotFound(_("No such admission."))
    return admission


def admissions_of(institution_id: int) -> list[ProviderAdmission]:
    """The institution's admissions, newest first."""
    return list(
        db.session.scalars(
            select(ProviderAdmission)
            .where(ProviderAdmission.institution_id == institution_id)
            .options(selectinload(ProviderAdmission.instruments))
            .order_by(ProviderAdmission.id.desc())
        )
    )


def latest_admission(institution_id: int) -> ProviderAdmission | None:
    return db.session.scalar(
        select(ProviderAdmission)
        .where(ProviderAdmission.institution_id == institution_id)
        .order_by(ProviderAdmission.id.desc())
        .limit(1)
    )


# Who may apply anew: an institution never admitted, or one whose last application was rejected (one
# admitted before the scheme required admission has no application, but is admitted).
MAY_APPLY = (NO_ADMISSION, AdmissionState.REJECTED)


def can_apply(user: User, institution: Institution) -> bool:
    """A provider of the institution applies when it has no current admission (never, or rejected)."""
    return is_provider_of(user, institution.id) and institution.admission in MAY_APPLY


def can_resubmit(user: User, admission: ProviderAdmission | None) -> bool:
    return (
        admission is not None
        and is_provider_of(user, admission.institution_id)
        and (admission.state, "resubmit") in ADMISSION_TRANSITIONS
    )


def offered_instruments(institution_id: int) -> list[Instrument]:
    """The institution's catalogue instruments, from which it names those it offers."""
    return list(
        db.session.scalars(
            select(Instrument).where(Instrument.institution_id == institution_id).order_by(Instrument.code)
        )
    )


# --- the provider's side ------------------------------------------------------------------------


def _checked(institution_id: int, data: AdmissionData) -> list[Instrument]:
    """The offered instruments (its own only), or ValidationFailed naming the fields to correct."""
    fields: dict[str, str] = {}
    wanted = set(data.instrument_ids)
    instruments = [i for i in offered_instruments(institution_id) if i.id in wanted]
    if not wanted:
        fields["instruments"] = _("Choose the instruments you offer under the scheme.")
    elif len(instruments) != len(wanted):
        fields["instruments"] = _("Choose among your institution's own instruments.")
    for name, text, missing in (
        ("fee_schedule", data.fee_schedule, _("Give your fee schedule.")),
        ("credit_statement", data.credit_statement, _("Give your credit statement.")),
    ):
        if not text.strip():
            fields[name] = missing
        elif len(text) > MAX_TEXT:
            fields[name] = _("At most 4,000 characters.")
    if fields:
        raise ValidationFailed(_("Please correct the marked fields."), fields)
    return instruments


def _store_fee_file(stream: IO[bytes] | None, filename: str | None) -> uploads.StoredFile | None:
    if stream is None:
        return None
    try:
        return uploads.store_upload(stream, filename)
    except ValidationFailed as error:
        raise ValidationFailed(error.message, {"fee_file": error.message}) from None


def _attach(admission: ProviderAdmission, stored: uploads.StoredFile | None) -> None:
    if stored is not None:
        admission.fee_file_name, admission.fee_file_stored = stored.original_name, stored.stored_name
        admission.fee_file_type = stored.content_type


def apply_for_admission(
    user: User,
    institution_id: int,
    data: AdmissionData,
    fee_file: IO[bytes] | None = None,
    filename: str | None = None,
) -> ProviderAdmission:
    """A provider of the institution applies to join the scheme (or corrects a returned application)."""
    if not is_provider_of(user, institution_id):
        raise NotFound(_("No such institution."))
    instruments = _checked(institution_id, data)
    stored = _store_fee_file(fee_file, filename)
    try:
        with serialized_write():
            latest = latest_admission(institution_id)
            current = db.session.get_one(Institution, institution_id).admission
            if latest is not None and latest.state is AdmissionState.RETURNED:
                admission = _resubmit(user, latest, instruments, data, stored)
            elif current not in MAY_APPLY:
                raise InvalidTransition(
                    _("Your institution's admission is already: %(state)s.", state=ADMISSION_LABELS[current])
                )
            else:
                admission = _new_admission(user, institution_id, instruments, data, stored)
            db.session.commit()
    except BaseException:
        if stored:
            uploads.discard(stored.stored_name)
        raise
    return admission


def _new_admission(
    user: User,
    institution_id: int,
    instruments: list[Instrument],
    data: AdmissionData,
    stored: uploads.StoredFile | None,
) -> ProviderAdmission:
    admission = ProviderAdmission(
        institution_id=institution_id,
        state=AdmissionState.SUBMITTED,
        fee_schedule=data.fee_schedule.strip(),
        credit_statement=data.credit_statement.strip(),
        submitted_by_id=user.id,
        submitted_at=clock.utcnow(),
    )
    admission.instruments = instruments
    _attach(admission, stored)
    db.session.add(admission)
    db.session.flush()
    _mirror(institution_id, AdmissionState.SUBMITTED)
    audit.record(
        "provider_admission.submitted",
        "provider_admission",
        admission.id,
        after={"state": "submitted", "instruments": [i.code for i in instruments]},
        actor_id=user.id,
    )
    return admission


def _resubmit(
    user: User,
    admission: ProviderAdmission,
    instruments: list[Instrument],
    data: AdmissionData,
    stored: uploads.StoredFile | None,
) -> ProviderAdmission:
    _move(
        admission,
        "resubmit",
        user,
        None,
        fee_schedule=data.fee_schedule.strip(),
        credit_statement=data.credit_statement.strip(),
        submitted_by_id=user.id,
        submitted_at=clock.utcnow(),
    )
    db.session.refresh(admission)
    admission.instruments = instruments
    _attach(admission, stored)
    return admission


# --- the state machine --------------------------------------------------------------------------


def _refusal(admission: ProviderAdmission, action: str) -> InvalidTransition:
    messages = {
        "approve": _("Only a submitted admission can be approved."),
        "return": _("Only a submitted admission can be returned."),
        "reject": _("Only a submitted admission or one in public notice can be rejected."),
        "resubmit": _("Only a returned admission can be submitted again."),
        "end_notice": _("This admission is not in its public notice."),
        "suspend": _("Only an admitted provider can be suspended."),
        "reinstate": _("Only a suspended provider can be reinstated."),
    }
    return InvalidTransition(messages[action], {"state": admission.state.value, "action": action})


def _move(
    admission: ProviderAdmission, action: str, actor: User | None, reason: str | None, **values: Any
) -> AdmissionState:
    """Move the admission by `action` along ADMISSION_TRANSITIONS (a conditional UPDATE: of two
    concurrent changes one wins), mirror the state on the institution and write the audit row."""
    before = admission.state
    target = ADMISSION_TRANSITIONS.get((before, action))
    if target is None:
        raise _refusal(admission, action)
    changed = changed_rows(
        update(ProviderAdmission)
        .where(ProviderAdmission.id == admission.id, ProviderAdmission.state == before)
        .values(state=target, **values)
        .execution_options(synchronize_session="fetch")
    )
    if changed != 1:
        raise InvalidTransition(_("Someone else changed this admission a moment ago; reload the page."))
    _mirror(admission.institution_id, target)
    audit.record(
        f"provider_admission.{AUDIT_NAMES[action]}",
        "provider_admission",
        admission.id,
        before={"state": before.value},
        after={"state": target.value},
        reason=reason,
        actor_id=actor.id if actor else None,
    )
    return before


def _mirror(institution_id: int, state: AdmissionState | str) -> None:
    db.session.execute(
        update(Institution).where(Institution.id == institution_id).values(admission=str(state))
    )


def _tell(admission: ProviderAdmission, action: str, **payload: Any) -> None:
    """The institution's provider users learn of each decision."""
    now = clock.utcnow()
    notify(
        users_of_institution(admission.institution_id),
        f"admission.{AUDIT_NAMES[action]}",
        f"admission:{admission.id}:{action}:{now.timestamp()}",
        payload={"institution": admission.institution.name, **payload},
        link=f"/admission/institutions/{admission.institution_id}",
    )


def _decide(
    reviewer: User, admission_id: int, action: str, reason: str | None, **values: Any
) -> ProviderAdmission:
    """One reviewer decision on an admission, in one transaction."""
    _require_reviewer(reviewer)
    with serialized_write():
        admission = db.session.get(ProviderAdmission, admission_id)
        if admission is None:
            raise NotFound(_("No such admission."))
        _apply(admission, action, reviewer, reason, **values)
        db.session.commit()
    return admission


def _apply(
    admission: ProviderAdmission, action: str, reviewer: User, reason: str | None, **values: Any
) -> None:
    """The transition, and the institution's providers told of it."""
    _move(admission, action, reviewer, reason, **values)
    db.session.refresh(admission)
    _tell(admission, action, reason=reason or "", notice_ends_on=str(admission.notice_ends_on or ""))


def _reason(text: str | None) -> str:
    reason = (text or "").strip()
    if not reason:
        raise ValidationFailed(_("Please give a reason."), {"comment": _("Required.")})
    return reason


def approve_admission(reviewer: User, admission_id: int, comment: str | None = None) -> ProviderAdmission:
    """SUBMITTED -> IN_NOTICE: the public notice runs ADMISSION_NOTICE_DAYS days, then admission."""
    ends = clock.local_today() + timedelta(days=current_app.config["ADMISSION_NOTICE_DAYS"])
    comment = (comment or "").strip() or None
    return _decide(
        reviewer,
        admission_id,
        "approve",
        comment,
        decided_by_id=reviewer.id,
        decided_at=clock.utcnow(),
        comment=comment,
        notice_ends_on=ends,
    )


def return_admission(reviewer: User, admission_id: int, comment: str | None) -> ProviderAdmission:
    """SUBMITTED -> RETURNED, saying what to correct: the provider submits it again."""
    reason = _reason(comment)
    return _decide(
        reviewer,
        admission_id,
        "return",
        reason,
        decided_by_id=reviewer.id,
        decided_at=clock.utcnow(),
        comment=reason,
    )


def reject_admission(reviewer: User, admission_id: int, comment: str | None) -> ProviderAdmission:
    """SUBMITTED or IN_NOTICE (an objection upheld) -> REJECTED, saying why; the provider may apply anew."""
    reason = _reason(comment)
    return _decide(
        reviewer,
        admission_id,
        "reject",
        reason,
        decided_by_id=reviewer.id,
        decided_at=clock.utcnow(),
        comment=reason,
    )


def suspend_provider(reviewer: User, institution_id: int, comment: str | None) -> ProviderAdmission:
    """ADMITTED -> SUSPENDED for cause: its services are not eligible until it is reinstated.

    An institution admitted before the scheme required admission has no admission row: one is made
    for it here (admitted, with no application), so its suspension has a row like any other."""
    reason = _reason(comment)
    return _standing(
        reviewer, institution_id, "suspend", reason, suspended_at=clock.utcnow(), suspension_reason=reason
    )


def reinstate_provider(reviewer: User, institution_id: int, comment: str | None) -> ProviderAdmission:
    """SUSPENDED -> ADMITTED, saying why (the cause was put right)."""
    reason = _reason(comment)
    return _standing(reviewer, institution_id, "reinstate", reason, suspended_at=None, suspension_reason=None)


def _standing(
    reviewer: User, institution_id: int, action: str, reason: str, **values: Any
) -> ProviderAdmission:
    _require_reviewer(reviewer)
    with serialized_write():
        institution = db.session.get(Institution, institution_id)
        if institution is None:
            raise NotFound(_("No such institution."))
        admission = latest_admission(institution_id)
        if admission is None and institution.admission == AdmissionState.ADMITTED:
            admission = _grandfathered(institution)
        if admission is None:
            raise InvalidTransition(
                _("Only an admitted provider can be suspended."), {"state": NO_ADMISSION, "action": action}
            )
        _apply(admission, action, reviewer, reason, **values)
        db.session.commit()
    return admission


def _grandfathered(institution: Institution) -> ProviderAdmission:
    """The admission row of an institution admitted before the scheme required admission."""
    admission = ProviderAdmission(
        institution_id=institution.id,
        state=AdmissionState.ADMITTED,
        fee_schedule="",
        credit_statement="",
        admitted_at=institution.created_at,
    )
    db.session.add(admission)
    db.session.flush()
    return admission


def end_notice(admission_id: int) -> bool:
    """IN_NOTICE -> ADMITTED (the daily task, no one's decision): whether it was admitted now."""
    with serialized_write():
        admission = db.session.get(ProviderAdmission, admission_id)
        if admission is None or (admission.state, "end_notice") not in ADMISSION_TRANSITIONS:
            return False  # done by an earlier run, or rejected meanwhile
        _move(admission, "end_notice", None, "public notice ended", admitted_at=clock.utcnow())
        db.session.refresh(admission)
        _tell(admission, "end_notice")
        db.session.commit()
    return True


def end_public_notice(today: date | None = None) -> int:
    """Admissions whose public notice has ended take effect; returns how many."""
    today = today or clock.local_today()
    due = db.session.scalars(
        select(ProviderAdmission.id).where(
            ProviderAdmission.state == AdmissionState.IN_NOTICE, ProviderAdmission.notice_ends_on <= today
        )
    ).all()
    return sum(end_notice(admission_id) for admission_id in due)


# --- what the pages and the API list ------------------------------------------------------------


def in_notice() -> list[ProviderAdmission]:
    """The public notice board (公示): admissions approved whose notice runs now, ending soonest first."""
    return list(
        db.session.scalars(
            select(ProviderAdmission)
            .where(ProviderAdmission.state == AdmissionState.IN_NOTICE)
            .options(joinedload(ProviderAdmission.institution), selectinload(ProviderAdmission.instruments))
            .order_by(ProviderAdmission.notice_ends_on, ProviderAdmission.id)
        )
    )


def institutions_in(state: str) -> list[Institution]:
    """The institutions whose admission is `state` (a value of `Institution.admission`), by name."""
    return list(
        db.session.scalars(
            select(Institution).where(Institution.admission == state).order_by(Institution.name)
        )
    )


def waiting() -> list[ProviderAdmission]:
    """The reviewers' queue: submitted admissions, oldest first."""
    return list(
        db.session.scalars(
            select(ProviderAdmission)
            .where(ProviderAdmission.state.in_(WAITING_STATES))
            .options(joinedload(ProviderAdmission.institution), selectinload(ProviderAdmission.instruments))
            .order_by(ProviderAdmission.submitted_at, ProviderAdmission.id)
        )
    )


def history(admission_id: int) -> list[AuditEvent]:
    """The audit rows of one admission, oldest first."""
    return list(
        db.session.scalars(
            select(AuditEvent)
            .where(AuditEvent.object_type == "provider_admission", AuditEvent.object_id == str(admission_id))
            .order_by(AuditEvent.id)
        )
    )


def admission_states(institution_ids: list[int]) -> dict[int, tuple[str, date | None]]:
    """Each institution's admission and the end of its current admission's public notice (None when it
    is not in, or past, one): the API's institution fields."""
    noticed = {
        institution_id: ends
        for institution_id, ends in db.session.execute(
            select(ProviderAdmission.institution_id, ProviderAdmission.notice_ends_on)
            .where(ProviderAdmission.institution_id.in_(institution_ids))
            .order_by(ProviderAdmission.id)
        )
    }  # the newest admission of each institution comes last, so it wins
    states = db.session.execute(
        select(Institution.id, Institution.admission).where(Institution.id.in_(institution_ids))
    ).all()
    with_notice = (AdmissionState.IN_NOTICE, AdmissionState.ADMITTED, AdmissionState.SUSPENDED)
    return {
        institution_id: (state, noticed.get(institution_id) if state in with_notice else None)
        for institution_id, state in states
    }
