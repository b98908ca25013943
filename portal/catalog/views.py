"""Catalogue pages: the searchable list, the instrument record and its photos."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from flask import (
    Blueprint,
    current_app,
    make_response,
    redirect,
    render_template,
    request,
    send_file,
    session,
    url_for,
)
from flask.typing import ResponseReturnValue
from flask_babel import get_locale
from flask_login import current_user

from portal.catalog import editing, fastpath, services
from portal.catalog.forms import SearchForm
from portal.catalog.models import SHARING_LABELS, STATUS_LABELS
from portal.catalog.signals import record_extras
from portal.core import assets
from portal.core.errors import ValidationFailed
from portal.core.web import revalidated
from portal.extensions import cache

bp = Blueprint("catalog", __name__, url_prefix="/instruments")


def _anonymous_page_key() -> str | None:
    """Where a visitor's rendered search page is kept, or None when the page is personal.

    Most catalogue traffic is anonymous and the page then depends only on the catalogue (whose
    version is in the key, so an edit is seen at once), the language and the URL; serving it
    without rendering makes a search page cost about what a static page does. The page names the
    static files by their hashed names, so the key holds their digest too: after a deploy that changed
    one, no page naming the old file is served.
    """
    if current_user.is_authenticated or session.get("_flashes"):
        return None
    args = SearchForm.normalized_args(request.args)
    if args is None:
        return None
    return f"catalog:page:{services.catalog_version()}:{assets.digest()}:{get_locale()}:{urlencode(args)}"


@bp.route("/")
def index() -> ResponseReturnValue:
    """Search and filter the catalogue; every filter stays in the URL."""
    key = _anonymous_page_key()
    page = cache.get(key) if key else None
    if page is not None:
        fastpath.offer()
        return revalidated(make_response(page))
    form = SearchForm(request.args)
    valid = form.validate()
    canonical: dict[str, Any] = form.canonical_args()  # Any: url_for's keywords are not all text
    if valid and SearchForm.normalized_args(request.args) != canonical:
        # Unknown or repeated parameters, odd spellings: one search, one URL, one cache entry (junk in
        # the URL can neither bypass the page cache nor fill it).
        return redirect(url_for("catalog.index", **canonical))
    query = form.to_query()
    try:
        result = services.search_instruments(query)
    except ValidationFailed as error:
        form.form_errors.append(error.message)
        result = services.SearchResult(items=[], total=0, page=1, per_page=query.per_page)
    page = render_template("catalog/index.html", form=form, result=result, status_labels=STATUS_LABELS)
    if key and valid and not form.form_errors:
        fastpath.offer()  # what this visitor gets, the next one may get without the application's work
        cache.set(key, page, timeout=current_app.config["CATALOG_PAGE_CACHE_SECONDS"])
    return revalidated(make_response(page))


@bp.route("/<code>")
def detail(code: str) -> ResponseReturnValue:
    """Everything about one instrument; the operator's phone only for signed-in users."""
    instrument = services.get_instrument(code)
    response = make_response(
        render_template(
            "catalog/detail.html",
            instrument=instrument,
            **record_extras(instrument),  # booking's: bookable, policy, next free time
            show_contact=current_user.is_authenticated,
            can_edit=editing.may_edit(current_user, instrument),
            status_labels=STATUS_LABELS,
            sharing_labels=SHARING_LABELS,
        )
    )
    return revalidated(response)


@bp.route("/<code>/photos/<name>")
def photo(code: str, name: str) -> ResponseReturnValue:
    """A photo or thumbnail; a name is never given to another picture, so any cache may keep it a while."""
    path, content_type = editing.photo_file(code, name)
    response = send_file(path, mimetype=content_type, conditional=True, etag=True)
    response.headers["Cache-Control"] = f"public, max-age={current_app.config['PHOTO_CACHE_SECONDS']}"
    return response
