"""The enterprise's waitlist page: its entries, and the offers to accept or decline (issue 18)."""

from __future__ import annotations

from flask import Blueprint, abort, flash, redirect, render_template, url_for
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _
from flask_login import current_user

from portal.booking.forms import ActionForm
from portal.core.errors import NotFound, ServiceError
from portal.core.permissions import Role, role_required
from portal.waitlist import services
from portal.waitlist.models import ENTRY_LABELS

bp = Blueprint("waitlist", __name__, url_prefix="/waitlist")


@bp.route("/")
@role_required(Role.ENTERPRISE)
def index() -> ResponseReturnValue:
    """Your enterprise's waitlist entries, an open offer first-class: accept, decline or leave."""
    return render_template(
        "waitlist/index.html",
        entries=services.own_entries(current_user),
        labels=ENTRY_LABELS,
        form=ActionForm(),
    )


def _act(entry_id: int, action, success: str) -> ResponseReturnValue:
    services.get_entry(current_user, entry_id)  # another enterprise's entry is simply not found
    if not ActionForm().validate_on_submit():
        abort(400)
    try:
        result = action(current_user, entry_id)
    except NotFound:
        raise
    except ServiceError as error:
        flash(error.message, "danger")
        return redirect(url_for("waitlist.index"))
    flash(success, "success")
    if action is services.accept_offer:
        return redirect(url_for("booking.detail", booking_id=result.id))
    return redirect(url_for("waitlist.index"))


@bp.route("/<int:entry_id>/accept", methods=["POST"])
@role_required(Role.ENTERPRISE)
def accept(entry_id: int) -> ResponseReturnValue:
    """Take the offered time: it becomes your booking request."""
    return _act(entry_id, services.accept_offer, _("The time is yours; the provider confirms the request."))


@bp.route("/<int:entry_id>/decline", methods=["POST"])
@role_required(Role.ENTERPRISE)
def decline(entry_id: int) -> ResponseReturnValue:
    """Decline the offer: the time goes to the next in line."""
    return _act(entry_id, services.decline_offer, _("Offer declined."))


@bp.route("/<int:entry_id>/cancel", methods=["POST"])
@role_required(Role.ENTERPRISE)
def cancel(entry_id: int) -> ResponseReturnValue:
    """Leave the line."""
    return _act(entry_id, services.cancel_entry, _("You have left the waitlist."))
