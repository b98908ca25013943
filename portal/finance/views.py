"""Finance pages: totals with charts, exports (large ones by a worker), batches, closing months."""

from __future__ import annotations

import io

from flask import (
    Blueprint,
    abort,
    current_app,
    flash,
    redirect,
    render_template,
    request,
    url_for,
)
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _
from flask_login import current_user

from portal.accounts.models import PAYEE_KIND_LABELS
from portal.core import clock, uploads
from portal.core.charts import Series, bar_chart
from portal.core.errors import ServiceError
from portal.core.exports import XLSX_MIMETYPE, attachment
from portal.core.forms import filled
from portal.core.permissions import Role, role_required
from portal.finance import batches as batch_transitions
from portal.finance import exports, services
from portal.finance.forms import ActionForm, CloseForm, MonthForm, PaidForm, TotalsForm
from portal.finance.models import BATCH_STATE_LABELS, ExportState
from portal.vouchers.labels import fund_labels

bp = Blueprint("finance", __name__, url_prefix="/finance")
FINANCE = (Role.FINANCE, Role.ADMIN)


def _period() -> tuple[TotalsForm, str, str]:
    form = TotalsForm(request.args)
    form.validate()
    this_month = services.month_of(clock.utcnow())
    month_from = (
        form.month_from.data
        if form.month_from.data and not form.month_from.errors
        else this_month[:4] + "-01"
    )
    month_to = form.month_to.data if form.month_to.data and not form.month_to.errors else this_month
    if month_from > month_to:
        month_from, month_to = month_to, month_from
    return form, month_from, month_to


@bp.route("/")
@role_required(*FINANCE, Role.REVIEWER)
def index() -> ResponseReturnValue:
    """Approved and paid subsidy for a period, grouped by fund, county, enterprise, provider, redemption
    mode or payee kind, with the split by mode reconciled with the ledger."""
    form, month_from, month_to = _period()
    group_by = form.group_by.data if form.group_by.data in services.GROUPS else "fund"
    result = services.totals(month_from, month_to, group_by)
    funds, series = services.monthly_series(month_from, month_to)
    labels = fund_labels()
    chart = bar_chart(
        [month for month, _amounts in series],
        [
            Series(labels.get(fund, fund), [amounts.get(fund, 0) / 100 for _month, amounts in series])
            for fund in funds
        ],
        title=_("Approved subsidy per month"),
        unit="",
    )
    # WTForms 3.3 keeps SelectChoice objects in `choices`; its stubs (3.2) know only pairs and dicts.
    group_choices = [(choice.value, choice.label) for choice in form.group_by.choices]  # type: ignore[union-attr]
    group_label = dict(group_choices).get(group_by, group_by)
    # Only finance sees the export's links with their count (and only it may export): not counted for
    # a reviewer.
    may_export = current_user.role in FINANCE
    return render_template(
        "finance/index.html",
        form=form,
        result=result,
        group_label=group_label,
        group_choices=group_choices,
        ledger_fen=services.ledger_committed(month_from, month_to),
        modes=services.by_mode(month_from, month_to),
        chart=chart,
        month_from=month_from,
        month_to=month_to,
        rows_to_export=exports.count_export_rows(month_from, month_to) if may_export else None,
        async_rows=current_app.config["EXPORT_ASYNC_ROWS"],
    )


@bp.route("/export.<fmt>")
@role_required(*FINANCE)
def export(fmt: str) -> ResponseReturnValue:
    """Every approved claim of the period as CSV or XLSX; a large export goes to a worker."""
    if fmt not in ("csv", "xlsx"):
        abort(404)
    _form, month_from, month_to = _period()
    if exports.count_export_rows(month_from, month_to) > current_app.config["EXPORT_ASYNC_ROWS"]:
        job = exports.start_export_job(current_user, month_from, month_to, fmt)
        return redirect(url_for("finance.export_job", job_id=job.id))
    name = f"subsidies-{month_from}-{month_to}.{fmt}"
    if fmt == "csv":
        return attachment(exports.csv_text(month_from, month_to), "text/csv", name)
    buffer = io.BytesIO()
    exports.write_xlsx(buffer, month_from, month_to)
    return attachment(buffer.getvalue(), XLSX_MIMETYPE, name)


