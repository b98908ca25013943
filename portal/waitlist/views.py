"""The enterprise's waitlist page: its entries, and the offers to accept or decline (issue 18)."""

from __future__ import annotations

from datetime import timedelta

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _
from flask_login import current_user

from portal.booking.forms import ActionForm
from portal.catalog.services import get_instrument
from portal.core import clock
from portal.core.errors import NotFound, ServiceError, ValidationFailed
from portal.core.permissions import Role, role_required
from portal.waitlist import services
from portal.waitlist.forms import ANY_TIME_THAT_DAY, JoinForm
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
        whole_day=timedelta(days=1),
    )


@bp.route("/join", methods=["GET", "POST"])
@role_required(Role.ENTERPRISE)
def join() -> ResponseReturnValue:
    """Join the line for held time: the slot a week view's busy cell holds (`instrument`, `at`), or the
    period a refused request asked for (`instrument`, `starts_at`, `ends_at`)."""
    form = JoinForm(data=None if request.method == "POST" else request.args.to_dict())
    instrument = get_instrument(form.instrument.data or "")
    if not form.is_submitted() and "at" in request.args:
        held = _held(instrument.code, request.args["at"])
        if held is None or held.own:
            flash(_("This is your own booking.") if held else _("This time is free now."), "info")
            return redirect(url_for("booking.availability", code=instrument.code))
        form.starts_at.data, form.ends_at.data = clock.iso_utc(held.starts_at), clock.iso_utc(held.ends_at)
    period = form.period()
    if period is None and not form.is_submitted():
        abort(400)
    form.offer_choices(period)
    if form.validate_on_submit():
        try:
            _join(form, instrument.code, period)
        except ServiceError as error:  # a whole sentence each: the hidden fields have no place to show one
            form.form_errors.append(error.message)
        else:
            flash(_("You are on the waitlist: when this time frees up, it is offered to you."), "success")
            return redirect(url_for("waitlist.index"))
    return render_template("waitlist/join.html", form=form, instrument=instrument, period=period)


def _held(code: str, at: str) -> services.HeldPeriod | None:
    try:
        moment = clock.parse_iso(at)
    except (ValueError, OverflowError):
        abort(400)
    return services.held_period(current_user, code, moment)


def _join(form: JoinForm, code: str, period: tuple | None) -> None:
    if period is None:
        raise ValidationFailed(_("Choose the time again in the week view."))
    starts_at, ends_at = period
    length = None
    if form.wanted.data == ANY_TIME_THAT_DAY:
        starts_at, ends_at, length = services.any_time_that_day(starts_at, ends_at)
    services.join_waitlist(current_user, code, starts_at, ends_at, length, form.purpose.data or "")


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
