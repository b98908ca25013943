"""Report pages: the year's national records to download, and the yearly evaluation."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from flask import Blueprint, abort, current_app, flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _
from flask_login import current_user

from portal.core import clock
from portal.core.errors import ValidationFailed
from portal.core.exports import attachment, streamed_csv, streamed_xlsx
from portal.core.forms import show_service_errors
from portal.core.inputs import page_number
from portal.core.money import yuan_to_fen
from portal.core.permissions import Role, role_required
from portal.reporting import nrii, purchases, scores, services, submissions
from portal.reporting.forms import PurchaseForm, ScoreSheetForm, SubmitForm

bp = Blueprint("reporting", __name__, url_prefix="/reports")
EVALUATORS = (Role.REVIEWER, Role.ADMIN)
FORMATS = ("csv", "xlsx")


def _year() -> tuple[int, list[str]]:
    """The year asked for; without one, the last full year (the national reports and the evaluation are
    of a year that has ended); anything else falls back to it, with a message."""
    this_year = clock.local_today().year
    text = request.args.get("year", "")
    if not text:
        return this_year - 1, []
    if _digits(text, 4) and 2000 <= int(text) <= this_year:
        return int(text), []
    return this_year - 1, [_("Choose a year between 2000 and %(year)d.", year=this_year)]


def _digits(text: str, longest: int) -> bool:
    """ASCII digits only ("²" and "٣" are digits to str.isdigit; int() refuses one, and a string of
    thousands of digits is refused too), and not too many of them."""
    return 0 < len(text) <= longest and text.isascii() and text.isdigit()


def _institution_id() -> int | None:
    text = request.args.get("institution_id", "")
    if not text:
        return None
    if not _digits(text, 9):
        abort(404)
    return int(text)


def _county() -> str | None:
    county = request.args.get("county") or None
    return county if county in current_app.config["COUNTIES"] else None


@bp.route("/")
@role_required(*services.READERS)
def index() -> ResponseReturnValue:
    """The year's national records of the institution (a provider's own), to download; its annual
    report, its final versions and what changed since the latest."""
    year, problems = _year()
    return _index(year, problems, SubmitForm(formdata=None, year=year))


def _index(year: int, problems: list[str], form: SubmitForm) -> str:
    scope = services.report_scope(current_user, _institution_id())
    institution_id = scope.institution_id
    versions = submissions.snapshots(institution_id, year) if institution_id else []
    # Comparing reads every record of the year twice (seconds for a large institution): on request.
    compare = bool(versions) and request.args.get("compare") == "1"
    return render_template(
        "reporting/index.html",
        year=year,
        years=range(clock.local_today().year, 2019, -1),
        problems=problems,
        scope=scope,
        institutions=services.institutions_to_choose(current_user),
        formats=FORMATS,
        may_evaluate=current_user.role in EVALUATORS,
        annual=submissions.annual_report(institution_id, year) if institution_id else None,
        versions=versions,
        compare=compare,
        changes=submissions.differences(versions[0]) if compare else [],
        may_submit=submissions.may_submit(current_user, institution_id),
        form=form,
        section_labels={
            "annual": _("Annual report"),
            "instruments": _("Instruments"),
            "service_records": _("Service records"),
        },
    )


@bp.route("/submit", methods=["POST"])
@role_required(Role.PROVIDER)
def submit() -> ResponseReturnValue:
    """Submit the institution's report of the year as final (a new version only on purpose)."""
    form = SubmitForm()
    if not form.validate_on_submit():
        if form.csrf_token.errors:
            abort(400)
        # The year is a hidden field: a wrong one is said above the button, not beside an invisible field.
        form.form_errors.append(_("Choose a year between 2000 and %(year)d.", year=clock.local_today().year))
        return _index(clock.local_today().year - 1, [], form)
    year = int(form.year.data or 0)  # validated: present and in range
    try:
        snapshot = submissions.submit_final(current_user, year, new_version=bool(form.new_version.data))
    except ValidationFailed as error:
        show_service_errors(form, error)
        return _index(year, [], form)
    flash(_("Version %(n)d of the %(year)d report is final.", n=snapshot.version, year=year), "success")
    return redirect(url_for("reporting.index", year=year))


