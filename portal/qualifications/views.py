"""Qualification pages: the provider's grants, operation modes, price table and training sessions
(/manage/instruments/<code>/…), and a user's enrolment in a training session."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _
from flask_login import current_user

from portal.catalog import prices
from portal.catalog.models import Instrument
from portal.catalog.ownership import owns
from portal.catalog.price_models import (
    CUSTOMER_LABELS,
    PRICE_MODE_LABELS,
    UNIT_LABELS,
    CustomerCategory,
    PriceMode,
)
from portal.core import clock, money
from portal.core.errors import ServiceError, ValidationFailed
from portal.core.forms import filled, show_service_errors
from portal.core.permissions import Role, role_required
from portal.qualifications import services
from portal.qualifications.forms import (
    EnrolForm,
    GrantForm,
    PriceTableForm,
    RevokeForm,
    TrainingForm,
    UseRulesForm,
    format_steps,
    price_cells,
)
from portal.qualifications.models import OPERATION_LABELS

bp = Blueprint("qualifications", __name__)

EDITORS = (Role.PROVIDER, Role.ADMIN)


@bp.app_context_processor
def _helpers() -> dict[str, Any]:
    """What other areas' pages show of this one: the account page's qualifications, the detail
    page's price table (the visitor's row marked) and training sessions."""
    return {
        "my_qualifications": lambda: (
            services.user_qualifications(current_user) if current_user.is_authenticated else []
        ),
        "upcoming_training": services.upcoming_training,
        "instrument_prices": prices.price_table,
        "visitor_category": _visitor_category,
        "use_rules_for": services.use_rules_for,
        "price_labels": {
            "customer": CUSTOMER_LABELS,
            "mode": PRICE_MODE_LABELS,
            "unit": UNIT_LABELS,
            "operation": OPERATION_LABELS,
        },
        "enrol_form": EnrolForm,
        "today": clock.local_today,
    }


def _visitor_category(instrument: Instrument) -> str | None:
    if not current_user.is_authenticated or current_user.role is not Role.ENTERPRISE:
        return None
    return prices.category_of(current_user.enterprise, instrument).value


def _qualifications_page(instrument: Instrument, grant_form: GrantForm, training_form: TrainingForm) -> str:
    rules = services.use_rules_for(instrument)
    rules_form = UseRulesForm(prefix="rules")
    if not rules_form.is_submitted():
        rules_form.operations.data = list(rules.operations)
        rules_form.requires_qualification.data = rules.requires_qualification
    return render_template(
        "qualifications/manage.html",
        instrument=instrument,
        rules=rules,
        rules_form=rules_form,
        grant_form=grant_form,
        training_form=training_form,
        revoke_form=RevokeForm(prefix="revoke"),
        qualifications=services.instrument_qualifications(current_user, instrument.code),
        sessions=services.instrument_training(current_user, instrument.code),
        owner=owns(current_user, instrument),
    )


@bp.route("/manage/instruments/<code>/qualifications", methods=["GET", "POST"])
@role_required(*EDITORS)
def manage(code: str) -> ResponseReturnValue:
    """Who may run the instrument themselves: grants, operation modes and training sessions."""
    instrument = services.managed_instrument(current_user, code)
    grant_form = GrantForm(prefix="grant")
    training_form = TrainingForm(prefix="training")
    # (`is not None` again: what DataRequired checked, said so that the type checker sees it.)
    if grant_form.submit.data and grant_form.validate_on_submit() and grant_form.valid_until.data is not None:
        try:
            services.grant_qualification(
                current_user,
                code,
                filled(grant_form.username),
                grant_form.valid_until.data,
                grant_form.note.data or "",
            )
        except ValidationFailed as error:
            show_service_errors(grant_form, error)
        else:
            flash(_("Qualification granted; the user has been told."), "success")
            return redirect(url_for("qualifications.manage", code=code))
    elif training_form.submit.data and training_form.validate_on_submit():
        try:
            services.publish_training(current_user, code, training_form.training_input())
        except ValidationFailed as error:
            show_service_errors(training_form, error)
        else:
            flash(_("Training session published."), "success")
            return redirect(url_for("qualifications.manage", code=code))
    return _qualifications_page(instrument, grant_form, training_form)


@bp.route("/manage/instruments/<code>/qualifications/<int:qualification_id>/revoke", methods=["POST"])
@role_required(*EDITORS)
def revoke(code: str, qualification_id: int) -> ResponseReturnValue:
    """Revoke one qualification now."""
    services.managed_instrument(current_user, code)
    form = RevokeForm(prefix="revoke")
    if form.validate_on_submit():
        try:
            services.revoke_qualification(current_user, code, qualification_id, form.reason.data)
        except ValidationFailed as error:
            flash(error.message, "danger")
        else:
            flash(_("Qualification revoked; the user has been told."), "success")
    return redirect(url_for("qualifications.manage", code=code))


@bp.route("/manage/instruments/<code>/use-rules", methods=["POST"])
@role_required(Role.PROVIDER)
def use_rules(code: str) -> ResponseReturnValue:
    """The operation modes offered and whether self time needs a qualification (own providers)."""
    instrument = services.managed_instrument(current_user, code)
    form = UseRulesForm(prefix="rules")
    if form.validate_on_submit():
        try:
            services.set_use_rules(
                current_user, instrument, form.operations.data or [], form.requires_qualification.data
            )
        except ServiceError as error:
            flash(error.message, "danger")
        else:
            flash(_("Operation modes saved."), "success")
    return redirect(url_for("qualifications.manage", code=code))


@bp.route("/manage/instruments/<code>/prices", methods=["GET", "POST"])
@role_required(*EDITORS)
def manage_prices(code: str) -> ResponseReturnValue:
    """The instrument's price table: one line per customer category and mode."""
    instrument = services.managed_instrument(current_user, code)
    form = PriceTableForm()
    errors: dict[str, str] = {}
    if form.validate_on_submit():
        try:
            prices.set_price_table(current_user, code, form.rows(request.form))
        except ValidationFailed as error:
            errors = error.fields
            form.form_errors.append(error.fields.get("prices") or error.message)
        else:
            flash(_("Price table saved."), "success")
            return redirect(url_for("qualifications.manage_prices", code=code))
    # An instrument without a table of its own shows its published fees as the enterprise lines.
    table = {(p.customer, p.mode): p for p in prices.price_table(instrument)}
    return render_template(
        "qualifications/prices.html",
        instrument=instrument,
        form=form,
        table=table,
        errors=errors,
        posted=request.form if form.is_submitted() else None,
        customers=list(CustomerCategory),
        modes=list(PriceMode),
        cells=price_cells,
        format_steps=format_steps,
    )


@bp.route("/training/<int:session_id>/enrol", methods=["POST"])
@role_required(Role.ENTERPRISE)
def enrol(session_id: int) -> ResponseReturnValue:
    """Take a place in a training session."""
    form = EnrolForm()
    code = services.training_session(session_id).instrument.code
    if form.validate_on_submit():
        try:
            services.enrol(current_user, session_id)
        except ValidationFailed as error:
            flash(error.message, "danger")
        else:
            flash(_("You are enrolled in the training session."), "success")
    return redirect(url_for("catalog.detail", code=code) + "#training")


@bp.app_template_filter("yuan_plain")
def yuan_plain(fen: int | None) -> str:
    """An amount in yuan as a form field holds it ("1234.50"), without the currency sign."""
    return "" if fen is None else str(money.fen_to_yuan(fen))
