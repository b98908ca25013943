"""Voucher endpoints: the current scheme, applications, vouchers with their ledger, claims and decisions."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import marshmallow as ma
from flask_login import current_user
from marshmallow import validate

from portal.api.bearer import BEARER, token_required
from portal.api.schemas import NOT_BLANK, ApiBlueprint, PageArgsSchema, PageSchema, paginate
from portal.core import clock
from portal.vouchers import applications as application_services
from portal.vouchers import checks as claim_checks
from portal.vouchers import claims as claim_services
from portal.vouchers import redemptions, wallet
from portal.vouchers import review as desk
from portal.vouchers import schemes as scheme_services
from portal.vouchers.checks import MIN_JUSTIFICATION
from portal.vouchers.claims import MAX_JUSTIFICATION
from portal.vouchers.models import (
    ApplicationState,
    Claim,
    ClaimState,
    RedemptionMode,
    Voucher,
    VoucherApplication,
    VoucherState,
)

blp = ApiBlueprint(
    "api_vouchers",
    __name__,
    description="Innovation vouchers: schemes, applications, vouchers, claims.",
    error_descriptions={
        403: "Your role may not do this (or four eyes: not your own approval)",
        409: "invalid_transition or limit_exceeded",
    },
)


class FundSchema(ma.Schema):
    name = ma.fields.String(required=True)
    rate = ma.fields.String(required=True, metadata={"description": "exact decimal, e.g. '0.60'"})
    condition = ma.fields.String(required=True, validate=validate.OneOf(["always", "local_provider"]))
    budget_fen = ma.fields.Integer(required=True)
    committed_fen = ma.fields.Integer(required=True)
    paid_fen = ma.fields.Integer(required=True)
    free_fen = ma.fields.Integer(required=True)


class SchemeSchema(ma.Schema):
    year = ma.fields.Integer(required=True)
    name = ma.fields.String(required=True)
    funds = ma.fields.List(ma.fields.Nested(FundSchema), required=True)
    enterprise_cap_fen = ma.fields.Integer(required=True)
    group_cap_fen = ma.fields.Integer(required=True)
    four_eyes_threshold_fen = ma.fields.Integer(required=True)
    voucher_validity_days = ma.fields.Integer(required=True)
    public_notice_days = ma.fields.Integer(required=True)
    service_window_start = ma.fields.String(required=True, metadata={"format": "date"})
    service_window_end = ma.fields.String(required=True, metadata={"format": "date"})
    excluded_service_types = ma.fields.List(ma.fields.String(), required=True)
    metering_required = ma.fields.Boolean(
        required=True,
        metadata={"description": "Billed machine hours must be metered (claim check hours_above_usage)"},
    )
    allocated_fen = ma.fields.Integer(required=True, metadata={"description": "voucher quotas outstanding"})
    unallocated_fen = ma.fields.Integer(required=True)
    redemption_modes = ma.fields.List(
        ma.fields.String(validate=validate.OneOf([m.value for m in RedemptionMode])),
        required=True,
        metadata={
            "description": "How the scheme's vouchers pay, at least one: `reimbursement` (the enterprise "
            "pays the whole fee and claims the subsidy) and/or `at_payment` (the enterprise pays only its "
            "share, the provider redeems the rest); with both, the enterprise chooses per booking"
        },
    )
    out_of_province_rate = ma.fields.String(
        required=True,
        allow_none=True,
        metadata={
            "description": "Exact decimal between 0 and 1, e.g. '0.30': the rate the `always` funds pay "
            "for a provider outside Shandong (in place of their own; `local_provider` funds pay nothing "
            "for one). null: the scheme subsidises no out-of-province service (the claim check "
            "out_of_province_justified fails)"
        },
    )
    redemption_days = ma.fields.Integer(
        required=True,
        metadata={
            "description": "1 to 365: an at-payment reservation not submitted (or a returned redemption not "
            "resubmitted) within this many days of its reservation expires and is released"
        },
    )


class ApplicationCreateSchema(ma.Schema):
    amount_fen = ma.fields.Integer(
        required=True,
        strict=True,
        validate=validate.Range(min=1, max=10**11),
        metadata={"description": "At most the scheme's `group_cap_fen` (422 on `amount_fen` otherwise)"},
    )
    plan = ma.fields.String(
        required=True,
        validate=validate.Length(min=1, max=4000),
        metadata={
            "pattern": NOT_BLANK,
            "description": "What the enterprise plans to test and why; not blank",
        },
    )


class ApproveApplicationSchema(ma.Schema):
    amount_fen = ma.fields.Integer(load_default=None, strict=True, validate=validate.Range(min=1, max=10**11))
    comment = ma.fields.String(load_default=None, allow_none=True, validate=validate.Length(max=2000))


class CommentSchema(ma.Schema):
    comment = ma.fields.String(load_default=None, allow_none=True, validate=validate.Length(max=2000))


class RequiredCommentSchema(ma.Schema):
    comment = ma.fields.String(
        required=True,
        validate=validate.Length(min=1, max=2000),
        metadata={"pattern": NOT_BLANK, "description": "The reason, which the enterprise sees; not blank"},
    )


class ApplicationSchema(ma.Schema):
    id = ma.fields.Integer(required=True)
    enterprise_id = ma.fields.Integer(required=True)
    year = ma.fields.Integer(required=True)
    amount_fen = ma.fields.Integer(required=True)
    plan = ma.fields.String(required=True)
    state = ma.fields.String(required=True, validate=validate.OneOf([s.value for s in ApplicationState]))
    comment = ma.fields.String(required=True, allow_none=True)
    voucher_id = ma.fields.Integer(required=True, allow_none=True)
    submitted_at = ma.fields.String(required=True, metadata={"format": "date-time"})


class LedgerEntrySchema(ma.Schema):
    kind = ma.fields.String(required=True)
    amount_fen = ma.fields.Integer(required=True)
    balance_after_fen = ma.fields.Integer(required=True)
    claim_id = ma.fields.Integer(required=True, allow_none=True)
    created_at = ma.fields.String(required=True, metadata={"format": "date-time"})


class VoucherSchema(ma.Schema):
    id = ma.fields.Integer(required=True)
    code = ma.fields.String(required=True)
    enterprise_id = ma.fields.Integer(required=True)
    year = ma.fields.Integer(required=True)
    quota_fen = ma.fields.Integer(required=True)
    balance_fen = ma.fields.Integer(required=True)
    valid_until = ma.fields.String(required=True, metadata={"format": "date"})
    state = ma.fields.String(required=True, validate=validate.OneOf([s.value for s in VoucherState]))
    ledger = ma.fields.List(ma.fields.Nested(LedgerEntrySchema), required=True)


class VoucherPageSchema(PageSchema):
    items = ma.fields.List(ma.fields.Nested(VoucherSchema), required=True)


class ClaimRequestSchema(ma.Schema):
    voucher_id = ma.fields.Integer(required=True, strict=True, validate=validate.Range(min=1, max=2**31 - 1))
    service_record_ids = ma.fields.List(
        ma.fields.Integer(strict=True, validate=validate.Range(min=1, max=2**31 - 1)),
        required=True,
        validate=validate.Length(min=1, max=50),
    )
    justification = ma.fields.String(
        load_default=None,
        allow_none=True,
        validate=validate.Length(max=MAX_JUSTIFICATION),
        metadata={
            "description": "The enterprise's written justification that no networked instrument in Shandong "
            "can do the service; kept only when the services' provider is outside Shandong (ignored, and "
            "null on the claim, otherwise). For such a provider the check out_of_province_justified fails, "
            f"so the claim cannot be submitted, unless it has at least {MIN_JUSTIFICATION} characters "
            "(leading and trailing blanks not counted) and the scheme has an out_of_province_rate; the "
            "reviewers then judge it. A draft is saved without it"
        },
    )


class FundAmountSchema(ma.Schema):
    fund = ma.fields.String(required=True)
    raw_fen = ma.fields.Integer(required=True)
    amount_fen = ma.fields.Integer(required=True)


class CheckSchema(ma.Schema):
    code = ma.fields.String(required=True)
    passed = ma.fields.Boolean(required=True)
    message = ma.fields.String(required=True)
    warning = ma.fields.Boolean(
        metadata={"description": "Passed, with something to know (hours_above_usage: not metered)"}
    )


class PreviewSchema(ma.Schema):
    fee_fen = ma.fields.Integer(required=True)
    funds = ma.fields.List(ma.fields.Nested(FundAmountSchema), required=True)
    total_fen = ma.fields.Integer(required=True)
    limited_by = ma.fields.List(
        ma.fields.String(
            validate=validate.OneOf(
                ["enterprise_cap", "province_budget", "city_budget", "voucher_balance", "group_cap"]
            )
        ),
        required=True,
    )
    checks = ma.fields.List(ma.fields.Nested(CheckSchema), required=True)
    out_of_province = ma.fields.Boolean(
        required=True,
        metadata={
            "description": "The services' provider is outside Shandong: never the city's fund, the `always` "
            "funds at the scheme's out_of_province_rate, and a justification needed"
        },
    )


class ClaimSchema(ma.Schema):
    id = ma.fields.Integer(required=True)
    voucher_id = ma.fields.Integer(required=True)
    enterprise_id = ma.fields.Integer(required=True)
    state = ma.fields.String(required=True, validate=validate.OneOf([s.value for s in ClaimState]))
    fee_fen = ma.fields.Integer(required=True)
    funds = ma.fields.List(ma.fields.Nested(FundAmountSchema), required=True)
    total_fen = ma.fields.Integer(required=True)
    limited_by = ma.fields.List(ma.fields.String(), required=True)
    checks = ma.fields.List(ma.fields.Nested(CheckSchema), required=True)
    service_record_ids = ma.fields.List(ma.fields.Integer(), required=True)
    comment = ma.fields.String(required=True, allow_none=True)
    reply = ma.fields.String(
        required=True, allow_none=True, metadata={"description": "the enterprise's answer to a return"}
    )
    submitted_at = ma.fields.String(required=True, allow_none=True, metadata={"format": "date-time"})
    notice_ends_on = ma.fields.String(required=True, allow_none=True, metadata={"format": "date"})
    out_of_province = ma.fields.Boolean(
        required=True, metadata={"description": "The provider is outside Shandong (see the preview)"}
    )
    justification = ma.fields.String(
        required=True,
        allow_none=True,
        metadata={"description": "The enterprise's justification for an out-of-province provider, else null"},
    )
    mode = ma.fields.String(
        required=True,
        validate=validate.OneOf([m.value for m in RedemptionMode]),
        metadata={
            "description": "reimbursement (the enterprise claims) or at_payment (the provider redeems)"
        },
    )
    payee_kind = ma.fields.String(
        required=True,
        validate=validate.OneOf(["enterprise", "provider"]),
        metadata={"description": "who is paid the subsidy: the provider at payment"},
    )
    institution_id = ma.fields.Integer(
        required=True, allow_none=True, metadata={"description": "the provider"}
    )
    enterprise_share_fen = ma.fields.Integer(
        required=True, metadata={"description": "fee_fen - total_fen: what the enterprise pays itself"}
    )
    enterprise_paid_fen = ma.fields.Integer(
        required=True,
        allow_none=True,
        metadata={"description": "at payment: what the provider says the enterprise paid of its share"},
    )
    reservation_expires_on = ma.fields.String(
        required=True,
        allow_none=True,
        metadata={"format": "date", "description": "at payment: released if not submitted by then"},
    )


class SubmitSchema(ma.Schema):
    enterprise_paid_fen = ma.fields.Integer(
        load_default=None,
        strict=True,
        validate=validate.Range(min=0, max=10**11),
        metadata={
            "description": "Required for a redemption at payment (the provider submits): what the enterprise "
            "paid of its share; check share_paid compares it with enterprise_share_fen. Ignored otherwise."
        },
    )


class ClaimPageSchema(PageSchema):
    items = ma.fields.List(ma.fields.Nested(ClaimSchema), required=True)


def rate_text(rate: Decimal) -> str:
    """'0.60' for 0.6000, '0.125' for 0.1250: exact, at least two decimals."""
    return f"{rate:.2f}" if rate == rate.quantize(Decimal("0.01")) else format(rate.normalize(), "f")


def scheme_json(scheme) -> dict[str, Any]:
    return {
        "year": scheme.year,
        "name": scheme.name,
        "funds": [
            {
                "name": f.name,
                "rate": rate_text(f.rate),
                "condition": f.condition.value,
                "budget_fen": f.budget_fen,
                "committed_fen": f.committed_fen,
                "paid_fen": f.paid_fen,
                "free_fen": f.free_fen,
            }
            for f in scheme.funds
        ],
        "enterprise_cap_fen": scheme.enterprise_cap_fen,
        "group_cap_fen": scheme.group_cap_fen,
        "four_eyes_threshold_fen": scheme.four_eyes_threshold_fen,
        "voucher_validity_days": scheme.voucher_validity_days,
        "public_notice_days": scheme.public_notice_days,
        "service_window_start": scheme.service_window_start.isoformat(),
        "service_window_end": scheme.service_window_end.isoformat(),
        "excluded_service_types": list(scheme.excluded_service_types or []),
        "metering_required": scheme.metering_required,
        "allocated_fen": scheme.allocated_fen,
        "unallocated_fen": scheme.unallocated_fen,
        "redemption_modes": list(scheme.redemption_modes or []),
        "out_of_province_rate": rate_text(scheme.out_of_province_rate)
        if scheme.out_of_province_rate is not None
        else None,
        "redemption_days": scheme.redemption_days,
    }


def application_json(application: VoucherApplication) -> dict[str, Any]:
    return {
        "id": application.id,
        "enterprise_id": application.enterprise_id,
        "year": application.scheme.year,
        "amount_fen": application.amount_fen,
        "plan": application.plan,
        "state": application.state.value,
        "comment": application.comment,
        "voucher_id": application.voucher.id if application.voucher else None,
        "submitted_at": clock.iso_utc(application.submitted_at),
    }


def voucher_json(voucher: Voucher) -> dict[str, Any]:
    return {
        "id": voucher.id,
        "code": voucher.code,
        "enterprise_id": voucher.enterprise_id,
        "year": voucher.scheme.year,
        "quota_fen": voucher.quota_fen,
        "balance_fen": voucher.balance_fen,
        "valid_until": voucher.valid_until.isoformat(),
        "state": voucher.state.value,
        "ledger": [
            {
                "kind": e.kind.value,
                "amount_fen": e.amount_fen,
                "balance_after_fen": e.balance_after_fen,
                "claim_id": e.claim_id,
                "created_at": clock.iso_utc(e.created_at),
            }
            for e in voucher.ledger
        ],
    }


def claim_json(claim: Claim) -> dict[str, Any]:
    return {
        "id": claim.id,
        "voucher_id": claim.voucher_id,
        "enterprise_id": claim.enterprise_id,
        "state": claim.state.value,
        "fee_fen": claim.fee_fen,
        "funds": claim.funds(),
        "total_fen": claim.total_fen,
        "limited_by": list(claim.limited_by or []),
        # Each stored check's message in the language of the request.
        "checks": [
            {"code": c["code"], "passed": c["passed"], "message": claim_checks.check_message(c)}
            for c in claim.checks or []
        ],
        "service_record_ids": [item.service_record_id for item in claim.items],
        "comment": claim.comment,
        "reply": claim.reply,
        "submitted_at": clock.iso_utc(claim.submitted_at),
        "notice_ends_on": claim.notice_ends_on.isoformat() if claim.notice_ends_on else None,
        "mode": claim.mode.value,
        "payee_kind": claim.payee_kind,
        "institution_id": claim.institution_id,
        "enterprise_share_fen": claim.enterprise_share_fen,
        "enterprise_paid_fen": claim.enterprise_paid_fen,
        "reservation_expires_on": claim.reservation_expires_on.isoformat()
        if claim.reservation_expires_on
        else None,
        "out_of_province": claim.out_of_province,
        "justification": claim.justification,
    }


@blp.route("/schemes/current")
@blp.response(200, SchemeSchema)
@blp.errors(404)
def current_scheme():
    """This year's scheme: funds with rates, conditions, budgets, committed, paid and free amounts; caps."""
    return scheme_json(scheme_services.require_scheme())


