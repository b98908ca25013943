"""Redemption at payment (API.md): the owning provider previews and creates a redemption of a recorded
service with the enterprise's voucher code; the claim it makes is then submitted and decided through
the claims' endpoints."""

from __future__ import annotations

import marshmallow as ma
from flask_login import current_user
from marshmallow import validate

from portal.api.bearer import BEARER, token_required
from portal.api.schemas import NOT_BLANK, ApiBlueprint
from portal.api.vouchers import ClaimSchema, PreviewSchema, claim_json
from portal.vouchers import claims as claim_services
from portal.vouchers import redemptions

blp = ApiBlueprint(
    "api_redemptions",
    __name__,
    description="Vouchers at the point of payment: the provider redeems the subsidised part of a fee.",
    error_descriptions={
        403: "Only provider accounts",
        404: "Not a service record of your institution",
        409: "invalid_transition (the scheme or the booking does not allow it, a check fails, the service "
        "is in another claim) or limit_exceeded (nothing left to reserve)",
        422: "validation_error: `voucher_code` is not the voucher of the service's enterprise",
    },
)


class RedemptionRequestSchema(ma.Schema):
    service_record_id = ma.fields.Integer(
        required=True, strict=True, validate=validate.Range(min=1, max=2**31 - 1)
    )
    voucher_code = ma.fields.String(
        required=True,
        validate=validate.Length(min=1, max=24),
        metadata={"pattern": NOT_BLANK, "description": "The code on the enterprise's voucher"},
    )


class RedemptionPreviewSchema(PreviewSchema):
    enterprise_share_fen = ma.fields.Integer(
        required=True, metadata={"description": "fee_fen - total_fen: what the enterprise pays itself"}
    )


@blp.route("/redemptions/preview", methods=["POST"])
@blp.arguments(RedemptionRequestSchema)
@blp.response(200, RedemptionPreviewSchema)
@blp.doc(security=BEARER)
@blp.errors(401, 403, 404, 409, 422)
@token_required()
def preview_redemption(args: dict):
    """What the voucher would pay of this service now, the enterprise's share, and the checks a
    reservation must pass (nothing is written)."""
    return redemptions.preview_redemption(
        current_user, args["service_record_id"], args["voucher_code"]
    ).as_dict()


@blp.route("/redemptions", methods=["POST"])
@blp.arguments(RedemptionRequestSchema)
@blp.response(201, ClaimSchema)
@blp.doc(security=BEARER)
@blp.errors(401, 403, 404, 409, 422)
@token_required()
def create_redemption(args: dict):
    """Reserve the subsidy at once: a claim with mode at_payment in state reserved, its amounts taken
    from the voucher's balance, the caps and the funds. Submit it with /claims/{id}/submit."""
    claim = redemptions.create_redemption(current_user, args["service_record_id"], args["voucher_code"])
    return claim_json(claim_services.get_claim(current_user, claim.id))
