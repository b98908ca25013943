"""Booking endpoints: availability, requests, lists, every transition, service records and their files."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any

import marshmallow as ma
from flask_babel import gettext as _
from flask_login import current_user
from flask_smorest.fields import Upload
from marshmallow import validate

from portal.api.bearer import BEARER, token_required
from portal.api.schemas import NOT_BLANK, YEAR_2000_TO_2099, ApiBlueprint, PageArgsSchema, PageSchema
from portal.booking import files, records, requests, services, transitions
from portal.booking.availability import CALENDAR_EARLIEST, CALENDAR_LATEST, Calendar
from portal.booking.models import (
    Booking,
    BookingMode,
    BookingState,
    FileKind,
    PurposeCategory,
    ServiceFile,
    ServiceRecord,
)
from portal.catalog.services import get_instrument
from portal.core import clock, uploads
from portal.core.errors import ValidationFailed
from portal.qualifications.models import OPERATIONS
from portal.usage.services import BookingUsage, usage_of

blp = ApiBlueprint(
    "api_booking",
    __name__,
    description="Availability, bookings and service records.",
    error_descriptions={
        404: "No such booking (or not yours)",
        409: "slot_conflict, slot_offered, invalid_transition, not_qualified or suspended (details.until)",
    },
)

MAX_AVAILABILITY_DAYS = 31
# Times a client may send: the years a calendar can hold (see Calendar.load).
PLAUSIBLE_TIME = validate.Range(
    min=CALENDAR_EARLIEST,
    max=CALENDAR_LATEST,
    error="Give a time between 2000 and 2099.",
)


class SpanSchema(ma.Schema):
    start = ma.fields.String(required=True, metadata={"format": "date-time"})
    end = ma.fields.String(required=True, metadata={"format": "date-time"})
    kind = ma.fields.String(
        metadata={"description": "closed, maintenance, closure, booking or offer (a waitlist offer)"}
    )


class AvailabilitySchema(ma.Schema):
    free = ma.fields.List(ma.fields.Nested(SpanSchema), required=True)
    held = ma.fields.List(ma.fields.Nested(SpanSchema), required=True)
    closed = ma.fields.List(ma.fields.Nested(SpanSchema), required=True)


def _time(description: str, *, required: bool = False) -> ma.fields.AwareDateTime:
    """A time a client sends: ISO 8601 with an offset, in the years 2000 to 2099."""
    presence: dict[str, Any] = {"required": True} if required else {"load_default": None}
    return ma.fields.AwareDateTime(
        validate=PLAUSIBLE_TIME,
        metadata={"pattern": YEAR_2000_TO_2099, "description": description},
        **presence,
    )


def required_time(description: str) -> ma.fields.AwareDateTime:
    """A time the client must send (waitlist entries, recurring bookings)."""
    return _time(description, required=True)


class AvailabilityArgsSchema(ma.Schema):
    start = _time("ISO 8601 with an offset, 2000 to 2099; default: now")
    end = _time(
        f"After `start` and at most {MAX_AVAILABILITY_DAYS} days after it (422 on `end` otherwise); "
        "default: 7 days after `start`"
    )

    @ma.validates_schema
    def _range(self, data: dict, **kwargs: Any) -> None:
        start, end = data.get("start"), data.get("end")
        if start and end and not start < end:
            raise ma.ValidationError("end must be after start", "end")
        if start and end and end - start > timedelta(days=MAX_AVAILABILITY_DAYS):
            raise ma.ValidationError(f"at most {MAX_AVAILABILITY_DAYS} days at a time", "end")


class FileSchema(ma.Schema):
    id = ma.fields.Integer(required=True)
    kind = ma.fields.String(required=True, validate=validate.OneOf([k.value for k in FileKind]))
    size = ma.fields.Integer(required=True)
    name = ma.fields.String(required=True)
    content_type = ma.fields.String(required=True)
    sha256 = ma.fields.String(required=True)
    uploaded_at = ma.fields.String(required=True, metadata={"format": "date-time"})


class ServiceRecordSchema(ma.Schema):
    id = ma.fields.Integer(required=True)
    booking_id = ma.fields.Integer(required=True)
    hours = ma.fields.String(
        required=True, allow_none=True, metadata={"description": "decimal hours, e.g. '2.50'"}
    )
    samples = ma.fields.Integer(required=True, allow_none=True)
    fee_fen = ma.fields.Integer(required=True)
    computed_fee_fen = ma.fields.Integer(required=True)
    fee_reason = ma.fields.String(required=True, allow_none=True)
    hours_reason = ma.fields.String(
        required=True, allow_none=True, metadata={"description": "why more hours were used than booked"}
    )
    result_summary = ma.fields.String(required=True)
    recorded_at = ma.fields.String(required=True, metadata={"format": "date-time"})
    rating = ma.fields.Integer(required=True, allow_none=True)
    rating_comment = ma.fields.String(required=True, allow_none=True)
    service_type = ma.fields.String(required=True)
    claim_id = ma.fields.Integer(required=True, allow_none=True)
    files = ma.fields.List(ma.fields.Nested(FileSchema), required=True)


class BookingSchema(ma.Schema):
    id = ma.fields.Integer(required=True)
    instrument_code = ma.fields.String(required=True)
    instrument_name = ma.fields.String(required=True)
    enterprise_id = ma.fields.Integer(required=True)
    enterprise_name = ma.fields.String(required=True)
    mode = ma.fields.String(required=True, validate=validate.OneOf([m.value for m in BookingMode]))
    state = ma.fields.String(required=True, validate=validate.OneOf([s.value for s in BookingState]))
    starts_at = ma.fields.String(required=True, allow_none=True, metadata={"format": "date-time"})
    ends_at = ma.fields.String(required=True, allow_none=True, metadata={"format": "date-time"})
    purpose = ma.fields.String(required=True)
    purpose_category = ma.fields.String(
        required=True, allow_none=True, metadata={"description": "null on bookings made before it was asked"}
    )
    sample_count = ma.fields.Integer(required=True, allow_none=True)
    sample_description = ma.fields.String(required=True, allow_none=True)
    sample_delivery_on = ma.fields.String(required=True, allow_none=True, metadata={"format": "date"})
    reason = ma.fields.String(required=True, allow_none=True)
    operation = ma.fields.String(
        required=True, allow_none=True, metadata={"enum": list(OPERATIONS), "description": "null for samples"}
    )
    voucher_mode = ma.fields.String(
        required=True,
        allow_none=True,
        metadata={"enum": ["reimbursement", "at_payment"], "description": "null: not chosen (reimbursement)"},
    )
    tier = ma.fields.String(
        required=True,
        allow_none=True,
        metadata={
            "enum": ["internal", "academic", "enterprise", "sme"],
            "description": "The customer category of the price frozen at booking (null: no price)",
        },
    )
    unit = ma.fields.String(required=True, allow_none=True, metadata={"enum": ["hour", "sample"]})
    unit_price_fen = ma.fields.Integer(
        required=True, allow_none=True, metadata={"description": "Frozen at booking; the fee follows it"}
    )
    offered_until = ma.fields.String(
        required=True,
        allow_none=True,
        metadata={
            "format": "date-time",
            "description": "Set while the booking is a waitlist offer not yet accepted",
        },
    )
    fee_fen = ma.fields.Integer(required=True, allow_none=True)
    rating = ma.fields.Integer(required=True, allow_none=True)
    service_record_id = ma.fields.Integer(required=True, allow_none=True)
    created_at = ma.fields.String(required=True, metadata={"format": "date-time"})
    checked_in_at = ma.fields.String(
        required=True, allow_none=True, metadata={"format": "date-time", "description": "First check-in"}
    )
    checked_out_at = ma.fields.String(
        required=True,
        allow_none=True,
        metadata={"format": "date-time", "description": "End of the last session; null while in use"},
    )
    used_minutes = ma.fields.Integer(
        required=True,
        allow_none=True,
        metadata={"description": "Minutes of metered use (an open session up to now); null when not metered"},
    )
    series_id = ma.fields.Integer(
        required=True,
        allow_none=True,
        metadata={"description": "The recurring booking it is an occurrence of; null when none"},
    )


class BookingPageSchema(PageSchema):
    items = ma.fields.List(ma.fields.Nested(BookingSchema), required=True)
    counts = ma.fields.Dict(
        keys=ma.fields.String(),
        values=ma.fields.Integer(),
        required=True,
        metadata={"description": "per state"},
    )


class BookingListArgsSchema(PageArgsSchema):
    state = ma.fields.String(load_default=None, validate=validate.OneOf([s.value for s in BookingState]))
    instrument_code = ma.fields.String(load_default=None, validate=validate.Length(max=40))


class BookingCreateSchema(ma.Schema):
    class Meta:
        description = (
            "mode `slot` needs `starts_at` and `ends_at` (the end after the start, inside the opening "
            "hours and the instrument's booking policy, not in the past, free); mode `sample` needs "
            "`sample_count`, `sample_description` (not blank) and `sample_delivery_on` (from today "
            "to the policy's days ahead), and the instrument must take samples. The instrument "
            "must exist and be bookable. A refused rule answers 422 validation_error naming the field "
            "(`details.fields`; an instrument that cannot be booked now names `rule`: not_bookable), a "
            "taken slot 409 slot_conflict. A slot's `operation` must be one the "
            "instrument's booking policy offers (422 on `operation`); `self` on an instrument that "
            "requires a qualification needs one valid on the booking's days: 409 not_qualified."
        )

    instrument_code = ma.fields.String(required=True, validate=validate.Length(min=1, max=40))
    mode = ma.fields.String(load_default="slot", validate=validate.OneOf([m.value for m in BookingMode]))
    starts_at = _time("mode slot: required; ISO 8601 with an offset")
    ends_at = _time("mode slot: required, after `starts_at`")
    purpose = ma.fields.String(load_default="", validate=validate.Length(max=2000))
    purpose_category = ma.fields.String(
        load_default="development",
        validate=validate.OneOf([c.value for c in PurposeCategory]),
        metadata={"description": "What the service is for (the national service direction)"},
    )
    sample_count = ma.fields.Integer(
        load_default=None, strict=True, validate=validate.Range(min=1, max=10000)
    )
    sample_description = ma.fields.String(load_default=None, validate=validate.Length(max=2000))
    sample_delivery_on = ma.fields.Date(load_default=None)
    operation = ma.fields.String(
        load_default=None,
        allow_none=True,
        validate=validate.OneOf(OPERATIONS),
        metadata={
            "description": "mode slot: self (自主上机, the default) or staff (代为操作); ignored for samples"
        },
    )
    voucher_mode = ma.fields.String(
        load_default=None,
        allow_none=True,
        validate=validate.OneOf(requests.VOUCHER_MODES),
        metadata={
            "description": "How the enterprise means to pay with its innovation voucher when the scheme's "
            "`redemption_modes` offer both: reimbursement (the whole fee, then a claim) or at_payment (only "
            "its share; the provider redeems the voucher when it records the service). null: reimbursement"
        },
    )


class ReasonSchema(ma.Schema):
    class Meta:
        description = (
            "Optional for the booking's enterprise; a provider must give a `reason` (422 otherwise)."
        )

    reason = ma.fields.String(
        load_default=None,
        allow_none=True,
        validate=validate.Length(max=1000),
        metadata={"description": "Required (not blank) when a provider cancels"},
    )
    late_cancellation = ma.fields.Boolean(
        load_default=False,
        metadata={
            "description": "A provider cancelling a confirmed booking past the enterprise's cut-off at "
            "its request: counts against the enterprise's booking credit (ignored otherwise)"
        },
    )


class RequiredReasonSchema(ma.Schema):
    reason = ma.fields.String(
        required=True,
        validate=validate.Length(min=1, max=1000),
        metadata={"pattern": NOT_BLANK, "description": "Why; not blank"},
    )


class CompleteSchema(ma.Schema):
    class Meta:
        description = (
            "Give `hours` or `samples` (or both). `fee_fen` defaults to the standard fee of the "
            "instrument; another fee needs a `fee_reason`, and more hours than were booked need an "
            "`hours_reason`. A broken rule answers 422 validation_error naming the field."
        )

    hours = ma.fields.Decimal(
        load_default=None,
        places=2,
        validate=validate.Range(min=Decimal("0.01"), max=1000),
        # apispec would write the bounds as strings ("0.01"); OpenAPI wants numbers.
        metadata={"minimum": 0.01, "maximum": 1000},
    )
    samples = ma.fields.Integer(load_default=None, strict=True, validate=validate.Range(min=1, max=100000))
    fee_fen = ma.fields.Integer(load_default=None, strict=True, validate=validate.Range(min=0, max=10**11))
    fee_reason = ma.fields.String(
        load_default=None,
        allow_none=True,
        validate=validate.Length(max=500),
        metadata={"description": "required when `fee_fen` differs from the standard fee"},
    )
    hours_reason = ma.fields.String(
        load_default=None,
        allow_none=True,
        validate=validate.Length(max=500),
        metadata={"description": "required when `hours` is above the booked time"},
    )
    result_summary = ma.fields.String(load_default="", validate=validate.Length(max=4000))
    service_type = ma.fields.String(load_default="analysis", validate=validate.OneOf(records.SERVICE_TYPES))

    @ma.validates_schema
    def _hours_or_samples(self, data: dict, **kwargs: Any) -> None:
        # Checked here too (the service checks it again), so that a missing body is refused at once.
        if data.get("hours") is None and data.get("samples") is None:
            raise ma.ValidationError(_("Give the hours used or the number of samples."), "hours")


class RateSchema(ma.Schema):
    rating = ma.fields.Integer(required=True, strict=True, validate=validate.Range(min=1, max=5))
    comment = ma.fields.String(load_default=None, allow_none=True, validate=validate.Length(max=1000))


class UploadSchema(ma.Schema):
    kind = ma.fields.String(required=True, validate=validate.OneOf([k.value for k in FileKind]))
    file = Upload(
        required=True,
        metadata={"description": "PDF, JPEG or PNG, recognised by its content (422 on `file` otherwise)"},
    )


class NewFileSchema(ma.Schema):
    id = ma.fields.Integer(required=True)
    kind = ma.fields.String(required=True)
    size = ma.fields.Integer(required=True)


def booking_json(booking: Booking, usage: dict[int, BookingUsage] | None = None) -> dict[str, Any]:
    """The booking as the API shows it; `usage` is the metered use of a page of bookings, read at once."""
    record = booking.service_record
    used = (usage_of([booking.id]) if usage is None else usage).get(booking.id)
    return {
        "id": booking.id,
        "instrument_code": booking.instrument.code,
        "instrument_name": booking.instrument.name,
        "enterprise_id": booking.enterprise_id,
        "enterprise_name": booking.enterprise.name,
        "mode": booking.mode.value,
        "state": booking.state.value,
        "starts_at": clock.iso_utc(booking.starts_at),
        "ends_at": clock.iso_utc(booking.ends_at),
        "purpose": booking.purpose,
        "purpose_category": booking.purpose_category,
        "sample_count": booking.sample_count,
        "sample_description": booking.sample_description,
        "sample_delivery_on": booking.sample_delivery_on.isoformat() if booking.sample_delivery_on else None,
        "reason": booking.reason,
        "operation": booking.operation,
        "voucher_mode": booking.voucher_mode,
        "tier": booking.tier,
        "unit": booking.unit,
        "unit_price_fen": booking.unit_price_fen,
        "offered_until": clock.iso_utc(booking.offered_until),
        "fee_fen": record.fee_fen if record else None,
        "rating": record.rating if record else None,
        "service_record_id": record.id if record else None,
        "created_at": clock.iso_utc(booking.created_at),
        "checked_in_at": clock.iso_utc(used.checked_in_at) if used else None,
        "checked_out_at": clock.iso_utc(used.checked_out_at) if used else None,
        "used_minutes": used.used_minutes if used else None,
        "series_id": booking.series_id,
    }


def _file_json(row: ServiceFile) -> dict[str, Any]:
    return {
        "id": row.id,
        "kind": row.kind.value,
        "size": row.size,
        "name": uploads.clean_name(row.original_name),
        "content_type": row.content_type,
        "sha256": row.sha256,
        "uploaded_at": clock.iso_utc(row.uploaded_at),
    }


def record_json(record: ServiceRecord) -> dict[str, Any]:
    return {
        "id": record.id,
        "booking_id": record.booking_id,
        "hours": None if record.hours is None else f"{record.hours:.2f}",
        "samples": record.samples,
        "fee_fen": record.fee_fen,
        "computed_fee_fen": record.computed_fee_fen,
        "fee_reason": record.fee_reason,
        "hours_reason": record.hours_reason,
        "result_summary": record.result_summary,
        "recorded_at": clock.iso_utc(record.recorded_at),
        "rating": record.rating,
        "rating_comment": record.rating_comment,
        "service_type": record.service_type,
        "claim_id": record.claim_id,
        "files": [_file_json(f) for f in record.files],
    }


def booking_answer(booking_id: int) -> dict[str, Any]:
    return booking_json(services.get_booking(current_user, booking_id))


@blp.route("/instruments/<code>/availability")
@blp.arguments(AvailabilityArgsSchema, location="query", as_kwargs=False)
@blp.response(200, AvailabilitySchema)
@blp.errors(404)
def availability(args: dict, code: str):
    """Free, held and closed time of an instrument between start and end (default: the next 7 days)."""
    instrument = get_instrument(code)
    start = args.get("start") or clock.utcnow()
    end = args.get("end") or start + timedelta(days=7)
    if not start < end:
        raise ValidationFailed("end must be after start", {"end": "end must be after start"})
    if end - start > timedelta(days=MAX_AVAILABILITY_DAYS):
        # Also when only one end is given: the other defaults to now (or a week on).
        message = f"at most {MAX_AVAILABILITY_DAYS} days at a time"
        raise ValidationFailed(message, {"end": message})
    spans = Calendar.load(instrument, start, end).availability()
    return {key: [span.as_dict() for span in value] for key, value in spans.items()}


@blp.route("/bookings", methods=["POST"])
@blp.arguments(BookingCreateSchema)
@blp.response(201, BookingSchema)
@blp.doc(security=BEARER)
@blp.errors(401, 403, 404, 409)
@token_required()
def create_booking(args: dict):
    """Request machine time (mode slot: starts_at, ends_at) or a sample service (mode sample)."""
    booking = requests.request_booking(
        current_user,
        args["instrument_code"],
        requests.BookingRequest(
            mode=BookingMode(args["mode"]),
            purpose=args["purpose"],
            purpose_category=args["purpose_category"],
            starts_at=args["starts_at"],
            ends_at=args["ends_at"],
            sample_count=args["sample_count"],
            sample_description=args["sample_description"],
            sample_delivery_on=args["sample_delivery_on"],
            operation=args["operation"],
            voucher_mode=args["voucher_mode"],
        ),
    )
    return booking_answer(booking.id)


@blp.route("/bookings")
@blp.arguments(BookingListArgsSchema, location="query", as_kwargs=False)
@blp.response(200, BookingPageSchema)
@blp.doc(security=BEARER)
@blp.errors(401)
@token_required()
def list_bookings(args: dict):
    """Bookings you may see: your enterprise's, your institution's instruments', or all (bureau)."""
    result = services.list_bookings(
        current_user,
        state=args["state"],
        instrument_code=args["instrument_code"],
        page=args["page"],
        per_page=args["per_page"],
    )
    usage = usage_of(b.id for b in result.items)
    return {
        "items": [booking_json(b, usage) for b in result.items],
        "total": result.total,
        "page": result.page,
        "per_page": result.per_page,
        "counts": result.counts,
    }


