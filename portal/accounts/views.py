"""Sign-in, sign-out, registration, the account page, passwords and the profile."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import (
    Blueprint,
    Response,
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
from flask_babel import refresh
from flask_login import current_user, login_required, login_user, logout_user
from flask_login.config import COOKIE_NAME
from markupsafe import escape

from portal.accounts import passwords, profile, registration, services, throttle
from portal.accounts.forms import (
    ChangePasswordForm,
    ConfirmForm,
    ForgotPasswordForm,
    LoginForm,
    ProfileForm,
    RegistrationForm,
    ResetPasswordForm,
)
from portal.accounts.models import ENTERPRISE_KIND_LABELS, ROLE_LABELS, VERIFICATION_LABELS, EnterpriseKind
from portal.core.errors import InvalidTransition, NotFound, ValidationFailed
from portal.core.forms import filled, show_service_errors
from portal.core.languages import zh
from portal.core.web import is_safe_url
from portal.extensions import db, limiter

bp = Blueprint("accounts", __name__)


def _login_limit() -> str:
    return current_app.config["LOGIN_RATE_LIMIT"]


def _login_user_address_limit() -> str:
    return current_app.config["LOGIN_USER_ADDRESS_RATE_LIMIT"]


def _username_address_key() -> str:
    """The username typed, from this visitor's address: someone else's guesses elsewhere do not count."""
    username = (request.form.get("username") or "").strip().lower()
    return f"login-user:{username}:{throttle.client_address()}"


def _registration_client_limit() -> str:
    return current_app.config["REGISTRATION_CLIENT_RATE_LIMIT"]


def _registration_global_limit() -> str:
    return current_app.config["REGISTRATION_GLOBAL_RATE_LIMIT"]


def _registration_address_limit() -> str:
    return current_app.config["REGISTRATION_ADDRESS_RATE_LIMIT"]


def _everyone_key() -> str:
    return "everyone"


def _registration_address_key() -> str:
    return "registration-address:" + services.normalize_email(request.form.get("email"))


def _account_key() -> str:
    return f"password-change:{getattr(current_user, 'id', None)}"


def _reset_client_limit() -> str:
    return current_app.config["PASSWORD_RESET_CLIENT_RATE_LIMIT"]


def _reset_address_limit() -> str:
    return current_app.config["PASSWORD_RESET_ADDRESS_RATE_LIMIT"]


def _reset_address_key() -> str:
    return "password-reset-address:" + services.normalize_email(request.form.get("email"))


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


def private(response: ResponseReturnValue) -> Response:
    """A page whose address holds a one-time secret: never cached, never sent on as a Referer."""
    response = current_app.make_response(response)
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["Cache-Control"] = "no-store"
    return response


def button_action(work: Callable[[], object], done: str, back: str) -> ResponseReturnValue:
    """A button that posts only its CSRF token: the service decides, a refusal comes back as a message
    (a missing or foreign object is a 404, raised by the service)."""
    if not ConfirmForm().validate_on_submit():
        abort(400)
    try:
        work()
    except (InvalidTransition, ValidationFailed) as error:
        flash(error.message, "danger")
    else:
        flash(done, "success")
    return redirect(back)


def invalid_link(error: NotFound) -> Response:
    """Every unusable link (unknown, someone else's, expired, used) gets the same page."""
    return private((render_template("accounts/link_invalid.html", message=error.message), 404))


@bp.route("/login", methods=["GET", "POST"])
@limiter.limit(_login_limit, methods=["POST"])
@limiter.limit(_login_user_address_limit, methods=["POST"], key_func=_username_address_key)
def login() -> ResponseReturnValue:
    """Sign in with username and password (the limits: docs/accounts.md)."""
    if current_user.is_authenticated:
        return redirect(url_for("catalog.index"))
    form = LoginForm()
    if form.validate_on_submit():
        try:
            user = throttle.sign_in(form.username.data, form.password.data, throttle.client_address())
        except throttle.SignInDelayed as error:
            form.form_errors.append(error.message)
            page = current_app.make_response((render_template("accounts/login.html", form=form), 429))
            page.headers["Retry-After"] = str(error.retry_after)
            return page
        except services.AccountDisabled as error:
            form.form_errors.append(error.message)
            return render_template("accounts/login.html", form=form)
        if user is None:
            form.form_errors.append(_("Wrong username or password."))
        else:
            login_user(user, remember=form.remember.data)
            services.record_login(user)
            # The name is data: marked with its language on an English page (a flash keeps its markup).
            flash(
                escape(_("Welcome, %(name)s.")) % {"name": zh(user.full_name or user.username)},
                "success",
            )
            target = request.args.get("next")
            return redirect(target if is_safe_url(target) else url_for("catalog.index"))
    return render_template("accounts/login.html", form=form)


@bp.route("/logout", methods=["POST"])
@login_required
def logout() -> ResponseReturnValue:
    """Sign out everywhere this session was copied to: the old cookie stops working."""
    services.end_sessions(current_user._get_current_object())
    logout_user()
    flash(_("You have signed out."), "info")
    return redirect(url_for("catalog.index"))


@bp.route("/register", methods=["GET", "POST"])
@limiter.limit(_registration_client_limit, methods=["POST"])
@limiter.limit(_registration_global_limit, methods=["POST"], key_func=_everyone_key)
@limiter.limit(_registration_address_limit, methods=["POST"], key_func=_registration_address_key)
def register() -> ResponseReturnValue:
    """Enterprise self-registration: every valid submission gets the same page, the mail says the rest."""
    if current_user.is_authenticated:
        return redirect(url_for("catalog.index"))
    form = RegistrationForm()
    if form.validate_on_submit():
        data = services.Registration(
            username=filled(form.username).strip(),
            password=filled(form.password),
            email=form.email.data,
            full_name=filled(form.full_name),
            phone=form.phone.data,
            company_name=filled(form.company_name),
            uscc=filled(form.uscc),
            kind=EnterpriseKind(form.kind.data),
            county=form.county.data,
            legacy_code=form.legacy_code.data,
        )
        try:
            registration.check_registration(data)
        except ValidationFailed as error:
            show_service_errors(form, error)
        else:
            # Whether the address, code or username exists is looked up (and the password hashed) after
            # the page is sent: neither its content nor its time tells.
            page = current_app.make_response(render_template("accounts/register_sent.html"))
            return after_response(page, registration.process_registration, data)
    return render_template("accounts/register.html", form=form)


@bp.route("/register/confirm/<token>", methods=["GET", "POST"])
def confirm_registration(token: str) -> ResponseReturnValue:
    """Open the link mailed at registration (once): the address is confirmed and the account activated.

    The link does not sign in: the password does, as for an invitation.
    """
    if current_user.is_authenticated:
        return redirect(url_for("catalog.index"))
    try:
        link = registration.registration_link(token)
    except NotFound as error:
        return invalid_link(error)
    form = ConfirmForm()
    if form.validate_on_submit():
        try:
            registration.confirm_registration(token)
        except NotFound as error:
            return invalid_link(error)
        flash(_("Your account is active. Sign in; the bureau will then verify your enterprise."), "success")
        return redirect(url_for("accounts.login"))
    return private(render_template("accounts/confirm_registration.html", form=form, link=link))


@bp.route("/account")
@login_required
def account() -> ResponseReturnValue:
    """The signed-in user's own details and organisation."""
    return render_template(
        "accounts/account.html",
        user=current_user,
        holder=services.holder_of(current_user.enterprise_id) if current_user.enterprise_id else None,
        role_labels=ROLE_LABELS,
        enterprise_kind_labels=ENTERPRISE_KIND_LABELS,
        verification_labels=VERIFICATION_LABELS,
    )


@bp.route("/account/password", methods=["GET", "POST"])
@limiter.limit(_login_limit, methods=["POST"], key_func=_account_key)
@login_required
def change_password() -> ResponseReturnValue:
    """Change the password (the current one is required); every other session and API token ends."""
    form = ChangePasswordForm()
    if form.validate_on_submit():
        try:
            passwords.change_password(current_user, filled(form.current_password), filled(form.password))
        except ValidationFailed as error:
            show_service_errors(form, error)
        else:
            # This browser stays signed in: its new cookie carries the new session version.
            remembered = current_app.config.get("REMEMBER_COOKIE_NAME", COOKIE_NAME) in request.cookies
            login_user(current_user._get_current_object(), remember=remembered)
            flash(_("Your password is changed. Your other sessions and API tokens have ended."), "success")
            return redirect(url_for("accounts.account"))
    return render_template("accounts/password.html", form=form)


@bp.route("/password/forgot", methods=["GET", "POST"])
@limiter.limit(_reset_client_limit, methods=["POST"])
@limiter.limit(_reset_address_limit, methods=["POST"], key_func=_reset_address_key)
def forgot_password() -> ResponseReturnValue:
    """Ask for a reset link by e-mail; the answer is the same whether or not the address has an account."""
    if current_user.is_authenticated:
        return redirect(url_for("catalog.index"))
    form = ForgotPasswordForm()
    if form.validate_on_submit():
        # The same page for every address; the work happens after it is sent, so that its time cannot
        # tell whether the address has an account.
        page = render_template("accounts/forgot_sent.html", email=form.email.data)
        return after_response(
            current_app.make_response(page),
            passwords.request_password_reset,
            form.email.data,
            request.remote_addr,
        )
    return render_template("accounts/forgot.html", form=form)


@bp.route("/password/reset/<token>", methods=["GET", "POST"])
def reset_password(token: str) -> ResponseReturnValue:
    """Choose a new password with a link from a mail (once); every session and API token ends."""
    if current_user.is_authenticated:
        return redirect(url_for("catalog.index"))
    try:
        link = passwords.password_link(token)
    except NotFound as error:
        return invalid_link(error)
    form = ResetPasswordForm()
    if form.validate_on_submit():
        try:
            passwords.reset_password(token, filled(form.password))
        except ValidationFailed as error:
            show_service_errors(form, error)
        except NotFound as error:
            return invalid_link(error)
        else:
            flash(_("Your new password is set. Sign in with it."), "success")
            return redirect(url_for("accounts.login"))
    return private(render_template("accounts/reset.html", form=form, link=link))


@bp.route("/account/profile", methods=["GET", "POST"])
@login_required
def edit_profile() -> ResponseReturnValue:
    """Name, phone, e-mail address, language and mail preference."""
    form = ProfileForm(obj=current_user)
    if form.validate_on_submit():
        try:
            pending = profile.update_profile(
                current_user,
                profile.Profile(
                    full_name=filled(form.full_name),
                    phone=form.phone.data,
                    language=form.language.data,
                    email_notifications=form.email_notifications.data,
                    email=form.email.data,
                    current_password=form.current_password.data or "",
                ),
            )
        except ValidationFailed as error:
            show_service_errors(form, error)
        else:
            refresh()  # the language may have just changed: say it in the new one
            flash(_("Your profile is saved."), "success")
            if pending:
                flash(
                    _(
                        "We sent a link to %(email)s: the new address takes effect when you open it.",
                        email=pending.email,
                    ),
                    "info",
                )
            return redirect(url_for("accounts.edit_profile"))
    return render_template("accounts/profile.html", form=form, pending=profile.pending_address(current_user))


@bp.route("/account/email/<token>", methods=["GET", "POST"])
@login_required
def confirm_email(token: str) -> ResponseReturnValue:
    """Open the link sent to a new address (signed in as its account): the address becomes the account's."""
    try:
        link = profile.address_link(current_user, token)
    except NotFound as error:
        return invalid_link(error)
    form = ConfirmForm()
    if form.validate_on_submit():
        try:
            address = profile.confirm_address(current_user, token)
        except NotFound as error:
            return invalid_link(error)
        except ValidationFailed as error:
            flash(error.message, "danger")
        else:
            flash(_("Your e-mail address is now %(email)s.", email=address), "success")
        return redirect(url_for("accounts.edit_profile"))
    return private(render_template("accounts/confirm_email.html", form=form, link=link))
