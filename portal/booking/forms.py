"""Booking forms: requests, decisions, service records, ratings, uploads, and instrument settings."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import time

from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from flask_wtf.file import FileField, FileRequired
from wtforms import (
    BooleanField,
    DateField,
    DateTimeLocalField,
    DecimalField,
    HiddenField,
    IntegerField,
    RadioField,
    SelectField,
    SelectMultipleField,
    StringField,
    SubmitField,
    TextAreaField,
    TimeField,
)
from wtforms.validators import DataRequired, InputRequired, Length, Optional
from wtforms.widgets import CheckboxInput, ListWidget

from portal.booking.models import (
    BLACKOUT_LABELS,
    FILE_KIND_LABELS,
    LONGEST_SLOT_MINUTES,
    PURPOSE_LABELS,
    RATING_LABELS,
    BlackoutKind,
    FileKind,
    PurposeCategory,
)
from portal.catalog.models import OpeningHours
from portal.core.forms import NumberRange, options, plausible_date, yuan_amount
from portal.core.web import WEEKDAY_NAMES

PURPOSE = _l("Purpose of the test")
PURPOSE_CATEGORY = _l("What the service is for")


def _purpose_category() -> SelectField:
    # The national service direction (issue 19); enterprises mostly develop products.
    return SelectField(
        PURPOSE_CATEGORY,
        choices=options((c.value, PURPOSE_LABELS[c]) for c in PurposeCategory),
        default=PurposeCategory.DEVELOPMENT.value,
    )


def _voucher_mode() -> RadioField:
    """Shown only when the voucher scheme offers both ways of paying (the voucher hint says so)."""
    return RadioField(
        _l("Paying with your innovation voucher"),
        choices=options(
            [
                ("reimbursement", _l("Pay the whole fee, then claim the subsidy")),
                ("at_payment", _l("Pay only my share; the provider redeems the voucher")),
            ]
        ),
        validators=[Optional()],
    )


class SlotBookingForm(FlaskForm):
    starts_at = HiddenField(validators=[DataRequired()])
    # Issue 17: "self" (自主上机) or "staff" (代为操作); chosen on the page, checked by the service.
    operation = HiddenField()
    ends_at = SelectField(_l("Until"), validators=[DataRequired()])
    purpose = TextAreaField(PURPOSE, validators=[DataRequired(), Length(max=2000)])
    purpose_category = _purpose_category()
    voucher_mode = _voucher_mode()
    submit = SubmitField(_l("Send booking request"))


class SeriesForm(FlaskForm):
    """A recurring slot (issue 18): the first occurrence (its start chosen in the week view), how it
    repeats and until when. "Check the dates" lists them with their clashes; then "Book the series"."""

    starts_at = HiddenField(validators=[DataRequired()])
    operation = HiddenField()
    ends_at = SelectField(_l("Each time until"), validators=[DataRequired()])
    every = RadioField(
        _l("Repeat"), choices=options([("week", _l("Weekly")), ("day", _l("Daily"))]), default="week"
    )
    interval = IntegerField(
        _l("Every how many weeks (or days)"),
        default=1,
        validators=[InputRequired(), NumberRange(min=1, max=52)],
    )
    weekdays = SelectMultipleField(
        _l("On these weekdays (weekly only)"),
        choices=options(enumerate(WEEKDAY_NAMES)),
        widget=ListWidget(prefix_label=False),
        option_widget=CheckboxInput(),
    )
    ends_by = RadioField(
        _l("Ends"),
        choices=options([("count", _l("After a number of times")), ("until", _l("On a day"))]),
        default="count",
    )
    count = IntegerField(
        _l("Number of times (the first included)"),
        default=4,
        validators=[Optional(), NumberRange(min=2, max=100)],
    )
    until = DateField(_l("Last day (included)"), validators=[Optional(), plausible_date])
    purpose = TextAreaField(PURPOSE, validators=[DataRequired(), Length(max=2000)])
    purpose_category = _purpose_category()
    skip_conflicts = BooleanField(_l("Skip the dates that clash and book the others"))
    preview = SubmitField(_l("Check the dates"))
    submit = SubmitField(_l("Book the series"))

    def validate(self, extra_validators=None) -> bool:
        ok = super().validate(extra_validators)
        chosen = self.count if self.ends_by.data == "count" else self.until
        if chosen.data is None and not chosen.errors:
            chosen.errors = [*chosen.errors, _l("Required.")]
            ok = False
        return ok


class SeriesCancelForm(FlaskForm):
    """Cancel a recurring booking's dates: all upcoming ones, or from one of them on."""

    from_booking_id = SelectField(_l("Cancel"), choices=[], default="")
    reason = TextAreaField(_l("Reason"), validators=[Optional(), Length(max=1000)])
    submit = SubmitField(_l("Cancel these dates"))


