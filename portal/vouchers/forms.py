"""Voucher forms: verification, applications, claims, review decisions, the scheme, the audit search."""

from __future__ import annotations

import builtins
from typing import ClassVar

from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from flask_wtf.file import FileField
from wtforms import (
    BooleanField,
    DateField,
    DecimalField,
    FieldList,
    Form,
    FormField,
    IntegerField,
    SelectField,
    SelectMultipleField,
    StringField,
    SubmitField,
    TextAreaField,
)
from wtforms.validators import DataRequired, InputRequired, Length, Optional, Regexp
from wtforms.widgets import CheckboxInput, ListWidget

from portal.accounts.models import ENTERPRISE_KIND_LABELS
from portal.booking.models import FILE_KIND_LABELS, SERVICE_TYPE_LABELS
from portal.core.forms import NumberRange, options, plausible_date, yuan_amount
from portal.core.languages import CHINESE
from portal.vouchers.labels import CONDITION_LABELS, REDEMPTION_MODE_LABELS, RELATION_LABELS


class VerificationForm(FlaskForm):
    kind = SelectField(_l("Enterprise type"), choices=options(ENTERPRISE_KIND_LABELS.items()))
    tech_sme_number = StringField(
        _l("Tech SME registration number"),
        validators=[Optional(), Length(max=40)],
        description=_l("Required for tech SMEs (%(name)s).", name=CHINESE % "科技型中小企业入库编号"),
    )
    actual_controller = StringField(
        _l("Actual controller"),
        validators=[DataRequired(), Length(max=120)],
        description=_l("The person or company that ultimately controls the enterprise."),
    )
    certificate = FileField(_l("Registration certificate (PDF, JPEG or PNG)"))
    related_institution = SelectField(
        _l("Related host institution (if any)"), coerce=str, validators=[Optional()]
    )
    relation_kind = SelectField(
        _l("Kind of relation"), choices=options(RELATION_LABELS.items()), validators=[Optional()]
    )
    submit = SubmitField(_l("Submit for verification"))


class ApplicationForm(FlaskForm):
    amount = DecimalField(
        _l("Voucher amount applied for (yuan)"), places=2, validators=[InputRequired(), yuan_amount]
    )
    plan = TextAreaField(
        _l("Plan: what you will test, on which instruments, and why"),
        validators=[DataRequired(), Length(max=4000)],
    )
    submit = SubmitField(_l("Apply for the voucher"))


class ClaimForm(FlaskForm):
    voucher_id = IntegerField(validators=[InputRequired()])
    records = SelectMultipleField(_l("Completed services"), coerce=int, validators=[DataRequired()])
    # Only for a provider outside Shandong, where it is required (the view asks for it then).
    justification = TextAreaField(
        _l("Why no networked instrument in Shandong can do this service"),
        validators=[Optional(), Length(max=4000)],
        description=_l(
            "A provider outside the province is subsidised only with this written justification, "
            "and never by the city. Name what the service needs that the instruments listed below lack."
        ),
    )
    preview = SubmitField(_l("Show the subsidy"))
    create = SubmitField(_l("Save as a draft claim"))


class DecisionForm(FlaskForm):
    comment = TextAreaField(
        _l("Comment (required to reject or return)"), validators=[Optional(), Length(max=2000)]
    )
    amount = DecimalField(_l("Approved amount (yuan)"), places=2, validators=[Optional(), yuan_amount])
    approve = SubmitField(_l("Approve"))
    return_ = SubmitField(_l("Return for correction"), name="return")
    reject = SubmitField(_l("Reject"))

    def action(self) -> str | None:
        """Which of the three buttons was pressed."""
        if self.approve.data:
            return "approve"
        if self.return_.data:
            return "return"
        if self.reject.data:
            return "reject"
        return None


class VerificationDecisionForm(FlaskForm):
    reason = TextAreaField(
        _l("Reason (required to reject or to override)"), validators=[Optional(), Length(max=2000)]
    )
    uscc_override = BooleanField(_l("Override: accept the legacy credit code although its checksum fails"))
    verify = SubmitField(_l("Verify"))
    reject = SubmitField(_l("Reject"))


class BankAccountForm(FlaskForm):
    account_name = StringField(
        _l("Account name"),
        validators=[DataRequired(), Length(max=100)],
        description=_l("Exactly as the bank holds it: normally your enterprise's registered name."),
    )
    bank_name = StringField(
        _l("Bank and branch"),
        validators=[DataRequired(), Length(max=100)],
        description=_l("e.g. Industrial and Commercial Bank of China, Liaocheng Branch"),
    )
    account_number = StringField(
        _l("Account number"),
        validators=[DataRequired(), Length(max=64)],
        description=_l("Digits only; spaces between groups are fine."),
    )
    submit = SubmitField(_l("Send to the bureau for verification"))