@blp.route("/voucher-applications", methods=["POST"])
@blp.arguments(ApplicationCreateSchema)
@blp.response(201, ApplicationSchema)
@blp.doc(security=BEARER)
@blp.errors(401, 403, 404, 409)
@token_required()
def create_application(args: dict):
    """A verified enterprise applies for this year's voucher quota."""
    application = application_services.apply_for_voucher(current_user, args["amount_fen"], args["plan"])
    return application_json(application_services.get_application(current_user, application.id))


@blp.route("/voucher-applications/<int:id>")
@blp.response(200, ApplicationSchema)
@blp.doc(security=BEARER)
@blp.errors(401, 404)
@token_required()
def get_application(id: int):  # the path parameter is {id}, as API.md names it
    """One voucher application (the enterprise's own, or any for the bureau)."""
    return application_json(application_services.get_application(current_user, id))


# Each decision route -> its transition.
APPLICATION_DECISIONS = {
    "approve": lambda i, b: application_services.approve_application(
        current_user, i, amount_fen=b.get("amount_fen"), comment=b.get("comment")
    ),
    "reject": lambda i, b: application_services.reject_application(current_user, i, b.get("comment")),
    "return": lambda i, b: application_services.return_application(current_user, i, b.get("comment")),
}
CLAIM_DECISIONS = {"approve": desk.approve_claim, "reject": desk.reject_claim, "return": desk.return_claim}