@bp.route("/snapshots/<int:snapshot_id>.json")
@role_required(*services.READERS)
def snapshot_file(snapshot_id: int) -> ResponseReturnValue:
    """A final version exactly as it was frozen: the bytes its SHA-256 was taken of."""
    snapshot = submissions.get_snapshot(current_user, snapshot_id)
    name = f"nrii-report-{snapshot.institution_id}-{snapshot.year}-v{snapshot.version}.json"
    return attachment(snapshot.content.encode(), "application/json", name)


def _download(kind: str, fmt: str, year: int, rows: Iterable[list[Any]]) -> ResponseReturnValue:
    """A report file, streamed: a province's year of services is a million rows."""
    filename = f"nrii-{kind}-{year}.{fmt}"
    if fmt == "csv":
        return streamed_csv(rows, filename)
    return streamed_xlsx(kind, rows, filename)


@bp.route("/instruments.<fmt>")
@role_required(*services.READERS)
def instruments_file(fmt: str) -> ResponseReturnValue:
    """The national instrument records with the year's hours."""
    if fmt not in FORMATS:
        abort(404)
    year, _problems = _year()
    scope = services.report_scope(current_user, _institution_id())
    items = services.all_instruments(scope, year)
    return _download("instruments", fmt, year, nrii.table_rows(nrii.INSTRUMENT_HEADERS, items))


@bp.route("/service-records.<fmt>")
@role_required(*services.READERS)
def services_file(fmt: str) -> ResponseReturnValue:
    """The year's national service records."""
    if fmt not in FORMATS:
        abort(404)
    year, _problems = _year()
    scope = services.report_scope(current_user, _institution_id())
    items = services.all_services(scope, year)
    return _download("service-records", fmt, year, nrii.table_rows(nrii.SERVICE_HEADERS, items))


@bp.route("/evaluation")
@role_required(*EVALUATORS)
def evaluation() -> ResponseReturnValue:
    """Every reported instrument's effective hours against its norm, by institution, for a year and county."""
    year, problems = _year()
    scope = services.report_scope(current_user, _institution_id(), _county())
    return render_template(
        "reporting/evaluation.html",
        year=year,
        years=range(clock.local_today().year, 2019, -1),
        problems=problems,
        result=services.evaluation_overview(scope, year),
        counties=current_app.config["COUNTIES"],
        institutions=services.institutions_to_choose(current_user),
        formats=FORMATS,
        measures={
            "metered": _("metered"),
            "service_records": _("service records"),
            "internal_use": _("internal use"),
        },
    )


@bp.route("/evaluation.<fmt>")
@role_required(*EVALUATORS)
def evaluation_file(fmt: str) -> ResponseReturnValue:
    if fmt not in FORMATS:
        abort(404)
    year, _problems = _year()
    scope = services.report_scope(current_user, _institution_id(), _county())
    return _download("evaluation", fmt, year, services.evaluation_table(services.evaluate(scope, year)))


# --- purchase checks (查重评议) --------------------------------------------------------------------


def _planned(form: PurchaseForm) -> purchases.PlannedPurchase:
    return purchases.PlannedPurchase(
        category_code=form.category.data or "",
        name=(form.name.data or "").strip(),
        key_specs=form.key_specs.data or "",
        price_fen=yuan_to_fen(form.price.data or "0"),
        conclusion=form.conclusion.data or "",
    )


def _purchase_page(form: PurchaseForm, found: list | None) -> str:
    return render_template(
        "reporting/purchases.html",
        form=form,
        found=found,
        year=purchases.last_full_year(),
        threshold=current_app.config["PURCHASE_CHECK_MIN_HOURS"],
        checks=purchases.checks(current_user, page_number()),
    )


