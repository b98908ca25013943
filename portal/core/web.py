"""Request plumbing shared by every page: language, login loading, errors, headers, template helpers."""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Mapping
from typing import Any, TypeGuard, cast
from urllib.parse import urlsplit

from flask import (
    Blueprint,
    Flask,
    Response,
    current_app,
    g,
    has_request_context,
    jsonify,
    redirect,
    render_template,
    request,
    url_for,
)
from flask.json.provider import DefaultJSONProvider
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import current_user
from jinja2 import pass_context
from jinja2.runtime import Context
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from werkzeug.datastructures import LanguageAccept
from werkzeug.exceptions import HTTPException

from portal.core import inputs, languages, uploads
from portal.core.audit import action_label, object_label
from portal.core.clock import format_local, iso_utc, to_local
from portal.core.errors import ServiceError
from portal.core.money import format_yuan
from portal.core.permissions import Role
from portal.extensions import db, limiter, login_manager

bp = Blueprint("core", __name__)

LANG_COOKIE = "lang"
WEEKDAY_NAMES = (
    _l("Monday"),
    _l("Tuesday"),
    _l("Wednesday"),
    _l("Thursday"),
    _l("Friday"),
    _l("Saturday"),
    _l("Sunday"),
)


def page_url(page: int) -> str:
    """The current page's URL with its query kept and another page number."""
    args: dict[str, Any] = request.args.to_dict()
    args["page"] = str(page)
    # Pagination is only on pages served by a view, where routing has set the endpoint.
    return url_for(cast(str, request.endpoint), **(request.view_args or {}), **args)


def select_locale() -> str:
    """The API: Accept-Language. Pages: the saved language, else the language cookie, else Chinese."""
    languages: dict[str, str] = current_app.config["LANGUAGES"]
    if not has_request_context():
        return current_app.config["BABEL_DEFAULT_LOCALE"]
    best = header_locale(request.path, request.accept_languages, languages)
    if best:
        return best
    user_lang = getattr(current_user, "language", None) if current_user else None
    if user_lang in languages:
        return user_lang
    return cookie_locale(
        request.cookies.get(LANG_COOKIE), languages, current_app.config["BABEL_DEFAULT_LOCALE"]
    )


def header_locale(path: str, accepted: LanguageAccept, languages: Mapping[str, str]) -> str | None:
    """An API request's language from its Accept-Language, if it names one we have.

    API clients say what they read in the header; the page's cookie or profile is not theirs. (Also
    used by the catalogue's fast path, portal.catalog.fastpath, for visitors who are not signed in.)
    """
    if path.startswith("/api/") and accepted:
        return accepted.best_match(list(languages))
    return None


def cookie_locale(cookie: str | None, languages: Mapping[str, str], default: str) -> str:
    """The language cookie's language if we have it, else the default."""
    return cookie if cookie is not None and cookie in languages else default


def is_safe_url(target: str | None) -> TypeGuard[str]:
    """Only same-site relative paths are followed after login or a language switch."""
    if not target:
        return False
    parts = urlsplit(target)
    return not parts.scheme and not parts.netloc and target.startswith("/") and not target.startswith("//")


@bp.route("/language/<code>")
def set_language(code: str) -> ResponseReturnValue:
    """Switch the interface language and go back to the page the visitor came from."""
    if code not in current_app.config["LANGUAGES"]:
        code = current_app.config["BABEL_DEFAULT_LOCALE"]
    if current_user.is_authenticated and current_user.language != code:
        current_user.language = code
        db.session.commit()
    target = request.args.get("next")
    response = redirect(target if is_safe_url(target) else url_for("catalog.index"))
    response.set_cookie(
        LANG_COOKIE,
        code,
        max_age=365 * 24 * 3600,
        samesite="Lax",
        httponly=True,
        secure=current_app.config["SESSION_COOKIE_SECURE"],
    )
    return response


@bp.route("/")
def home() -> ResponseReturnValue:
    """The catalogue is the front door."""
    return redirect(url_for("catalog.index"))


def after_response(response: Response, work: Callable[..., Any], *args: Any) -> Response:
    """Run `work(*args)` once the response has been sent, in a fresh application context.

    Its time (database writes, a mail handed to the outbox) never shows in the answer's time.
    """
    # current_app is typed as the Flask it stands for, not as the proxy that has this method.
    app = current_app._get_current_object()  # type: ignore[attr-defined]

    def run() -> None:
        with app.app_context():
            try:
                work(*args)
            except Exception:
                db.session.rollback()
                app.logger.exception("deferred %s failed", getattr(work, "__name__", work))

    response.call_on_close(run)
    return response


