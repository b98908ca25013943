"""Who may run an instrument, and how it is booked: qualifications and the booking policy (issue 17).

Qualifications: the owning institution's providers and administrators grant, list and revoke. The
booking policy is public to read; its own institution's providers change it.
"""

from __future__ import annotations

from datetime import time
from typing import Any

import marshmallow as ma
from flask_babel import gettext as _
from flask_login import current_user
from marshmallow import validate

from portal.api.bearer import BEARER, token_required
from portal.api.schemas import ApiBlueprint
from portal.booking import services as booking
from portal.booking.models import LONGEST_SLOT_MINUTES
from portal.booking.settings import PolicyChange, save_booking_policy
from portal.catalog import prices
from portal.catalog.ownership import owns
from portal.catalog.price_models import CustomerCategory, PriceMode, PriceUnit
from portal.catalog.services import get_instrument
from portal.core import clock
from portal.core.errors import NotFound, ValidationFailed
from portal.core.permissions import Role
from portal.qualifications import services
from portal.qualifications.models import OPERATIONS, Qualification

blp = ApiBlueprint(
    "api_qualifications",
    __name__,
    description="Qualifications for self-operated time, and each instrument's booking policy.",
    error_descriptions={404: "No such instrument or qualification (or not your institution's)"},
)


class StepSchema(ma.Schema):
    from_units = ma.fields.Integer(
        required=True,
        validate=validate.Range(min=2, max=prices.MAX_UNITS),
        metadata={"description": "From this unit on (1-based); distinct within a row"},
    )
    unit_price_fen = ma.fields.Integer(
        required=True, validate=validate.Range(min=0, max=prices.MAX_PRICE_FEN)
    )


class PriceSchema(ma.Schema):
    class Meta:
        description = (
            "One line per customer category and mode (another for the same pair: 422 on `prices`); "
            "mode `sample` is priced per `sample`."
        )

    customer = ma.fields.String(required=True, validate=validate.OneOf([c.value for c in CustomerCategory]))
    mode = ma.fields.String(required=True, validate=validate.OneOf([m.value for m in PriceMode]))
    unit = ma.fields.String(required=True, validate=validate.OneOf([u.value for u in PriceUnit]))
    unit_price_fen = ma.fields.Integer(
        required=True, validate=validate.Range(min=0, max=prices.MAX_PRICE_FEN)
    )
    min_units = ma.fields.Integer(
        load_default=0,
        validate=validate.Range(min=0, max=prices.MAX_UNITS),
        metadata={"description": "Usage below is billed as this"},
    )
    steps = ma.fields.List(
        ma.fields.Nested(StepSchema),
        load_default=list,
        metadata={"description": "Graduated: each unit from `from_units` on costs the step's price"},
    )
    overtime_unit_price_fen = ma.fields.Integer(
        load_default=None,
        allow_none=True,
        validate=validate.Range(min=0, max=prices.MAX_PRICE_FEN),
        metadata={"description": "Each hour beyond the booked time"},
    )


class QualificationSchema(ma.Schema):
    id = ma.fields.Integer(required=True)
    username = ma.fields.String(required=True)
    instrument_code = ma.fields.String(required=True)
    valid_from = ma.fields.String(required=True, metadata={"format": "date"})
    valid_until = ma.fields.String(required=True, metadata={"format": "date", "description": "Included"})
    note = ma.fields.String(required=True)
    revoked_at = ma.fields.String(required=True, allow_none=True, metadata={"format": "date-time"})


class QualificationListSchema(ma.Schema):
    items = ma.fields.List(ma.fields.Nested(QualificationSchema), required=True)


class GrantSchema(ma.Schema):
    username = ma.fields.String(
        required=True,
        validate=validate.Length(min=1, max=40),
        metadata={"description": "An active enterprise user's name (422 on `username` otherwise)"},
    )
    valid_until = ma.fields.Date(
        required=True,
        metadata={
            "description": "YYYY-MM-DD, Beijing date, included; today to five years ahead (422 otherwise)"
        },
    )
    note = ma.fields.String(load_default="", validate=validate.Length(max=services.MAX_NOTE))


