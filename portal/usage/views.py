"""Usage pages: the instrument's short URL (its QR label) where users check in and out, the
provider's page of the instrument's use, and the label itself."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, abort, flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _
from flask_login import current_user, login_required

from portal.booking.models import PURPOSE_LABELS, Booking
from portal.booking.services import get_booking
from portal.catalog.ownership import editable_instrument, owns
from portal.catalog.services import get_instrument
from portal.core import clock
from portal.core.errors import ServiceError, ValidationFailed
from portal.core.forms import show_service_errors
from portal.core.permissions import Role, role_required
from portal.usage import devices, internal, labels, services
from portal.usage.forms import CheckForm, DeleteInternalUseForm, DeviceKeyForm, InternalUseForm, RevokeKeyForm
from portal.usage.models import SOURCE_LABELS

bp = Blueprint("usage", __name__)


def short_url(code: str) -> str:
    """The absolute address the instrument's label points to."""
    return url_for("usage.at_instrument", code=code, _external=True)


@bp.route("/i/<code>")
@login_required
def at_instrument(code: str) -> ResponseReturnValue:
    """What the QR label opens: the visitor's booking of the moment, to check in or out."""
    instrument = get_instrument(code)
    now = clock.utcnow()
    bookings = services.bookings_at_instrument(current_user, instrument, now)
    return render_template(
        "usage/at_instrument.html",
        instrument=instrument,
        bookings=bookings,
        usage=services.usage_of([b.id for b in bookings], now),
        windows={b.id: services.check_in_window(b) for b in bookings},
        may_in={b.id: services.can_check_in(current_user, b, now) for b in bookings},
        may_out={b.id: services.can_check_out(current_user, b) for b in bookings},
        providing=current_user.role is Role.PROVIDER,
        form=CheckForm(formdata=None),
    )


def _check(booking_id: int, action: Any, success: str) -> ResponseReturnValue:
    booking = get_booking(current_user, booking_id)  # someone else's is simply not found
    form = CheckForm()
    if not form.validate_on_submit():
        if form.csrf_token.errors:
            abort(400)
        flash(_("The reason is too long."), "danger")
    else:
        try:
            action(current_user, booking_id, form.reason.data)
        except ServiceError as error:
            flash(error.message, "danger")
        else:
            flash(success, "success")
    if request.form.get("back") == "booking":
        return redirect(url_for("booking.detail", booking_id=booking_id))
    return redirect(url_for("usage.at_instrument", code=booking.instrument.code))


@bp.route("/bookings/<int:booking_id>/check-in", methods=["POST"])
@role_required(Role.ENTERPRISE, Role.PROVIDER)
def check_in(booking_id: int) -> ResponseReturnValue:
    return _check(booking_id, services.check_in, _("Checked in. Remember to check out when you finish."))


@bp.route("/bookings/<int:booking_id>/check-out", methods=["POST"])
@role_required(Role.ENTERPRISE, Role.PROVIDER)
def check_out(booking_id: int) -> ResponseReturnValue:
    return _check(booking_id, services.check_out, _("Checked out. Thank you."))


@bp.route("/manage/instruments/<code>/usage")
@role_required(Role.PROVIDER, Role.ADMIN)
def manage(code: str) -> ResponseReturnValue:
    """The instrument's label, its device keys (its own providers) and its recent use."""
    return _manage_page(code, DeviceKeyForm(formdata=None))


def _manage_page(
    code: str,
    key_form: DeviceKeyForm,
    new_key: str | None = None,
    use_form: InternalUseForm | None = None,
) -> ResponseReturnValue:
    instrument = editable_instrument(current_user, code)
    keeper = owns(current_user, instrument)
    return render_template(
        "usage/manage.html",
        instrument=instrument,
        url=short_url(code),
        sessions=services.recent_sessions(instrument),
        source_labels=SOURCE_LABELS,
        keys=devices.instrument_keys(current_user, code) if keeper else [],
        keeper=keeper,
        key_form=key_form,
        revoke_form=RevokeKeyForm(formdata=None),
        new_key=new_key,
        portal_url=request.url_root.rstrip("/"),
        internal_uses=internal.recent_internal_use(instrument),
        use_form=use_form or InternalUseForm(formdata=None),
        delete_use_form=DeleteInternalUseForm(formdata=None),
        purpose_labels=PURPOSE_LABELS,
    )