def _application_decision(action: str, body: type[ma.Schema], summary: str) -> None:
    blp.action(
        f"/voucher-applications/<int:id>/{action}",
        f"application_{action}",
        summary,
        guard=lambda i: application_services.get_application(current_user, i),
        act=APPLICATION_DECISIONS[action],
        respond=lambda i: application_json(application_services.get_application(current_user, i)),
        response_schema=ApplicationSchema,
        body=body,
    )


_application_decision(
    "approve",
    ApproveApplicationSchema,
    "A reviewer approves an amount (default: the amount applied for) within caps and the free budget; "
    "above the four-eyes threshold a second, different reviewer must approve too.",
)
_application_decision("reject", RequiredCommentSchema, "A reviewer rejects, with a comment.")
_application_decision(
    "return", RequiredCommentSchema, "A reviewer returns the application for correction, with a comment."
)


@blp.route("/vouchers")
@blp.arguments(PageArgsSchema, location="query", as_kwargs=False)
@blp.response(200, VoucherPageSchema)
@blp.doc(security=BEARER)
@blp.errors(401)
@token_required()
def list_vouchers(args: dict):
    """Your enterprise's vouchers (all of them for the bureau), with their ledgers."""
    return paginate([voucher_json(v) for v in wallet.vouchers_for(current_user)], args)


