"""Admission pages: a provider's application for its institution, the reviewers' queue and decisions,
suspension and reinstatement, and the public notice of providers (公示)."""

from __future__ import annotations

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _
from flask_login import current_user

from portal.accounts.models import INSTITUTION_KIND_LABELS
from portal.admission import services
from portal.admission.forms import AdmissionDecisionForm, AdmissionForm, StandingForm
from portal.admission.models import ADMISSION_LABELS, AdmissionState, ProviderAdmission
from portal.core import uploads
from portal.core.errors import ServiceError, ValidationFailed
from portal.core.forms import show_service_errors
from portal.core.permissions import Role, role_required

bp = Blueprint("admission", __name__, url_prefix="/admission")
LABELS = {"admission_labels": ADMISSION_LABELS, "kind_labels": INSTITUTION_KIND_LABELS}
TURN_DOWNS = {"return": services.return_admission, "reject": services.reject_admission}
# The reviewers' queue shows the institutions in one admission state at a time.
QUEUE_STATES = ("submitted", "in_notice", "returned", "admitted", "suspended", "rejected", "none")


@bp.route("/notices")
def notices() -> ResponseReturnValue:
    """The public notice of providers (公示): admissions in notice, with its end, and admitted providers."""
    return render_template(
        "admission/notices.html",
        noticed=services.in_notice(),
        admitted=services.institutions_in(AdmissionState.ADMITTED),
        **LABELS,
    )


@bp.route("/institutions/<int:institution_id>", methods=["GET", "POST"])
@role_required(Role.PROVIDER, Role.REVIEWER, Role.ADMIN)
def institution(institution_id: int) -> ResponseReturnValue:
    """An institution's admission: its providers apply (or correct a returned application); reviewers
    see its history and suspend or reinstate it."""
    institution = services.get_institution(current_user, institution_id)
    admissions = services.admissions_of(institution_id)
    latest = admissions[0] if admissions else None
    form = AdmissionForm()
    form.instruments.choices = [
        (i.id, f"{i.code} {i.name}") for i in services.offered_instruments(institution_id)
    ]
    may_apply = services.can_apply(current_user, institution) or services.can_resubmit(current_user, latest)
    if latest is not None and latest.state is AdmissionState.RETURNED and not form.is_submitted():
        _fill(form, latest)
    if may_apply and form.validate_on_submit():
        try:
            services.apply_for_admission(current_user, institution_id, *_entered(form))
        except ValidationFailed as error:
            show_service_errors(form, error)
        except ServiceError as error:
            form.form_errors.append(error.message)
        else:
            flash(_("Your application for admission is submitted."), "success")
            return redirect(url_for("admission.institution", institution_id=institution_id))
    return render_template(
        "admission/institution.html",
        institution=institution,
        admissions=admissions,
        latest=latest,
        form=form if may_apply else None,
        standing=StandingForm() if services.is_reviewer(current_user) else None,
        **LABELS,
    )


def _fill(form: AdmissionForm, admission: ProviderAdmission) -> None:
    form.instruments.data = [i.id for i in admission.instruments]
    form.fee_schedule.data = admission.fee_schedule
    form.credit_statement.data = admission.credit_statement


def _entered(form: AdmissionForm) -> tuple:
    data = services.AdmissionData(
        instrument_ids=list(form.instruments.data or []),
        fee_schedule=form.fee_schedule.data or "",
        credit_statement=form.credit_statement.data or "",
    )
    upload = form.fee_file.data
    if upload is None or not getattr(upload, "filename", ""):
        return data, None, None
    return data, upload.stream, upload.filename


@bp.route("/institutions/<int:institution_id>/standing", methods=["POST"])
@role_required(Role.REVIEWER, Role.ADMIN)
def standing(institution_id: int) -> ResponseReturnValue:
    """Suspend an admitted provider for cause, or reinstate a suspended one (a reason either way)."""
    services.get_institution(current_user, institution_id)
    form = StandingForm()
    if form.validate_on_submit() and (form.suspend.data or form.reinstate.data):
        change = services.suspend_provider if form.suspend.data else services.reinstate_provider
        try:
            change(current_user, institution_id, form.reason.data)
        except ServiceError as error:
            flash(error.message, "danger")
        else:
            flash(_("Decision recorded."), "success")
    else:
        flash(_("Please give a reason."), "danger")
    return redirect(url_for("admission.institution", institution_id=institution_id))


@bp.route("/")
@role_required(Role.REVIEWER, Role.ADMIN)
def queue() -> ResponseReturnValue:
    """The reviewers' list: the institutions in one admission state (submitted ones first)."""
    state = request.args.get("state", "submitted")
    if state not in QUEUE_STATES:
        state = "submitted"
    return render_template(
        "admission/queue.html",
        state=state,
        states=QUEUE_STATES,
        waiting=services.waiting() if state == AdmissionState.SUBMITTED else [],
        institutions=services.institutions_in(state),
        **LABELS,
    )


@bp.route("/<int:admission_id>", methods=["GET", "POST"])
@role_required(Role.REVIEWER, Role.ADMIN)
def detail(admission_id: int) -> ResponseReturnValue:
    """An application with its instruments, fees and credit statement: approve, return or reject it;
    during its public notice, reject it when an objection is upheld."""
    admission = services.get_admission(current_user, admission_id)
    form = AdmissionDecisionForm()
    if form.validate_on_submit() and (action := form.action()):
        try:
            if action == "approve":
                services.approve_admission(current_user, admission_id, form.comment.data)
            else:
                TURN_DOWNS[action](current_user, admission_id, form.comment.data)
        except ServiceError as error:
            flash(error.message, "danger")
        else:
            flash(_("Decision recorded."), "success")
        return redirect(url_for("admission.detail", admission_id=admission_id))
    return render_template(
        "admission/detail.html",
        admission=admission,
        form=form,
        events=services.history(admission_id),
        transitions=services.ADMISSION_TRANSITIONS,
        **LABELS,
    )


@bp.route("/<int:admission_id>/fee-schedule")
@role_required(Role.PROVIDER, Role.REVIEWER, Role.ADMIN)
def fee_file(admission_id: int) -> ResponseReturnValue:
    """The uploaded fee schedule, for the institution's providers and the reviewers."""
    admission = services.get_admission(current_user, admission_id)
    if not admission.fee_file_stored:
        abort(404)
    return uploads.send_stored(admission.fee_file_stored, admission.fee_file_type, admission.fee_file_name)
