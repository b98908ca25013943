"""Booking credit (信用, issue 18): an enterprise's record and status; waivers by providers and reviewers.

A suspended enterprise's booking request answers `409 suspended` with `details.until` (the booking
endpoints); here it reads why.
"""

from __future__ import annotations

from typing import Any

import marshmallow as ma
from flask_login import current_user
from marshmallow import validate

from portal.api.bearer import BEARER, token_required
from portal.api.schemas import NOT_BLANK, ApiBlueprint
from portal.core import clock
from portal.core.permissions import Role
from portal.credit import services
from portal.credit.models import Violation, ViolationKind

blp = ApiBlueprint(
    "api_credit",
    __name__,
    description="Booking credit: violations (no-shows, late cancellations), suspension and waivers.",
    error_descriptions={404: "No such violation (or not one you may see)", 409: "invalid_transition"},
)


class RulesSchema(ma.Schema):
    max_violations = ma.fields.Integer(required=True, metadata={"description": "N"})
    window_days = ma.fields.Integer(required=True, metadata={"description": "M"})
    suspension_days = ma.fields.Integer(required=True, metadata={"description": "K"})


class ViolationSchema(ma.Schema):
    id = ma.fields.Integer(required=True)
    enterprise_id = ma.fields.Integer(required=True)
    booking_id = ma.fields.Integer(required=True)
    kind = ma.fields.String(required=True, validate=validate.OneOf([k.value for k in ViolationKind]))
    occurred_at = ma.fields.String(required=True, metadata={"format": "date-time"})
    waived_at = ma.fields.String(required=True, allow_none=True, metadata={"format": "date-time"})
    waive_reason = ma.fields.String(required=True, allow_none=True)


class CreditSchema(ma.Schema):
    suspended_until = ma.fields.String(
        required=True,
        allow_none=True,
        metadata={"format": "date-time", "description": "null: the enterprise may book online"},
    )
    rules = ma.fields.Nested(RulesSchema, required=True)
    violations = ma.fields.List(ma.fields.Nested(ViolationSchema), required=True)


class ViolationListSchema(ma.Schema):
    items = ma.fields.List(ma.fields.Nested(ViolationSchema), required=True)


class WaiveSchema(ma.Schema):
    reason = ma.fields.String(
        required=True,
        validate=validate.Length(min=1, max=1000),
        metadata={"pattern": NOT_BLANK, "description": "Why it should not count; not blank"},
    )


def violation_json(row: Violation) -> dict[str, Any]:
    return {
        "id": row.id,
        "enterprise_id": row.enterprise_id,
        "booking_id": row.booking_id,
        "kind": row.kind.value,
        "occurred_at": clock.iso_utc(row.occurred_at),
        "waived_at": clock.iso_utc(row.waived_at),
        "waive_reason": row.waive_reason,
    }


@blp.route("/credit")
@blp.response(200, CreditSchema)
@blp.doc(security=BEARER)
@blp.errors(401, 403)
@token_required(Role.ENTERPRISE)
def own_credit():
    """Your enterprise's booking credit: the rules, whether online booking is suspended, every violation."""
    status = services.credit_status(current_user)
    return {
        "suspended_until": clock.iso_utc(status.suspended_until),
        "rules": {
            "max_violations": status.rules.max_violations,
            "window_days": status.rules.window_days,
            "suspension_days": status.rules.suspension_days,
        },
        "violations": [violation_json(v) for v in status.violations],
    }


@blp.route("/credit/violations")
@blp.response(200, ViolationListSchema)
@blp.doc(security=BEARER)
@blp.errors(401, 403)
@token_required(*services.WAIVERS)
def list_violations():
    """The latest 200 violations you may waive: a provider's on its instruments, the bureau's all."""
    return {"items": [violation_json(v) for v in services.violations_to_review(current_user)]}


blp.action(
    "/credit/violations/<int:id>/waive",
    "waive_violation",
    "Waive a violation with a reason (a provider of its instrument, a reviewer, an administrator).",
    guard=lambda i: services.violation_to_waive(current_user, i),
    act=lambda i, b: services.waive_violation(current_user, i, b.get("reason")),
    respond=lambda i: violation_json(services.get_violation(current_user, i)),
    response_schema=ViolationSchema,
    body=WaiveSchema,
)
