"""Use at the instrument (API.md "Use at the instrument"): check-in and check-out of a booking."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import marshmallow as ma
from flask_login import current_user
from marshmallow import validate

from portal.api.booking import BookingSchema, booking_answer
from portal.api.schemas import ApiBlueprint
from portal.booking import services as booking_services
from portal.usage import services

blp = ApiBlueprint(
    "api_usage",
    __name__,
    description="Use at the instrument: check-in and check-out.",
    error_descriptions={
        403: "Only the booking's enterprise users and the instrument's own providers",
        404: "No such booking (or not yours)",
        409: "invalid_transition: outside the check-in window, already checked in, or not checked in",
    },
)


class AtInstrumentSchema(ma.Schema):
    class Meta:
        description = (
            "The booking's enterprise users check in themselves (no body needed); a provider of the "
            "instrument's institution doing it for them gives a `reason` (422 otherwise). Check-in "
            "opens 15 minutes before the start and closes at the start plus the instrument's "
            "`no_show_grace_minutes` (both included); a check-out after the booked end records overtime."
        )

    reason = ma.fields.String(
        load_default=None,
        allow_none=True,
        validate=validate.Length(max=services.MAX_REASON),
        metadata={"description": "Required (not blank) when a provider does it"},
    )


def _action(action: str, act: Callable[..., Any], summary: str) -> None:
    blp.action(
        f"/bookings/<int:id>/{action}",
        f"booking_{action.replace('-', '_')}",
        summary,
        guard=lambda i: booking_services.get_booking(current_user, i),
        act=lambda i, b: act(current_user, i, b.get("reason")),
        respond=booking_answer,
        response_schema=BookingSchema,
        body=AtInstrumentSchema,
        body_required=False,
    )


_action(
    "check-in", services.check_in, "Check in at the instrument now (source qr, or provider with a reason)."
)
_action("check-out", services.check_out, "Check out now; use past the booked end is overtime.")
