"""The bureau's review desk: the queue, verification, bank account and application decisions, the
audit log and the scheme's settings (claims are decided on the claim's own page, in `views`)."""

from __future__ import annotations

from datetime import time, timedelta
from decimal import Decimal
from typing import Any

from flask import Blueprint, abort, current_app, flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _
from flask_login import current_user

from portal.accounts import banking
from portal.core import clock, uploads
from portal.core.audit import ACTION_LABELS, OBJECT_LABELS
from portal.core.errors import ServiceError, ValidationFailed
from portal.core.forms import entered, filled, show_service_errors
from portal.core.inputs import page_number
from portal.core.money import fen_to_yuan, yuan_to_fen
from portal.core.permissions import Role, role_required
from portal.vouchers import applications as application_services
from portal.vouchers import audit_log as audit_log_search
from portal.vouchers import review as desk
from portal.vouchers import schemes
from portal.vouchers import verification as verification_services
from portal.vouchers.forms import (
    AuditSearchForm,
    BankAccountDecisionForm,
    DecisionForm,
    RelationForm,
    SchemeForm,
    VerificationDecisionForm,
)
from portal.vouchers.models import (
    DEFAULT_RANKING_WEIGHTS,
    RedemptionMode,
    RelationKind,
    Scheme,
)
from portal.vouchers.views import LABELS, institution_choices, page_permissions

review = Blueprint("review", __name__, url_prefix="/review")
review.context_processor(page_permissions)
# A decision form's button -> the transition it asks for (approving takes an amount as well).
APPLICATION_TURN_DOWNS = {
    "reject": application_services.reject_application,
    "return": application_services.return_application,
}


# --- the bureau's review desk --------------------------------------------------------------------


@review.route("/")
@role_required(Role.REVIEWER, Role.FINANCE, Role.ADMIN)
def queue() -> ResponseReturnValue:
    """Everything waiting for a decision, filtered by kind, county, amount and age, with counts."""
    filters = desk.QueueFilters.from_args(request.args)
    return render_template(
        "vouchers/review_queue.html",
        result=desk.queue(filters),
        filters=filters,
        scheme=schemes.current_scheme(),
        counties=current_app.config["COUNTIES"],
        **LABELS,
    )


@review.route("/verifications/<int:request_id>", methods=["GET", "POST"])
@role_required(Role.REVIEWER, Role.ADMIN)
def verification_detail(request_id: int) -> ResponseReturnValue:
    """A verification request with the evidence; verify or reject (legacy codes need an override)."""
    item = verification_services.get_request(current_user, request_id)
    if item is None:
        abort(404)
    form = VerificationDecisionForm()
    relation_form = RelationForm(prefix="relation")
    relation_form.institution.choices = institution_choices(blank=False)
    if relation_form.submit.data and relation_form.validate_on_submit():
        verification_services.add_relation(
            current_user,
            item.enterprise_id,
            int(relation_form.institution.data),
            RelationKind(relation_form.kind.data),
        )
        flash(_("Relation recorded."), "success")
        return redirect(url_for("review.verification_detail", request_id=request_id))
    if (form.verify.data or form.reject.data) and form.validate_on_submit():
        try:
            if form.verify.data:
                verification_services.verify_enterprise(
                    current_user, request_id, reason=form.reason.data, uscc_override=form.uscc_override.data
                )
            else:
                verification_services.reject_verification(current_user, request_id, form.reason.data)
        except ValidationFailed as error:
            show_service_errors(form, error)
        except ServiceError as error:
            form.form_errors.append(error.message)
        else:
            flash(_("Decision recorded."), "success")
            return redirect(url_for("review.queue", kind="verification"))
    return render_template(
        "vouchers/review_verification.html",
        item=item,
        form=form,
        relation_form=relation_form,
        history=desk.enterprise_history(item.enterprise_id),
        events=desk.history("enterprise", item.enterprise_id),
        **LABELS,
    )


@review.route("/verifications/<int:request_id>/certificate")
@role_required(Role.REVIEWER, Role.ADMIN)
def certificate(request_id: int) -> ResponseReturnValue:
    """The uploaded certificate, for reviewers only."""
    item = verification_services.get_request(current_user, request_id)
    if item is None or not item.certificate_stored:
        abort(404)
    return uploads.send_stored(item.certificate_stored, item.certificate_type, item.certificate_name)


