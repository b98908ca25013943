"""Finance forms."""

from __future__ import annotations

from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import SelectField, StringField, SubmitField
from wtforms.validators import DataRequired, Length, Optional, Regexp

from portal.core.forms import options

MONTH = Regexp(r"^20[0-9]{2}-(0[1-9]|1[0-2])$", message=_l("A month looks like 2026-11."))


class TotalsForm(FlaskForm):
    class Meta:
        csrf = False  # a report changes nothing; its URL should be shareable

    month_from = StringField(_l("From month"), validators=[Optional(), MONTH])
    month_to = StringField(_l("To month"), validators=[Optional(), MONTH])
    group_by = SelectField(
        _l("Group by"),
        choices=options(
            [
                ("fund", _l("Fund")),
                ("county", _l("County or district")),
                ("enterprise", _l("Enterprise")),
                ("provider", _l("Provider")),
                ("mode", _l("Redemption mode")),
                ("payee_kind", _l("Payee kind")),
            ]
        ),
        validators=[Optional()],
    )


class MonthForm(FlaskForm):
    month = StringField(_l("Month"), validators=[DataRequired(), MONTH])
    submit = SubmitField(_l("Build the batch"))


class CloseForm(FlaskForm):
    month = StringField(_l("Month"), validators=[DataRequired(), MONTH])
    submit = SubmitField(_l("Close the month"))


class PaidForm(FlaskForm):
    reference = StringField(_l("Bank payment reference"), validators=[DataRequired(), Length(max=80)])
    submit = SubmitField(_l("Mark the batch paid"))


class ActionForm(FlaskForm):
    """The bank file, in either format (the button pressed says which)."""

    submit = SubmitField(_l("Export for the bank (CSV)"))
    xlsx = SubmitField(_l("Export for the bank (XLSX)"))

    def fmt(self) -> str:
        return "xlsx" if self.xlsx.data else "csv"
