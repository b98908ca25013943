"""Usage forms: checking in and out at the instrument, device keys, the institution's own use."""

from __future__ import annotations

from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import DateField, SelectField, StringField, SubmitField, TimeField
from wtforms.validators import InputRequired, Length, Optional

from portal.booking.models import PURPOSE_LABELS, PurposeCategory
from portal.core.forms import options, plausible_date
from portal.usage.internal import MAX_NAME, MAX_NOTE
from portal.usage.services import MAX_REASON


class CheckForm(FlaskForm):
    """Check in or out; a provider doing it for the user says why (the service requires it)."""

    reason = StringField(
        _l("Reason (when you do it for the user)"), validators=[Optional(), Length(max=MAX_REASON)]
    )
    submit = SubmitField(_l("Confirm"))


class DeviceKeyForm(FlaskForm):
    label = StringField(_l("Where it is used (e.g. the PC's name)"), validators=[Optional(), Length(max=80)])
    submit = SubmitField(_l("Make a device key"))


class RevokeKeyForm(FlaskForm):
    submit = SubmitField(_l("Revoke"))


class InternalUseForm(FlaskForm):
    """A stretch of the institution's own use of the instrument (issue 19), in Beijing time."""

    day = DateField(_l("Day"), validators=[InputRequired(), plausible_date])
    starts = TimeField(_l("From"), validators=[InputRequired()])
    ends = TimeField(_l("Until"), validators=[InputRequired()])
    user_name = StringField(_l("Used by"), validators=[Optional(), Length(max=MAX_NAME)])
    purpose_category = SelectField(
        _l("What it was for"),
        choices=options((c.value, PURPOSE_LABELS[c]) for c in PurposeCategory),
        default=PurposeCategory.RESEARCH.value,
    )
    note = StringField(_l("Note"), validators=[Optional(), Length(max=MAX_NOTE)])
    submit = SubmitField(_l("Record internal use"))


class DeleteInternalUseForm(FlaskForm):
    submit = SubmitField(_l("Delete"))
