"""Admin console pages (administrators only); each section's rules live in its area's services."""

from __future__ import annotations

from flask import Blueprint, current_app, flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import current_user

from portal.accounts import services as accounts
from portal.accounts.models import (
    ENTERPRISE_KIND_LABELS,
    INSTITUTION_KIND_LABELS,
    VERIFICATION_LABELS,
    EnterpriseKind,
    InstitutionKind,
    VerificationState,
)
from portal.admin import services
from portal.admin.forms import (
    ActionForm,
    EnterpriseSearchForm,
    InstitutionForm,
    SearchForm,
    SynonymForm,
    UploadForm,
)
from portal.catalog import imports
from portal.catalog import synonyms as search_synonyms
from portal.catalog.models import IMPORT_STATE_LABELS, ImportState
from portal.catalog.upload_checks import FORMATS
from portal.core import uploads
from portal.core.errors import InvalidTransition, ServiceError, ValidationFailed
from portal.core.forms import filled, show_service_errors
from portal.core.inputs import page_number
from portal.core.permissions import Role, role_required
from portal.vouchers import schemes as scheme_services

bp = Blueprint("admin", __name__, url_prefix="/admin")

# The console's sections, in the order the front page shows them: (endpoint, title, what it is for).
SECTIONS = [
    (
        "admin.users_index",
        _l("Users"),
        _l("Every account: create staff accounts, roles, deactivation, reset links."),
    ),
    (
        "admin.institutions",
        _l("Institutions"),
        _l("Host institutions: name, credit code, county, and whether they are in Liaocheng."),
    ),
    ("admin.enterprises", _l("Enterprises"), _l("Find a registered enterprise and its verification.")),
    ("admin.categories", _l("Instrument categories"), _l("The two-level code table of the catalogue.")),
    (
        "admin.schemes",
        _l("Yearly schemes"),
        _l("Voucher schemes by year; make next year's from this year's."),
    ),
    (
        "admin.imports_page",
        _l("Catalogue imports"),
        _l("Upload a CSV or XLSX file: a dry run lists every problem, then apply it."),
    ),
    (
        "admin.synonyms",
        _l("Search synonyms"),
        _l("Short forms a catalogue search also reads as their long form: XRD, SEM, NMR …"),
    ),
    ("notifications.failed", _l("Failed mail"), _l("Mail that could not be delivered; send it again.")),
]


@bp.route("/")
@role_required(Role.ADMIN)
def index() -> ResponseReturnValue:
    """The console's front page: one card per section."""
    return render_template("admin/index.html", sections=SECTIONS)


# --- institutions --------------------------------------------------------------------------------


@bp.route("/institutions")
@role_required(Role.ADMIN)
def institutions() -> ResponseReturnValue:
    """Host institutions, searchable by name and credit code."""
    form = SearchForm(request.args)
    q = form.q.data if form.validate() else ""
    result = services.institution_page(current_user, q or "", page_number())
    return render_template(
        "admin/institutions.html", form=form, result=result, kind_labels=INSTITUTION_KIND_LABELS
    )


@bp.route("/institutions/new", methods=["GET", "POST"])
@role_required(Role.ADMIN)
def new_institution() -> ResponseReturnValue:
    """Add a host institution."""
    return _institution_page(None)


@bp.route("/institutions/<int:institution_id>", methods=["GET", "POST"])
@role_required(Role.ADMIN)
def institution(institution_id: int) -> ResponseReturnValue:
    """Change a host institution."""
    return _institution_page(institution_id)


def _institution_page(institution_id: int | None) -> ResponseReturnValue:
    institution = services.get_institution(current_user, institution_id) if institution_id else None
    form = InstitutionForm(obj=institution)
    if institution is None and not form.is_submitted():
        form.is_local.data = form.in_province.data = True
    if form.validate_on_submit():
        data = accounts.InstitutionData(
            name=filled(form.name),
            uscc=filled(form.uscc),
            county=form.county.data,
            kind=InstitutionKind(form.kind.data),
            address=form.address.data,
            is_local=form.is_local.data,
            in_province=form.in_province.data,
        )
        try:
            accounts.save_institution(current_user, data, institution_id)
        except ValidationFailed as error:
            show_service_errors(form, error)
        else:
            flash(_("The institution is saved."), "success")
            return redirect(url_for("admin.institutions"))
    return render_template("admin/institution.html", form=form, institution=institution)


# --- enterprises, categories ---------------------------------------------------------------------


@bp.route("/enterprises")
@role_required(Role.ADMIN)
def enterprises() -> ResponseReturnValue:
    """Registered enterprises: search by name or credit code, filter by county, type and verification."""
    form = EnterpriseSearchForm(request.args)
    form.validate()

    def chosen(field, values):
        # What the list offers, else no filter: Optional() lets a blank or odd value through unchecked.
        return field.data if field.data in values and not field.errors else None

    kind, state = chosen(form.kind, set(EnterpriseKind)), chosen(form.state, set(VerificationState))
    filters = services.EnterpriseFilter(
        q="" if form.q.errors else (form.q.data or ""),
        county=chosen(form.county, current_app.config["COUNTIES"]),
        kind=EnterpriseKind(kind) if kind else None,
        state=VerificationState(state) if state else None,
    )
    return render_template(
        "admin/enterprises.html",
        form=form,
        result=services.enterprise_page(current_user, filters, page_number()),
        kind_labels=ENTERPRISE_KIND_LABELS,
        state_labels=VERIFICATION_LABELS,
    )


