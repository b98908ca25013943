"""Notification forms."""

from __future__ import annotations

from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import BooleanField, SubmitField


class PreferenceForm(FlaskForm):
    email_notifications = BooleanField(_l("Also send me notifications by e-mail"))
    submit = SubmitField(_l("Save"))