@bp.route("/exports/<int:job_id>")
@role_required(*FINANCE)
def export_job(job_id: int) -> ResponseReturnValue:
    """The progress of a large export, then its download link."""
    job = exports.get_export_job(current_user, job_id)
    return render_template("finance/export_job.html", job=job, done=job.state is ExportState.DONE)


@bp.route("/exports/<int:job_id>/download")
@role_required(*FINANCE)
def export_download(job_id: int) -> ResponseReturnValue:
    job = exports.get_export_job(current_user, job_id)
    if job.state is not ExportState.DONE or not job.stored_name:
        abort(404)
    name = f"subsidies-{job.params['month_from']}-{job.params['month_to']}.{job.fmt}"
    return uploads.send_stored(job.stored_name, None, name)


@bp.route("/batches", methods=["GET", "POST"])
@role_required(*FINANCE)
def batches() -> ResponseReturnValue:
    """Disbursement batches; build this month's from the payable claims; close a finished month."""
    form, close_form = MonthForm(prefix="batch"), CloseForm(prefix="close")
    if form.month.data is None:  # not the form sent (or none was): offer this month
        form.month.data = services.month_of(clock.utcnow())
    try:
        if form.submit.data and form.validate_on_submit():
            batch = batch_transitions.build_batch(current_user, form.month.data)
            flash(_("Batch built."), "success")
            if batch.held_back:
                payees = ", ".join(payee["name"] for payee in batch.held_back)
                flash(
                    _("Not in the batch, for want of a verified bank account: %(payees)s.", payees=payees),
                    "warning",
                )
            return redirect(url_for("finance.batch", batch_id=batch.id))
        if close_form.submit.data and close_form.validate_on_submit():
            services.close_month(current_user, filled(close_form.month))
            flash(_("The month is closed."), "success")
            return redirect(url_for("finance.batches"))
    except ServiceError as error:  # said at the month of the form that was sent, which keeps its value
        sent = form if form.submit.data else close_form
        sent.month.errors = [*sent.month.errors, error.message]
    waiting = services.claims_waiting_for_batch()
    return render_template(
        "finance/batches.html",
        batches=services.batches(),
        can_build=batch_transitions.can_build_batch(current_user),
        form=form,
        close_form=close_form,
        closed=services.closed_months(),
        waiting=waiting,
        without_account=services.payees_without_account(),
        state_labels=BATCH_STATE_LABELS,
        payee_kinds=PAYEE_KIND_LABELS,
    )


@bp.route("/batches/<int:batch_id>", methods=["GET", "POST"])
@role_required(*FINANCE)
def batch(batch_id: int) -> ResponseReturnValue:
    """A batch: its payments, the bank export, marking it paid."""
    item = batch_transitions.get_batch(current_user, batch_id)
    if item is None:
        abort(404)
    export_form, paid_form = ActionForm(prefix="export"), PaidForm(prefix="paid")
    try:
        if (export_form.submit.data or export_form.xlsx.data) and export_form.validate_on_submit():
            fmt = export_form.fmt()
            body = batch_transitions.export_batch(current_user, batch_id, fmt)
            return attachment(body, XLSX_MIMETYPE if fmt == "xlsx" else "text/csv", f"batch-{batch_id}.{fmt}")
        if paid_form.submit.data and paid_form.validate_on_submit():
            batch_transitions.mark_batch_paid(current_user, batch_id, filled(paid_form.reference))
            flash(_("The batch is paid; the enterprises are notified."), "success")
            return redirect(url_for("finance.batch", batch_id=batch_id))
    except ServiceError as error:
        flash(error.message, "danger")
    return render_template(
        "finance/batch.html",
        batch=item,
        payments=services.payments(item),
        export_form=export_form,
        paid_form=paid_form,
        can_export=batch_transitions.can_export_batch(current_user, item),
        can_mark_paid=batch_transitions.can_mark_batch_paid(current_user, item),
        state_labels=BATCH_STATE_LABELS,
        payee_kinds=PAYEE_KIND_LABELS,
    )