@bp.route("/categories")
@role_required(Role.ADMIN)
def categories() -> ResponseReturnValue:
    """The catalogue's category codes, read-only."""
    return render_template("admin/categories.html", table=services.category_table(current_user))


# --- search synonyms -----------------------------------------------------------------------------


@bp.route("/synonyms", methods=["GET", "POST"])
@role_required(Role.ADMIN)
def synonyms() -> ResponseReturnValue:
    """The synonym table, and a form to add a short form."""
    form = SynonymForm()
    if form.validate_on_submit():
        try:
            search_synonyms.add_synonym(current_user, filled(form.term), filled(form.expansion))
        except ValidationFailed as error:
            show_service_errors(form, error)
        else:
            flash(_("The synonym is added; searches use it now."), "success")
            return redirect(url_for("admin.synonyms"))
    rows = search_synonyms.list_synonyms(current_user)
    return render_template("admin/synonyms.html", form=form, rows=rows, action_form=ActionForm())


@bp.route("/synonyms/<int:synonym_id>/delete", methods=["POST"])
@role_required(Role.ADMIN)
def delete_synonym(synonym_id: int) -> ResponseReturnValue:
    """Remove a synonym from the table."""
    search_synonyms.delete_synonym(current_user, synonym_id)  # CSRFProtect has checked the token
    flash(_("The synonym is deleted."), "success")
    return redirect(url_for("admin.synonyms"))


# --- yearly schemes ------------------------------------------------------------------------------


@bp.route("/schemes")
@role_required(Role.ADMIN)
def schemes() -> ResponseReturnValue:
    """The voucher schemes by year, each with its settings and the way to next year's."""
    items = scheme_services.schemes_by_year()
    return render_template(
        "admin/schemes.html",
        schemes=items,
        years={s.year for s in items},
        form=ActionForm(),
    )


@bp.route("/schemes/<int:year>/copy", methods=["POST"])
@role_required(Role.ADMIN)
def copy_scheme(year: int) -> ResponseReturnValue:
    """Make next year's scheme from this year's, then open its settings to adjust them."""
    try:
        scheme = scheme_services.copy_scheme_to_next_year(current_user, year)
    except ServiceError as error:
        flash(error.message, "danger")
        return redirect(url_for("admin.schemes"))
    flash(
        _("The %(year)d scheme is made from %(source)d's; check its numbers.", year=scheme.year, source=year),
        "success",
    )
    return redirect(url_for("review.scheme", year=scheme.year))


# --- catalogue imports ---------------------------------------------------------------------------


@bp.route("/imports", methods=["GET", "POST"])
@role_required(Role.ADMIN)
def imports_page() -> ResponseReturnValue:
    """Upload a catalogue file for its dry run; the history of every file uploaded."""
    form = UploadForm()
    if form.validate_on_submit():
        upload = form.file.data
        try:
            row = imports.start_import(current_user, upload.stream, upload.filename)
        except ValidationFailed as error:
            show_service_errors(form, error)
        else:
            return redirect(url_for("admin.import_detail", import_id=row.id))
    return render_template(
        "admin/imports.html",
        form=form,
        result=imports.import_history(current_user, page_number()),
        state_labels=IMPORT_STATE_LABELS,
    )


@bp.route("/imports/<int:import_id>")
@role_required(Role.ADMIN)
def import_detail(import_id: int) -> ResponseReturnValue:
    """One file: its dry run's problems (row, column, reason) or counts, its progress, the apply button."""
    row = imports.get_import(current_user, import_id)
    return render_template(
        "admin/import.html",
        item=row,
        progress=imports.progress_of(row),
        form=ActionForm(),
        state_labels=IMPORT_STATE_LABELS,
        ImportState=ImportState,
    )


@bp.route("/imports/<int:import_id>/apply", methods=["POST"])
@role_required(Role.ADMIN)
def import_apply(import_id: int) -> ResponseReturnValue:
    """Apply the stored file of a clean dry run (no upload again)."""
    try:
        row = imports.request_apply(current_user, import_id)
    except InvalidTransition as error:
        flash(error.message, "danger")
    else:
        message, category = APPLY_OUTCOMES[row.state]
        flash(row.note or message, category)
    return redirect(url_for("admin.import_detail", import_id=import_id))


# What the page says after "apply", by the state the import is in then.
APPLY_OUTCOMES = {
    ImportState.APPLIED: (_l("The file is applied."), "success"),
    ImportState.APPLYING: (_l("The file is being applied; this page shows how far it got."), "info"),
    ImportState.INVALID: (_l("The file has problems now, so nothing was written; see below."), "danger"),
    ImportState.CHECKED: (_l("Nothing was written; please apply the file again."), "warning"),
    ImportState.FAILED: (_l("The import failed; nothing was written."), "danger"),
}


@bp.route("/imports/<int:import_id>/file")
@role_required(Role.ADMIN)
def import_file(import_id: int) -> ResponseReturnValue:
    """The uploaded file as it was kept."""
    _path, row = imports.stored_file(current_user, import_id)
    return uploads.send_stored(row.stored_name, FORMATS[row.fmt][0], row.original_name)