@bp.route("/manage/instruments/<code>/device-keys", methods=["POST"])
@role_required(Role.PROVIDER)
def create_key(code: str) -> ResponseReturnValue:
    """Make a device key and show it this once (on the page itself: never in a flash or a URL)."""
    form = DeviceKeyForm()
    if not form.validate_on_submit():
        if form.csrf_token.errors:
            abort(400)
        return _manage_page(code, form)
    _row, key = devices.create_device_key(current_user, code, form.label.data or "")
    return _manage_page(code, DeviceKeyForm(formdata=None), new_key=key)


@bp.route("/manage/instruments/<code>/device-keys/<int:key_id>/revoke", methods=["POST"])
@role_required(Role.PROVIDER)
def revoke_key(code: str, key_id: int) -> ResponseReturnValue:
    if not RevokeKeyForm().validate_on_submit():
        abort(400)
    devices.revoke_device_key(current_user, code, key_id)
    flash(_("Device key revoked: events sent with it are refused from now on."), "success")
    return redirect(url_for("usage.manage", code=code))


@bp.route("/manage/instruments/<code>/internal-use", methods=["POST"])
@role_required(Role.PROVIDER)
def record_internal_use(code: str) -> ResponseReturnValue:
    """Record a stretch of the institution's own use; a bad one shows the form again as typed."""
    internal.own_instrument(current_user, code)
    form = InternalUseForm()
    if form.validate_on_submit():
        try:
            internal.record_internal_use(current_user, code, _internal_use(form))
        except ValidationFailed as error:
            fields = {FORM_NAMES.get(name, name): message for name, message in error.fields.items()}
            show_service_errors(form, ValidationFailed(error.message, fields))
        else:
            flash(_("Internal use recorded: it counts in the instrument's run hours."), "success")
            return redirect(url_for("usage.manage", code=code, _anchor="internal-use"))
    elif form.csrf_token.errors:
        abort(400)
    return _manage_page(code, DeviceKeyForm(formdata=None), use_form=form)


# The service's field names as the form calls them (a day and two times of day).
FORM_NAMES = {"started_at": "starts", "ended_at": "ends"}


def _internal_use(form: InternalUseForm) -> internal.InternalUseData:
    # Validated: each is required.
    day, starts, ends = form.day.data, form.starts.data, form.ends.data
    assert day is not None and starts is not None and ends is not None
    return internal.InternalUseData(
        started_at=clock.local_datetime_to_utc(day, starts),
        ended_at=clock.local_datetime_to_utc(day, ends),
        user_name=form.user_name.data or "",
        purpose_category=form.purpose_category.data or "",
        note=form.note.data or "",
    )


@bp.route("/manage/instruments/<code>/internal-use/<int:use_id>/delete", methods=["POST"])
@role_required(Role.PROVIDER)
def delete_internal_use(code: str, use_id: int) -> ResponseReturnValue:
    if not DeleteInternalUseForm().validate_on_submit():
        abort(400)
    internal.delete_internal_use(current_user, code, use_id)
    flash(_("The record of internal use is deleted."), "success")
    return redirect(url_for("usage.manage", code=code, _anchor="internal-use"))


def _label(code: str) -> labels.Label:
    instrument = editable_instrument(current_user, code)
    return labels.Label(code=instrument.code, name=instrument.name, url=short_url(code))


@bp.route("/manage/instruments/<code>/label.svg")
@role_required(Role.PROVIDER, Role.ADMIN)
def label_svg(code: str) -> ResponseReturnValue:
    return Response(labels.label_svg(_label(code)), mimetype="image/svg+xml")


@bp.route("/manage/instruments/<code>/label.pdf")
@role_required(Role.PROVIDER, Role.ADMIN)
def label_pdf(code: str) -> ResponseReturnValue:
    response = Response(labels.label_pdf(_label(code)), mimetype="application/pdf")
    response.headers["Content-Disposition"] = f'inline; filename="label-{code}.pdf"'
    return response


def booking_panel(booking: Booking) -> dict[str, Any]:
    """The booking page's usage panel (connected to booking.signals.booking_shown)."""
    if booking.starts_at is None:
        return {}
    now = clock.utcnow()
    usage = services.usage_of([booking.id], now).get(booking.id)
    return {
        "booking_panels": ["usage/_booking.html"],
        "usage": usage,
        "usage_window": services.check_in_window(booking),
        "usage_may_in": services.can_check_in(current_user, booking, now),
        "usage_may_out": services.can_check_out(current_user, booking),
        "usage_form": CheckForm(formdata=None),
        "metered_hours": services.metered_hours(usage),
    }