@bp.route("/purchase-checks", methods=["GET", "POST"])
@role_required(*purchases.CHECKERS)
def purchase_checks() -> ResponseReturnValue:
    """Check a planned purchase against the city's instruments of its category, then save the check
    with a conclusion; the checks made, the latest first."""
    form = PurchaseForm(formdata=request.form if request.method == "POST" else None)
    if request.method == "GET":
        return _purchase_page(form, None)
    if not form.validate_on_submit():
        if form.csrf_token.errors:
            abort(400)
        return _purchase_page(form, None)
    try:
        if not form.submit.data:  # "look up"
            return _purchase_page(form, purchases.preview(current_user, _planned(form)))
        check = purchases.record_check(current_user, _planned(form))
    except ValidationFailed as error:
        show_service_errors(form, error)
        return _purchase_page(form, None)
    flash(_("The purchase check is saved."), "success")
    return redirect(url_for("reporting.purchase_check", check_id=check.id))


@bp.route("/purchase-checks/<int:check_id>")
@role_required(*purchases.CHECKERS)
def purchase_check(check_id: int) -> ResponseReturnValue:
    return render_template("reporting/purchase.html", check=purchases.get_check(current_user, check_id))


# --- the score sheet ------------------------------------------------------------------------------


def _sheet_page(institution_id: int, year: int, form: ScoreSheetForm) -> str:
    institution = services.scoped_institution(current_user, institution_id)
    signed = scores.sheets(institution.id, year)
    return render_template(
        "reporting/score_sheet.html",
        institution=institution,
        year=year,
        computed=scores.computed_scores(institution.id, year),
        items=scores.ITEMS,
        maximum=scores.maximum,
        part_labels=scores.PART_LABELS,
        weights=scores.weights(),
        signed=signed,
        form=form,
        formats=FORMATS,
    )


@bp.route("/evaluation/score-sheet", methods=["GET", "POST"])
@role_required(*scores.SIGNERS)
def score_sheet() -> ResponseReturnValue:
    """An institution's score sheet of a year: the computed items, the entered ones, signing."""
    if request.method == "GET":
        year, _problems = _year()
        institution_id = _institution_id()
        if institution_id is None:
            abort(404)
        return _sheet_page(
            institution_id, year, ScoreSheetForm(formdata=None, institution_id=institution_id, year=year)
        )
    form = ScoreSheetForm()
    if not form.validate_on_submit():
        if form.csrf_token.errors or form.institution_id.errors:
            abort(400)
        form.form_errors.append(_("Choose a year between 2000 and %(year)d.", year=clock.local_today().year))
        return _sheet_page(int(form.institution_id.data or 0), clock.local_today().year, form)
    institution_id, year = int(form.institution_id.data or 0), int(form.year.data or 0)
    entered = {key: getattr(form, key).data or "" for key in ("results", "rules", "openness")}
    try:
        sheet = scores.sign(current_user, institution_id, year, entered)
    except ValidationFailed as error:
        show_service_errors(form, error)
        return _sheet_page(institution_id, year, form)
    flash(_("The score sheet is signed: %(total)s points.", total=sheet.total), "success")
    return redirect(url_for("reporting.score_sheet", institution_id=institution_id, year=year))


@bp.route("/evaluation/score-sheet.<fmt>")
@role_required(*scores.SIGNERS)
def score_sheet_file(fmt: str) -> ResponseReturnValue:
    if fmt not in FORMATS:
        abort(404)
    year, _problems = _year()
    institution_id = _institution_id()
    if institution_id is None:
        abort(404)
    institution = services.scoped_institution(current_user, institution_id)
    latest = next(iter(scores.sheets(institution.id, year)), None)
    return _download(
        f"score-sheet-{institution.id}", fmt, year, scores.sheet_rows(institution.id, year, latest)
    )
