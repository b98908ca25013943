"""Report forms: submitting the institution's report of a year as final; a planned purchase to check."""

from __future__ import annotations

from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import BooleanField, IntegerField, SelectField, StringField, SubmitField, TextAreaField
from wtforms.validators import DataRequired, InputRequired, Length, Optional
from wtforms.widgets import HiddenInput

from portal.catalog.forms import category_choices
from portal.core.forms import NumberRange, yuan_amount


class SubmitForm(FlaskForm):
    year = IntegerField(widget=HiddenInput(), validators=[InputRequired(), NumberRange(min=2000, max=2099)])
    new_version = BooleanField(_l("Make a new version: the records changed since the last one was submitted"))
    submit = SubmitField(_l("Submit as final"))


class PurchaseForm(FlaskForm):
    """A planned purchase to check (查重评议): looked up first, then saved with the conclusion."""

    category = SelectField(_l("Category"), validate_choice=False)
    name = StringField(_l("Planned instrument"), validators=[DataRequired(), Length(max=120)])
    key_specs = TextAreaField(_l("Key specifications"), validators=[Optional(), Length(max=2000)])
    price = StringField(
        _l("Planned price (yuan)"),
        validators=[DataRequired(), yuan_amount],
        render_kw={"inputmode": "decimal"},
    )
    conclusion = TextAreaField(_l("Conclusion of the check"), validators=[Optional(), Length(max=2000)])
    look_up = SubmitField(_l("Look up the city's instruments"))
    submit = SubmitField(_l("Save the check"))

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.category.choices = category_choices(_l("All of %(group)s"))


class ScoreSheetForm(FlaskForm):
    """The items a reviewer enters on the score sheet (the others are computed), then signs."""

    institution_id = IntegerField(widget=HiddenInput(), validators=[InputRequired()])
    year = IntegerField(widget=HiddenInput(), validators=[InputRequired(), NumberRange(min=2000, max=2099)])
    results = StringField(_l("Typical results of the sharing"), render_kw={"inputmode": "decimal"})
    rules = StringField(_l("Rules for open sharing"), render_kw={"inputmode": "decimal"})
    openness = StringField(
        _l("Information made public, staff and training"), render_kw={"inputmode": "decimal"}
    )
    submit = SubmitField(_l("Sign the score sheet"))