class HoursSchema(ma.Schema):
    weekday = ma.fields.Integer(
        required=True, validate=validate.Range(min=0, max=6), metadata={"description": "Monday 0"}
    )
    opens_at = ma.fields.String(
        required=True,
        validate=validate.Regexp(r"^\d{2}:\d{2}$"),
        metadata={"description": "HH:MM, Beijing time"},
    )
    closes_at = ma.fields.String(
        required=True,
        validate=validate.Regexp(r"^\d{2}:\d{2}$"),
        metadata={"description": "HH:MM; 23:59 means midnight"},
    )


class BookingPolicySchema(ma.Schema):
    accepts_slots = ma.fields.Boolean(required=True)
    accepts_samples = ma.fields.Boolean(required=True)
    operations = ma.fields.List(ma.fields.String(validate=validate.OneOf(OPERATIONS)), required=True)
    min_minutes = ma.fields.Integer(required=True)
    max_minutes = ma.fields.Integer(required=True)
    step_minutes = ma.fields.Integer(required=True, validate=validate.OneOf([15, 30, 60]))
    min_notice_hours = ma.fields.Integer(required=True)
    max_days_ahead = ma.fields.Integer(required=True)
    buffer_minutes = ma.fields.Integer(required=True)
    cancel_cutoff_hours = ma.fields.Integer(required=True)
    no_show_grace_minutes = ma.fields.Integer(
        required=True,
        metadata={
            "description": "Minutes after the start when check-in closes; a confirmed slot without check-in "
            "by then becomes no_show"
        },
    )
    requires_qualification = ma.fields.Boolean(required=True)
    hours = ma.fields.List(ma.fields.Nested(HoursSchema), required=True)


class BookingPolicyPutSchema(ma.Schema):
    """Any of the policy's fields; those left out stay as they are."""

    class Meta:
        description = (
            "Fields left out stay as they are. `min_minutes` may not exceed `max_minutes`, and "
            "`min_minutes`, `max_minutes` and `buffer_minutes` are multiples of `step_minutes` (422 "
            "naming the field); `hours` replaces the week: intervals of a day may not overlap, "
            "opening before closing (422 on `hours`); `operations` lists `self` and/or `staff`."
        )

    accepts_slots = ma.fields.Boolean()
    accepts_samples = ma.fields.Boolean()
    operations = ma.fields.List(ma.fields.String(validate=validate.OneOf(OPERATIONS)))
    min_minutes = ma.fields.Integer(validate=validate.Range(min=1, max=LONGEST_SLOT_MINUTES))
    max_minutes = ma.fields.Integer(validate=validate.Range(min=1, max=LONGEST_SLOT_MINUTES))
    step_minutes = ma.fields.Integer(validate=validate.OneOf([15, 30, 60]))
    min_notice_hours = ma.fields.Integer(validate=validate.Range(min=0, max=8_760))
    max_days_ahead = ma.fields.Integer(validate=validate.Range(min=1, max=730))
    buffer_minutes = ma.fields.Integer(validate=validate.Range(min=0, max=1_440))
    cancel_cutoff_hours = ma.fields.Integer(validate=validate.Range(min=0, max=8_760))
    no_show_grace_minutes = ma.fields.Integer(validate=validate.Range(min=0, max=1_440))
    requires_qualification = ma.fields.Boolean()
    hours = ma.fields.List(ma.fields.Nested(HoursSchema), metadata={"description": "Replaces the week"})


def qualification_json(row: Qualification) -> dict[str, Any]:
    return {
        "id": row.id,
        "username": row.user.username,
        "instrument_code": row.instrument.code,
        "valid_from": row.valid_from.isoformat(),
        "valid_until": row.valid_until.isoformat(),
        "note": row.note,
        "revoked_at": clock.iso_utc(row.revoked_at),
    }


def use_fields(instrument) -> dict[str, Any]:
    """What the instrument record adds from this layer: `requires_qualification` and `prices`."""
    rules = services.use_rules_for(instrument)
    return {
        "requires_qualification": rules.requires_qualification,
        "prices": [p.as_json() for p in prices.price_table(instrument)],
    }


