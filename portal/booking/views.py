"""Booking pages: availability, requests, a booking and its actions, provider settings, calendars."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any

from flask import Blueprint, Response, abort, flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _
from flask_login import current_user, login_required

from portal.booking import calendar as ics
from portal.booking import files, records, requests, services, settings, signals, transitions
from portal.booking.availability import (
    WeekView,
    opening_week,
    period_to_wait_for,
    week_view,
)
from portal.booking.forms import (
    ActionForm,
    BlackoutForm,
    CancelForm,
    CompleteForm,
    OpeningHoursForm,
    PolicyForm,
    RateForm,
    ReasonForm,
    SampleBookingForm,
    SlotBookingForm,
    UploadForm,
)
from portal.booking.models import (
    BLACKOUT_LABELS,
    FILE_KIND_LABELS,
    MODE_LABELS,
    RATING_LABELS,
    SERVICE_TYPE_LABELS,
    STATE_LABELS,
    BlackoutKind,
    Booking,
    BookingMode,
    BookingState,
    FileKind,
)
from portal.booking.slot_form import choose_slot
from portal.catalog.services import get_instrument
from portal.core import clock, held_uploads, uploads
from portal.core.errors import ServiceError, ValidationFailed
from portal.core.forms import entered, filled, options, show_service_errors
from portal.core.inputs import page_number
from portal.core.money import yuan_to_fen
from portal.core.permissions import Role, role_required
from portal.qualifications import services as use_rules
from portal.qualifications.models import OPERATION_LABELS

bp = Blueprint("booking", __name__)


def chosen_voucher_mode(form: SlotBookingForm | SampleBookingForm, hint: Any | None) -> str | None:
    """What the enterprise chose for paying with its voucher: asked only when the voucher hint (the
    vouchers area) offers both ways; a scheme offering only payment at the counter means that one."""
    modes = tuple(getattr(hint, "modes", ()) or ())
    if len(modes) > 1:
        return form.voucher_mode.data or None
    return modes[0] if modes == ("at_payment",) else None


def _parse_day(text: str | None) -> date | None:
    try:
        day = date.fromisoformat(text) if text else None
    except ValueError:
        return None
    return day if day and clock.plausible_year(day.year) else None


@bp.route("/instruments/<code>/availability")
def availability(code: str) -> ResponseReturnValue:
    """The instrument's week: free, held and closed time; free cells lead to the booking form.

    Without a week asked for, it opens on the week of the next free time, not an empty current week.
    """
    instrument = get_instrument(code)
    first_free_day, next_free = opening_week(instrument)
    view = week_view(instrument, _parse_day(request.args.get("week")) or first_free_day)
    return render_template(
        "booking/availability.html",
        instrument=instrument,
        view=view,
        shown_day=_shown_day(view, request.args.get("day")),
        next_free=next_free,
        today=clock.local_today(),
        policy=services.policy_for(instrument),
        bookable=services.BOOKABLE_STATUSES,
        can_book=current_user.is_authenticated and current_user.role is Role.ENTERPRISE,
    )


def _shown_day(view: WeekView, asked: str | None) -> int:
    """Which day of the week a phone shows (one at a time): the one asked for, else today if it is in
    this week, else the first day with time to book, else the first."""
    if asked in {str(n) for n in range(len(view.days))}:
        return int(asked)
    today = clock.local_today()
    if today in view.days:
        return view.days.index(today)
    bookable = [i for i in range(len(view.days)) if any(row[i].bookable for row in view.rows)]
    return bookable[0] if bookable else 0


@bp.route("/instruments/<code>/book", methods=["GET", "POST"])
@role_required(Role.ENTERPRISE)
def book_slot(code: str) -> ResponseReturnValue:
    """Request machine time: the end times offered are only those the rules allow."""
    instrument = get_instrument(code)
    form = SlotBookingForm()
    slot = choose_slot(form, instrument)
    policy = slot.calendar.policy
    hint = signals.fee_hint(
        current_user, instrument, records.quoted_fee(instrument, slot.price, Decimal(policy.min_minutes) / 60)
    )
    refusal = None
    if form.validate_on_submit():
        try:
            booking = requests.request_booking(
                current_user,
                code,
                requests.BookingRequest(
                    mode=BookingMode.SLOT,
                    starts_at=slot.starts_at,
                    ends_at=clock.parse_iso(form.ends_at.data),
                    purpose=filled(form.purpose),
                    purpose_category=form.purpose_category.data,
                    operation=form.operation.data,
                    voucher_mode=chosen_voucher_mode(form, hint),
                ),
            )
        except ServiceError as error:
            form.form_errors.append(error.message)
            refusal = error
        else:
            flash(_("Your request has been sent to the instrument's operator."), "success")
            return redirect(url_for("booking.detail", booking_id=booking.id))
    return render_template(
        "booking/book_slot.html",
        instrument=instrument,
        form=form,
        starts_at=slot.starts_at,
        wait_for=period_to_wait_for(
            slot.calendar, slot.starts_at, form.ends_at.data, bool(slot.ends), refusal
        ),
        policy=policy,
        hint=hint,
        offered=slot.offered,
        price=slot.price,
        quotes={op: use_rules.quoted_price(current_user, instrument, op) for op in slot.offered},
        operation_labels=OPERATION_LABELS,
    )


@bp.route("/instruments/<code>/book-sample", methods=["GET", "POST"])
@role_required(Role.ENTERPRISE)
def book_sample(code: str) -> ResponseReturnValue:
    """Request a sample service: what the samples are and when they arrive."""
    instrument = get_instrument(code)
    form = SampleBookingForm()
    hint = (
        signals.fee_hint(current_user, instrument, instrument.fee_per_sample_fen)
        if instrument.fee_per_sample_fen is not None
        else None
    )
    if form.validate_on_submit():
        try:
            booking = requests.request_booking(
                current_user,
                code,
                requests.BookingRequest(
                    mode=BookingMode.SAMPLE,
                    purpose=filled(form.purpose),
                    purpose_category=form.purpose_category.data,
                    sample_count=form.sample_count.data,
                    sample_description=form.sample_description.data,
                    sample_delivery_on=form.sample_delivery_on.data,
                    voucher_mode=chosen_voucher_mode(form, hint),
                ),
            )
        except ValidationFailed as error:
            show_service_errors(form, error)
        except ServiceError as error:
            form.form_errors.append(error.message)
        else:
            flash(_("Your request has been sent to the instrument's operator."), "success")
            return redirect(url_for("booking.detail", booking_id=booking.id))
    return render_template("booking/book_sample.html", instrument=instrument, form=form, hint=hint)


@bp.route("/bookings/")
@login_required
def index() -> ResponseReturnValue:
    """My bookings (enterprise), the requests queue (provider), or all bookings (bureau)."""
    state = request.args.get("state") or None
    if state not in (None, *BookingState.__members__.values()):
        state = None
    if state is None and current_user.role is Role.PROVIDER and "state" not in request.args:
        state = BookingState.REQUESTED.value  # the queue opens on what needs an answer
    page = page_number()
    result = services.list_bookings(
        current_user, state=state, instrument_code=request.args.get("instrument") or None, page=page
    )
    return render_template(
        "booking/index.html", result=result, state=state, state_labels=STATE_LABELS, mode_labels=MODE_LABELS
    )


@bp.route("/bookings/<int:booking_id>")
@login_required
def detail(booking_id: int) -> ResponseReturnValue:
    """A booking with everything that happened to it and what the viewer can do next."""
    return _detail_page(services.get_booking(current_user, booking_id))


# The forms of a booking's page; a POST that fails shows the page again with its own form as typed.
DETAIL_FORMS = {
    "action_form": ActionForm,
    "reject_form": ReasonForm,
    "cancel_form": CancelForm,
    "complete_form": CompleteForm,
    "rate_form": RateForm,
    "upload_form": UploadForm,
}


def _detail_page(booking, held: held_uploads.Received | None = None, **submitted) -> ResponseReturnValue:
    forms: dict[str, Any] = {
        name: submitted.get(name) or form_class(formdata=None) for name, form_class in DETAIL_FORMS.items()
    }
    forms["complete_form"].service_type.choices = options(SERVICE_TYPE_LABELS.items())
    extras = signals.booking_extras(booking)  # usage: the check-in panel and the metered hours
    if "complete_form" not in submitted and extras["metered_hours"] is not None:
        forms["complete_form"].hours.data = extras["metered_hours"]  # prefilled from metered use
    # Two reason boxes on one page: each needs its own id, for its label too.
    for name, box_id in (("reject_form", "reject-reason"), ("cancel_form", "cancel-reason")):
        forms[name].reason.id = forms[name].reason.label.field_id = box_id
    return render_template(
        "booking/detail.html",
        booking=booking,
        manages=services.manages(current_user, booking.instrument),
        is_owner=services.is_booking_enterprise(current_user, booking),
        may=_allowed(booking, clock.utcnow()),
        cancel_until=transitions.enterprise_cancel_deadline(current_user, booking),
        recordable_from=transitions.recordable_from(booking),
        booked_hours=records.booked_hours(booking),
        contacts=services.booking_contacts(booking),
        state_labels=STATE_LABELS,
        mode_labels=MODE_LABELS,
        rating_labels=RATING_LABELS,
        file_labels=FILE_KIND_LABELS,
        held=held,
        history=services.booking_history(booking),
        **extras,
        **forms,
    )


def _allowed(booking: Booking, now: datetime) -> dict[str, bool]:
    """What the viewer may do with the booking now, as the services answer it: the page offers these."""
    user = current_user
    return {
        "confirm": transitions.can_confirm(user, booking),
        "reject": transitions.can_reject(user, booking),
        "cancel": transitions.can_cancel(user, booking, now),
        "call_to_cancel": transitions.must_call_to_cancel(user, booking, now),
        "complete": records.can_complete(user, booking, now),
        "complete_later": records.will_complete(user, booking, now),
        "no_show": transitions.can_mark_no_show(user, booking, now),
        "rate": records.can_rate(user, booking),
        "attach_file": files.can_attach_file(user, booking),
    }


def _act(booking_id: int, form_name: str, form, action, success: str) -> ResponseReturnValue:
    """Run one transition from a page's button: the booking must be visible, the form (CSRF) valid.

    Bad input shows the page again with the form as typed and the message beside its field.
    """
    booking = services.get_booking(current_user, booking_id)  # someone else's is simply not found
    if form.validate_on_submit():
        try:
            action(form)
        except ValidationFailed as error:
            show_service_errors(form, error)
        except ServiceError as error:
            flash(error.message, "danger")
            return redirect(url_for("booking.detail", booking_id=booking_id))
        else:
            flash(success, "success")
            return redirect(url_for("booking.detail", booking_id=booking_id))
    elif form.csrf_token.errors:
        abort(400)
    return _detail_page(booking, **{form_name: form})


@bp.route("/bookings/<int:booking_id>/confirm", methods=["POST"])
@role_required(Role.PROVIDER)
def confirm(booking_id: int) -> ResponseReturnValue:
    """The provider accepts the request."""
    return _act(
        booking_id,
        "action_form",
        ActionForm(),
        lambda _form: transitions.confirm_booking(current_user, booking_id),
        _("Booking confirmed."),
    )


@bp.route("/bookings/<int:booking_id>/reject", methods=["POST"])
@role_required(Role.PROVIDER)
def reject(booking_id: int) -> ResponseReturnValue:
    """The provider declines, with a reason the enterprise will see."""
    return _act(
        booking_id,
        "reject_form",
        ReasonForm(),
        lambda form: transitions.reject_booking(current_user, booking_id, form.reason.data),
        _("Request declined."),
    )


@bp.route("/bookings/<int:booking_id>/cancel", methods=["POST"])
@login_required
def cancel(booking_id: int) -> ResponseReturnValue:
    """Cancel: the enterprise before the cut-off, the provider any time with a reason."""
    return _act(
        booking_id,
        "cancel_form",
        CancelForm(),
        lambda form: transitions.cancel_booking(
            current_user, booking_id, form.reason.data, late_cancellation=form.late_cancellation.data
        ),
        _("Booking cancelled."),
    )


@bp.route("/bookings/<int:booking_id>/no-show", methods=["POST"])
@role_required(Role.PROVIDER)
def no_show(booking_id: int) -> ResponseReturnValue:
    """The provider records that nobody came."""
    return _act(
        booking_id,
        "action_form",
        ActionForm(),
        lambda _form: transitions.mark_no_show(current_user, booking_id),
        _("Recorded as a no-show."),
    )


@bp.route("/bookings/<int:booking_id>/complete", methods=["POST"])
@role_required(Role.PROVIDER)
def complete(booking_id: int) -> ResponseReturnValue:
    """The provider records the service: hours or samples, the fee, and the evidence files.

    Files that passed their checks are kept for the next attempt when anything else is wrong.
    """
    booking = services.get_booking(current_user, booking_id)
    form = CompleteForm()
    form.service_type.choices = options(SERVICE_TYPE_LABELS.items())
    valid = form.validate_on_submit()
    if form.csrf_token.errors:
        abort(400)
    held = held_uploads.receive_form(
        form, tuple(kind.value for kind in FileKind), f"service-record:{booking_id}"
    )
    if valid and not held.errors:
        try:
            records.complete_booking(
                current_user,
                booking_id,
                _service_report(form),
                {FileKind(name): stored for name, stored in held.files.items()},
            )
        except ValidationFailed as error:
            show_service_errors(form, error)
        except ServiceError as error:
            held.release()
            flash(error.message, "danger")
            return redirect(url_for("booking.detail", booking_id=booking_id))
        else:
            flash(_("Service recorded."), "success")
            return redirect(url_for("booking.detail", booking_id=booking_id))
    return _detail_page(booking, held=held, complete_form=form)


def _service_report(form: CompleteForm) -> records.ServiceReport:
    return records.ServiceReport(
        hours=form.hours.data,
        samples=form.samples.data,
        fee_fen=None if form.fee.data is None else yuan_to_fen(form.fee.data),
        fee_reason=form.fee_reason.data,
        hours_reason=form.hours_reason.data,
        result_summary=form.result_summary.data or "",
        service_type=form.service_type.data,
    )


@bp.route("/bookings/<int:booking_id>/rate", methods=["POST"])
@role_required(Role.ENTERPRISE)
def rate(booking_id: int) -> ResponseReturnValue:
    """The enterprise confirms the service and rates it."""
    return _act(
        booking_id,
        "rate_form",
        RateForm(),
        lambda form: records.rate_service(current_user, booking_id, int(form.rating.data), form.comment.data),
        _("Thank you for your rating."),
    )


@bp.route("/bookings/<int:booking_id>/files", methods=["POST"])
@login_required
def upload(booking_id: int) -> ResponseReturnValue:
    """Add an evidence file to the service record."""
    record = services.get_booking(current_user, booking_id).service_record
    if record is None:
        abort(404)
    return _act(
        booking_id,
        "upload_form",
        UploadForm(),
        lambda form: files.attach_file(
            current_user, record.id, FileKind(form.kind.data), form.file.data.stream, form.file.data.filename
        ),
        _("File uploaded."),
    )


@bp.route("/service-records/<int:record_id>/files/<int:file_id>")
@login_required
def download(record_id: int, file_id: int) -> ResponseReturnValue:
    """An evidence file, only for those who may see the booking."""
    row = files.get_service_file(current_user, record_id, file_id)
    return uploads.send_stored(row.stored_name, row.content_type, row.original_name)


# --- calendars ----------------------------------------------------------------------------------


def _ics(body: bytes, filename: str) -> Response:
    response = Response(body, mimetype="text/calendar")
    response.headers["Content-Disposition"] = f"inline; filename={filename}"
    response.headers["Cache-Control"] = "private, max-age=300"
    return response


@bp.route("/instruments/<code>/calendar.ics")
def instrument_calendar(code: str) -> ResponseReturnValue:
    """Public feed of when the instrument is taken or closed (no personal data)."""
    instrument = get_instrument(code)
    return _ics(ics.instrument_feed(instrument), f"{instrument.code}.ics")


@bp.route("/calendar/<token>.ics")
def private_calendar(token: str) -> ResponseReturnValue:
    """The user's own bookings; the secret token in the URL is the only credential."""
    user = ics.user_for_calendar_token(token)
    if user is None:
        abort(404)
    return _ics(ics.user_feed(user), "bookings.ics")


