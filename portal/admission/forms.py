"""Admission forms: the provider's application, the reviewer's decision, suspension and reinstatement."""

from __future__ import annotations

from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from flask_wtf.file import FileField
from wtforms import SelectMultipleField, SubmitField, TextAreaField, widgets
from wtforms.validators import DataRequired, Length, Optional


class AdmissionForm(FlaskForm):
    instruments = SelectMultipleField(
        _l("Instruments you offer under the scheme"),
        coerce=int,
        validators=[DataRequired(_l("Choose the instruments you offer under the scheme."))],
        widget=widgets.ListWidget(prefix_label=False),
        option_widget=widgets.CheckboxInput(),
    )
    fee_schedule = TextAreaField(
        _l("Fee schedule: the fees you charge for these instruments' services"),
        validators=[DataRequired(), Length(max=4000)],
    )
    fee_file = FileField(_l("Fee schedule as a file, if you have one (PDF, JPEG or PNG)"))
    credit_statement = TextAreaField(
        _l("Credit statement (信用承诺)"),
        validators=[DataRequired(), Length(max=4000)],
        description=_l(
            "Your institution's commitment to charge the published fees, to issue true invoices and "
            "records, and to accept the bureau's checks."
        ),
    )
    submit = SubmitField(_l("Apply for admission"))


class AdmissionDecisionForm(FlaskForm):
    comment = TextAreaField(
        _l("Comment (required to reject or return)"), validators=[Optional(), Length(max=2000)]
    )
    approve = SubmitField(_l("Approve: start the public notice"))
    return_ = SubmitField(_l("Return for correction"), name="return")
    reject = SubmitField(_l("Reject"))

    def action(self) -> str | None:
        """Which of the three buttons was pressed."""
        for name, field in (("approve", self.approve), ("return", self.return_), ("reject", self.reject)):
            if field.data:
                return name
        return None


class StandingForm(FlaskForm):
    reason = TextAreaField(_l("Reason"), validators=[DataRequired(), Length(max=2000)])
    suspend = SubmitField(_l("Suspend the admission"))
    reinstate = SubmitField(_l("Reinstate the admission"))