@blp.route("/bookings/<int:id>")
@blp.response(200, BookingSchema)
@blp.doc(security=BEARER)
@blp.errors(401, 404)
@token_required()
def get_booking(id: int):
    """One booking."""
    return booking_answer(id)


def _transition(
    action: str, act, summary: str, body: type[ma.Schema] | None = None, body_required: bool | None = None
) -> None:
    """POST /bookings/{id}/<action>: one endpoint per transition."""
    blp.action(
        f"/bookings/<int:id>/{action}",
        f"booking_{action.replace('-', '_')}",
        summary,
        guard=lambda i: services.get_booking(current_user, i),
        act=act,
        respond=booking_answer,
        response_schema=BookingSchema,
        body=body,
        body_required=body_required,
    )


_transition("confirm", lambda i, _b: transitions.confirm_booking(current_user, i), "The provider confirms.")
_transition(
    "reject",
    lambda i, b: transitions.reject_booking(current_user, i, b.get("reason")),
    "The provider declines, with a reason.",
    RequiredReasonSchema,
)
_transition(
    "cancel",
    lambda i, b: transitions.cancel_booking(
        current_user, i, b.get("reason"), late_cancellation=b.get("late_cancellation", False)
    ),
    "Cancel: the enterprise before the cut-off, the provider any time with a reason.",
    ReasonSchema,
)
_transition(
    "no-show", lambda i, _b: transitions.mark_no_show(current_user, i), "The provider records a no-show."
)
_transition(
    "complete",
    lambda i, b: records.complete_booking(
        current_user,
        i,
        records.ServiceReport(
            hours=b.get("hours"),
            samples=b.get("samples"),
            fee_fen=b.get("fee_fen"),
            fee_reason=b.get("fee_reason"),
            hours_reason=b.get("hours_reason"),
            result_summary=b.get("result_summary") or "",
            service_type=b.get("service_type") or "analysis",
        ),
    ),
    "The provider records the service: hours or samples, and a fee (the standard unless a reason is given).",
    CompleteSchema,
    body_required=True,  # `hours` or `samples` (CompleteSchema)
)
_transition(
    "rate",
    lambda i, b: records.rate_service(current_user, i, b["rating"], b.get("comment")),
    "The enterprise confirms the service and rates it from 1 (very poor) to 5 (very satisfied).",
    RateSchema,
)


