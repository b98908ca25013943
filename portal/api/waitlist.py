"""The waitlist (issue 18): join the line for held time, see your entries, take or decline an offer."""

from __future__ import annotations

from typing import Any

import marshmallow as ma
from flask_login import current_user
from marshmallow import validate

from portal.api.bearer import BEARER, token_required
from portal.api.booking import BookingSchema, booking_json, required_time
from portal.api.schemas import ApiBlueprint
from portal.booking import services as booking_services
from portal.core import clock
from portal.core.permissions import Role
from portal.waitlist import services
from portal.waitlist.models import EntryState, WaitlistEntry

blp = ApiBlueprint(
    "api_waitlist",
    __name__,
    description="The waitlist: enterprises wait for held time; freed time is offered to the first in line.",
    error_descriptions={
        404: "No such entry (or not your enterprise's)",
        409: "invalid_transition (no open offer, or it has ended), not_qualified or suspended",
    },
)


class EntryCreateSchema(ma.Schema):
    class Meta:
        description = (
            "A given slot (`starts_at`, `ends_at`), or with `length_minutes` any free period of that "
            "length between them (at most one day apart). The end must be after the start and not "
            "past (422 naming the field); a suspended enterprise gets 409 suspended."
        )

    instrument_code = ma.fields.String(required=True, validate=validate.Length(min=1, max=40))
    starts_at = required_time("ISO 8601 with an offset; not in the past")
    ends_at = required_time("after `starts_at`, within a day of it")
    length_minutes = ma.fields.Integer(
        load_default=None,
        allow_none=True,
        strict=True,
        validate=validate.Range(min=1, max=1440),
        metadata={"description": "Any free period of this length within the wanted one (no longer than it)"},
    )
    purpose = ma.fields.String(load_default="", validate=validate.Length(max=2000))


class EntrySchema(ma.Schema):
    id = ma.fields.Integer(required=True)
    instrument_code = ma.fields.String(required=True)
    starts_at = ma.fields.String(required=True, metadata={"format": "date-time"})
    ends_at = ma.fields.String(required=True, metadata={"format": "date-time"})
    length_minutes = ma.fields.Integer(required=True, allow_none=True)
    state = ma.fields.String(required=True, validate=validate.OneOf([s.value for s in EntryState]))
    offered_until = ma.fields.String(required=True, allow_none=True, metadata={"format": "date-time"})
    booking_id = ma.fields.Integer(
        required=True, allow_none=True, metadata={"description": "The booking holding the offered time"}
    )
    created_at = ma.fields.String(required=True, metadata={"format": "date-time"})


class EntryListSchema(ma.Schema):
    items = ma.fields.List(ma.fields.Nested(EntrySchema), required=True)


def entry_json(entry: WaitlistEntry) -> dict[str, Any]:
    return {
        "id": entry.id,
        "instrument_code": entry.instrument.code,
        "starts_at": clock.iso_utc(entry.starts_at),
        "ends_at": clock.iso_utc(entry.ends_at),
        "length_minutes": entry.length_minutes,
        "state": entry.state.value,
        "offered_until": clock.iso_utc(entry.offered_until) if entry.state is EntryState.OFFERED else None,
        "booking_id": entry.offer_booking_id,
        "created_at": clock.iso_utc(entry.created_at),
    }


@blp.route("/waitlist", methods=["POST"])
@blp.arguments(EntryCreateSchema)
@blp.response(201, EntrySchema)
@blp.doc(security=BEARER)
@blp.errors(401, 403, 404, 409)
@token_required(Role.ENTERPRISE)
def join(args: dict):
    """Join the line for held time on an instrument; an offer comes (in-app and mail) when it frees up."""
    entry = services.join_waitlist(
        current_user,
        args["instrument_code"],
        args["starts_at"],
        args["ends_at"],
        args["length_minutes"],
        args["purpose"],
    )
    return entry_json(services.get_entry(current_user, entry.id))


@blp.route("/waitlist")
@blp.response(200, EntryListSchema)
@blp.doc(security=BEARER)
@blp.errors(401, 403)
@token_required(Role.ENTERPRISE)
def own():
    """Your enterprise's entries, newest first."""
    return {"items": [entry_json(e) for e in services.own_entries(current_user)]}


@blp.route("/waitlist/<int:id>/accept", methods=["POST"])
@blp.response(201, BookingSchema)
@blp.doc(security=BEARER)
@blp.errors(401, 403, 404, 409)
@token_required(Role.ENTERPRISE)
def accept(id: int):  # the path parameter is {id}, as API.md names it
    """Take the offered time: it becomes your booking request, which the provider confirms."""
    booking = services.accept_offer(current_user, id)
    return booking_json(booking_services.get_booking(current_user, booking.id))


def _entry_action(action: str, act, summary: str) -> None:
    blp.action(
        f"/waitlist/<int:id>/{action}",
        f"waitlist_{action}",
        summary,
        guard=lambda i: services.get_entry(current_user, i),
        act=lambda i, _b: act(current_user, i),
        respond=lambda i: entry_json(services.get_entry(current_user, i)),
        response_schema=EntrySchema,
    )


_entry_action("decline", services.decline_offer, "Decline the offer: its time goes to the next in line.")
_entry_action("cancel", services.cancel_entry, "Leave the line (an open offer is declined first).")
