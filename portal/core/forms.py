"""Form helpers shared by every package."""

from __future__ import annotations

import math

from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import Field, StringField, validators
from wtforms.fields.choices import SelectChoice  # type: ignore[attr-defined]  # WTForms 3.3; the stubs are 3.2
from wtforms.validators import ValidationError

from portal.core import clock, money
from portal.core.errors import ValidationFailed
from portal.core.languages import has_chinese, is_english


class NumberRange(validators.NumberRange):
    """WTForms' NumberRange, except that an integer too large for a float is out of range.

    WTForms calls math.isnan() on the value, which raises OverflowError for a 400-digit integer.
    """

    def __call__(self, form: FlaskForm, field: Field) -> None:
        try:
            super().__call__(form, field)
        except OverflowError:
            data, field.data = field.data, math.inf if field.data > 0 else -math.inf
            try:
                super().__call__(form, field)  # raises the usual message: out of range
            finally:
                field.data = data


def show_service_errors(form: FlaskForm, error: ValidationFailed) -> None:
    """Attach a service's per-field messages to the form so the page re-shows them in place."""
    for name, message in error.fields.items():
        field = getattr(form, name, None)
        if field is not None:
            field.errors = [*list(field.errors), message]
        else:
            form.form_errors.append(message)
    if not error.fields:
        form.form_errors.append(error.message)


def yuan_amount(form: FlaskForm, field: Field) -> None:
    """A validator for yuan amounts: not negative, at most two decimals (so it converts to fen exactly)."""
    if field.data is None:
        return
    try:
        money.yuan_to_fen(field.data)
    except ValueError:
        raise ValidationError(
            _l("Enter an amount in yuan, not negative, with at most two decimals.")
        ) from None


def plausible_date(form: FlaskForm, field: Field) -> None:
    """A validator for dates and times: only the portal's working years (`clock.plausible_year`)."""
    if field.data is not None and not clock.plausible_year(field.data.year):
        raise ValidationError(_l("Enter a date between 2000 and 2099."))


def filled(field: StringField) -> str:
    """The text of a required field once its form has validated.

    WTForms types a field's data as optional (a field left out of the request keeps its default, None);
    DataRequired has refused that by now, so the value is always text.
    """
    return field.data or ""


def options(pairs) -> list[SelectChoice]:
    """Select options from (value, label) pairs (WTForms 3.3 wants SelectChoice objects); a Chinese
    label on an English page (an institution's name) carries its language."""
    english = is_english()
    return [
        SelectChoice(str(value), label, render_kw={"lang": "zh"} if english and has_chinese(label) else {})
        for value, label in pairs
    ]