@bp.route("/account/calendar", methods=["GET", "POST"])
@login_required
def calendar_link() -> ResponseReturnValue:
    """Show the private calendar address; POST replaces the secret (the old address stops working)."""
    form = ActionForm()
    if form.validate_on_submit():
        ics.reset_calendar_token(current_user)
        flash(_("A new calendar address has been made; the old one no longer works."), "success")
        return redirect(url_for("booking.calendar_link"))
    token = ics.calendar_token(current_user)
    return render_template(
        "booking/calendar.html",
        form=form,
        url=url_for("booking.private_calendar", token=token, _external=True),
    )


# --- providers: their instruments' booking settings ----------------------------------------------


@bp.route("/manage/instruments")
@role_required(Role.PROVIDER)
def manage_index() -> ResponseReturnValue:
    """The instruments of the provider's institution, 50 a page, found by code, name or model."""
    query = (request.args.get("q") or "").strip()[:100]
    result = settings.managed_instruments(current_user, query=query, page=page_number())
    return render_template("booking/manage_index.html", result=result, query=query)


def _managed(code: str):
    instrument = get_instrument(code)
    if not services.manages(current_user, instrument):
        abort(404)
    return instrument


@bp.route("/manage/instruments/<code>", methods=["GET", "POST"])
@role_required(Role.PROVIDER)
def manage(code: str) -> ResponseReturnValue:
    """Booking rules, weekly opening hours and closures of one instrument."""
    instrument = _managed(code)
    policy = services.policy_for(instrument)
    policy_form = PolicyForm(prefix="policy", obj=policy)
    hours_form = OpeningHoursForm(prefix="hours")
    blackout_form = BlackoutForm(prefix="blackout")
    if policy_form.submit.data and policy_form.validate_on_submit():
        try:
            settings.update_policy(
                current_user, instrument, {k: getattr(policy_form, k).data for k in services.DEFAULT_POLICY}
            )
        except ValidationFailed as error:
            show_service_errors(policy_form, error)
        else:
            flash(_("Booking rules saved."), "success")
            return redirect(url_for("booking.manage", code=code))
    elif hours_form.submit.data and hours_form.validate_on_submit():
        try:
            settings.set_opening_hours(current_user, instrument, hours_form.intervals())
        except ValidationFailed as error:
            hours_form.form_errors.append(error.message)
        else:
            flash(_("Opening hours saved."), "success")
            return redirect(url_for("booking.manage", code=code))
    elif blackout_form.submit.data and blackout_form.validate_on_submit():
        try:
            settings.add_blackout(
                current_user,
                instrument,
                BlackoutKind(blackout_form.kind.data),
                clock.local_naive_to_utc(entered(blackout_form.starts_at)),
                clock.local_naive_to_utc(entered(blackout_form.ends_at)),
                blackout_form.reason.data,
            )
        except ServiceError as error:
            blackout_form.form_errors.append(error.message)
        else:
            flash(_("The instrument is closed for that time."), "success")
            return redirect(url_for("booking.manage", code=code))
    if not hours_form.is_submitted():
        hours_form.fill(instrument.opening_hours)
    return render_template(
        "booking/manage.html",
        instrument=instrument,
        policy_form=policy_form,
        hours_form=hours_form,
        blackout_form=blackout_form,
        blackouts=settings.upcoming_blackouts(instrument),
        blackout_labels=BLACKOUT_LABELS,
        delete_form=ActionForm(),
    )


@bp.route("/manage/blackouts/<int:blackout_id>/delete", methods=["POST"])
@role_required(Role.PROVIDER)
def delete_blackout(blackout_id: int) -> ResponseReturnValue:
    """Reopen the time of a closure."""
    blackout = settings.managed_blackout(current_user, blackout_id)
    if blackout is None:
        abort(404)
    if not ActionForm().validate_on_submit():
        abort(400)
    code = blackout.instrument.code
    settings.remove_blackout(current_user, blackout_id)
    flash(_("The closure has been removed."), "success")
    return redirect(url_for("booking.manage", code=code))
