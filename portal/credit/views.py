"""Credit pages: an enterprise's record and status; the violations a provider or reviewer may waive;
the scheme's rules (administrators)."""

from __future__ import annotations

from flask import Blueprint, flash, redirect, render_template, url_for
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _
from flask_login import current_user

from portal.core.errors import ServiceError
from portal.core.inputs import page_number
from portal.core.permissions import Role, role_required
from portal.credit import services
from portal.credit.forms import RulesForm, WaiveForm
from portal.credit.models import DEFAULT_RULES, VIOLATION_LABELS

bp = Blueprint("credit", __name__, url_prefix="/credit")


@bp.route("/")
@role_required(Role.ENTERPRISE, *services.WAIVERS)
def index() -> ResponseReturnValue:
    """An enterprise's own record and status; for providers and reviewers, the violations to waive."""
    if current_user.role is Role.ENTERPRISE:
        status = services.credit_status(current_user)
        return render_template("credit/mine.html", status=status, labels=VIOLATION_LABELS)
    result = services.violations_page(current_user, page_number())
    return render_template(
        "credit/violations.html",
        result=result,
        labels=VIOLATION_LABELS,
        may={row.id: services.can_waive(current_user, row) for row in result.items},
        form=WaiveForm(),
    )


@bp.route("/violations/<int:violation_id>/waive", methods=["POST"])
@role_required(*services.WAIVERS)
def waive(violation_id: int) -> ResponseReturnValue:
    """Waive a violation with a reason (audited; the enterprise is told)."""
    form = WaiveForm()
    if not form.validate_on_submit():
        services.get_violation(current_user, violation_id)  # a foreign id answers 404 first
        flash(_("Please give a reason."), "danger")
    else:
        try:
            services.waive_violation(current_user, violation_id, form.reason.data)
        except ServiceError as error:
            if error.status == 404:
                raise
            flash(error.message, "danger")
        else:
            flash(_("The violation no longer counts."), "success")
    return redirect(url_for("credit.index"))


@bp.route("/rules", methods=["GET", "POST"])
@role_required(Role.ADMIN)
def rules() -> ResponseReturnValue:
    """This year's scheme's credit rules: N violations in M days suspend online booking for K days."""
    current = services.rules_in_force()
    form = RulesForm(obj=current)
    if form.validate_on_submit():
        try:
            services.save_rules(current_user, {k: getattr(form, k).data for k in DEFAULT_RULES})
        except ServiceError as error:
            form.form_errors.append(error.message)
        else:
            flash(_("The credit rules are saved."), "success")
            return redirect(url_for("credit.rules"))
    return render_template("credit/rules.html", form=form)
