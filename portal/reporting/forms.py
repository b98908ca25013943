"""Report forms: submitting the institution's report of a year as final."""

from __future__ import annotations

from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import BooleanField, IntegerField, SubmitField
from wtforms.validators import InputRequired
from wtforms.widgets import HiddenInput

from portal.core.forms import NumberRange


class SubmitForm(FlaskForm):
    year = IntegerField(widget=HiddenInput(), validators=[InputRequired(), NumberRange(min=2000, max=2099)])
    new_version = BooleanField(_l("Make a new version: the records changed since the last one was submitted"))
    submit = SubmitField(_l("Submit as final"))
