"""Forms of the qualification pages: granting, revoking, use rules, the price table, training."""

from __future__ import annotations

from typing import Any

from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import (
    BooleanField,
    DateField,
    DateTimeLocalField,
    IntegerField,
    SelectMultipleField,
    StringField,
    SubmitField,
    TextAreaField,
)
from wtforms.validators import DataRequired, InputRequired, Length, Optional
from wtforms.widgets import CheckboxInput, ListWidget

from portal.catalog.price_models import CustomerCategory, PriceMode
from portal.core import clock, money
from portal.core.errors import ValidationFailed
from portal.core.forms import NumberRange, options, plausible_date
from portal.qualifications.models import OPERATION_LABELS, OPERATIONS
from portal.qualifications.services import TrainingInput


class GrantForm(FlaskForm):
    username = StringField(_l("User name"), validators=[DataRequired(), Length(max=40)])
    valid_until = DateField(_l("Valid until (included)"), validators=[DataRequired(), plausible_date])
    note = TextAreaField(_l("Note (training or exam passed)"), validators=[Optional(), Length(max=500)])
    submit = SubmitField(_l("Grant qualification"))


class RevokeForm(FlaskForm):
    reason = StringField(_l("Reason"), validators=[Optional(), Length(max=500)])
    submit = SubmitField(_l("Revoke"))


class UseRulesForm(FlaskForm):
    operations = SelectMultipleField(
        _l("Operation modes offered"),
        widget=ListWidget(prefix_label=False),
        option_widget=CheckboxInput(),
    )
    requires_qualification = BooleanField(_l("Self-operated time needs a qualification"))
    submit = SubmitField(_l("Save operation modes"))

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.operations.choices = options((op, OPERATION_LABELS[op]) for op in OPERATIONS)


class TrainingForm(FlaskForm):
    starts_at = DateTimeLocalField(_l("Starts (Beijing time)"), validators=[DataRequired(), plausible_date])
    ends_at = DateTimeLocalField(_l("Ends (Beijing time)"), validators=[DataRequired(), plausible_date])
    place = StringField(_l("Place"), validators=[Optional(), Length(max=200)])
    capacity = IntegerField(_l("Places"), validators=[InputRequired(), NumberRange(min=1, max=1000)])
    note = TextAreaField(_l("What it covers"), validators=[Optional(), Length(max=2000)])
    submit = SubmitField(_l("Publish training session"))

    def training_input(self) -> TrainingInput:
        """The session the validated form describes (its times given in Beijing time)."""
        starts_at, ends_at, capacity = self.starts_at.data, self.ends_at.data, self.capacity.data
        # Required fields are set once the form has validated; said so that the type checker sees it.
        if starts_at is None or ends_at is None or capacity is None:
            raise ValidationFailed(_("Please correct the marked fields."), {})
        return TrainingInput(
            starts_at=clock.local_naive_to_utc(starts_at),
            ends_at=clock.local_naive_to_utc(ends_at),
            capacity=capacity,
            place=self.place.data or "",
            note=self.note.data or "",
        )


class EnrolForm(FlaskForm):
    submit = SubmitField(_l("Enrol"))


# The price table editor: one line per customer category and mode, named "<customer>-<mode>-<part>".
PRICE_PARTS = ("price", "unit", "min_units", "overtime", "steps")


def price_cells(customer: str, mode: str) -> dict[str, str]:
    return {part: f"{customer}-{mode}-{part}" for part in PRICE_PARTS}


class PriceTableForm(FlaskForm):
    """The inputs are read from the request by `rows()`; the form gives the CSRF token and errors."""

    submit = SubmitField(_l("Save price table"))

    def rows(self, data: Any) -> list[dict[str, Any]]:
        """The table's rows from the posted cells (yuan → fen); an empty price leaves a line out.
        A cell that does not parse raises ValidationFailed naming it."""
        rows: list[dict[str, Any]] = []
        fields: dict[str, str] = {}
        for customer in CustomerCategory:
            for mode in PriceMode:
                cells = price_cells(customer.value, mode.value)
                text = (data.get(cells["price"]) or "").strip()
                if not text:
                    continue
                try:
                    overtime = (data.get(cells["overtime"]) or "").strip()
                    row = {
                        "customer": customer.value,
                        "mode": mode.value,
                        "unit": "sample" if mode is PriceMode.SAMPLE else data.get(cells["unit"]) or "hour",
                        "unit_price_fen": money.yuan_to_fen(text),
                        "min_units": int((data.get(cells["min_units"]) or "0").strip() or 0),
                        "overtime_unit_price_fen": money.yuan_to_fen(overtime) if overtime else None,
                        "steps": parse_steps(data.get(cells["steps"]) or ""),
                    }
                except ValueError:
                    fields[cells["price"]] = str(_l("Enter amounts in yuan and whole numbers of units."))
                    continue
                rows.append(row)
        if fields:
            raise ValidationFailed(str(_l("Please correct the marked fields.")), fields)
        return rows


def parse_steps(text: str) -> list[dict[str, int]]:
    """Steps typed as "11:80; 51:50" (from the 11th unit 80 yuan a unit, from the 51st 50 yuan)."""
    steps = []
    for part in text.replace("；", ";").replace("：", ":").split(";"):
        if not part.strip():
            continue
        units, _sep, price = part.partition(":")
        steps.append({"from_units": int(units.strip()), "unit_price_fen": money.yuan_to_fen(price.strip())})
    return steps


def format_steps(steps: list[dict[str, int]] | tuple) -> str:
    return "; ".join(
        f"{s['from_units'] if isinstance(s, dict) else s.from_units}:"
        f"{money.fen_to_yuan(s['unit_price_fen'] if isinstance(s, dict) else s.unit_price_fen)}"
        for s in steps
    )
