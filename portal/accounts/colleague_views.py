"""An enterprise's colleagues: the holder invites, deactivates, reactivates and hands over; invitees join."""

from __future__ import annotations

from collections.abc import Callable

from flask import current_app, flash, redirect, render_template, url_for
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _
from flask_login import current_user

from portal.accounts import colleagues, services, users
from portal.accounts.forms import AcceptInvitationForm, ConfirmForm, InviteForm
from portal.accounts.models import INVITATION_STATE_LABELS, ROLE_LABELS
from portal.accounts.views import bp, button_action, invalid_link, private
from portal.core import clock
from portal.core.errors import NotFound, ValidationFailed
from portal.core.forms import filled, show_service_errors
from portal.core.permissions import Role, role_required
from portal.extensions import limiter


def _invitation_limit() -> str:
    return current_app.config["INVITATION_RATE_LIMIT"]


def _holder_key() -> str:
    return f"invitations:{getattr(current_user, 'id', None)}"


@bp.route("/account/colleagues", methods=["GET", "POST"])
@limiter.limit(_invitation_limit, methods=["POST"], key_func=_holder_key)
@role_required(Role.ENTERPRISE)
def colleagues_page() -> ResponseReturnValue:
    """Everyone of the enterprise; the holder invites colleagues by e-mail and manages them here."""
    form = InviteForm()
    if form.validate_on_submit():
        try:
            invitation = colleagues.invite(current_user, filled(form.email))
        except ValidationFailed as error:
            show_service_errors(form, error)
        else:
            flash(_("Invitation sent to %(email)s.", email=invitation.email), "success")
            return redirect(url_for("accounts.colleagues_page"))
    is_holder = services.is_holder(current_user)
    return render_template(
        "accounts/colleagues.html",
        form=form,
        action_form=ConfirmForm(),
        people=colleagues.colleagues(current_user),
        invitations=colleagues.invitations(current_user) if is_holder else [],
        is_holder=is_holder,
        holder=services.holder_of(current_user.enterprise_id),
        now=clock.utcnow(),
        role_labels=ROLE_LABELS,
        invitation_labels=INVITATION_STATE_LABELS,
    )


def _act(work: Callable[[], object], done: str) -> ResponseReturnValue:
    return button_action(work, done, url_for("accounts.colleagues_page"))


@bp.route("/account/colleagues/<int:user_id>/deactivate", methods=["POST"])
@role_required(Role.ENTERPRISE)
def deactivate_colleague(user_id: int) -> ResponseReturnValue:
    """The holder deactivates a colleague: they cannot sign in any more, their sessions end."""
    return _act(
        lambda: users.set_active(current_user, user_id, "deactivate"), _("The account is deactivated.")
    )


@bp.route("/account/colleagues/<int:user_id>/reactivate", methods=["POST"])
@role_required(Role.ENTERPRISE)
def reactivate_colleague(user_id: int) -> ResponseReturnValue:
    """The holder reactivates a colleague they deactivated."""
    return _act(
        lambda: users.set_active(current_user, user_id, "reactivate"), _("The account is active again.")
    )


@bp.route("/account/colleagues/<int:user_id>/handover", methods=["POST"])
@role_required(Role.ENTERPRISE)
def hand_over(user_id: int) -> ResponseReturnValue:
    """The holder makes an active colleague the enterprise's account holder."""
    return _act(lambda: colleagues.hand_over(current_user, user_id), _("The account holder has changed."))


@bp.route("/account/colleagues/invitations/<int:invitation_id>/revoke", methods=["POST"])
@role_required(Role.ENTERPRISE)
def revoke_invitation(invitation_id: int) -> ResponseReturnValue:
    """The holder withdraws an invitation nobody has used."""
    return _act(
        lambda: colleagues.revoke_invitation(current_user, invitation_id), _("The invitation is withdrawn.")
    )


@bp.route("/invitations/<token>", methods=["GET", "POST"])
def accept_invitation(token: str) -> ResponseReturnValue:
    """The invitee creates their account of the enterprise (username, password, name, phone)."""
    if current_user.is_authenticated:
        flash(_("You are signed in already: an invitation is for someone without an account."), "info")
        return redirect(url_for("catalog.index"))
    try:
        invitation = colleagues.invitation_for(token)
    except NotFound as error:
        return invalid_link(error)
    form = AcceptInvitationForm()
    if form.validate_on_submit():
        try:
            colleagues.accept_invitation(
                token,
                colleagues.Acceptance(
                    username=filled(form.username).strip(),
                    password=filled(form.password),
                    full_name=filled(form.full_name),
                    phone=form.phone.data,
                ),
            )
        except ValidationFailed as error:
            show_service_errors(form, error)
        except NotFound as error:
            return invalid_link(error)
        else:
            flash(_("Your account is ready. Sign in with your username and password."), "success")
            return redirect(url_for("accounts.login"))
    return private(render_template("accounts/invitation.html", form=form, invitation=invitation))