def wants_json() -> bool:
    return request.path.startswith("/api/")


def json_error(status: int, code: str, message: str, details: dict | None = None) -> ResponseReturnValue:
    """The one error shape of the API: {"error": {"code", "message", "details"}}."""
    return jsonify({"error": {"code": code, "message": message, "details": details or {}}}), status


HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_error",
    429: "rate_limited",
}


def _http_error(error: HTTPException) -> ResponseReturnValue:
    response = current_app.make_response(_http_error_answer(error))
    if response.status_code == 429:
        # Flask-Limiter's own headers are off (config: they would overwrite the Retry-After of a sign-in
        # delay with the window of another limit): a refusal says when the limit that refused opens.
        limit = limiter.current_limit
        if limit is not None:
            response.headers["Retry-After"] = str(max(1, math.ceil(limit.reset_at - time.time())))
    return response


def _http_error_answer(error: HTTPException) -> ResponseReturnValue:
    status = error.code or 500
    # What the exception says besides its body: `Allow` on a 405 (RFC 9110 requires it), `Retry-After`.
    headers = [(name, value) for name, value in error.get_headers() if name.lower() != "content-type"]
    response = current_app.make_response(_http_error_body(error, status))
    response.headers.extend(headers)
    return response


def _http_error_body(error: HTTPException, status: int) -> ResponseReturnValue:
    if wants_json():
        data = getattr(error, "data", None) or {}
        messages = data.get("messages")
        if status == 422 and messages:
            # webargs reports {location: {field: [messages]}}; the API promises {field: message}.
            # str(name): an unknown multipart field may have no name (None), which JSON's sorted
            # keys cannot compare with the others.
            fields = {
                str(name): "; ".join(str(m) for m in (msgs if isinstance(msgs, list) else [msgs]))
                for location in messages.values()
                for name, msgs in location.items()
            }
            return json_error(422, "validation_error", _("Some fields are not valid."), {"fields": fields})
        code = HTTP_CODES.get(status, "http_error")
        message = data.get("message") or error.description or error.name
        return json_error(status, code, message)
    if status == 429:
        return render_template("errors/error.html", status=429, message=_("Too many attempts.")), 429
    return render_template("errors/error.html", status=status, message=None), status


def _service_error(error: ServiceError) -> ResponseReturnValue:
    if wants_json():
        response = current_app.make_response(
            json_error(error.status, error.code, error.message, error.details)
        )
    else:
        page = render_template("errors/error.html", status=error.status, message=error.message)
        response = current_app.make_response((page, error.status))
    retry_after = getattr(error, "retry_after", None)  # a refusal that lasts a known time (a delay)
    if retry_after:
        response.headers["Retry-After"] = str(retry_after)
    return response


def _database_unavailable(error: DBAPIError) -> ResponseReturnValue:
    """The database cannot be reached (down, restarting, cut off): 503 with Retry-After, not a 500.

    Anything else the database refuses (a constraint, a bad statement) is a real 500.
    """
    if not (isinstance(error, OperationalError | InterfaceError) or error.connection_invalidated):
        return _internal_error(error)
    current_app.logger.warning("database unavailable: %s", str(error).splitlines()[0][:300])
    with contextlib.suppress(Exception):
        db.session.rollback()
    # The page must not ask the database again (who is signed in, unread notifications).
    g._login_user = login_manager.anonymous_user()
    retry_after = str(current_app.config["RETRY_AFTER_SECONDS"])
    message = _("The service is briefly unavailable. Please try again in a minute.")
    if wants_json():
        response = json_error(503, "service_unavailable", message)
    else:
        response = render_template("errors/error.html", status=503, message=message), 503
    response = current_app.make_response(response)
    response.headers["Retry-After"] = retry_after
    return response


def _internal_error(error: Exception) -> ResponseReturnValue:
    current_app.logger.exception("unhandled error", exc_info=error)
    db.session.rollback()
    if wants_json():
        return json_error(500, "internal_error", "Internal server error.")
    return render_template("errors/error.html", status=500, message=_("Something went wrong.")), 500


