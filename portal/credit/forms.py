"""The credit area's forms: a waiver's reason, and the scheme's N, M and K."""

from __future__ import annotations

from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import IntegerField, SubmitField, TextAreaField
from wtforms.validators import DataRequired, InputRequired, Length

from portal.core.forms import NumberRange


class WaiveForm(FlaskForm):
    reason = TextAreaField(
        _l("Why it should not count"),
        validators=[DataRequired(message=_l("Please give a reason.")), Length(max=1000)],
    )
    submit = SubmitField(_l("Waive"))


class RulesForm(FlaskForm):
    max_violations = IntegerField(
        _l("Violations (N)"), validators=[InputRequired(), NumberRange(min=1, max=100)]
    )
    window_days = IntegerField(
        _l("Within days (M)"), validators=[InputRequired(), NumberRange(min=1, max=3660)]
    )
    suspension_days = IntegerField(
        _l("Suspend online booking for days (K)"), validators=[InputRequired(), NumberRange(min=0, max=3660)]
    )
    submit = SubmitField(_l("Save the credit rules"))