@blp.route("/service-records/<int:id>")
@blp.response(200, ServiceRecordSchema)
@blp.doc(security=BEARER)
@blp.errors(401, 404)
@token_required()
def get_service_record(id: int):
    """A service record with its documents."""
    return record_json(records.get_service_record(current_user, id))


@blp.route("/service-records/<int:id>/files", methods=["POST"])
@blp.arguments(UploadSchema, location="multipart")
@blp.response(201, NewFileSchema)
@blp.doc(security=BEARER)
@blp.errors(401, 403, 404)
@token_required()
def upload_file(args: dict, id: int):  # the path parameter is {id}, as API.md names it
    """Add a contract, invoice, payment receipt or result (PDF, JPEG or PNG, checked by content)."""
    storage = args["file"]
    row = files.attach_file(current_user, id, FileKind(args["kind"]), storage.stream, storage.filename)
    return {"id": row.id, "kind": row.kind.value, "size": row.size}


@blp.route("/service-records/<int:id>/files/<int:file_id>")
@blp.response(200, description="The file itself", content_type="application/octet-stream")
@blp.doc(security=BEARER)
@blp.errors(401, 404)
@token_required()
def download_file(id: int, file_id: int):
    """Download a document of a service record."""
    row = files.get_service_file(current_user, id, file_id)
    return uploads.send_stored(row.stored_name, row.content_type, row.original_name)