@blp.route("/vouchers/<int:id>")
@blp.response(200, VoucherSchema)
@blp.doc(security=BEARER)
@blp.errors(401, 404)
@token_required()
def get_voucher(id: int):  # the path parameter is {id}
    """One voucher with every commitment, release and payment."""
    return voucher_json(wallet.get_voucher(current_user, id))


@blp.route("/claims/preview", methods=["POST"])
@blp.arguments(ClaimRequestSchema)
@blp.response(200, PreviewSchema)
@blp.doc(security=BEARER)
@blp.errors(401, 403, 404)
@token_required()
def preview_claim(args: dict):
    """The subsidy per fund these services would get now, every limit that binds, and the checks."""
    return claim_services.preview_claim(
        current_user, args["voucher_id"], args["service_record_ids"], args["justification"]
    ).as_dict()


@blp.route("/claims", methods=["POST"])
@blp.arguments(ClaimRequestSchema)
@blp.response(201, ClaimSchema)
@blp.doc(security=BEARER)
@blp.errors(401, 403, 404)
@token_required()
def create_claim(args: dict):
    """A draft claim for these services (submit it to reserve them and ask for the subsidy)."""
    claim = claim_services.create_claim(
        current_user, args["voucher_id"], args["service_record_ids"], args["justification"]
    )
    return claim_json(claim_services.get_claim(current_user, claim.id))