class SampleBookingForm(FlaskForm):
    sample_count = IntegerField(
        _l("Number of samples"), validators=[InputRequired(), NumberRange(min=1, max=10000)]
    )
    sample_description = TextAreaField(
        _l("Samples (material, form, quantity, hazards)"), validators=[DataRequired(), Length(max=2000)]
    )
    sample_delivery_on = DateField(_l("Samples arrive on"), validators=[InputRequired(), plausible_date])
    purpose = TextAreaField(PURPOSE, validators=[DataRequired(), Length(max=2000)])
    purpose_category = _purpose_category()
    voucher_mode = _voucher_mode()
    submit = SubmitField(_l("Send sample request"))


class ActionForm(FlaskForm):
    """A button that changes state: nothing but the CSRF token."""

    submit = SubmitField(_l("Confirm"))


class ReasonForm(FlaskForm):
    reason = TextAreaField(_l("Reason"), validators=[Optional(), Length(max=1000)])
    submit = SubmitField(_l("Submit"))


class CancelForm(ReasonForm):
    late_cancellation = BooleanField(
        _l("The enterprise asked to cancel after the cut-off (counts against its booking credit)")
    )


class CompleteForm(FlaskForm):
    hours = DecimalField(
        _l("Machine hours used"), places=2, validators=[Optional(), NumberRange(min=0.01, max=1000)]
    )
    samples = IntegerField(_l("Samples measured"), validators=[Optional(), NumberRange(min=1, max=100000)])
    fee = DecimalField(
        _l("Fee charged (yuan)"),
        places=2,
        validators=[Optional(), yuan_amount],
        description=_l("Leave empty to charge the published fee standard."),
    )
    fee_reason = StringField(_l("Reason for a different fee"), validators=[Optional(), Length(max=500)])
    hours_reason = StringField(
        _l("Reason for more hours than booked"),
        validators=[Optional(), Length(max=500)],
        description=_l("Needed only when more hours were used than were booked."),
    )
    service_type = SelectField(_l("Kind of service"), default="analysis")
    result_summary = TextAreaField(_l("Result summary"), validators=[Optional(), Length(max=4000)])
    contract = FileField(_l("Contract"))
    invoice = FileField(_l("Invoice"))
    receipt = FileField(_l("Payment receipt"))
    result = FileField(_l("Service result"))
    submit = SubmitField(_l("Record the service"))


class RateForm(FlaskForm):
    rating = RadioField(
        _l("How satisfied are you with this service?"),
        choices=options(RATING_LABELS.items()),
        validators=[DataRequired(message=_l("Choose one of the five ratings."))],
    )
    comment = TextAreaField(_l("Comment"), validators=[Optional(), Length(max=1000)])
    submit = SubmitField(_l("Confirm the service and rate it"))


class UploadForm(FlaskForm):
    kind = SelectField(_l("Document"), choices=options(FILE_KIND_LABELS.items()))
    file = FileField(
        _l("File (PDF, JPEG or PNG)"), validators=[FileRequired(message=_l("Choose a file to upload."))]
    )
    submit = SubmitField(_l("Upload"))


