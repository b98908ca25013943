"""Finance endpoints: subsidy totals per month or range, grouped, reconciled with the voucher ledgers."""

from __future__ import annotations

from typing import Any

import marshmallow as ma
from marshmallow import validate

from portal.api.bearer import BEARER, token_required
from portal.api.schemas import ApiBlueprint
from portal.core.permissions import Role
from portal.finance import services

blp = ApiBlueprint("api_finance", __name__, description="Finance: subsidy totals from the monthly tallies.")

MONTH = validate.Regexp(r"^20[0-9]{2}-(0[1-9]|1[0-2])$", error="A month looks like 2026-11.")


class TotalsArgsSchema(ma.Schema):
    month = ma.fields.String(
        validate=MONTH,
        metadata={
            "description": "One month, YYYY-MM (Beijing time). Give `month`, or `month_from` and "
            "`month_to` (422 on `month` when neither is given).",
        },
    )
    month_from = ma.fields.String(validate=MONTH, metadata={"description": "or a range: first month"})
    month_to = ma.fields.String(
        validate=MONTH,
        metadata={"description": "last month (inclusive; the two may come in either order)"},
    )
    group_by = ma.fields.String(
        load_default="fund",
        validate=validate.OneOf(services.GROUPS),
        metadata={
            "description": "fund, county, enterprise, provider (the claims' provider institution), mode "
            "(the redemption mode: reimbursement or at_payment) or payee_kind (whom the subsidy is paid "
            "to: enterprise for reimbursement, provider at payment)",
        },
    )

    @ma.validates_schema
    def _one_period(self, data: dict[str, Any], **_kwargs: Any) -> None:
        if not data.get("month") and not (data.get("month_from") and data.get("month_to")):
            raise ma.ValidationError("Give month, or month_from and month_to.", "month")


class TotalRowSchema(ma.Schema):
    key = ma.fields.Raw(
        required=True,
        metadata={
            "description": "fund name, county, enterprise or institution id, redemption mode "
            "(reimbursement | at_payment) or payee kind (enterprise | provider)"
        },
    )
    label = ma.fields.String(required=True)
    amount_fen = ma.fields.Integer(required=True, metadata={"description": "approved subsidy"})
    paid_fen = ma.fields.Integer(required=True)
    ledger_fen = ma.fields.Integer(
        metadata={
            "description": "grouped by mode or payee_kind only: committed by the voucher ledgers in the "
            "same months for the claims of this mode (equals amount_fen to the fen)"
        }
    )


class TotalsSchema(ma.Schema):
    month_from = ma.fields.String(required=True)
    month_to = ma.fields.String(required=True)
    group_by = ma.fields.String(required=True)
    rows = ma.fields.List(ma.fields.Nested(TotalRowSchema), required=True)
    total_fen = ma.fields.Integer(required=True, metadata={"description": "sum of amount_fen"})
    paid_fen = ma.fields.Integer(required=True)
    ledger_fen = ma.fields.Integer(
        required=True, metadata={"description": "committed by the voucher ledgers in the same months"}
    )
    reconciled = ma.fields.Boolean(required=True, metadata={"description": "total_fen equals ledger_fen"})


def _row_ledger(group_by: str, key: Any, month_from: str, month_to: str) -> dict[str, int]:
    """A mode's (or payee kind's) row carries its own reconciliation with the ledger."""
    if group_by == "mode":
        return {"ledger_fen": services.ledger_committed(month_from, month_to, mode=key)}
    if group_by == "payee_kind":
        modes = [mode for mode, payee in services.PAYEE_OF_MODE.items() if payee == key]
        committed = services.ledger_committed_by_mode(month_from, month_to)
        return {"ledger_fen": sum(committed[mode] for mode in modes)}
    return {}


@blp.route("/finance/totals")
@blp.arguments(TotalsArgsSchema, location="query")
@blp.response(200, TotalsSchema)
@blp.doc(security=BEARER)
@blp.errors(401, 403)
@token_required(Role.FINANCE, Role.ADMIN, Role.REVIEWER)
def totals(args: dict[str, Any]) -> dict[str, Any]:
    """Approved and paid subsidy of a month (or months), by fund, enterprise, provider, county,
    redemption mode or payee kind."""
    month_from = args.get("month") or args["month_from"]
    month_to = args.get("month") or args["month_to"]
    if month_from > month_to:
        month_from, month_to = month_to, month_from
    result = services.totals(month_from, month_to, args["group_by"])
    ledger = services.ledger_committed(month_from, month_to)
    return {
        "month_from": month_from,
        "month_to": month_to,
        "group_by": result.group_by,
        "rows": [
            {"key": r.key, "label": r.label, "amount_fen": r.approved_fen, "paid_fen": r.paid_fen}
            | _row_ledger(result.group_by, r.key, month_from, month_to)
            for r in result.rows
        ],
        "total_fen": result.approved_fen,
        "paid_fen": result.paid_fen,
        "ledger_fen": ledger,
        "reconciled": ledger == result.approved_fen,
    }
