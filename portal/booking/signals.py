"""What booking tells the areas above it, and what it asks them, without importing them (blinker).

Lower layers never import higher ones (docs/architecture.md): vouchers, finance and the dashboard
connect to these signals when the app is set up; booking only sends.
"""

from __future__ import annotations

from typing import Any

from blinker import Namespace

from portal.accounts.models import User
from portal.catalog.models import Instrument

_signals = Namespace()

booking_state_changed = _signals.signal(
    "booking-state-changed",
    doc="""A booking moved along the state machine. Sent by `transitions.transition` inside the
    transaction, after the audit row and before the commit (so a receiver that writes joins the
    transaction, and nothing is sent for a change that is refused). Sender: the booking; keyword
    arguments: `before` and `after` (BookingState), `action` (str), `actor` (User or None).""",
)

booking_violation = _signals.signal(
    "booking-violation",
    doc="""The booking's enterprise broke a booking rule that counts against its credit (issue 18): a
    no-show, or a confirmed booking cancelled after the cut-off at its request. Sent inside the
    transaction of the change, before the commit. Sender: the booking; keyword arguments: `kind`
    ("no_show" or "late_cancellation"), `at` (aware UTC datetime).""",
)

booking_wanted = _signals.signal(
    "booking-wanted",
    doc="""An enterprise user is about to request a booking (credit, issue 18: a suspended enterprise
    may not). Sent before anything is written. Sender: the user; keyword argument: `instrument`. A
    receiver refuses by raising a ServiceError (portal.core.errors.Suspended).""",
)

fee_hint_wanted = _signals.signal(
    "booking-fee-hint-wanted",
    doc="""A booking form asks what would help the enterprise pay a fee (vouchers: the voucher hint,
    shown by booking/_voucher_hint.html). Sender: the user who would book; keyword arguments:
    `instrument`, `fee_fen` (int). A receiver returns the hint, or None when it has nothing to say.""",
)


def fee_hint(user: User, instrument: Instrument, fee_fen: int) -> Any | None:
    """The first answer of a connected area to `fee_hint_wanted`; None when none answers."""
    for _receiver, answer in fee_hint_wanted.send(user, instrument=instrument, fee_fen=fee_fen):
        if answer is not None:
            return answer
    return None


service_recorded = _signals.signal(
    "service-recorded",
    doc="""The provider recorded a booking's service, and it is committed. Sender: the ServiceRecord;
    keyword argument: `actor` (User). Vouchers reserve the subsidy at once when the enterprise wants
    this booking paid at payment; what a receiver does is its own transaction, and its refusal never
    undoes the record.""",
)

booking_shown = _signals.signal(
    "booking-shown",
    doc="""A booking's page is being rendered. Sender: the booking. A receiver returns a dict of values
    for the page's template, or None: `booking_panels` (templates the page includes after the booking's
    facts; usage: its check-in and used minutes) and `metered_hours` (Decimal: the hours a service
    record is prefilled with).""",
)

# What the booking page has when no area answers: no panels, nothing metered.
BOOKING_PAGE_DEFAULTS: dict[str, Any] = {"booking_panels": [], "metered_hours": None}


def booking_extras(booking: Any) -> dict[str, Any]:
    """The values the connected areas add to a booking's page (panels are collected from all)."""
    extras: dict[str, Any] = {**BOOKING_PAGE_DEFAULTS, "booking_panels": []}
    for _receiver, answer in booking_shown.send(booking):
        answer = dict(answer or {})
        extras["booking_panels"] += answer.pop("booking_panels", [])
        extras.update(answer)
    return extras