# No inline script, style or event handler anywhere (templates and SVG charts use classes and
# presentation attributes), so neither scripts nor styles need 'unsafe-inline'; data: images are
# Bootstrap's own icons (form controls, the navbar toggler).
CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "object-src 'none'",
        "frame-ancestors 'none'",
        "form-action 'self'",
        "base-uri 'self'",
    )
)


def security_headers(config: Mapping[str, Any]) -> list[tuple[str, str]]:
    """The protective headers of every response, in one list: the application's answers take them in
    `_security_headers`, the static files that WhiteNoise serves in front of it (portal.core.assets)
    from the same list."""
    headers = [
        ("Content-Security-Policy", CONTENT_SECURITY_POLICY),
        ("X-Content-Type-Options", "nosniff"),
        ("X-Frame-Options", "DENY"),  # frame-ancestors for browsers without CSP 2
        ("Referrer-Policy", "strict-origin-when-cross-origin"),
    ]
    max_age = config.get("HSTS_MAX_AGE")
    if max_age:
        # Sent whatever scheme the app sees (a TLS-terminating proxy that does not forward the scheme
        # makes every request look like HTTP); browsers ignore it on a plain-HTTP answer (RFC 6797 8.1).
        headers.append(("Strict-Transport-Security", f"max-age={int(max_age)}; includeSubDomains"))
    return headers


def _security_headers(response: Response) -> Response:
    """Every response (pages, API, static files, errors, downloads) gets the same protective headers."""
    for name, value in security_headers(current_app.config):
        response.headers.setdefault(name, value)
    return response


def at_render(function: Callable[..., object]) -> Callable[..., object]:
    """A filter whose result depends on the request's language, applied when the page is rendered.

    Jinja folds a plain filter applied to a constant (`'仪器编码'|zh`) into the template's compiled
    code, with the language of the request that happened to compile it: the app's first visitor
    decided every later visitor's markup. A filter that takes the context is never folded."""

    @pass_context
    def filter_(_context: Context, value: object, *args: Any, **kwargs: Any) -> object:
        return function(value, *args, **kwargs)

    return filter_


def init_app(app: Flask) -> None:
    """Register the shared blueprint, error handlers, headers and template helpers."""
    inputs.init_app(app)  # first: routes bind their converters when they are added
    app.register_blueprint(bp)
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(ServiceError, _service_error)
    app.register_error_handler(DBAPIError, _database_unavailable)
    app.register_error_handler(Exception, _internal_error)
    app.after_request(_security_headers)
    login_manager.login_view = "accounts.login"
    login_manager.login_message = None
    login_manager.session_protection = "strong"
    # Chinese stays readable in API answers (app.json is Flask's default provider, typed as the base class).
    cast(DefaultJSONProvider, app.json).ensure_ascii = False
    app.jinja_env.filters["yuan"] = format_yuan
    app.jinja_env.filters["local"] = format_local
    app.jinja_env.filters["iso"] = iso_utc
    app.jinja_env.filters["action_label"] = at_render(action_label)
    app.jinja_env.filters["object_label"] = at_render(object_label)
    app.jinja_env.filters["localdate"] = lambda value: to_local(value).date().isoformat()
    app.jinja_env.filters["zh"] = at_render(languages.zh)
    app.jinja_env.filters["county"] = at_render(languages.county_name)
    app.jinja_env.filters["country"] = at_render(languages.country_name)
    app.jinja_env.globals["zh_attrs"] = languages.zh_attrs
    app.jinja_env.globals["zh_attr"] = languages.zh_attr
    app.jinja_env.filters["display_name"] = uploads.clean_name  # an uploader's file name, safe to show
    app.jinja_env.globals["weekday_names"] = WEEKDAY_NAMES
    app.jinja_env.globals["page_url"] = page_url
    app.jinja_env.globals["is_safe_url"] = is_safe_url

    @app.context_processor
    def _globals() -> dict:
        return {"Role": Role, "current_locale": select_locale(), "languages": app.config["LANGUAGES"]}


def revalidated(response):
    """Tag a response with an ETag of its body and answer 304 when the client already has it.

    Catalogue pages and API answers change only when the catalogue does; clients keep a copy and
    ask again cheaply instead of downloading it every time.
    """
    response.add_etag()
    response.headers["Cache-Control"] = "private, no-cache"
    response.vary.add("Cookie")
    response.vary.add("Authorization")
    return response.make_conditional(request)
