"""Form helpers shared by every package."""

from __future__ import annotations

from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import Field
from wtforms.fields.choices import SelectChoice
from wtforms.validators import ValidationError

from portal.core import money
from portal.core.errors import ValidationFailed


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


def options(pairs) -> list[SelectChoice]:
    """Select options from (value, label) pairs (WTForms 3.3 wants SelectChoice objects)."""
    return [SelectChoice(str(value), label) for value, label in pairs]
