"""What the slot booking form and the recurring booking's form share: the start chosen in the week
view, the end times the instrument's rules allow, the operation mode chosen and the price it freezes."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from flask import abort, request
from flask_babel import gettext as _
from flask_login import current_user

from portal.booking import records, signals
from portal.booking.availability import CALENDAR_EARLIEST, CALENDAR_LATEST, Calendar
from portal.booking.forms import SeriesForm, SlotBookingForm
from portal.catalog.models import Instrument
from portal.catalog.prices import Price
from portal.core import clock
from portal.core.forms import options
from portal.core.money import format_yuan
from portal.qualifications import services as use_rules


@dataclass(frozen=True)
class SlotChoice:
    starts_at: datetime
    calendar: Calendar  # two days from the start: its policy, its problems
    ends: list[datetime]  # the end times the rules allow (none: the start is no longer free)
    offered: list[str]  # the operation modes the instrument offers
    price: Price | None  # what a booking of the chosen operation would freeze


def parse_start(text: str | None) -> datetime:
    try:
        starts_at = clock.parse_iso(text or "")
    except ValueError:
        abort(400)
    # Near year 1 or 9999 the calendar's datetimes would overflow.
    if not CALENDAR_EARLIEST <= starts_at < CALENDAR_LATEST - timedelta(days=2):
        abort(400)
    return starts_at


def choose_slot(form: SlotBookingForm | SeriesForm, instrument: Instrument) -> SlotChoice:
    """The start (the week view's link, or the form as posted) and what may follow from it; the
    form's start, operation and end times are set, and a start no longer free says why at its top."""
    starts_at = parse_start(form.starts_at.data if form.is_submitted() else request.args.get("start"))
    calendar = Calendar.load(instrument, starts_at, starts_at + timedelta(days=2))
    ends = calendar.valid_ends(starts_at)
    form.starts_at.data = clock.iso_utc(starts_at)
    offered, price = choose_operation(form, instrument)
    form.ends_at.choices = options(
        (clock.iso_utc(e), end_label(instrument, price, starts_at, e)) for e in ends
    )
    if not ends:  # also on a post: the slot may have gone since the page was shown, and the form with it
        problems = calendar.problems(starts_at, starts_at + timedelta(minutes=calendar.policy.min_minutes))
        form.form_errors.append(problems[0].message if problems else _("This start time is no longer free."))
    return SlotChoice(starts_at, calendar, ends, offered, price)


def choose_operation(
    form: SlotBookingForm | SeriesForm, instrument: Instrument
) -> tuple[list[str], Price | None]:
    """Issue 17: the operation modes offered, the one chosen (kept in the form) and the price a
    booking would freeze for it."""
    offered = use_rules.use_rules_for(instrument).operations or ["self"]
    operation = (form.operation.data if form.is_submitted() else request.args.get("operation")) or offered[0]
    form.operation.data = operation if operation in offered else offered[0]
    return offered, use_rules.quoted_price(current_user, instrument, form.operation.data)


def end_label(instrument: Instrument, price: Price | None, starts_at: datetime, ends_at: datetime) -> str:
    """'10:30 (1.5 h, about ¥450.00; your voucher covers ¥405.00)' for the end-time select."""
    hours = Decimal((ends_at - starts_at).total_seconds()) / 3600
    label = f"{clock.format_local(ends_at, '%H:%M')} ({hours.normalize():f} h"
    if (price is None or price.unit != "hour") and instrument.fee_per_hour_fen is None:
        return label + ")"
    fee = records.quoted_fee(instrument, price, hours)
    hint = signals.fee_hint(current_user, instrument, fee)
    label += ", " + _("about %(fee)s", fee=format_yuan(fee))
    if hint is not None and hint.subsidy is not None:
        label += "; " + _("your voucher covers %(amount)s", amount=format_yuan(hint.subsidy.total_fen))
    return label + ")"
