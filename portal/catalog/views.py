"""Catalogue pages: the searchable list and the instrument record."""

from __future__ import annotations

from flask import Blueprint, make_response, render_template, request
from flask.typing import ResponseReturnValue
from flask_login import current_user

from portal.booking import services as booking_services
from portal.catalog import services
from portal.catalog.forms import SearchForm
from portal.catalog.models import SHARING_LABELS, STATUS_LABELS
from portal.core.errors import ValidationFailed
from portal.core.web import revalidated

bp = Blueprint("catalog", __name__, url_prefix="/instruments")


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
            status_labels=STATUS_LABELS,
        )
    )
    return revalidated(response)


@bp.route("/<code>")
def detail(code: str) -> ResponseReturnValue:
    """Everything about one instrument; the operator's phone only for signed-in users."""
    instrument = services.get_instrument(code)
    policy = booking_services.policy_for(instrument)
    response = make_response(
        render_template(
            "catalog/detail.html",
            instrument=instrument,
            policy=policy,
            bookable=instrument.status in booking_services.BOOKABLE_STATUSES,
            next_free=booking_services.next_free_time(instrument),
            show_contact=current_user.is_authenticated,
            status_labels=STATUS_LABELS,
            sharing_labels=SHARING_LABELS,
        )
    )
    return revalidated(response)
