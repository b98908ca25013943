"""Login and enterprise registration forms."""

from __future__ import annotations

from flask import current_app
from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import BooleanField, EmailField, PasswordField, SelectField, StringField, SubmitField
from wtforms.validators import DataRequired, Email, EqualTo, Length, Optional, Regexp

from portal.accounts.models import ENTERPRISE_KIND_LABELS, EnterpriseKind
from portal.core.forms import options


class LoginForm(FlaskForm):
    username = StringField(_l("Username"), validators=[DataRequired(), Length(max=40)])
    password = PasswordField(_l("Password"), validators=[DataRequired(), Length(max=200)])
    remember = BooleanField(_l("Keep me signed in on this device"))
    submit = SubmitField(_l("Sign in"))


class RegistrationForm(FlaskForm):
    company_name = StringField(_l("Enterprise name"), validators=[DataRequired(), Length(max=120)])
    uscc = StringField(
        _l("Unified social credit code"),
        validators=[DataRequired(), Length(max=30)],
        description=_l("18 characters, as printed on the business licence."),
    )
    legacy_code = BooleanField(
        _l("This is a legacy code whose check character does not match (the bureau will check it)")
    )
    kind = SelectField(_l("Enterprise type"), validators=[DataRequired()])
    county = SelectField(_l("County or district"), validators=[DataRequired()])
    full_name = StringField(_l("Contact person"), validators=[DataRequired(), Length(max=60)])
    phone = StringField(
        _l("Mobile phone"),
        validators=[Optional(), Regexp(r"^1\d{10}$", message=_l("Enter an 11-digit mobile number."))],
    )
    email = EmailField(
        _l("E-mail"), validators=[DataRequired(), Email(check_deliverability=False), Length(max=120)]
    )
    username = StringField(
        _l("Username"),
        validators=[
            DataRequired(),
            Length(min=3, max=40),
            Regexp(
                r"^[A-Za-z0-9_.-]+$",
                message=_l("Use letters, digits, dot, dash or underscore."),
            ),
        ],
    )
    password = PasswordField(_l("Password"), validators=[DataRequired(), Length(min=10, max=200)])
    confirm = PasswordField(
        _l("Repeat password"),
        validators=[DataRequired(), EqualTo("password", message=_l("The passwords do not match."))],
    )
    submit = SubmitField(_l("Register"))

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.kind.choices = options((kind.value, ENTERPRISE_KIND_LABELS[kind]) for kind in EnterpriseKind)
        self.county.choices = options((c, c) for c in current_app.config["COUNTIES"])
