"""Recurring bookings (issue 18): preview a series, book it, see it, cancel it, confirm it."""

from __future__ import annotations

from typing import Any

import marshmallow as ma
from flask_login import current_user
from marshmallow import validate

from portal.api.bearer import BEARER, token_required
from portal.api.booking import BookingSchema, booking_json, required_time
from portal.api.schemas import ApiBlueprint
from portal.booking import series as services
from portal.booking.models import BookingSeries, PurposeCategory
from portal.booking.recurrence import DAY, WEEK, Repeat
from portal.core import clock
from portal.core.permissions import Role
from portal.qualifications.models import OPERATIONS
from portal.usage.services import usage_of

blp = ApiBlueprint(
    "api_series",
    __name__,
    description="Recurring bookings: daily, or weekly on chosen weekdays; each occurrence a booking.",
    error_descriptions={
        404: "No such recurring booking (or not one you may see)",
        409: "series_conflicts (`details.conflicts`: the occurrences that cannot be booked; nothing was "
        "booked), invalid_transition, not_qualified, suspended (details.until) or slot_offered",
    },
)

CONFLICTS = list(services.CONFLICT_LABELS)


class RepeatSchema(ma.Schema):
    class Meta:
        description = (
            "How the first occurrence repeats: every `interval` days, or every `interval` weeks on "
            "`weekdays` (Beijing time, Monday = 0; default: the first occurrence's weekday, which must "
            "be among them), until the day `until` (inclusive) or `count` times: exactly one of them."
        )

    every = ma.fields.String(required=True, validate=validate.OneOf([DAY, WEEK]))
    interval = ma.fields.Integer(
        load_default=1, strict=True, validate=validate.Range(min=1, max=services.MAX_INTERVAL)
    )
    weekdays = ma.fields.List(
        ma.fields.Integer(strict=True, validate=validate.Range(min=0, max=6)),
        load_default=list,
        validate=validate.Length(max=7),
        metadata={"description": "`every` week only; 0 (Monday) to 6 (Sunday)"},
    )
    until = ma.fields.Date(
        load_default=None,
        allow_none=True,
        metadata={"description": "The last day (Beijing, inclusive); or give `count`"},
    )
    count = ma.fields.Integer(
        load_default=None,
        allow_none=True,
        strict=True,
        validate=validate.Range(min=2, max=services.MAX_OCCURRENCES),
        metadata={"description": "The number of occurrences, the first included; or give `until`"},
    )


class SeriesCreateSchema(ma.Schema):
    class Meta:
        description = (
            "`starts_at` and `ends_at` are the first occurrence; each other occurrence keeps its Beijing "
            "time of day and its length. The `repeat` rule must be consistent (exactly one of `until` and "
            "`count`; `weekdays` only weekly, the first occurrence's among them; 2 to "
            f"{services.MAX_OCCURRENCES} occurrences, the last within the instrument's booking window, "
            "its policy's days ahead): 422 on `repeat` otherwise. A rule the first occurrence breaks "
            "for every one (the grid, the length, the instrument's state, the `operation`) answers 422 "
            "as for one booking, naming `starts_at` (or `ends_at`), the first broken `rule` and all "
            "`rules`, or `operation`. An occurrence that clashes (held or closed time, outside the opening "
            "hours, too soon, no qualification on its day) is skipped when `skip_conflicts` is true and "
            "listed in `skipped`; otherwise nothing is booked and the answer is 409 series_conflicts "
            "listing every such occurrence. Each occurrence is a booking request of its own."
        )

    instrument_code = ma.fields.String(required=True, validate=validate.Length(min=1, max=40))
    operation = ma.fields.String(
        load_default=None,
        allow_none=True,
        validate=validate.OneOf(OPERATIONS),
        metadata={"description": "self (自主上机, the default) or staff (代为操作)"},
    )
    starts_at = required_time("The first occurrence's start: ISO 8601 with an offset")
    ends_at = required_time("The first occurrence's end, after `starts_at`")
    repeat = ma.fields.Nested(RepeatSchema, required=True)
    skip_conflicts = ma.fields.Boolean(
        load_default=False,
        metadata={
            "description": "Book the occurrences that can be, skipping the others (default: all or none)"
        },
    )
    purpose = ma.fields.String(load_default="", validate=validate.Length(max=2000))
    purpose_category = ma.fields.String(
        load_default="development",
        validate=validate.OneOf([c.value for c in PurposeCategory]),
        metadata={"description": "What the service is for (the national service direction)"},
    )


class SeriesOccurrenceSchema(ma.Schema):
    starts_at = ma.fields.String(required=True, metadata={"format": "date-time"})
    ends_at = ma.fields.String(required=True, metadata={"format": "date-time"})
    conflict = ma.fields.String(
        required=True,
        allow_none=True,
        metadata={"enum": CONFLICTS, "description": "Why it cannot be booked; null when it can"},
    )
    message = ma.fields.String(required=True)


class SeriesPreviewSchema(ma.Schema):
    occurrences = ma.fields.List(ma.fields.Nested(SeriesOccurrenceSchema), required=True)


class RepeatOutSchema(ma.Schema):
    every = ma.fields.String(required=True, validate=validate.OneOf([DAY, WEEK]))
    interval = ma.fields.Integer(required=True)
    weekdays = ma.fields.List(ma.fields.Integer(), required=True)
    until = ma.fields.String(required=True, allow_none=True, metadata={"format": "date"})
    count = ma.fields.Integer(required=True, allow_none=True)