class BankAccountDecisionForm(FlaskForm):
    reason = TextAreaField(
        _l("Reason (required to reject, or to verify a name that differs)"),
        validators=[Optional(), Length(max=2000)],
    )
    verify = SubmitField(_l("Verify the account"))
    reject = SubmitField(_l("Reject"))


class ClaimRevisionForm(FlaskForm):
    """A returned claim corrected: a reply to the reviewer and, if need be, one evidence file replaced."""

    reply = TextAreaField(
        _l("Your reply to the reviewer"),
        validators=[Optional(), Length(max=2000)],
        description=_l("What you corrected; the reviewer reads it with the claim."),
    )
    record = SelectField(_l("Service"), coerce=str, validators=[Optional()])
    kind = SelectField(_l("Document"), choices=options(FILE_KIND_LABELS.items()), validators=[Optional()])
    file = FileField(_l("New file (PDF, JPEG or PNG), replacing the one of this kind"))
    save = SubmitField(_l("Save"))
    resubmit = SubmitField(_l("Save and submit again"))

    def validate(self, extra_validators=None) -> bool:
        """A file needs the service and the kind of document it replaces (both optional without one)."""
        valid = super().validate(extra_validators)
        if self.file.data and getattr(self.file.data, "filename", None):
            for field in (self.record, self.kind):
                if not (field.data or "").strip():
                    field.errors = [*field.errors, _l("Say which document the new file replaces.")]
                    valid = False
        return valid


class RelationForm(FlaskForm):
    institution = SelectField(_l("Host institution"), coerce=str, validators=[DataRequired()])
    kind = SelectField(_l("Kind of relation"), choices=options(RELATION_LABELS.items()))
    submit = SubmitField(_l("Record the relation"))


FUND_NAME = r"^[a-z][a-z0-9_]{0,19}$"


class FundForm(Form):
    """One fund of a scheme (a row of the scheme form; no CSRF token of its own)."""

    name = StringField(
        _l("Fund code"),
        validators=[Optional(), Regexp(FUND_NAME, message=_l("Lower-case letters, digits and _."))],
        description=_l("Fixed once claims use it: claims, tallies and the API name the fund by it."),
    )
    label = StringField(_l("Fund name"), validators=[Optional(), Length(max=60)])
    rate = DecimalField(_l("Rate"), places=4, validators=[Optional(), NumberRange(min=0, max=1)])
    budget = DecimalField(_l("Budget (yuan)"), places=2, validators=[Optional(), yuan_amount])
    condition = SelectField(_l("Applies"), choices=options(CONDITION_LABELS.items()))
    enterprise_capped = BooleanField(_l("Counts against the enterprise's yearly cap"))

    def is_blank(self) -> bool:
        return not (self.name.data or "").strip() and self.rate.data is None and self.budget.data is None


