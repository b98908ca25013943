"""Sign-in, sign-out, enterprise registration and the account page."""

from __future__ import annotations

from flask import Blueprint, current_app, flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _
from flask_login import current_user, login_required, login_user, logout_user

from portal.accounts import services
from portal.accounts.forms import LoginForm, RegistrationForm
from portal.accounts.models import ENTERPRISE_KIND_LABELS, ROLE_LABELS, VERIFICATION_LABELS, EnterpriseKind
from portal.core.errors import ValidationFailed
from portal.core.forms import show_service_errors
from portal.core.web import is_safe_url
from portal.extensions import limiter

bp = Blueprint("accounts", __name__)


def _login_limit() -> str:
    return current_app.config["LOGIN_RATE_LIMIT"]


def _username_key() -> str:
    return "login-user:" + (request.form.get("username") or "").strip().lower()


@bp.route("/login", methods=["GET", "POST"])
@limiter.limit(_login_limit, methods=["POST"])
@limiter.limit(_login_limit, methods=["POST"], key_func=_username_key)
def login() -> ResponseReturnValue:
    """Sign in with username and password."""
    if current_user.is_authenticated:
        return redirect(url_for("catalog.index"))
    form = LoginForm()
    if form.validate_on_submit():
        user = services.authenticate(form.username.data, form.password.data)
        if user is None:
            form.form_errors.append(_("Wrong username or password."))
        else:
            login_user(user, remember=form.remember.data)
            services.record_login(user)
            flash(_("Welcome, %(name)s.", name=user.full_name or user.username), "success")
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
def register() -> ResponseReturnValue:
    """Enterprise self-registration; the bureau verifies the enterprise afterwards."""
    if current_user.is_authenticated:
        return redirect(url_for("catalog.index"))
    form = RegistrationForm()
    if form.validate_on_submit():
        try:
            user = services.register_enterprise(
                services.Registration(
                    username=form.username.data.strip(),
                    password=form.password.data,
                    email=form.email.data,
                    full_name=form.full_name.data,
                    phone=form.phone.data,
                    company_name=form.company_name.data,
                    uscc=form.uscc.data,
                    kind=EnterpriseKind(form.kind.data),
                    county=form.county.data,
                    legacy_code=form.legacy_code.data,
                )
            )
        except ValidationFailed as error:
            show_service_errors(form, error)
        else:
            login_user(user)
            services.record_login(user)
            flash(_("Registration complete. The bureau will verify your enterprise."), "success")
            return redirect(url_for("accounts.account"))
    return render_template("accounts/register.html", form=form)


@bp.route("/account")
@login_required
def account() -> ResponseReturnValue:
    """The signed-in user's own details and organisation."""
    return render_template(
        "accounts/account.html",
        user=current_user,
        role_labels=ROLE_LABELS,
        enterprise_kind_labels=ENTERPRISE_KIND_LABELS,
        verification_labels=VERIFICATION_LABELS,
    )
