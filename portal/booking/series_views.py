"""Recurring bookings' pages (issue 18): the series form (the dates and their clashes listed before
anything is booked), a series' page with all its dates, cancelling this and following or all, and
the provider's confirm all.

On the booking blueprint, next to the booking form the series form is reached from.
"""

from __future__ import annotations

from datetime import datetime

from flask import abort, flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _
from flask_babel import ngettext
from flask_login import current_user, login_required

from portal.booking import series
from portal.booking.forms import ActionForm, SeriesCancelForm, SeriesForm
from portal.booking.models import STATE_LABELS, BookingSeries
from portal.booking.recurrence import Repeat
from portal.booking.services import booking_when, manages
from portal.booking.slot_form import choose_slot
from portal.booking.views import bp
from portal.catalog.services import get_instrument
from portal.core import clock
from portal.core.errors import SeriesConflicts, ServiceError, ValidationFailed
from portal.core.forms import filled, options, show_service_errors
from portal.core.permissions import Role, role_required
from portal.qualifications import services as use_rules
from portal.qualifications.models import OPERATION_LABELS


@bp.route("/instruments/<code>/book-series", methods=["GET", "POST"])
@role_required(Role.ENTERPRISE)
def book_series(code: str) -> ResponseReturnValue:
    """Request a recurring slot: "Check the dates" lists every date with its clash; then book."""
    instrument = get_instrument(code)
    form = SeriesForm()
    slot = choose_slot(form, instrument)
    starts_at = slot.starts_at
    if not form.is_submitted():
        form.weekdays.data = [str(clock.to_local(starts_at).weekday())]
    dates = None
    if form.validate_on_submit():
        wanted = _series_request(form, starts_at)
        try:
            if form.submit.data:
                made = series.request_series(current_user, code, wanted)
                flash(_booked_message(made), "success")
                return redirect(url_for("booking.series_detail", series_id=made.id))
            dates = series.preview_series(current_user, code, wanted)
        except SeriesConflicts as error:
            form.form_errors.append(error.message)
            dates = _preview_again(form, code, wanted)
        except ValidationFailed as error:
            show_service_errors(form, error)
        except ServiceError as error:
            form.form_errors.append(error.message)
    return render_template(
        "booking/book_series.html",
        instrument=instrument,
        form=form,
        starts_at=starts_at,
        dates=dates,
        conflict_labels=series.CONFLICT_LABELS,
        offered=slot.offered,
        quotes={op: use_rules.quoted_price(current_user, instrument, op) for op in slot.offered},
        operation_labels=OPERATION_LABELS,
    )


def _series_request(form: SeriesForm, starts_at: datetime) -> series.SeriesRequest:
    weekly = form.every.data == "week"
    return series.SeriesRequest(
        starts_at=starts_at,
        ends_at=clock.parse_iso(form.ends_at.data),
        repeat=Repeat(
            every=form.every.data,
            interval=form.interval.data or 1,
            weekdays=tuple(int(d) for d in form.weekdays.data or ()) if weekly else (),
            until=form.until.data if form.ends_by.data == "until" else None,
            count=form.count.data if form.ends_by.data == "count" else None,
        ),
        operation=form.operation.data or None,
        purpose=filled(form.purpose),
        purpose_category=form.purpose_category.data,
        skip_conflicts=form.skip_conflicts.data,
    )


def _preview_again(
    form: SeriesForm, code: str, wanted: series.SeriesRequest
) -> list[series.Occurrence] | None:
    """The dates as they are now, after a booking the clashes refused (they may have changed)."""
    try:
        return series.preview_series(current_user, code, wanted)
    except ServiceError as error:
        form.form_errors.append(error.message)
        return None


def _booked_message(made: BookingSeries) -> str:
    message = ngettext(
        "Your recurring booking was sent: %(num)d date requested.",
        "Your recurring booking was sent: %(num)d dates requested.",
        len(made.bookings),
    )
    if made.skipped:
        message += " " + ngettext("%(num)d date skipped.", "%(num)d dates skipped.", len(made.skipped))
    return message


@bp.route("/bookings/series/<int:series_id>")
@login_required
def series_detail(series_id: int) -> ResponseReturnValue:
    """A recurring booking: all its dates together, and what the viewer can do with them."""
    return _series_page(series.get_series(current_user, series_id))


def _series_page(shown: BookingSeries, cancel_form: SeriesCancelForm | None = None) -> ResponseReturnValue:
    cancellable = series.cancellable(current_user, shown)
    form = cancel_form or SeriesCancelForm(formdata=None, from_booking_id=request.args.get("from", ""))
    _cancel_choices(form, cancellable)
    return render_template(
        "booking/series.html",
        series=shown,
        rule=series.rule_text(shown),
        dates=series.series_dates(shown),
        cancellable=cancellable,
        confirmable=series.confirmable(current_user, shown),
        manages=manages(current_user, shown.instrument),
        cancel_form=form,
        confirm_form=ActionForm(),
        state_labels=STATE_LABELS,
        conflict_labels=series.CONFLICT_LABELS,
    )


def _cancel_choices(form: SeriesCancelForm, cancellable: list) -> None:
    form.from_booking_id.choices = options(
        [
            ("", _("All upcoming dates")),
            *((b.id, _("From %(when)s on", when=booking_when(b))) for b in cancellable),
        ]
    )


@bp.route("/bookings/series/<int:series_id>/cancel", methods=["POST"])
@login_required
def series_cancel(series_id: int) -> ResponseReturnValue:
    """Cancel this date and the following ones, or all: the enterprise, or the provider with a reason."""
    shown = series.get_series(current_user, series_id)  # someone else's is simply not found
    form = SeriesCancelForm()
    _cancel_choices(form, series.cancellable(current_user, shown))
    if form.validate_on_submit():
        first = int(form.from_booking_id.data) if form.from_booking_id.data else None
        try:
            series.cancel_series(current_user, series_id, first, form.reason.data)
        except ValidationFailed as error:
            show_service_errors(form, error)
        except ServiceError as error:
            flash(error.message, "danger")
            return redirect(url_for("booking.series_detail", series_id=series_id))
        else:
            flash(_("The dates are cancelled."), "success")
            return redirect(url_for("booking.series_detail", series_id=series_id))
    elif form.csrf_token.errors:
        abort(400)
    return _series_page(shown, cancel_form=form)


@bp.route("/bookings/series/<int:series_id>/confirm", methods=["POST"])
@role_required(Role.PROVIDER)
def series_confirm(series_id: int) -> ResponseReturnValue:
    """The provider confirms every requested date of the series at once."""
    series.get_series(current_user, series_id)
    if not ActionForm().validate_on_submit():
        abort(400)
    try:
        series.confirm_series(current_user, series_id)
    except ServiceError as error:
        flash(error.message, "danger")
    else:
        flash(_("The requested dates are confirmed."), "success")
    return redirect(url_for("booking.series_detail", series_id=series_id))
