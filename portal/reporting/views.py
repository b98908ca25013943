"""Report pages: the year's national records to download, and the yearly evaluation."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from flask import Blueprint, abort, current_app, render_template, request
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _
from flask_login import current_user

from portal.core import clock
from portal.core.exports import XLSX_MIMETYPE, attachment, csv_text, xlsx_bytes
from portal.core.permissions import Role, role_required
from portal.reporting import nrii, services

bp = Blueprint("reporting", __name__, url_prefix="/reports")
EVALUATORS = (Role.REVIEWER, Role.ADMIN)
FORMATS = ("csv", "xlsx")


def _year() -> tuple[int, list[str]]:
    """The year asked for; anything else falls back to this year, with a message."""
    this_year = clock.local_today().year
    text = request.args.get("year", "")
    if not text:
        return this_year, []
    if text.isdigit() and 2000 <= int(text) <= this_year:
        return int(text), []
    return this_year, [_("Choose a year between 2000 and %(year)d.", year=this_year)]


def _institution_id() -> int | None:
    text = request.args.get("institution_id", "")
    if not text:
        return None
    if not text.isdigit() or len(text) > 9:
        abort(404)
    return int(text)


def _county() -> str | None:
    county = request.args.get("county") or None
    return county if county in current_app.config["COUNTIES"] else None


@bp.route("/")
@role_required(*services.READERS)
def index() -> ResponseReturnValue:
    """The year's national records of the institution (a provider's own), to download."""
    year, problems = _year()
    scope = services.report_scope(current_user, _institution_id())
    return render_template(
        "reporting/index.html",
        year=year,
        years=range(clock.local_today().year, 2019, -1),
        problems=problems,
        scope=scope,
        institutions=services.institutions_to_choose(current_user),
        formats=FORMATS,
        may_evaluate=current_user.role in EVALUATORS,
    )


def _download(kind: str, fmt: str, year: int, rows: Iterable[list[Any]]) -> ResponseReturnValue:
    filename = f"nrii-{kind}-{year}.{fmt}"
    if fmt == "csv":
        return attachment(csv_text(rows), "text/csv; charset=utf-8", filename)
    return attachment(xlsx_bytes(kind, rows), XLSX_MIMETYPE, filename)


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
        result=services.evaluate(scope, year),
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
