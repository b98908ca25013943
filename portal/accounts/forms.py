"""Account forms: sign-in, registration, passwords, profile, colleagues, invitations, the console's users."""

from __future__ import annotations

from flask import current_app
from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import BooleanField, EmailField, PasswordField, SelectField, StringField, SubmitField
from wtforms.validators import DataRequired, Email, EqualTo, Length, Optional, Regexp

from portal.accounts.models import ENTERPRISE_KIND_LABELS, ROLE_LABELS, EnterpriseKind
from portal.core.forms import options
from portal.core.languages import county_choices
from portal.core.permissions import Role


def _username_validators() -> list:
    return [
        DataRequired(),
        Length(min=3, max=40),
        Regexp(r"^[A-Za-z0-9_.-]+$", message=_l("Use letters, digits, dot, dash or underscore.")),
    ]


def _new_password_fields(label=None) -> tuple[PasswordField, PasswordField]:
    """A new password and its repetition, with the registration's rules (the service checks them too)."""
    return (
        PasswordField(
            label or _l("Password"),
            validators=[DataRequired(), Length(min=10, max=200)],
            description=_l("At least 10 characters."),
        ),
        PasswordField(
            _l("Repeat password"),
            validators=[DataRequired(), EqualTo("password", message=_l("The passwords do not match."))],
        ),
    )


def _mobile() -> StringField:
    return StringField(
        _l("Mobile phone"),
        validators=[Optional(), Regexp(r"^1\d{10}$", message=_l("Enter an 11-digit mobile number."))],
    )


def _strip(value: str | None) -> str | None:
    return value.strip() if isinstance(value, str) else value


def _email(required: bool = True) -> EmailField:
    return EmailField(
        _l("E-mail"),
        filters=[_strip],
        validators=[
            DataRequired() if required else Optional(),
            Email(check_deliverability=False),
            Length(max=120),
        ],
    )


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
    phone = _mobile()
    email = _email()
    username = StringField(_l("Username"), validators=_username_validators())
    password, confirm = _new_password_fields()
    submit = SubmitField(_l("Register"))

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.kind.choices = options((kind.value, ENTERPRISE_KIND_LABELS[kind]) for kind in EnterpriseKind)
        self.county.choices = options(county_choices(current_app.config["COUNTIES"]))


class ChangePasswordForm(FlaskForm):
    current_password = PasswordField(_l("Current password"), validators=[DataRequired(), Length(max=200)])
    password, confirm = _new_password_fields(_l("New password"))
    submit = SubmitField(_l("Change the password"))


class ForgotPasswordForm(FlaskForm):
    email = _email()
    submit = SubmitField(_l("Send me a link"))


class ResetPasswordForm(FlaskForm):
    password, confirm = _new_password_fields(_l("New password"))
    submit = SubmitField(_l("Save the new password"))


class ProfileForm(FlaskForm):
    full_name = StringField(_l("Name"), validators=[DataRequired(), Length(max=60)])
    phone = StringField(
        _l("Phone"),
        validators=[
            Optional(),
            Regexp(
                r"^(1\d{10}|0\d{2,3}-?\d{7,8})$",
                message=_l("Enter an 11-digit mobile number or a landline such as 0635-8239999."),
            ),
        ],
    )
    email = EmailField(
        _l("E-mail"),
        filters=[_strip],
        validators=[Optional(), Email(check_deliverability=False), Length(max=120)],
        description=_l("A new address takes effect when you open the link we send to it."),
    )
    current_password = PasswordField(
        _l("Current password"),
        validators=[Optional(), Length(max=200)],
        description=_l("Needed only to change the e-mail address."),
    )
    language = SelectField(_l("Language"), validators=[DataRequired()])
    email_notifications = BooleanField(_l("Also send me notifications by e-mail"))
    submit = SubmitField(_l("Save"))

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.language.choices = options(current_app.config["LANGUAGES"].items())


class ConfirmForm(FlaskForm):
    """A button that only needs its CSRF token (confirmations and the actions on lists)."""

    submit = SubmitField(_l("Confirm"))


class InviteForm(FlaskForm):
    email = _email()
    submit = SubmitField(_l("Send the invitation"))


class AcceptInvitationForm(FlaskForm):
    full_name = StringField(_l("Name"), validators=[DataRequired(), Length(max=60)])
    phone = _mobile()
    username = StringField(_l("Username"), validators=_username_validators())
    password, confirm = _new_password_fields()
    submit = SubmitField(_l("Create my account"))


STAFF_ROLE_CHOICES = (Role.PROVIDER, Role.REVIEWER, Role.FINANCE, Role.ADMIN)


class UserSearchForm(FlaskForm):
    class Meta:
        csrf = False  # a search (GET) changes nothing

    q = StringField(_l("Search"), validators=[Optional(), Length(max=100)])
    role = SelectField(_l("Role"), validators=[Optional()])
    status = SelectField(_l("Account status"), validators=[Optional()])

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.role.choices = options([("", _l("All roles")), *((r.value, ROLE_LABELS[r]) for r in Role)])
        self.status.choices = options(
            [("", _l("Active and deactivated")), ("active", _l("Active")), ("inactive", _l("Deactivated"))]
        )


class UserForm(FlaskForm):
    """A staff account in the console (the username only when it is created)."""

    username = StringField(_l("Username"), validators=_username_validators())
    full_name = StringField(_l("Name"), validators=[DataRequired(), Length(max=60)])
    email = _email(required=False)
    phone = StringField(_l("Phone"), validators=[Optional(), Length(max=20)])
    role = SelectField(_l("Role"), validators=[DataRequired()])
    institution_id = SelectField(
        _l("Institution"),
        validators=[Optional()],
        description=_l("Required for providers: the host institution whose instruments they manage."),
    )
    submit = SubmitField(_l("Save"))

    def __init__(self, *args, roles=STAFF_ROLE_CHOICES, institutions=(), **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.role.choices = options((r.value, ROLE_LABELS[r]) for r in roles)
        self.institution_id.choices = options([("", _l("None")), *institutions])
