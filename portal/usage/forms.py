"""Usage forms: checking in and out at the instrument."""

from __future__ import annotations

from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import StringField, SubmitField
from wtforms.validators import Length, Optional

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