@blp.route("/claims")
@blp.arguments(PageArgsSchema, location="query", as_kwargs=False)
@blp.response(200, ClaimPageSchema)
@blp.doc(security=BEARER)
@blp.errors(401)
@token_required()
def list_claims(args: dict):
    """Your enterprise's claims (all of them for the bureau), newest first."""
    claims = claim_services.claims_for(current_user)
    start = (args["page"] - 1) * args["per_page"]
    page = [
        claim_json(claim_services.get_claim(current_user, c.id))
        for c in claims[start : start + args["per_page"]]
    ]
    return {"items": page, "total": len(claims), "page": args["page"], "per_page": args["per_page"]}


@blp.route("/claims/<int:id>")
@blp.response(200, ClaimSchema)
@blp.doc(security=BEARER)
@blp.errors(401, 404)
@token_required()
def get_claim(id: int):  # the path parameter is {id}
    """One claim with its amounts per fund and its checks."""
    return claim_json(claim_services.get_claim(current_user, id))


def _claim_route(action: str, act, body: type[ma.Schema] | None, summary: str) -> None:
    blp.action(
        f"/claims/<int:id>/{action}",
        f"claim_{action}",
        summary,
        guard=lambda i: claim_services.get_claim(current_user, i),
        act=act,
        respond=lambda i: claim_json(claim_services.get_claim(current_user, i)),
        response_schema=ClaimSchema,
        body=body,
    )


def _submit(claim_id: int, body: dict) -> Claim:
    """The enterprise submits its claim; at payment, the provider its redemption."""
    if claim_services.is_redeeming_provider(current_user, claim_services.get_claim(current_user, claim_id)):
        return redemptions.submit_redemption(current_user, claim_id, body.get("enterprise_paid_fen"))
    return claim_services.submit_claim(current_user, claim_id)


_claim_route(
    "submit",
    _submit,
    SubmitSchema,
    "The enterprise submits a draft (or a returned claim): its services are reserved and the amounts set. "
    "A redemption at payment (mode at_payment) is submitted by its provider with `enterprise_paid_fen`; "
    "its amounts stay as reserved.",
)
for _action, _body, _summary in (
    (
        "approve",
        CommentSchema,
        "A reviewer approves; the money is reserved atomically (four eyes above the threshold).",
    ),
    ("reject", RequiredCommentSchema, "A reviewer rejects, with a comment; the services are released."),
    ("return", RequiredCommentSchema, "A reviewer returns the claim for correction, with a comment."),
):
    _claim_route(
        _action,
        lambda i, b, decide=CLAIM_DECISIONS[_action]: decide(current_user, i, b.get("comment")),
        _body,
        _summary,
    )
