"""The in-app notification centre, e-mail preferences, and the administrators' failed-delivery list."""

from __future__ import annotations

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _
from flask_login import current_user, login_required

from portal.accounts import profile
from portal.core.inputs import DATABASE_INT_MAX
from portal.core.permissions import Role, role_required
from portal.core.web import is_safe_url
from portal.notifications import services
from portal.notifications.forms import PreferenceForm
from portal.notifications.messages import describe

bp = Blueprint("notifications", __name__, url_prefix="/notifications")


@bp.route("/", methods=["GET", "POST"])
@login_required
def index() -> ResponseReturnValue:
    """Your notifications, unread first; and whether you also want them by e-mail."""
    form = PreferenceForm()
    if form.validate_on_submit():
        profile.set_email_preference(current_user, form.email_notifications.data)
        flash(_("Your preference is saved."), "success")
        return redirect(url_for("notifications.index"))
    form.email_notifications.data = current_user.email_notifications
    items = [(n, *describe(n.kind, n.payload)) for n in services.inbox(current_user)]
    return render_template("notifications/index.html", items=items, form=form)


@bp.route("/<int:notification_id>/open", methods=["POST"])
@login_required
def open_(notification_id: int) -> ResponseReturnValue:
    """Mark a notification read and follow its link."""
    if not PreferenceForm().validate_on_submit():
        abort(400)
    services.mark_read(current_user, notification_id)
    target = request.form.get("next")
    return redirect(target if is_safe_url(target) else url_for("notifications.index"))


@bp.route("/read-all", methods=["POST"])
@login_required
def read_all() -> ResponseReturnValue:
    """Mark every notification read."""
    if not PreferenceForm().validate_on_submit():
        abort(400)
    services.mark_read(current_user)
    return redirect(url_for("notifications.index"))


@bp.route("/failed", methods=["GET", "POST"])
@role_required(Role.ADMIN)
def failed() -> ResponseReturnValue:
    """E-mails the mail server refused for good, to be checked and sent again."""
    form = PreferenceForm()
    retry = request.form.get("retry", "")
    # isdecimal (int() refuses "²"), and no bigger than a database id, which would overflow the query.
    if form.validate_on_submit() and retry.isdecimal() and int(retry) <= DATABASE_INT_MAX:
        services.retry_failed(current_user, int(retry))
        flash(_("Queued for another attempt."), "success")
        return redirect(url_for("notifications.failed"))
    return render_template("notifications/failed.html", items=services.failed_deliveries(), form=form)