class SeriesSchema(ma.Schema):
    id = ma.fields.Integer(required=True)
    instrument_code = ma.fields.String(required=True)
    enterprise_id = ma.fields.Integer(required=True)
    operation = ma.fields.String(required=True, allow_none=True, metadata={"enum": list(OPERATIONS)})
    purpose = ma.fields.String(required=True)
    starts_at = ma.fields.String(required=True, metadata={"format": "date-time"})
    ends_at = ma.fields.String(required=True, metadata={"format": "date-time"})
    repeat = ma.fields.Nested(RepeatOutSchema, required=True)
    skip_conflicts = ma.fields.Boolean(required=True)
    created_at = ma.fields.String(required=True, metadata={"format": "date-time"})
    bookings = ma.fields.List(
        ma.fields.Nested(BookingSchema),
        required=True,
        metadata={"description": "Every occurrence booked, in order, in whatever state each is now"},
    )
    skipped = ma.fields.List(
        ma.fields.Nested(SeriesOccurrenceSchema),
        required=True,
        metadata={"description": "The occurrences refused when the series was made"},
    )


class SeriesCancelSchema(ma.Schema):
    class Meta:
        description = (
            "Cancels every occurrence that still holds its time and has not begun, from the occurrence "
            "`from_booking_id` on (null: all). The enterprise before each one's cut-off (409 "
            "invalid_transition naming the first too late, nothing cancelled), a provider any time with "
            "a `reason`. `from_booking_id` must be an occurrence of this series (422 otherwise)."
        )

    from_booking_id = ma.fields.Integer(
        load_default=None,
        allow_none=True,
        strict=True,
        validate=validate.Range(min=1, max=2**31 - 1),
        metadata={"description": "This occurrence and the following; null: all"},
    )
    reason = ma.fields.String(
        load_default=None,
        allow_none=True,
        validate=validate.Length(max=1000),
        metadata={"description": "Required (not blank) when a provider cancels"},
    )


def _request(args: dict) -> services.SeriesRequest:
    repeat = args["repeat"]
    return services.SeriesRequest(
        starts_at=args["starts_at"],
        ends_at=args["ends_at"],
        repeat=Repeat(
            every=repeat["every"],
            interval=repeat["interval"],
            weekdays=tuple(repeat["weekdays"]),
            until=repeat["until"],
            count=repeat["count"],
        ),
        operation=args["operation"],
        purpose=args["purpose"],
        purpose_category=args["purpose_category"],
        skip_conflicts=args["skip_conflicts"],
    )


def series_json(series: BookingSeries) -> dict[str, Any]:
    usage = usage_of(b.id for b in series.bookings)
    return {
        "id": series.id,
        "instrument_code": series.instrument.code,
        "enterprise_id": series.enterprise_id,
        "operation": series.operation,
        "purpose": series.purpose,
        "starts_at": clock.iso_utc(series.starts_at),
        "ends_at": clock.iso_utc(series.ends_at),
        "repeat": {
            "every": series.repeat_every.value,
            "interval": series.repeat_interval,
            "weekdays": list(series.repeat_weekdays),
            "until": series.repeat_until.isoformat() if series.repeat_until else None,
            "count": series.repeat_count,
        },
        "skip_conflicts": series.skip_conflicts,
        "created_at": clock.iso_utc(series.created_at),
        "bookings": [booking_json(b, usage) for b in series.bookings],
        "skipped": list(series.skipped),
    }


def series_answer(series_id: int) -> dict[str, Any]:
    return series_json(services.get_series(current_user, series_id))


@blp.route("/booking-series/preview", methods=["POST"])
@blp.arguments(SeriesCreateSchema)
@blp.response(200, SeriesPreviewSchema)
@blp.doc(security=BEARER)
@blp.errors(401, 403, 404, 409)
@token_required(Role.ENTERPRISE)
def preview(args: dict):
    """Every occurrence the series would have and why any of them cannot be booked; nothing is written."""
    occurrences = services.preview_series(current_user, args["instrument_code"], _request(args))
    return {"occurrences": [o.as_dict() for o in occurrences]}


@blp.route("/booking-series", methods=["POST"])
@blp.arguments(SeriesCreateSchema)
@blp.response(201, SeriesSchema)
@blp.doc(security=BEARER)
@blp.errors(401, 403, 404, 409)
@token_required(Role.ENTERPRISE)
def create(args: dict):
    """Book a recurring slot: each occurrence a booking request; clashes skipped or the whole refused."""
    series = services.request_series(current_user, args["instrument_code"], _request(args))
    return series_answer(series.id)


@blp.route("/booking-series/<int:id>")
@blp.response(200, SeriesSchema)
@blp.doc(security=BEARER)
@blp.errors(401, 404)
@token_required()
def get_series(id: int):  # the path parameter is {id}, as API.md names it
    """A recurring booking with its occurrences."""
    return series_answer(id)


blp.action(
    "/booking-series/<int:id>/cancel",
    "series_cancel",
    "Cancel this occurrence and the following ones, or all; one occurrence alone: cancel the booking.",
    guard=lambda i: services.get_series(current_user, i),
    act=lambda i, b: services.cancel_series(current_user, i, b.get("from_booking_id"), b.get("reason")),
    respond=series_answer,
    response_schema=SeriesSchema,
    body=SeriesCancelSchema,
)
blp.action(
    "/booking-series/<int:id>/confirm",
    "series_confirm",
    "The instrument's provider confirms every requested occurrence not yet begun.",
    guard=lambda i: services.get_series(current_user, i),
    act=lambda i, _b: services.confirm_series(current_user, i),
    respond=series_answer,
    response_schema=SeriesSchema,
)