class PolicyForm(FlaskForm):
    accepts_slots = BooleanField(_l("Machine-time bookings"))
    accepts_samples = BooleanField(_l("Sample submissions"))
    step_minutes = SelectField(
        _l("Time grid (minutes)"), choices=options((n, n) for n in (15, 30, 60)), coerce=int
    )
    min_minutes = IntegerField(
        _l("Shortest booking (minutes)"), validators=[InputRequired(), NumberRange(min=15, max=1440)]
    )
    max_minutes = IntegerField(
        _l("Longest booking (minutes)"),
        validators=[InputRequired(), NumberRange(min=15, max=LONGEST_SLOT_MINUTES)],
    )
    buffer_minutes = IntegerField(
        _l("Buffer between bookings (minutes)"), validators=[InputRequired(), NumberRange(min=0, max=1440)]
    )
    min_notice_hours = IntegerField(
        _l("Minimum notice (hours)"), validators=[InputRequired(), NumberRange(min=0, max=720)]
    )
    max_days_ahead = IntegerField(
        _l("Bookable days ahead"), validators=[InputRequired(), NumberRange(min=1, max=365)]
    )
    cancel_cutoff_hours = IntegerField(
        _l("Enterprises may cancel until (hours before)"),
        validators=[InputRequired(), NumberRange(min=0, max=720)],
    )
    no_show_grace_minutes = IntegerField(
        _l("No-show after (minutes past the start without check-in)"),
        validators=[InputRequired(), NumberRange(min=0, max=1440)],
    )
    submit = SubmitField(_l("Save booking rules"))


INTERVALS_PER_DAY = 3


class OpeningHoursForm(FlaskForm):
    """Up to three openings a day, Monday to Sunday, in Beijing time; an empty pair means closed."""

    submit = SubmitField(_l("Save opening hours"))

    def intervals(self) -> list[tuple[int, time, time]]:
        out = []
        for day in range(7):
            for i in range(INTERVALS_PER_DAY):
                opens, closes = (
                    getattr(self, f"d{day}_{i}_open").data,
                    getattr(self, f"d{day}_{i}_close").data,
                )
                if opens and closes:
                    out.append((day, opens, closes))
        return out

    def fill(self, hours: Iterable[OpeningHours]) -> None:
        """Show the instrument's present opening hours (the first three of each day)."""
        slots: dict[int, int] = {}
        for h in hours:
            i = slots.get(h.weekday, 0)
            if i < INTERVALS_PER_DAY:
                getattr(self, f"d{h.weekday}_{i}_open").data = h.opens_at
                getattr(self, f"d{h.weekday}_{i}_close").data = h.closes_at
            slots[h.weekday] = i + 1

    def validate(self, extra_validators=None) -> bool:
        ok = super().validate(extra_validators)
        for day in range(7):
            for i in range(INTERVALS_PER_DAY):
                opens, closes = getattr(self, f"d{day}_{i}_open"), getattr(self, f"d{day}_{i}_close")
                if bool(opens.data) != bool(closes.data):
                    closes.errors = [*closes.errors, _l("Give both times, or neither.")]
                    ok = False
        return ok


for _day in range(7):
    for _i in range(INTERVALS_PER_DAY):
        setattr(OpeningHoursForm, f"d{_day}_{_i}_open", TimeField(validators=[Optional()]))
        setattr(OpeningHoursForm, f"d{_day}_{_i}_close", TimeField(validators=[Optional()]))


class BlackoutForm(FlaskForm):
    kind = SelectField(
        _l("Kind"),
        choices=options(BLACKOUT_LABELS.items()),
        default=BlackoutKind.MAINTENANCE.value,
    )
    starts_at = DateTimeLocalField(
        _l("From"), format="%Y-%m-%dT%H:%M", validators=[InputRequired(), plausible_date]
    )
    ends_at = DateTimeLocalField(
        _l("Until"), format="%Y-%m-%dT%H:%M", validators=[InputRequired(), plausible_date]
    )
    reason = StringField(_l("Reason"), validators=[Optional(), Length(max=200)])
    submit = SubmitField(_l("Close the instrument for this time"))


FILE_FIELDS = {kind: kind.value for kind in FileKind}