@review.route("/bank-accounts/<int:account_id>", methods=["GET", "POST"])
@role_required(Role.REVIEWER, Role.ADMIN)
def bank_account_detail(account_id: int) -> ResponseReturnValue:
    """A bank account entered by an enterprise or a provider institution, beside the one in effect:
    verify it or reject it."""
    account = banking.get_for_review(current_user, account_id)
    form = BankAccountDecisionForm()
    if (form.verify.data or form.reject.data) and form.validate_on_submit():
        try:
            banking.decide_bank_account(
                current_user, account_id, "verify" if form.verify.data else "reject", form.reason.data
            )
        except ValidationFailed as error:
            show_service_errors(form, error)
        except ServiceError as error:
            form.form_errors.append(error.message)
        else:
            flash(_("Decision recorded."), "success")
            return redirect(url_for("review.queue", kind="bank_account"))
    versions = banking.versions(account.payee_id, account.payee_kind)
    return render_template(
        "vouchers/review_bank_account.html",
        account=account,
        form=form,
        versions=versions,
        current=next((v for v in versions if v.state.value == "verified"), None),
        name_matches=banking.name_matches(account, account.payee),
        **LABELS,
    )


@review.route("/applications/<int:application_id>", methods=["GET", "POST"])
@role_required(Role.REVIEWER, Role.FINANCE, Role.ADMIN)
def application_detail(application_id: int) -> ResponseReturnValue:
    """A voucher application: approve an amount within caps and free budget, reject or return it."""
    application = application_services.get_application(current_user, application_id)
    form = DecisionForm()
    if not form.is_submitted():
        form.amount.data = fen_to_yuan(application.first_amount_fen or application.amount_fen)
    if form.validate_on_submit() and (action := form.action()):
        try:
            if action == "approve":
                application_services.approve_application(
                    current_user,
                    application_id,
                    amount_fen=yuan_to_fen(form.amount.data) if form.amount.data is not None else None,
                    comment=form.comment.data,
                )
            else:
                APPLICATION_TURN_DOWNS[action](current_user, application_id, form.comment.data)
        except ServiceError as error:
            flash(error.message, "danger")
        else:
            flash(_("Decision recorded."), "success")
        return redirect(url_for("review.application_detail", application_id=application_id))
    return render_template(
        "vouchers/review_application.html",
        application=application,
        form=form,
        scheme=application.scheme,
        history=desk.enterprise_history(application.enterprise_id),
        events=desk.history("voucher_application", application.id),
        **LABELS,
    )


@review.route("/audit")
@role_required(Role.REVIEWER, Role.ADMIN)
def audit_log() -> ResponseReturnValue:
    """Search the audit log: who did what to which object, when, by people's and objects' names."""
    form = AuditSearchForm(request.args)
    form.choose_from(ACTION_LABELS, OBJECT_LABELS)
    form.validate()
    valid = {
        name: field.data if field.data and not field.errors else None for name, field in form._fields.items()
    }
    result = audit_log_search.search(
        audit_log_search.AuditQuery(
            action=valid["action"],
            object_type=valid["kind"],
            who=valid["who"],
            what=valid["object"],
            since=clock.local_datetime_to_utc(valid["since"], time.min) if valid["since"] else None,
            until=clock.local_datetime_to_utc(valid["until"] + timedelta(days=1), time.min)
            if valid["until"]
            else None,
            page=page_number(),
        )
    )
    return render_template(
        "vouchers/audit.html", form=form, result=result, changes=audit_log_search.readable_changes
    )


@review.route("/scheme", methods=["GET", "POST"])
@role_required(Role.ADMIN)
def scheme() -> ResponseReturnValue:
    """Set up or change a year's scheme: funds, rates, budgets, caps, validity, window, notice."""
    year = request.args.get("year", type=int)
    if year is None or not 2000 <= year <= 2100:  # a huge number would overflow the query
        year = clock.local_today().year
    current = schemes.scheme_of_year(year)
    form = SchemeForm()
    if current and not form.is_submitted():
        _fill_scheme_form(form, current)
    elif not form.is_submitted():
        form.year.data = year
        form.redemption_modes.data = [RedemptionMode.REIMBURSEMENT.value]
        _fill_ranking_weights(form, dict(DEFAULT_RANKING_WEIGHTS))
    if form.validate_on_submit():
        try:
            schemes.save_scheme(current_user, *_scheme_values(form))
        except ValidationFailed as error:
            show_service_errors(form, _fund_errors_in_place(form, error))
        else:
            flash(_("Scheme saved."), "success")
            return redirect(url_for("review.scheme", year=form.year.data))
    return render_template("vouchers/scheme.html", form=form, scheme=current, **LABELS)


