"""Use at the instrument (API.md "Use at the instrument"): check-in and check-out of a booking."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC
from typing import Any

import marshmallow as ma
from flask import request
from flask_login import current_user
from marshmallow import validate

from portal.api.bearer import BEARER, token_required
from portal.api.booking import BookingSchema, booking_answer
from portal.api.schemas import NOT_BLANK, YEAR_2000_TO_2099, ApiBlueprint, ErrorSchema
from portal.booking import services as booking_services
from portal.booking.availability import CALENDAR_EARLIEST, CALENDAR_LATEST
from portal.core.permissions import Role
from portal.usage import devices, services
from portal.usage.models import EventKind

blp = ApiBlueprint(
    "api_usage",
    __name__,
    description="Use at the instrument: check-in and check-out, device keys, usage events of instrument PCs.",
    error_descriptions={
        403: "Only the booking's enterprise users and the instrument's own providers",
        404: "No such booking or instrument (or not yours)",
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


# --- device keys and usage events -------------------------------------------------------------------

DEVICE: list[dict[str, list[str]]] = [{"deviceKey": []}]


class DeviceKeyCreateSchema(ma.Schema):
    label = ma.fields.String(
        load_default="",
        validate=validate.Length(max=80),
        metadata={"description": "Where the key is used, e.g. the PC's name"},
    )


class NewDeviceKeySchema(ma.Schema):
    id = ma.fields.Integer(required=True)
    key = ma.fields.String(
        required=True, metadata={"description": "Shown this once: send it as `Authorization: Device <key>`"}
    )
    prefix = ma.fields.String(required=True)
    label = ma.fields.String(required=True)


class UsageEventSchema(ma.Schema):
    class Meta:
        description = (
            "One login (`start`) or logout (`stop`) at the instrument's PC. The same `idempotency_key` "
            "again (per instrument) changes nothing and answers as the first time. A start is matched to "
            "the booking of its moment (of the user's enterprise when `username` is a portal user); "
            "without one it opens an unbooked session and the instrument's providers are told."
        )

    event = ma.fields.String(required=True, validate=validate.OneOf([k.value for k in EventKind]))
    at = ma.fields.AwareDateTime(
        required=True,
        validate=validate.Range(
            min=CALENDAR_EARLIEST, max=CALENDAR_LATEST, error="Give a time between 2000 and 2099."
        ),
        metadata={"pattern": YEAR_2000_TO_2099, "description": "When it happened, ISO 8601 with an offset"},
    )
    username = ma.fields.String(
        load_default="", validate=validate.Length(max=80), metadata={"description": "Who logged in or out"}
    )
    idempotency_key = ma.fields.String(
        required=True,
        validate=validate.Length(min=1, max=100),
        metadata={"pattern": NOT_BLANK, "description": "Unique per event, e.g. a UUID"},
    )


class UsageEventAnswerSchema(ma.Schema):
    session_id = ma.fields.Integer(required=True, allow_none=True)
    booking_id = ma.fields.Integer(required=True, allow_none=True)


@blp.route("/instruments/<code>/device-keys", methods=["POST"])
@blp.arguments(DeviceKeyCreateSchema, required=False)
@blp.response(201, NewDeviceKeySchema)
@blp.doc(security=BEARER)
@blp.errors(401, 403, 404)
@token_required(Role.PROVIDER)
def create_device_key(args: dict, code: str):
    """Make a key for the instrument's PC or relay (the instrument's own providers); shown this once."""
    row, key = devices.create_device_key(current_user, code, (args or {}).get("label", ""))
    return {"id": row.id, "key": key, "prefix": row.prefix, "label": row.label}


@blp.route("/instruments/<code>/device-keys/<int:id>", methods=["DELETE"])
@blp.response(204)
@blp.doc(security=BEARER)
@blp.errors(401, 403, 404)
@token_required(Role.PROVIDER)
def revoke_device_key(code: str, id: int):  # the path parameter is {id}
    """Revoke the key now (again: no change); events sent with it are refused from then on."""
    devices.revoke_device_key(current_user, code, id)
    return None


@blp.route("/instruments/<code>/usage-events", methods=["POST"])
@blp.arguments(UsageEventSchema)
@blp.response(202, UsageEventAnswerSchema)
@blp.doc(security=DEVICE)
@blp.alt_response(401, schema=ErrorSchema, description="No valid device key for this instrument")
@blp.errors(404)
def usage_event(args: dict, code: str):
    """An instrument PC reports a login or logout (`Authorization: Device <key>`, not a bearer token)."""
    key = devices.key_for(code, request.headers.get("Authorization", ""))
    event = devices.record_event(
        key,
        devices.Event(
            kind=EventKind(args["event"]),
            at=args["at"].astimezone(UTC),
            username=args["username"].strip(),
            idempotency_key=args["idempotency_key"].strip(),
        ),
    )
    return {"session_id": event.session_id, "booking_id": event.booking_id}
