"""The waitlist's form: join the line for held time named by a week view cell or a refused request."""

from __future__ import annotations

from datetime import datetime

from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import HiddenField, RadioField, SubmitField, TextAreaField
from wtforms.validators import DataRequired, Length, Optional

from portal.core import clock
from portal.core.forms import options

EXACTLY, ANY_TIME_THAT_DAY = "slot", "day"


class JoinForm(FlaskForm):
    """The period comes from the page that sent the user here (hidden fields, shown as text); the user
    chooses between exactly that time and any free period as long on that day, and may add a purpose."""

    # Checked by the view and `period` (a hidden field has no place to show its own message).
    instrument = HiddenField()
    starts_at = HiddenField()
    ends_at = HiddenField()
    wanted = RadioField(_l("What to wait for"), default=EXACTLY, validators=[DataRequired()])
    purpose = TextAreaField(_l("Purpose of the test"), validators=[Optional(), Length(max=2000)])
    submit = SubmitField(_l("Notify me when this time frees up"))

    def period(self) -> tuple[datetime, datetime] | None:
        """The named period (aware UTC), or None when the hidden fields do not hold two times in order."""
        try:
            starts_at = clock.parse_iso(self.starts_at.data or "")
            ends_at = clock.parse_iso(self.ends_at.data or "")
        except (ValueError, OverflowError):  # not a time, or one that leaves the calendar in UTC
            return None
        if not (clock.plausible_year(starts_at.year) and clock.plausible_year(ends_at.year)):
            return None
        return (starts_at, ends_at) if starts_at < ends_at else None

    def offer_choices(self, period: tuple[datetime, datetime] | None) -> None:
        """Name both choices with the period's own times (or plainly, when there is no period)."""
        if period is None:
            self.wanted.choices = options(
                [(EXACTLY, _("Exactly this time")), (ANY_TIME_THAT_DAY, _("Any free period as long"))]
            )
            return
        starts_at, ends_at = period
        minutes = int((ends_at - starts_at).total_seconds() // 60)
        self.wanted.choices = options(
            [
                (
                    EXACTLY,
                    _(
                        "Exactly %(start)s–%(end)s",
                        start=clock.format_local(starts_at),
                        end=clock.format_local(ends_at, "%H:%M"),
                    ),
                ),
                (
                    ANY_TIME_THAT_DAY,
                    _(
                        "Any free %(n)d minutes on %(day)s",
                        n=minutes,
                        day=clock.format_local(starts_at, "%Y-%m-%d"),
                    ),
                ),
            ]
        )