def _fund_errors_in_place(form: SchemeForm, error: ValidationFailed) -> ValidationFailed:
    """The service names a fund's field "<code>_rate" or "<code>_budget": shown at that fund's row."""
    rows = {(row.form.name.data or "").strip(): row.form for row in form.funds}
    rest = {}
    for key, message in error.fields.items():
        code, _sep, field = key.rpartition("_")
        if code in rows and field in ("rate", "budget"):
            target = getattr(rows[code], field)
            target.errors = [*target.errors, message]
        else:
            rest[key] = message
    return ValidationFailed(error.message, rest)


def _fill_scheme_form(form: SchemeForm, scheme: Scheme) -> None:
    form.year.data, form.name.data = scheme.year, scheme.name
    while len(form.funds):
        form.funds.pop_entry()
    for fund in scheme.funds:
        form.funds.append_entry(
            {
                "name": fund.name,
                "label": fund.label,
                "rate": fund.rate,
                "budget": fen_to_yuan(fund.budget_fen),
                "condition": fund.condition.value,
                "enterprise_capped": fund.enterprise_capped,
            }
        )
    form.funds.append_entry()  # a blank row to add a fund
    form.enterprise_cap.data = fen_to_yuan(scheme.enterprise_cap_fen)
    form.group_cap.data = fen_to_yuan(scheme.group_cap_fen)
    form.four_eyes_threshold.data = fen_to_yuan(scheme.four_eyes_threshold_fen)
    form.voucher_validity_days.data = scheme.voucher_validity_days
    form.service_window_start.data, form.service_window_end.data = (
        scheme.service_window_start,
        scheme.service_window_end,
    )
    form.public_notice_days.data = scheme.public_notice_days
    form.excluded_service_types.data = list(scheme.excluded_service_types or [])
    form.metering_required.data = scheme.metering_required
    form.redemption_modes.data = list(scheme.redemption_modes or [])
    form.out_of_province_rate.data = scheme.out_of_province_rate
    form.redemption_days.data = scheme.redemption_days
    _fill_ranking_weights(form, scheme.ranking_weight_values)


def _fill_ranking_weights(form: SchemeForm, weights: dict[str, Decimal]) -> None:
    for key, name in form.WEIGHT_FIELDS.items():
        getattr(form, name).data = weights[key]


def _ranking_weights(form: SchemeForm) -> dict[str, str] | None:
    """The weights typed in, as decimal strings; a blank field is 0.

    None (keep what the scheme has) when all five are blank, as from a client that predates them.
    """
    typed = {key: getattr(form, name).data for key, name in form.WEIGHT_FIELDS.items()}
    if all(value is None for value in typed.values()):
        return None
    return {key: format(value if value is not None else 0, "f") for key, value in typed.items()}


def _scheme_values(form: SchemeForm) -> tuple[dict, list[schemes.FundSettings]]:
    values: dict[str, Any] = {
        "year": form.year.data,
        "name": form.name.data,
        "enterprise_cap_fen": yuan_to_fen(entered(form.enterprise_cap)),
        "group_cap_fen": yuan_to_fen(entered(form.group_cap)),
        "four_eyes_threshold_fen": yuan_to_fen(entered(form.four_eyes_threshold)),
        "voucher_validity_days": form.voucher_validity_days.data,
        "service_window_start": form.service_window_start.data,
        "service_window_end": form.service_window_end.data,
        "public_notice_days": form.public_notice_days.data,
        "excluded_service_types": list(form.excluded_service_types.data or []),
        "metering_required": bool(form.metering_required.data),
        "redemption_modes": list(form.redemption_modes.data or []),
        "out_of_province_rate": form.out_of_province_rate.data,
        "redemption_days": form.redemption_days.data,
    }
    weights = _ranking_weights(form)
    if weights is not None:
        values["ranking_weights"] = weights
    funds = [
        schemes.FundSettings(
            filled(row.form.name).strip(),
            entered(row.form.rate),
            row.form.condition.data,
            yuan_to_fen(entered(row.form.budget)),
            row.form.enterprise_capped.data,
            (row.form.label.data or "").strip(),
        )
        for row in form.funds
        if not row.form.is_blank()
    ]
    return values, funds
