"""Catalogue pages: the searchable list and the instrument record."""

from __future__ import annotations

from flask import Blueprint, make_response, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_babel import lazy_gettext as _l
from flask_login import current_user

from portal.catalog import services
from portal.catalog.forms import SearchForm
from portal.catalog.models import SHARING_LABELS, STATUS_LABELS
from portal.core.errors import ValidationFailed
from portal.core.web import revalidated

bp = Blueprint("catalog", __name__, url_prefix="/instruments")

WEEKDAYS = (
    _l("Monday"),
    _l("Tuesday"),
    _l("Wednesday"),
    _l("Thursday"),
    _l("Friday"),
    _l("Saturday"),
    _l("Sunday"),
)


def _page_url(page: int) -> str:
    args = request.args.to_dict()
    args["page"] = str(page)
    return url_for("catalog.index", **args)


@bp.route("/")
def index() -> ResponseReturnValue:
    """Search and filter the catalogue; every filter stays in the URL."""
    form = SearchForm(request.args)
    form.validate()
    query = form.to_query()
    try:
        result = services.search_instruments(query)
    except ValidationFailed as error:
        form.form_errors.append(error.message)
        result = services.SearchResult(items=[], total=0, page=1, per_page=query.per_page)
    response = make_response(
        render_template(
            "catalog/index.html",
            form=form,
            result=result,
            page_url=_page_url,
            status_labels=STATUS_LABELS,
        )
    )
    return revalidated(response)


@bp.route("/<code>")
def detail(code: str) -> ResponseReturnValue:
    """Everything about one instrument; the operator's phone only for signed-in users."""
    instrument = services.get_instrument(code)
    response = make_response(
        render_template(
            "catalog/detail.html",
            instrument=instrument,
            show_contact=current_user.is_authenticated,
            status_labels=STATUS_LABELS,
            sharing_labels=SHARING_LABELS,
            weekdays=WEEKDAYS,
        )
    )
    return revalidated(response)
