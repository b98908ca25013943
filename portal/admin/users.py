"""The console's users: a searchable list, staff accounts, roles and institutions, deactivation, reset links.

The rules live in portal.accounts.users (and passwords, colleagues); these pages only call them.
"""

from __future__ import annotations

from collections.abc import Callable

from flask import flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _
from flask_login import current_user
from sqlalchemy import select

from portal.accounts import colleagues, users
from portal.accounts.forms import ConfirmForm, UserForm, UserSearchForm
from portal.accounts.models import ROLE_LABELS, TOKEN_PURPOSE_LABELS, Institution
from portal.accounts.views import button_action
from portal.admin.views import bp
from portal.core.errors import ValidationFailed
from portal.core.forms import filled, show_service_errors
from portal.core.inputs import page_number
from portal.core.models import AuditEvent
from portal.core.permissions import Role, role_required
from portal.extensions import db


def _institutions() -> list[tuple[int, str]]:
    return list(db.session.execute(select(Institution.id, Institution.name).order_by(Institution.name)).all())


def _account(form: UserForm) -> users.StaffAccount:
    return users.StaffAccount(
        full_name=filled(form.full_name),
        email=form.email.data or None,
        phone=form.phone.data or None,
        role=Role(form.role.data),
        institution_id=int(form.institution_id.data) if form.institution_id.data else None,
    )


@bp.route("/users")
@role_required(Role.ADMIN)
def users_index() -> ResponseReturnValue:
    """Every account, searchable by name, username, e-mail, phone or organisation, filtered by role."""
    form = UserSearchForm(request.args)
    form.validate()
    filters = users.UserFilters(
        q="" if form.q.errors else (form.q.data or ""),
        role=form.role.data or "",
        status=form.status.data or "",
        page=page_number(),
    )
    return render_template(
        "admin/users.html",
        form=form,
        result=users.search_users(current_user, filters),
        role_labels=ROLE_LABELS,
    )


@bp.route("/users/new", methods=["GET", "POST"])
@role_required(Role.ADMIN)
def user_new() -> ResponseReturnValue:
    """A staff account (provider, reviewer, finance, admin); its owner chooses a password by e-mail link."""
    form = UserForm(institutions=_institutions())
    if form.validate_on_submit():
        try:
            user = users.create_staff(current_user, filled(form.username).strip(), _account(form))
        except ValidationFailed as error:
            show_service_errors(form, error)
        else:
            flash(
                _("Account created. %(email)s got a link to choose a password.", email=user.email), "success"
            )
            return redirect(url_for("admin.user_detail", user_id=user.id))
    return render_template("admin/user_new.html", form=form)


@bp.route("/users/<int:user_id>", methods=["GET", "POST"])
@role_required(Role.ADMIN)
def user_detail(user_id: int) -> ResponseReturnValue:
    """One account: its details, role and institution, status, pending links and history."""
    user = users.get_user(current_user, user_id)
    roles = (Role.ENTERPRISE,) if user.role is Role.ENTERPRISE else users.STAFF_ROLES
    form = UserForm(obj=user, roles=roles, institutions=_institutions())
    del form.username  # a username never changes
    if form.validate_on_submit():
        try:
            users.update_user(current_user, user.id, _account(form))
        except ValidationFailed as error:
            show_service_errors(form, error)
        else:
            flash(_("Saved."), "success")
            return redirect(url_for("admin.user_detail", user_id=user.id))
    history = db.session.scalars(
        select(AuditEvent)
        .where(AuditEvent.object_type == "user", AuditEvent.object_id == str(user.id))
        .order_by(AuditEvent.id.desc())
        .limit(30)
    )
    return render_template(
        "admin/user.html",
        user=user,
        form=form,
        action_form=ConfirmForm(),
        links=users.pending_links(current_user, user),
        history=list(history),
        role_labels=ROLE_LABELS,
        purpose_labels=TOKEN_PURPOSE_LABELS,
    )


def _act(user_id: int, work: Callable[[], object], done: str) -> ResponseReturnValue:
    users.get_user(current_user, user_id)  # a missing account is a 404, not a message
    return button_action(work, done, url_for("admin.user_detail", user_id=user_id))


@bp.route("/users/<int:user_id>/deactivate", methods=["POST"])
@role_required(Role.ADMIN)
def user_deactivate(user_id: int) -> ResponseReturnValue:
    """Deactivate: no sign-in, sessions ended, API tokens revoked."""
    return _act(
        user_id,
        lambda: users.set_active(current_user, user_id, "deactivate"),
        _("The account is deactivated."),
    )


@bp.route("/users/<int:user_id>/reactivate", methods=["POST"])
@role_required(Role.ADMIN)
def user_reactivate(user_id: int) -> ResponseReturnValue:
    """Reactivate a deactivated account."""
    return _act(
        user_id,
        lambda: users.set_active(current_user, user_id, "reactivate"),
        _("The account is active again."),
    )


@bp.route("/users/<int:user_id>/reset-link", methods=["POST"])
@role_required(Role.ADMIN)
def user_reset_link(user_id: int) -> ResponseReturnValue:
    """Mail the account a password reset link."""
    return _act(
        user_id,
        lambda: users.mail_reset_link(current_user, user_id),
        _("A reset link was sent to the account's e-mail address."),
    )


@bp.route("/users/<int:user_id>/holder", methods=["POST"])
@role_required(Role.ADMIN)
def user_make_holder(user_id: int) -> ResponseReturnValue:
    """Make an enterprise user their enterprise's account holder (e.g. when the holder has left)."""
    return _act(
        user_id, lambda: colleagues.hand_over(current_user, user_id), _("The account holder has changed.")
    )