class SchemeForm(FlaskForm):
    year = IntegerField(_l("Year"), validators=[InputRequired(), NumberRange(min=2020, max=2100)])
    name = StringField(_l("Scheme name"), validators=[DataRequired(), Length(max=120)])
    # One row per fund of the scheme, in its order, and a blank row to add one (a blank row is ignored).
    funds = FieldList(FormField(FundForm), min_entries=1)
    enterprise_cap = DecimalField(
        _l("Provincial cap per enterprise and year (yuan)"),
        places=2,
        validators=[InputRequired(), yuan_amount],
    )
    group_cap = DecimalField(
        _l("Cap per controller group and year, province and city (yuan)"),
        places=2,
        validators=[InputRequired(), yuan_amount],
    )
    four_eyes_threshold = DecimalField(
        _l("Second reviewer above (yuan)"), places=2, validators=[InputRequired(), yuan_amount]
    )
    voucher_validity_days = IntegerField(
        _l("Voucher validity (days)"), validators=[InputRequired(), NumberRange(min=1, max=1000)]
    )
    service_window_start = DateField(_l("Services from"), validators=[InputRequired(), plausible_date])
    service_window_end = DateField(_l("Services until"), validators=[InputRequired(), plausible_date])
    public_notice_days = IntegerField(
        _l("Public notice (days)"), validators=[InputRequired(), NumberRange(min=0, max=60)]
    )
    excluded_service_types = SelectMultipleField(
        _l("Service types never subsidised"), choices=options(SERVICE_TYPE_LABELS.items())
    )
    metering_required = BooleanField(_l("Billed machine hours must be metered at the instrument"))
    redemption_modes = SelectMultipleField(
        _l("How vouchers pay (one at least; with both, the enterprise chooses per booking)"),
        choices=options(REDEMPTION_MODE_LABELS.items()),
        widget=ListWidget(prefix_label=False),
        option_widget=CheckboxInput(),
    )
    out_of_province_rate = DecimalField(
        _l("Rate for a provider outside Shandong"),
        places=None,
        validators=[Optional(), NumberRange(min=0, max=1)],
        description=_l(
            "Paid by the funds that always apply, in place of their own rate; the city's top-up never "
            "applies. Leave it blank if the scheme subsidises no service from outside the province."
        ),
    )
    redemption_days = IntegerField(
        _l("Days to submit an at-payment redemption"),
        default=30,
        validators=[InputRequired(), NumberRange(min=1, max=365)],
        description=_l(
            "A reservation not submitted within these days of the service expires and is released."
        ),
    )
    # The providers' ranking weights (places=None shows them as typed, not padded to four digits).
    weight_hours = DecimalField(
        _l("Weight of service hours"), places=None, validators=[Optional(), NumberRange(min=0, max=1)]
    )
    weight_samples = DecimalField(
        _l("Weight of samples"), places=None, validators=[Optional(), NumberRange(min=0, max=1)]
    )
    weight_fees = DecimalField(
        _l("Weight of fees"), places=None, validators=[Optional(), NumberRange(min=0, max=1)]
    )
    weight_enterprises = DecimalField(
        _l("Weight of enterprises served"), places=None, validators=[Optional(), NumberRange(min=0, max=1)]
    )
    weight_rating = DecimalField(
        _l("Weight of the average rating"), places=None, validators=[Optional(), NumberRange(min=0, max=1)]
    )
    submit = SubmitField(_l("Save the scheme"))

    def validate(self, extra_validators=None) -> bool:
        """Each fund row not left blank needs a code, a rate and a budget; codes differ; one fund at least."""
        valid = super().validate(extra_validators)
        seen: set[str] = set()
        for row in self.funds:
            if row.form.is_blank():
                continue
            for field in (row.form.name, row.form.rate, row.form.budget):
                if field.data is None or field.data == "":
                    field.errors = [*field.errors, _l("Required.")]
                    valid = False
            name = (row.form.name.data or "").strip()
            if name in seen:
                row.form.name.errors = [*row.form.name.errors, _l("Each fund needs its own code.")]
                valid = False
            seen.add(name)
        if not seen:
            self.form_errors.append(_l("A scheme needs at least one fund."))
            valid = False
        if not self.redemption_modes.data:  # not DataRequired: each checkbox would be marked required
            self.redemption_modes.errors = [*self.redemption_modes.errors, _l("Choose at least one way.")]
            valid = False
        return valid

    # The ranking measure each weight field sets.
    WEIGHT_FIELDS: ClassVar[dict[str, str]] = {
        "hours": "weight_hours",
        "samples": "weight_samples",
        "fees": "weight_fees",
        "enterprises": "weight_enterprises",
        "rating": "weight_rating",
    }


class AuditSearchForm(FlaskForm):
    """The audit search: by what happened, to which kind of object, who did it, and the object's name."""

    class Meta:
        csrf = False  # a search changes nothing

    action = SelectField(_l("Action"), validators=[Optional()])
    kind = SelectField(_l("Kind of object"), validators=[Optional()])
    who = StringField(
        _l("Who"), validators=[Optional(), Length(max=60)], description=_l("A username or a person's name.")
    )
    object = StringField(
        _l("Object"),
        validators=[Optional(), Length(max=120)],
        description=_l("An instrument's code or name, an enterprise's name, a voucher code or a number."),
    )
    since = DateField(_l("From"), validators=[Optional(), plausible_date])
    until = DateField(_l("Until"), validators=[Optional(), plausible_date])

    # builtins.object: in this class, `object` is the field above.
    def choose_from(self, actions: dict[str, builtins.object], kinds: dict[str, builtins.object]) -> None:
        """Offer the registered actions and kinds of object by their names, alphabetically."""
        for field, labels in ((self.action, actions), (self.kind, kinds)):
            named = sorted(((code, str(label)) for code, label in labels.items()), key=lambda pair: pair[1])
            field.choices = options([("", _l("All")), *named])


def _stripped(value: str | None) -> str | None:
    """Surrounding blanks off; a form not sent yet has no value (str.strip would fail on None)."""
    return value.strip() if isinstance(value, str) else value


class RedemptionForm(FlaskForm):
    """The provider applies the enterprise's voucher to a recorded service (at payment)."""

    voucher_code = StringField(
        _l("The enterprise's voucher code"), validators=[DataRequired(), Length(max=24)], filters=[_stripped]
    )
    reserve = SubmitField(_l("Reserve the subsidy"))


class RedemptionSubmitForm(FlaskForm):
    """The provider submits its redemption with what the enterprise paid of its share."""

    enterprise_paid = DecimalField(
        _l("What the enterprise paid of its share (yuan)"),
        places=2,
        validators=[InputRequired(), yuan_amount],
    )
    submit = SubmitField(_l("Submit the redemption to the bureau"))


class WithdrawForm(FlaskForm):
    reason = TextAreaField(_l("Why (optional)"), validators=[Optional(), Length(max=2000)])
    withdraw = SubmitField(_l("Withdraw the reservation"))