def policy_json(instrument) -> dict[str, Any]:
    policy = booking.policy_for(instrument)
    rules = services.use_rules_for(instrument)
    return {
        **{key: getattr(policy, key) for key in booking.DEFAULT_POLICY},
        "operations": list(rules.operations),
        "requires_qualification": rules.requires_qualification,
        "hours": [
            {
                "weekday": h.weekday,
                "opens_at": h.opens_at.strftime("%H:%M"),
                "closes_at": h.closes_at.strftime("%H:%M"),
            }
            for h in instrument.opening_hours
        ],
    }


@blp.route("/instruments/<code>/qualifications", methods=["POST"])
@blp.arguments(GrantSchema)
@blp.response(201, QualificationSchema)
@blp.doc(security=BEARER)
@blp.errors(401, 403, 404)
@token_required(Role.PROVIDER, Role.ADMIN)
def grant(args: dict, code: str):
    """Grant an enterprise user a qualification for self-operated time until `valid_until` (told)."""
    row = services.grant_qualification(
        current_user, code, args["username"], args["valid_until"], args["note"]
    )
    return qualification_json(row)


@blp.route("/instruments/<code>/qualifications")
@blp.response(200, QualificationListSchema)
@blp.doc(security=BEARER)
@blp.errors(401, 403, 404)
@token_required(Role.PROVIDER, Role.ADMIN)
def list_qualifications(code: str):
    """Every qualification on the instrument, revoked ones included, the newest first."""
    return {"items": [qualification_json(q) for q in services.instrument_qualifications(current_user, code)]}


@blp.route("/instruments/<code>/qualifications/<int:id>", methods=["DELETE"])
@blp.response(204)
@blp.doc(security=BEARER)
@blp.errors(401, 403, 404)
@token_required(Role.PROVIDER, Role.ADMIN)
def revoke(code: str, id: int):  # the path parameter is {id}
    """Revoke the qualification now (again: no change); the user is told."""
    services.revoke_qualification(current_user, code, id)
    return None


@blp.route("/instruments/<code>/booking-policy")
@blp.response(200, BookingPolicySchema)
@blp.errors(404)
def get_policy(code: str):
    """How the instrument is booked: modes, lengths, notice, operation modes, qualification, hours."""
    return policy_json(get_instrument(code))


def _hours(rows: list[dict[str, Any]]) -> list[tuple[int, time, time]]:
    intervals = []
    for n, row in enumerate(rows):
        try:
            opens, closes = time.fromisoformat(row["opens_at"]), time.fromisoformat(row["closes_at"])
        except ValueError:
            message = f"hours[{n}]: not a time of day"
            raise ValidationFailed(message, {"hours": message}) from None
        intervals.append((row["weekday"], opens, closes))
    return intervals


@blp.route("/instruments/<code>/booking-policy", methods=["PUT"])
@blp.arguments(BookingPolicyPutSchema, required=False)  # no body, or {}: nothing changes
@blp.response(200, BookingPolicySchema)
@blp.doc(security=BEARER)
@blp.errors(401, 403, 404)
@token_required(Role.PROVIDER)
def put_policy(args: dict, code: str):
    """Change the booking policy (the instrument's own institution's providers); left-out fields stay.

    Policy, hours, operation modes and the qualification rule are saved together or not at all."""
    instrument = get_instrument(code)
    if not owns(current_user, instrument):
        # A foreign instrument answers as a missing one.
        raise NotFound(_("No instrument has the code %(code)s.", code=code))
    current = policy_json(instrument)
    change = PolicyChange(
        values={key: args.get(key, current[key]) for key in booking.DEFAULT_POLICY}
        if any(key in args for key in booking.DEFAULT_POLICY)
        else None,
        hours=_hours(args["hours"]) if "hours" in args else None,
        operations=args.get("operations"),
        requires_qualification=args.get("requires_qualification"),
    )
    save_booking_policy(current_user, instrument, change)  # commits, which expires what it changed
    return policy_json(get_instrument(code))
